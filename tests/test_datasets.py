"""Datasets from real MCAP logs: split points, report counts, task windows within one trajectory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from legadapt.dynamics.datasets import DatasetError, TaskSampler, Trajectory, load_trajectories
from legadapt.features import make_spec, target_vector
from legadapt.mcap_log import LogWriter
from conftest import HEXAPOD

SPEC = make_spec("per_side", 0.1, HEXAPOD)
S, A = SPEC.state_dim, SPEC.action_dim
DT = SPEC.control_period


class LogBuilder:
    """Writes transitions whose state[0] is a global id (unique across all files of a test)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.next_id = 0

    def write(self, path: Path, segments: list[dict], spec=SPEC, chunk_size: int = 32 * 1024) -> list[int]:
        """Each segment: n transitions of (episode, condition), starting at time t0 (s).

        ``bad``: local indices whose transition gets a NaN/inf. Returns the ids written.
        """
        ids = []
        with LogWriter(path, spec, config={"test": True}, chunk_size=chunk_size) as log:
            for seg in segments:
                for k in range(seg["n"]):
                    i = self.next_id
                    self.next_id += 1
                    ids.append(i)
                    s = self.rng.normal(size=spec.state_dim)
                    s[0] = i
                    s1 = s + self.rng.normal(scale=0.1, size=spec.state_dim)
                    d = self.rng.normal(scale=0.01, size=3)
                    if k in seg.get("bad", ()):
                        (s1 if k % 2 else d)[3 % len(d)] = np.nan if k % 2 else np.inf
                    log.write("transition", {"episode": seg["episode"], "condition": seg["condition"],
                                             "state": s, "action": self.rng.uniform(-1, 1, spec.action_dim),
                                             "next_state": s1, "displacement": d}, t=seg["t0"] + DT * (k + 1))
        return ids


def ids_of(t: Trajectory) -> list[int]:
    return [int(v) for v in t.states[:, 0]]


def test_split_points_and_report(tmp_path: Path) -> None:
    b = LogBuilder(np.random.default_rng(0))
    b.write(tmp_path / "a.mcap", [
        {"episode": 0, "condition": "nominal", "n": 30, "t0": 0.0},
        {"episode": 1, "condition": "nominal", "n": 25, "t0": 3.0, "bad": (10,)},  # 10 | NaN | 14
        {"episode": 1, "condition": "limp_LF", "n": 20, "t0": 5.5},  # condition change, no gap
        {"episode": 1, "condition": "limp_LF", "n": 15, "t0": 8.0},  # gap of 0.5 s
        {"episode": 2, "condition": "nominal", "n": 3, "t0": 10.0, "bad": (0, 1, 2)},  # all dropped
    ])
    b.write(tmp_path / "b_per_leg.mcap", [{"episode": 0, "condition": "nominal", "n": 20, "t0": 0.0}],
            spec=make_spec("per_leg", 0.1, HEXAPOD))
    (tmp_path / "c_garbage.mcap").write_bytes(b"definitely not MCAP" * 10)
    full_ids = b.write(tmp_path / "full.mcap", [{"episode": 7, "condition": "payload", "n": 300, "t0": 0.0}],
                       chunk_size=1024)
    data = (tmp_path / "full.mcap").read_bytes()
    (tmp_path / "d_cut.mcap").write_bytes(data[: int(len(data) * 0.6)])
    (tmp_path / "full.mcap").unlink()

    trajs, report = load_trajectories(tmp_path, SPEC)  # a directory: all *.mcap under it, sorted

    assert [len(t) for t in trajs][:5] == [30, 10, 14, 20, 15]
    assert [t.condition for t in trajs][:5] == ["nominal", "nominal", "nominal", "limp_LF", "limp_LF"]
    assert trajs[0].source.endswith("a.mcap:0") and trajs[4].source.endswith("a.mcap:1")
    cut = trajs[5:]
    assert len(cut) == 1 and 0 < len(cut[0]) < 300 and cut[0].condition == "payload"
    assert ids_of(cut[0]) == full_ids[: len(cut[0])]  # a prefix, in order
    for t in trajs:  # consecutive ids inside every trajectory, and the targets' semantics
        assert np.all(np.diff(t.states[:, 0]) == 1)
        np.testing.assert_allclose(t.targets[3], target_vector(t.states[3], t.next_states[3], t.displacements[3]))
        assert t.inputs.shape == (len(t), S + A) and t.targets.shape == (len(t), 31)
        assert np.all(np.diff(t.times) > 0)

    assert [Path(p).name for p in report.files_read] == ["a.mcap", "d_cut.mcap"]
    skipped = {Path(p).name: why for p, why in report.files_skipped}
    assert "action_mode: per_side vs per_leg" in skipped["b_per_leg.mcap"]
    assert "bad magic" in skipped["c_garbage.mcap"]
    assert len(report.files_truncated) == 1 and report.files_truncated[0][1] > 0
    assert report.transitions_nonfinite == 4 and report.transitions_malformed == 0
    assert report.transitions_total == 93 + len(cut[0])
    assert report.transitions_used == 89 + len(cut[0]) == sum(len(t) for t in trajs)
    # the cut before episode 2 is counted as non-finite: its first transition is the NaN one
    assert report.splits == {"episode": 1, "condition": 1, "time": 1, "nonfinite": 2}
    text = report.summary()
    for needle in ("2 read, 2 skipped, 1 truncated", "per_leg", "bytes dropped", "4 non-finite", "limp_LF 35"):
        assert needle in text


def test_windows_from_logs_stay_in_one_trajectory(tmp_path: Path) -> None:
    b = LogBuilder(np.random.default_rng(1))
    b.write(tmp_path / "x.mcap", [
        {"episode": 0, "condition": "nominal", "n": 40, "t0": 0.0, "bad": (17,)},
        {"episode": 0, "condition": "slope", "n": 12, "t0": 4.0},  # contiguous ids, other condition
        {"episode": 1, "condition": "slope", "n": 35, "t0": 6.0},
        {"episode": 2, "condition": "slope", "n": 5, "t0": 10.0},  # too short for a window
    ])
    trajs, _ = load_trajectories([tmp_path / "x.mcap"], SPEC)
    owner = {i: k for k, t in enumerate(trajs) for i in ids_of(t)}
    sampler = TaskSampler(trajs, M=8, K=4, seed=3)
    px, py, fx, fy = sampler.sample(500)
    assert px.shape == (500, 8, S + A) and py.shape == (500, 8, 31)
    assert fx.shape == (500, 4, S + A) and fy.shape == (500, 4, 31) and px.dtype == torch.float32
    ids = torch.cat([px[..., 0], fx[..., 0]], dim=1).long().numpy()
    assert np.all(np.diff(ids, axis=1) == 1)
    assert all(len({owner[i] for i in row}) == 1 for row in ids)
    assert {owner[row[0]] for row in ids} == {k for k, t in enumerate(trajs) if len(t) >= 12}
    x, y = sampler.all_transitions()
    assert x.shape == (sum(map(len, trajs)), S + A) and y.shape == (len(x), 31)
    first = trajs[owner[int(ids[0, 0])]]
    j = ids_of(first).index(int(ids[0, 0]))
    np.testing.assert_allclose(py[0].numpy(), first.targets[j: j + 8], rtol=1e-6)


@st.composite
def layouts(draw):
    lengths = draw(st.lists(st.integers(1, 40), min_size=1, max_size=12))
    M, K = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    return lengths, M, K, draw(st.integers(0, 2**32 - 1))


def synthetic(lengths: list[int]) -> list[Trajectory]:
    out, start = [], 0
    for k, n in enumerate(lengths):
        s = np.zeros((n, S))
        s[:, 0] = np.arange(start, start + n)
        start += n
        out.append(Trajectory(s, np.zeros((n, A)), s + 1.0, np.zeros((n, 3)), f"c{k % 3}", f"mem:{k}"))
    return out


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_windows_never_cross_boundaries(layout) -> None:
    lengths, M, K, seed = layout
    trajs = synthetic(lengths)
    if max(lengths) < M + K:
        with pytest.raises(DatasetError, match=f"the longest of {len(lengths)} has {max(lengths)}"):
            TaskSampler(trajs, M, K, seed)
        return
    owner = np.concatenate([np.full(n, k) for k, n in enumerate(lengths)])
    sampler = TaskSampler(trajs, M, K, seed)
    assert sampler.num_windows == sum(n - M - K + 1 for n in lengths if n >= M + K)
    px, _, fx, _ = sampler.sample(64)
    ids = torch.cat([px[..., 0], fx[..., 0]], dim=1).long().numpy()
    assert np.all(np.diff(ids, axis=1) == 1)
    assert np.all(owner[ids] == owner[ids[:, :1]])


def test_sampling_is_deterministic() -> None:
    trajs = synthetic([30, 25, 40])
    a, b = TaskSampler(trajs, 4, 4, seed=9), TaskSampler(trajs, 4, 4, seed=9)
    for ta, tb in zip(a.sample(16), b.sample(16)):
        assert torch.equal(ta, tb)


def test_split_by_whole_trajectories() -> None:
    lengths = [30, 25, 40, 22, 35, 28, 3, 50, 31, 26]
    trajs = synthetic(lengths)
    sampler = TaskSampler(trajs, 8, 8, seed=0)
    train, val = sampler.split(0.3, seed=5)
    train2, val2 = sampler.split(0.3, seed=5)
    src = lambda s: [t.source for t in s.trajectories]  # noqa: E731
    assert src(train) == src(train2) and src(val) == src(val2)
    assert not set(src(train)) & set(src(val))
    assert sorted(src(train) + src(val)) == sorted(t.source for t in trajs)
    assert "mem:6" in src(train)  # too short for a window: stays in training
    assert {t.condition for t in val.trajectories} == {"c0", "c1", "c2"}  # stratified by condition
    frac = val.num_transitions / sum(n for n in lengths if n >= 16)
    assert 0.15 < frac < 0.6
    assert src(sampler.split(0.3, seed=6)[1]) != src(val) or src(sampler.split(0.3, seed=7)[1]) != src(val)
    with pytest.raises(DatasetError, match="at least 2"):
        TaskSampler(synthetic([40, 5]), 8, 8).split(0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        sampler.split(1.0)


def test_no_usable_data(tmp_path: Path) -> None:
    b = LogBuilder(np.random.default_rng(2))
    b.write(tmp_path / "per_leg.mcap", [{"episode": 0, "condition": "n", "n": 5, "t0": 0.0}],
            spec=make_spec("per_leg", 0.1, HEXAPOD))
    b.write(tmp_path / "slow.mcap", [{"episode": 0, "condition": "n", "n": 5, "t0": 0.0}],
            spec=make_spec("per_side", 0.2, HEXAPOD))
    b.write(tmp_path / "all_nan.mcap", [{"episode": 0, "condition": "n", "n": 4, "t0": 0.0, "bad": (0, 1, 2, 3)}])
    (tmp_path / "empty.mcap").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        load_trajectories(sorted(tmp_path.iterdir()), SPEC)
    msg = str(err.value)
    assert "no usable transitions in 4 log file(s)" in msg
    for needle in ("per_leg.mcap: skipped: feature spec differs: action_mode", "control_period: 0.1 s vs 0.2 s",
                   "empty.mcap: skipped", "empty file", "all_nan.mcap: read, but none", "4 non-finite"):
        assert needle in msg
    with pytest.raises(DatasetError, match="no log files given"):
        load_trajectories([], SPEC)


def test_window_longer_than_any_trajectory(tmp_path: Path) -> None:
    b = LogBuilder(np.random.default_rng(3))
    b.write(tmp_path / "short.mcap", [{"episode": e, "condition": "n", "n": 10 + e, "t0": 5.0 * e} for e in range(3)])
    trajs, _ = load_trajectories(tmp_path / "short.mcap", SPEC)
    assert [len(t) for t in trajs] == [10, 11, 12]
    with pytest.raises(DatasetError, match=r"M \+ K = 8 \+ 8 = 16 transitions: the longest of 3 has 12"):
        TaskSampler(trajs, M=8, K=8, seed=0)
    with pytest.raises(ValueError, match="M and K"):
        TaskSampler(trajs, M=0, K=8)
