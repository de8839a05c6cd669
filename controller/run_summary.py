"""What a daemon run did, in constant memory: the summary printed at its end and the status line."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HISTORY = 10_000  # control cycles kept for percentiles and traces (17 min at 10 Hz): memory stays bounded


class RunningStats:
    """Count, mean and max of a stream, in constant memory."""

    def __init__(self) -> None:
        self.n, self.total, self.max = 0, 0.0, -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self.max = max(self.max, x)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan


@dataclass
class RunSummary:
    """What a run did; distances in m, times in s, losses normalised MSE."""

    duration: float = 0.0  # s from the run start (the robot stood) to the stop
    cycles: int = 0  # control cycles run
    control_rate: float = 10.0  # Hz
    stop_reason: str | None = None
    powered: bool = True  # False: stopped during the pre-flight or before torque was ever enabled
    distance: float = 0.0
    progress: float = 0.0  # m along the path
    mean_cross_track: float = math.nan
    max_cross_track: float = math.nan
    cycle_p50: float = math.nan
    cycle_p99: float = math.nan
    missed: int = 0  # plans not ready by their deadline (the robot stepped along the previous plan)
    missed_periods: int = 0  # whole control periods a stall swallowed (realtime)
    away: float = 0.0  # s the robot was away: from a fault to standing again after the reconnection
    reconnects: int = 0
    fallbacks: int = 0
    loss_before: float = math.nan  # mean over cycles with a full window
    loss_after: float = math.nan
    log_path: Path | None = None
    safe: bool = True  # ended with torque off
    start_pose: np.ndarray | None = None  # [3] pose at the first cycle
    trace: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # recent (t, x, y, yaw, cross-track)
    true_trace: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # simulation: (t, x, y, yaw, xt, progress)
    true_xt: RunningStats | None = None  # simulation: |cross-track| of the true pose over the whole run
    estimated: bool = True  # the controller saw its onboard estimate (not the simulator's truth)

    @property
    def expected_cycles(self) -> float:
        """Control periods in the time the robot was there to control: (duration - away) × rate."""
        return (self.duration - self.away) * self.control_rate

    def text(self) -> str:
        if not self.powered:
            return f"stopped before start ({self.stop_reason}): nothing was powered" + (
                f"\nlog: {self.log_path}" if self.log_path else "")
        truth = self.true_xt is not None and bool(self.true_trace) and self.estimated  # the sim's truth beside the estimate
        away = f", {self.reconnects} reconnection(s) ({self.away:.1f} s away)" if self.reconnects else ""
        lines = [f"ran {self.duration:.1f} s, {self.cycles} cycles + {self.missed_periods} missed control periods "
                 f"({self.expected_cycles:.0f} at {self.control_rate:g} Hz){away}; stop: {self.stop_reason or 'task complete'}",
                 f"path: progress {self.progress:.2f} m, cross-track mean {self.mean_cross_track:.3f} m, max "
                 f"{self.max_cross_track:.3f} m" + (" (the robot's estimate)" if truth else "")]
        if truth:
            lines.append(f"true (simulator): progress {self.true_trace[-1][5]:.2f} m, cross-track mean {self.true_xt.mean:.3f} m, "
                         f"max {self.true_xt.max:.3f} m")
        lines += [f"adapt+plan p50 {1e3 * self.cycle_p50:.1f} ms, p99 {1e3 * self.cycle_p99:.1f} ms; {self.missed} missed "
                  f"deadlines; adaptation loss {self.loss_before:.3f} -> {self.loss_after:.3f} (mean), "
                  f"{self.fallbacks} fallbacks to θ*", f"log: {self.log_path}"]
        return "\n".join(lines)


def status_line(t: float, cycle_times: deque, missed: int, missed_periods: int, ct: float, st) -> str:
    """The live status line (stdout and systemd STATUS=); times in ms."""
    recent = np.array(cycle_times)[-100:] * 1e3
    return (f"t {t:6.1f} s | cycle p50 {np.percentile(recent, 50):5.1f} ms p99 {np.percentile(recent, 99):5.1f} ms | "
            f"misses {missed} (periods {missed_periods}) | cross-track {ct:+.3f} m | adapt loss {st.loss_before:.3f} -> "
            f"{st.loss_after:.3f}")
