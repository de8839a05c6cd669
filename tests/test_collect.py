"""legadapt collect: real simulated episodes into MCAP logs, sharded deterministically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from legadapt.controller.collect import collect, parse_shard, plan_episodes
from legadapt.dynamics.datasets import load_trajectories
from legadapt.config import parse_config
from legadapt.features import make_spec
from legadapt.mcap_read import read_log
from conftest import HEXAPOD

REPO = Path(__file__).resolve().parents[1]


def _cfg(episodes=4):
    return parse_config({"collect": {"episodes": episodes, "episode_duration": 2.0, "workers": 1, "seed": 11, "conditions": [
        {"name": "intact"}, {"name": "payload", "perturbations": [{"kind": "payload", "mass": 0.5}]}]}})


def test_logs_hold_transitions_with_spec_and_conditions(small_logs):
    files = sorted(small_logs.glob("episode*.mcap"))
    assert len(files) == 6 and not list(small_logs.glob("*.part"))
    log = read_log(files[0])
    assert log.recovery.complete
    assert log.spec == make_spec("per_side", 0.1, HEXAPOD)
    tr = log.messages["transition"]
    assert len(tr) == 50, "5 s at 10 Hz"
    assert len(tr[0]["state"]) == 28 and len(tr[0]["action"]) == 2 and len(tr[0]["displacement"]) == 3
    kinds = [e["kind"] for e in log.messages["events"]]
    assert kinds == ["episode_start", "episode_end"]
    trajs, report = load_trajectories([small_logs], make_spec("per_side", 0.1, HEXAPOD))
    assert report.transitions_used == 300
    assert any("limp_leg(leg=RM)" in t.condition for t in trajs), "the mid-run limp leg is its own condition"


def test_random_walk_moves_the_robot(small_logs):
    trajs, _ = load_trajectories([small_logs], make_spec("per_side", 0.1, HEXAPOD))
    disp = np.concatenate([t.displacements for t in trajs])
    assert np.abs(disp[:, 0]).mean() > 0.005, "random strides move the body (m per 0.1 s)"
    assert disp[:, 2].std() > 0.005, "and turn it"


def test_shards_reproduce_the_whole_collection(tmp_path):
    cfg = _cfg()
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    collect(cfg, whole, progress=False)
    collect(cfg, parts, shard=(0, 2), progress=False)
    collect(cfg, parts, shard=(1, 2), progress=False)
    names = sorted(p.name for p in whole.glob("*.mcap"))
    assert names == sorted(p.name for p in parts.glob("*.mcap")) and len(names) == 4
    for name in names:
        a = read_log(whole / name).messages["transition"]
        b = read_log(parts / name).messages["transition"]
        assert np.allclose([m["next_state"] for m in a], [m["next_state"] for m in b]), "deterministic per episode"
    again = collect(cfg, whole, progress=False)
    assert again.skipped_existing == 4 and again.written == 0


def test_episode_plan_is_independent_of_sharding():
    plans = plan_episodes(_cfg(10).collect)
    assert [p.index for p in plans] == list(range(10))
    assert {p.condition.name for p in plans} <= {"intact", "payload"}
    assert parse_shard("1/3") == (1, 3)


def test_bad_shard_is_refused_by_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "collect", "--out", str(tmp_path), "--shard", "2/2"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "0 <= i < n" in out.stderr and "Traceback" not in out.stderr


def test_mpc_policy_collects_with_a_model(tiny_model, tmp_path):
    """The paper's data aggregation: the adaptive MPC on the current model drives collection."""
    cfg = parse_config({"collect": {"episodes": 1, "episode_duration": 2.0, "workers": 1, "policy": "mpc",
                                    "model": str(tiny_model), "paths": ["left_turn"]},
                        "controller": {"planner": {"samples": 64, "horizon": 5}}})
    summary = collect(cfg, tmp_path, progress=False)
    assert summary.written == 1 and not summary.errors
    log = read_log(tmp_path / "episode00000.mcap")
    assert log.info["policy"] == "mpc" and log.info["path"] == "left_turn"
    assert len(log.messages["transition"]) == 20
    actions = np.array([m["action"] for m in log.messages["transition"]])
    assert np.all(np.abs(actions) <= 1.0) and actions.std() > 0


def test_mpc_policy_needs_a_model():
    import pytest

    from legadapt.config import ConfigError

    with pytest.raises(ConfigError, match="collect.model"):
        parse_config({"collect": {"policy": "mpc"}})


def _ranged(**vary):
    return {"collect": {"episodes": 40, "seed": 3, "conditions": [
        {"name": "weak_leg", "perturbations": [{"kind": "weak_motor", "joints": ["LM_coxa"]}, {"kind": "payload", "mass": 0.5}],
         "vary": vary}]}}


def test_conditions_drawn_from_ranges_are_reproducible_and_cover_them():
    cfg = parse_config(_ranged(**{"0.kp_scale,0.force_scale": {"uniform": [0.05, 1.0]},
                                  "0.joints": {"choice": [["LM_coxa"], ["RH_femur", "RH_tibia"]]},
                                  "1.offset.1": {"uniform": [-0.05, 0.05]}}))
    plans = plan_episodes(cfg.collect)
    assert [p.condition for p in plans] == [p.condition for p in plan_episodes(cfg.collect)], "same seed, same draws"
    weak = [p.condition.perturbations[0] for p in plans]
    kp = np.array([w.kp_scale for w in weak])
    assert all(w.kp_scale == w.force_scale for w in weak), "one draw for both keys"
    assert kp.min() >= 0.05 and kp.max() <= 1.0 and kp.max() - kp.min() > 0.6
    assert {tuple(w.joints) for w in weak} == {("LM_coxa",), ("RH_femur", "RH_tibia")}
    dy = np.array([p.condition.perturbations[1].offset[1] for p in plans])
    assert np.abs(dy).max() <= 0.05 and dy.std() > 0.02
    assert all(p.condition.perturbations[1].offset[0] == 0.0 for p in plans), "other components untouched"
    assert all(not p.condition.vary for p in plans), "an episode's condition is concrete"


def test_bad_ranges_are_refused_before_anything_runs():
    import pytest

    from legadapt.config import ConfigError

    with pytest.raises(ConfigError, match="kp_scale"):
        parse_config(_ranged(**{"0.kp_scale": {"uniform": [0.0, 1.0]}}))  # 0 is not a valid strength
    with pytest.raises(ConfigError, match="no field 'kp_scal'"):
        parse_config(_ranged(**{"0.kp_scal": {"uniform": [0.1, 1.0]}}))
    with pytest.raises(ConfigError, match="2 perturbation"):
        parse_config(_ranged(**{"2.mass": {"uniform": [0.1, 1.0]}}))
    with pytest.raises(ConfigError, match="uniform"):
        parse_config(_ranged(**{"1.mass": {"uniform": [1.0, 0.1]}}))


def test_a_collection_through_the_estimate_pairs_with_the_same_one_through_the_truth(tmp_path):
    """The random-action collection draws the same actions and physics whatever the state source, so an
    estimate's logs pair with the truth's episode by episode (bench/estimate_columns.py rests on it)."""
    sys.path.insert(0, str(REPO / "bench"))
    from estimate_columns import pair, swap, velocity_error

    spec = make_spec("per_side", 0.1, HEXAPOD)
    logs = {}
    for source in ("privileged", "estimated+flow"):
        cfg = parse_config({"collect": {"episodes": 2, "episode_duration": 2.0, "workers": 1, "seed": 5,
                                        "state_source": source, "conditions": [
                                            {"name": "limp_RM", "perturbations": [{"kind": "limp_leg", "leg": "RM"}]}]}})
        assert not collect(cfg, tmp_path / source, progress=False).errors
        logs[source], _ = load_trajectories([tmp_path / source], spec)
    pairs = pair(logs["estimated+flow"], logs["privileged"])
    assert len(pairs) == len(logs["privileged"]) >= 2
    for est, truth in pairs:
        np.testing.assert_array_equal(est.states[:, spec.joint_slice], truth.states[:, spec.joint_slice])
    mean, rms = velocity_error(pairs)
    assert np.all(rms > 1e-4) and np.all(rms < 0.2), "the estimate's velocity: off the truth, but not wildly"
    est, truth = pairs[0]
    swap(est, truth, "velocity")
    np.testing.assert_array_equal(est.targets[:, 2:5], truth.targets[:, 2:5])
    assert not np.array_equal(est.displacements, truth.displacements), "only the velocity is taken"
    shuffled = [type(t)(t.states, t.actions[::-1].copy(), t.next_states, t.displacements, t.condition, t.source)
                for t in logs["estimated+flow"]]
    with pytest.raises(ValueError, match="differ in their actions"):
        pair(shuffled, logs["privileged"])


@pytest.mark.slow
def test_a_collection_stopped_by_sigterm_keeps_whole_episodes_and_says_so(tmp_path):
    """SIGTERM (``kill``, ``timeout``, a job scheduler) during a collection in worker processes: the workers are
    stopped, no half-written episode is left (``.part``), every episode on disk reads whole, the command says how
    many were written and that the same command collects the rest, and exits 130 without a traceback (the workers
    used to print a BrokenPipeError traceback each)."""
    import os
    import signal
    import time

    from legadapt.mcap_read import read_log
    from tests.test_perturb import _alive, _children

    out = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "collect", "--config",
                             "configs/collect/heldout.yaml", "--out", str(out), "--workers", "2"],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120.0
    while len(list(out.glob("*.mcap"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert proc.poll() is None and workers, "the collection did not start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "episodes written to" in err and "the same command collects the rest" in err, err
    time.sleep(1.0)
    assert not [p for p in workers if _alive(p)], "a worker outlived the collection"
    assert not list(out.glob("*.part"))
    episodes = sorted(out.glob("*.mcap"))
    assert 2 <= len(episodes) < 24
    for f in episodes:
        assert read_log(str(f), {"transition"}).messages["transition"]
