"""The pose step's motion along the floor's normal, from the flow board's range finder, on level floors.

A walking body bobs at every footfall and pitches with it. The pose step of :class:`controller.fusion.FusedEstimator` moves along the floor,
``(R (I - n nᵀ) v)_xy``: where the body is tilted, the body-frame vertical velocity ``v_z`` enters that
planar step, and the bob's part of it, in step with the tilt, does not average out. The filter's ``v_z``
(accelerometer and legs) misses most of the bob, and with a limp leg what it misses becomes a steady
along-track drift of the pose (README, *Seeing slip*).

The range finder measures the lens's height above the floor, ``h = range · n_z``, so the height's change
between two reads is the motion along the normal over the time between the ranges' own centres. This
module replaces, over exactly that span, the filter's normal velocity in the pose step by the measured one:
the step's sensitivity to the normal velocity, ``g = (R (I - n nᵀ) e_z)_xy / n_z`` (world-aligned m per m),
is recorded at every tick, and each pair of usable reads moves the pose by ``∫ g (v_n,measured - v_n,filter) dt``
over the span. Differences of ranges carry no drift (each range's noise enters twice, with opposite signs),
and ``g`` is small (the tilt), so the range noise barely reaches the pose.

Only where the floor is level: on a slope the floor's normal is the stance feet's plane, a few degrees off
with a limp leg, and the motion measured along a normal that far off moves the pose worse than the filter's.
Level is judged on the feet's plane's tilt from the IMU's level low-passed over ``LEVEL_TAU``: a limp leg's
dragged foot tips the plane by several degrees from stride to stride on level ground, a slope tilts it
all the time. The filter's velocity, what the model sees, is left alone.
"""

from __future__ import annotations

from collections import deque

import numpy as np

TICKS_KEPT = 64  # most ticks kept while no usable read prunes them: more than two read intervals at any IMU rate used here
LEVEL_TAU = 2.0  # s: low-pass of the feet's plane's tilt from the IMU's level
LEVEL_BELOW, SLOPE_ABOVE = np.radians(4.0), np.radians(6.0)  # that tilt, low-passed: level below, a slope above, blended


class RangeHeightStep:
    """The ticks' step sensitivity and the last usable height; :meth:`correction` gives what the pose moves by."""

    def __init__(self, range_timing: str = "interval") -> None:
        self.range_timing = range_timing
        self.reset()

    def reset(self) -> None:
        """Forget the ticks and the last height (at the start, and where the range chain breaks)."""
        self._ticks: deque[tuple[float, float, np.ndarray, float]] = deque(maxlen=TICKS_KEPT)
        self._last: tuple[float, float] | None = None  # (s, m): the previous usable range's centre time and height
        self._g_prev: np.ndarray | None = None
        self._tilt: float | None = None  # rad, low-passed; from the first tick's

    def lost(self) -> None:
        """A read without a usable range: the next one starts a new chain of heights."""
        self._last = None

    def tick(self, stamp: float, dt: float, g: np.ndarray, v_normal: float, tilt: float) -> None:
        """One prediction ending at ``stamp`` (s) over ``dt`` s: its sensitivity ``g`` [2] (m per m along the
        normal) at ``stamp``, the normal velocity it moved the pose with (m/s) and the feet's plane's tilt from
        the IMU's level (rad). The sensitivity is taken at the tick's middle (mean of its two ends)."""
        self._tilt = tilt if self._tilt is None else self._tilt + min(1.0, dt / LEVEL_TAU) * (tilt - self._tilt)
        level = 1.0 - float(np.clip((self._tilt - LEVEL_BELOW) / (SLOPE_ABOVE - LEVEL_BELOW), 0.0, 1.0))
        g = np.asarray(g, dtype=float)
        mid = g if self._g_prev is None else 0.5 * (g + self._g_prev)
        self._g_prev = g
        self._ticks.append((stamp, dt, level * mid, v_normal))

    def correction(self, stamp: float, interval: float, rng: float, n_z: float, lever_normal: float) -> np.ndarray:
        """The pose's move [2] (m, world-aligned as the step) for a usable read at ``stamp`` (s) of ``rng`` m
        over ``interval`` s; ``n_z`` the floor normal's body z, ``lever_normal`` (m/s) the lens's normal velocity
        from the body's rotation (``n · (w x r)``), taken off the height's rate to give the body's."""
        centre = stamp - 0.5 * interval if self.range_timing == "interval" else stamp
        height = rng * n_z
        last, self._last = self._last, (centre, height)
        if last is None or centre - last[0] < 1e-4:
            return np.zeros(2)
        a, b = last[0], centre
        while self._ticks and self._ticks[0][0] <= a:  # ended before this span: no later span reaches back to it
            self._ticks.popleft()
        v_measured = (height - last[1]) / (b - a) - lever_normal
        move = np.zeros(2)
        for end, dt, g, v_filter in self._ticks:
            overlap = min(b, end) - max(a, end - dt)
            if overlap > 0.0:
                move += g * (v_measured - v_filter) * overlap
        return move
