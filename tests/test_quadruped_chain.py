"""The whole chain on another robot: the 12-servo quadruped collects data, trains, runs the daemon and a small
perturbation suite with a limp leg -- every command as a user types it, only the robot description changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from legadapt.dynamics.checkpoint import load_checkpoint
from legadapt.config import parse_config
from legadapt.features import spec_of

REPO = Path(__file__).resolve().parents[1]
ROBOT = {"description": "quadruped"}


def _legadapt(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    assert "Traceback" not in out.stderr
    return out


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_the_quadruped_collects_trains_runs_and_is_perturbed(tmp_path):
    collect = _write(tmp_path / "collect.yaml", {"robot": ROBOT, "collect": {
        "episodes": 6, "episode_duration": 5.0, "workers": 2, "seed": 1, "state_source": "privileged", "conditions": [
            {"name": "intact"}, {"name": "weak_RH", "perturbations": [
                {"kind": "weak_motor", "joints": ["RH_coxa", "RH_femur", "RH_tibia"], "kp_scale": 0.4, "force_scale": 0.4}]}]}})
    _legadapt("collect", "--config", collect, "--out", tmp_path / "data")
    train = {"robot": ROBOT, "train": {"hidden": [64, 64], "M": 8, "K": 8, "meta_batch": 4, "max_steps": 60,
                                       "eval_every": 20, "val_fraction": 0.2, "seed": 0}}
    models = {}
    for method in ("grbal", "mb"):
        cfg = _write(tmp_path / f"train_{method}.yaml", {**train, "train": {**train["train"], "method": method}})
        models[method] = tmp_path / f"{method}.pt"
        _legadapt("train", tmp_path / "data", "--out", models[method], "--config", cfg, "--quiet")
    spec = spec_of(parse_config({"robot": ROBOT}))
    assert spec.state_dim == 22 and spec.robot == "quadruped"  # 10 body features + 12 joints
    assert load_checkpoint(models["grbal"], spec).spec == spec

    run_cfg = _write(tmp_path / "run.yaml", {"robot": ROBOT, "controller": {"model": str(models["grbal"])},
                                             "task": {"duration": 6.0}})
    run = _legadapt("run", "--config", run_cfg, "--log", tmp_path / "run.mcap")
    assert "true (simulator): progress" in run.stdout, run.stdout

    hexapod_model = _write(tmp_path / "wrong.yaml", {"controller": {"model": str(models["grbal"])}})
    refused = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", hexapod_model],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
    assert refused.returncode == 2 and "quadruped" in refused.stderr, refused.stderr  # a quadruped model on the hexapod

    scenario = _write(tmp_path / "limp.yaml", {"robot": "quadruped", "name": "limp_LF_at_2s", "duration": 6.0,
                                               "state_source": "privileged",
                                               "perturbations": [{"kind": "limp_leg", "leg": "LF", "start": 2.0}]})
    out = tmp_path / "perturb"
    perturb = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "perturb", "--scenario", str(scenario),
                              "--variants", "grbal", "mb", "--out", str(out), "--quiet", "--model", f"grbal={models['grbal']}",
                              "--model", f"mb={models['mb']}"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert perturb.returncode in (0, 1), perturb.stderr[-3000:]  # 1: a verdict failed, which is a result
    results = json.loads((out / "results.json").read_text())["results"]
    assert {r["variant"] for r in results} == {"grbal", "mb"} and all(r["error"] is None for r in results), results
    assert "limp_LF_at_2s" in (out / "report.md").read_text()
