"""Meta-training data from logs: trajectories of transitions and the M-past / K-future task sampler.

A *transition* is one control period: model state ``s`` [S], gait action ``a`` [A], the
next model state ``s'`` [S] and the body-frame displacement over the period ``d`` [3]
(dx m, dy m, dyaw rad). The model input is ``x = concat(s, a)`` [S+A] and its target
``y = concat(s' - s, d)`` [S+3] (:func:`legadapt.features.target_vector`).

A *trajectory* is a run of consecutive transitions under one episode and one condition
with no time gap: :func:`load_trajectories` cuts the logs' ``transition`` channel at every
episode or condition change, time gap (> 1.5 control periods, or time going backwards) and
non-finite or malformed transition (which is dropped). A meta-training task (GrBAL) is M
past and K future consecutive transitions of ONE trajectory, so a window never spans a
reset or a change of conditions.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from legadapt.features import FeatureSpec
from legadapt.mcap_log import LogError
from legadapt.mcap_read import read_log

#: A time step longer than this many control periods splits a trajectory.
GAP_FACTOR = 1.5


#: How a model's training records logs of several state sources: 'mixed: a, b' (:meth:`LoadReport.state_source`).
MIXED = "mixed: "


def sources_in(label: str) -> list[str]:
    """The state sources a :meth:`LoadReport.state_source` label names: ['a', 'b'] for 'mixed: a, b'."""
    return label.removeprefix(MIXED).split(", ") if label.startswith(MIXED) else [label]


class DatasetError(ValueError):
    """No usable training data: every log skipped or empty, or no trajectory long enough."""


def targets_of(states: np.ndarray, next_states: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """Vectorised :func:`legadapt.features.target_vector`: [N, S], [N, S], [N, 3] -> [N, S+3]."""
    return np.concatenate([next_states - states, displacements], axis=-1)


@dataclass
class Trajectory:
    """N consecutive transitions of one episode under one condition (arrays float32)."""

    states: np.ndarray  # [N, S]
    actions: np.ndarray  # [N, A], 1
    next_states: np.ndarray  # [N, S]
    displacements: np.ndarray  # [N, 3], (dx m, dy m, dyaw rad) in the body frame
    condition: str
    source: str  # "<file>:<episode>"
    times: np.ndarray | None = None  # [N] s, log time of each transition (its end)

    def __post_init__(self) -> None:
        for name in ("states", "actions", "next_states", "displacements"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        n = len(self.states)
        ok = (self.states.ndim == 2 and self.next_states.shape == self.states.shape
              and self.actions.ndim == 2 and len(self.actions) == n and self.displacements.shape == (n, 3)
              and (self.times is None or np.shape(self.times) == (n,)))
        if not ok:
            raise ValueError(f"Trajectory {self.source}: inconsistent shapes states {self.states.shape}, "
                             f"actions {self.actions.shape}, next_states {self.next_states.shape}, "
                             f"displacements {self.displacements.shape}")

    def __len__(self) -> int:
        return len(self.states)

    @property
    def inputs(self) -> np.ndarray:
        """Model inputs concat(state, action) [N, S+A]."""
        return np.concatenate([self.states, self.actions], axis=1)

    @property
    def targets(self) -> np.ndarray:
        """Model targets concat(next_state - state, displacement) [N, S+3]."""
        return targets_of(self.states, self.next_states, self.displacements)


MAX_LISTED_CONDITIONS = 40  # beyond this, the report groups conditions by name


@dataclass
class LoadReport:
    """What :func:`load_trajectories` read, skipped, split and dropped."""

    files_read: list[str] = field(default_factory=list)
    files_skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    files_truncated: list[tuple[str, int, str]] = field(default_factory=list)  # (path, bytes dropped, reason)
    transitions_total: int = 0
    transitions_nonfinite: int = 0
    transitions_malformed: int = 0
    transitions_used: int = 0
    used_per_file: dict[str, int] = field(default_factory=dict)
    splits: Counter = field(default_factory=Counter)  # reason -> count: episode, condition, time
    conditions: Counter = field(default_factory=Counter)  # condition -> transitions used
    lengths: list[int] = field(default_factory=list)  # trajectory lengths, in order
    state_sources: Counter = field(default_factory=Counter)  # where the logged states came from -> files

    def state_source(self) -> str:
        """The one state source of the logs read ('privileged', 'estimated+flow', ...); 'mixed: a, b' if several."""
        sources = sorted(self.state_sources)
        return sources[0] if len(sources) == 1 else MIXED + ", ".join(sources) if sources else "privileged"

    def summary(self) -> str:
        """Multi-line human-readable account."""
        lines = [f"logs: {len(self.files_read)} read, {len(self.files_skipped)} skipped, "
                 f"{len(self.files_truncated)} truncated (read up to their last whole chunk)"]
        lines += [f"  skipped {p}: {why}" for p, why in self.files_skipped]
        lines += [f"  truncated {p}: {n} bytes dropped ({why})" for p, n, why in self.files_truncated]
        lines.append(f"transitions: {self.transitions_total} logged, {self.transitions_used} used, "
                     f"{self.transitions_nonfinite} non-finite and {self.transitions_malformed} malformed dropped")
        if self.lengths:
            lens = np.asarray(self.lengths)
            lines.append(f"trajectories: {len(lens)}, length min {lens.min()} / median {int(np.median(lens))} "
                         f"/ max {lens.max()} transitions")
        if self.splits:
            lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items())))
        if self.conditions:
            lines.append("conditions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.condition_groups().items())))
        return "\n".join(lines)

    def condition_groups(self) -> dict[str, int]:
        """Transitions per collection condition: conditions drawn from ranges ('weak_leg:weak_motor(kp_scale=0.3...)')
        counted under their name, the part before ':' (whatever was active when)."""
        if len(self.conditions) <= MAX_LISTED_CONDITIONS:
            return dict(self.conditions)
        groups: dict[str, int] = {}
        for k, v in self.conditions.items():
            name = k.partition(":")[0]
            groups[name] = groups.get(name, 0) + v
        return groups


def _expand(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files to read: directories become their ``*.mcap`` files (recursive, sorted)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for p in map(Path, items):
        out.extend(sorted(p.rglob("*.mcap")) if p.is_dir() else [p])
    return out


def load_trajectories(paths: str | os.PathLike | Iterable[str | os.PathLike],
                      spec: FeatureSpec) -> tuple[list[Trajectory], LoadReport]:
    """Read the ``transition`` channel of every log and cut it into trajectories.

    Logs that are not MCAP, unreadable, carry no spec or a spec that differs from ``spec``
    are skipped (reason in the report); truncated ones are used up to their last whole
    chunk. Raises :class:`DatasetError` when no transition is left, naming each file and why.
    """
    files = _expand(paths)
    report = LoadReport()
    trajectories: list[Trajectory] = []
    for path in files:
        try:
            log = read_log(path, channels=("transition",))
        except LogError as e:
            report.files_skipped.append((str(path), str(e)))
            continue
        if log.spec is None:
            report.files_skipped.append((str(path), "no feature spec in its metadata (not a legadapt log?)"))
            continue
        diff = spec.mismatch(log.spec)
        if diff:
            report.files_skipped.append((str(path), f"feature spec differs: {diff}"))
            continue
        report.files_read.append(str(path))
        report.state_sources[str((log.info or {}).get("state_source", "privileged"))] += 1
        if not log.recovery.complete:
            report.files_truncated.append((str(path), log.recovery.bytes_dropped, log.recovery.reason))
        new = _split(log.messages.get("transition", []), spec, str(path), report)
        report.used_per_file[str(path)] = sum(len(t) for t in new)
        trajectories.extend(new)
    if not trajectories:
        raise DatasetError(_nothing_usable(files, report))
    return trajectories, report


def _nothing_usable(files: list[Path], report: LoadReport) -> str:
    if not files:
        return "no log files given (or no *.mcap files in the given directories)"
    lines = [f"no usable transitions in {len(files)} log file(s):"]
    lines += [f"  {p}: skipped: {why}" for p, why in report.files_skipped]
    lines += [f"  {p}: read, but none of its transitions is usable" for p in report.files_read]
    lines.append(f"({report.transitions_total} transitions logged: {report.transitions_nonfinite} non-finite, "
                 f"{report.transitions_malformed} malformed)")
    return "\n".join(lines)


def _parse(msg: dict, s_dim: int, a_dim: int) -> tuple | None:
    """(t, episode, condition, s, a, s', d) from a transition message, or None if malformed."""
    try:
        s, a = np.asarray(msg["state"], dtype=float), np.asarray(msg["action"], dtype=float)
        s1, d = np.asarray(msg["next_state"], dtype=float), np.asarray(msg["displacement"], dtype=float)
        t, episode, condition = float(msg["t"]), int(msg["episode"]), str(msg["condition"])
    except (KeyError, TypeError, ValueError):
        return None
    if s.shape != (s_dim,) or s1.shape != (s_dim,) or a.shape != (a_dim,) or d.shape != (3,):
        return None
    return t, episode, condition, s, a, s1, d


def _split(msgs: list[dict], spec: FeatureSpec, source: str, report: LoadReport) -> list[Trajectory]:
    """Cut one log's transitions (file order) into trajectories; counts go to ``report``."""
    out: list[Trajectory] = []
    rows: list[tuple] = []
    max_step = GAP_FACTOR * spec.control_period

    def close() -> None:
        if rows:
            ep, cond = rows[0][1], rows[0][2]
            s, a, s1, d = (np.stack([r[k] for r in rows]) for k in (3, 4, 5, 6))
            times = np.array([r[0] for r in rows])
            out.append(Trajectory(s, a, s1, d, condition=cond, source=f"{source}:{ep}", times=times))
            report.conditions[cond] += len(rows)
            report.lengths.append(len(rows))
            report.transitions_used += len(rows)
            rows.clear()

    for msg in msgs:
        report.transitions_total += 1
        row = _parse(msg, spec.state_dim, spec.action_dim)
        if row is None or not all(np.isfinite(v).all() for v in row[3:]) or not np.isfinite(row[0]):
            if row is None:
                report.transitions_malformed += 1
            else:
                report.transitions_nonfinite += 1
            if rows:
                report.splits["malformed" if row is None else "nonfinite"] += 1
            close()
            continue
        if rows:
            prev = rows[-1]
            reason = ("episode" if row[1] != prev[1] else "condition" if row[2] != prev[2]
                      else "time" if not 0.0 < row[0] - prev[0] <= max_step else None)
            if reason:
                report.splits[reason] += 1
                close()
        rows.append(row)
    close()
    return out


class TaskSampler:
    """Meta-training tasks: M past + K future consecutive transitions of one trajectory.

    Windows are drawn uniformly over all valid start positions (so long trajectories give
    proportionally more tasks). Tensors are float32 on the CPU, unnormalised.
    """

    def __init__(self, trajectories: Sequence[Trajectory], M: int, K: int, seed: int = 0) -> None:
        if M < 1 or K < 1:
            raise ValueError(f"M and K must be >= 1, got M={M}, K={K}")
        if not trajectories:
            raise DatasetError("TaskSampler: no trajectories")
        dims = {(t.states.shape[1], t.actions.shape[1]) for t in trajectories}
        if len(dims) > 1:
            raise DatasetError(f"TaskSampler: trajectories of different (state, action) dims {sorted(dims)}")
        self.trajectories = list(trajectories)
        self.M, self.K, self.seed = int(M), int(K), int(seed)
        lengths = np.array([len(t) for t in self.trajectories])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        window = self.M + self.K
        eligible = lengths >= window
        if not eligible.any():
            raise DatasetError(f"no trajectory is long enough for a task of M + K = {self.M} + {self.K} = "
                               f"{window} transitions: the longest of {len(lengths)} has {lengths.max()}")
        self.eligible = [i for i in range(len(lengths)) if eligible[i]]
        self._starts = np.concatenate([np.arange(o, o + n - window + 1)
                                       for o, n in zip(offsets[eligible], lengths[eligible])])
        self._x = torch.from_numpy(np.concatenate([t.inputs for t in self.trajectories]))
        self._y = torch.from_numpy(np.concatenate([t.targets for t in self.trajectories]).astype(np.float32))
        self._window = torch.arange(window)
        self._rng = np.random.default_rng(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the task draws from ``seed`` (e.g. (seed, rank, step) for resumable runs)."""
        self._rng = np.random.default_rng(seed)

    @property
    def num_windows(self) -> int:
        """Number of distinct (trajectory, start) windows."""
        return len(self._starts)

    @property
    def num_transitions(self) -> int:
        return len(self._x)

    def sample(self, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``batch`` tasks: past_x [B,M,S+A], past_y [B,M,S+3], future_x [B,K,S+A], future_y [B,K,S+3]."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        starts = torch.from_numpy(self._starts[self._rng.integers(0, len(self._starts), batch)])
        idx = starts[:, None] + self._window  # [B, M+K]
        x, y = self._x[idx], self._y[idx]
        m = self.M
        return x[:, :m].contiguous(), y[:, :m].contiguous(), x[:, m:].contiguous(), y[:, m:].contiguous()

    def all_transitions(self) -> tuple[Tensor, Tensor]:
        """Every transition of every trajectory (short ones too): x [N, S+A], y [N, S+3]."""
        return self._x, self._y

    def split(self, val_fraction: float, seed: int = 0) -> tuple[TaskSampler, TaskSampler]:
        """(train, validation) samplers over disjoint whole trajectories; deterministic in ``seed``.

        Per condition, a shuffled prefix of its eligible trajectories holding about
        ``val_fraction`` of its transitions goes to validation, keeping at least one in
        training; a condition with a single eligible trajectory stays in training. If that
        leaves validation empty, the split is made over all eligible trajectories at once.
        Trajectories shorter than M + K stay in training (they feed ``all_transitions``).
        """
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(self.eligible) < 2:
            raise DatasetError(f"cannot split: {len(self.eligible)} trajectory of >= M + K = "
                               f"{self.M + self.K} transitions; at least 2 are needed")
        rng = np.random.default_rng(seed)
        groups: dict[str, list[int]] = {}
        for i in self.eligible:
            groups.setdefault(self.trajectories[i].condition, []).append(i)
        val = [i for cond in sorted(groups) for i in self._val_prefix(rng.permutation(groups[cond]), val_fraction)]
        if not val:
            val = self._val_prefix(rng.permutation(self.eligible), val_fraction)
        chosen = set(val)
        train = [t for i, t in enumerate(self.trajectories) if i not in chosen]
        seeds = rng.integers(0, 2**63 - 1, size=2)
        return (TaskSampler(train, self.M, self.K, int(seeds[0])),
                TaskSampler([self.trajectories[i] for i in sorted(chosen)], self.M, self.K, int(seeds[1])))

    def _val_prefix(self, order: np.ndarray, fraction: float) -> list[int]:
        """Leading indices of ``order`` holding >= ``fraction`` of its transitions, all but one at most."""
        target = fraction * sum(len(self.trajectories[i]) for i in order)
        val: list[int] = []
        got = 0
        for i in order[:-1]:
            if got >= target:
                break
            val.append(int(i))
            got += len(self.trajectories[i])
        return val
