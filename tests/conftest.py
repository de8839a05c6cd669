"""Shared test helpers: build simulated hexapods from config dicts on either backend."""

from __future__ import annotations

import numpy as np
import pytest

from legadapt.config import parse_config
from legadapt.features import make_spec
from legadapt.robot.description import load_description
from legadapt.sim.hexapod import SimulatedHexapod, make_gait, standing_pose

#: The default hexapod, and the sizes of its model (state 28, target 31) for tests that build models by hand.
HEXAPOD = load_description()
HEXAPOD_SPEC = make_spec("per_side", 0.1, HEXAPOD)
STATE_DIM, TARGET_DIM = HEXAPOD_SPEC.state_dim, HEXAPOD_SPEC.target_dim
JOINT_NAMES = HEXAPOD.joint_names

BACKENDS = ("mujoco", "pybullet")


def make_config(backend: str = "mujoco", perturbations: list | None = None, **sections):
    """A validated config with ``sim.backend`` and ``perturbations`` set."""
    data = {"sim": {"backend": backend}, "perturbations": perturbations or []}
    data.update(sections)
    return parse_config(data)


def standing_hexapod(backend: str, perturbations: list | None = None, settle: float = 0.5, **sections) -> SimulatedHexapod:
    """A hexapod reset to its standing pose, powered, left ``settle`` s to settle (config ``sections`` as in make_config)."""
    cfg = make_config(backend, perturbations, **sections)
    hx = SimulatedHexapod.from_config(cfg)
    q0, height = standing_pose(hx.desc, cfg.gait)
    hx.reset(q0, height)
    hx.write(q0)
    hx.advance(settle)
    hx.q_stand = q0  # type: ignore[attr-defined]
    return hx


def gait_for(hx: SimulatedHexapod, **gait):
    return make_gait(hx.desc, parse_config({"gait": gait}).gait)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def walk(backend: str, action, duration: float = 8.0, perturbations: list | None = None, **sections):
    """Walk a SimRobot open-loop through the hardware interface; return the WalkResult."""
    from legadapt.controller.open_loop import walk_open_loop
    from legadapt.sim.sim_robot import SimRobot

    cfg = make_config(backend, perturbations, **sections)
    robot = SimRobot(cfg)
    robot.configure()
    robot.activate()
    try:
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        return walk_open_loop(robot, gait, np.asarray(action, dtype=float), duration, robot.servo_period)
    finally:
        robot.shutdown()


@pytest.fixture(scope="session")
def small_logs(tmp_path_factory):
    """A small real collection: 6 episodes of 5 s over three conditions (MCAP files)."""
    from pathlib import Path

    from legadapt.controller.collect import collect

    out = Path(tmp_path_factory.mktemp("logs"))
    cfg = parse_config({"collect": {"episodes": 6, "episode_duration": 5.0, "workers": 2, "seed": 3, "conditions": [
        {"name": "intact"},
        {"name": "limp_RM", "perturbations": [{"kind": "limp_leg", "leg": "RM", "start": 2.0}]},
        {"name": "up_8", "perturbations": [{"kind": "slope", "pitch_deg": 8}]},
    ]}})
    summary = collect(cfg, out, progress=False)
    assert not summary.errors, summary.errors
    return out


@pytest.fixture(scope="session")
def tiny_model(small_logs, tmp_path_factory):
    """A small GrBAL checkpoint trained for a few steps on ``small_logs`` (fast to plan with)."""
    from legadapt.dynamics.train import train
    from legadapt.config import TrainConfig
    from legadapt.features import make_spec

    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    tc = TrainConfig(hidden=[64, 64], M=8, K=8, meta_batch=4, max_steps=60, eval_every=20, patience=100, val_tasks=20,
                     val_fraction=0.3, device="cpu")
    train([small_logs], HEXAPOD_SPEC, tc, out, progress=False, log=lambda *a: None)
    return out


def write_run_config(path, model, **controller):
    """A small, fast daemon config for tests: 64 samples, horizon 5."""
    import yaml

    ctrl = {"model": str(model), "planner": {"samples": 64, "horizon": 5}, "status_interval": 0.5}
    ctrl.update(controller)
    path.write_text(yaml.safe_dump({"controller": ctrl, "task": {"duration": 5.0}}))
    return path
