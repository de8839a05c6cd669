"""The two-rate control loop: fast (servo rate) and slow (control rate), lockstep or realtime.

Fast loop, every servo period: gait phase + current gait action -> joint targets ->
safety filter -> write -> (lockstep: advance the simulation) -> read -> state source ->
safety monitor. It never waits on the planner.

Slow loop, every control period: the transition of the period that ended goes to the
policy, which returns a plan [H, A]; its first action drives the next period.

* Lockstep (simulation): one thread, the slow loop runs at the boundary and the
  simulation waits for it: deterministic for a seed, as fast as the CPU allows.
* Realtime (hardware, or simulation paced to the wall clock): the fast loop keeps
  absolute deadlines on ``time.perf_counter_ns`` (late ticks are skipped and counted, never
  caught up in a burst); control boundaries lie on the same grid, every
  ``control_period``, so a stall that swallows a whole control period is a counted missed
  period, never a stretched one: cycles + missed periods = run time x control rate. The
  slow loop runs in its own thread at normal priority (only the fast loop asks for
  SCHED_FIFO). A plan that is not ready by the next boundary is a miss: the fast loop steps
  along the previous plan (the planner's warm start, shifted) and counts it; a plan older
  than the stale limit stops the robot.

Stops: the end of the task or a safety stop lowers the body to a crouch, then torque off
(:func:`controller.safety.safe_stop`); a stop request (``should_stop``: SIGTERM/SIGINT) turns
torque off at the next tick, whether standing up or walking
(:func:`controller.safety.torque_off_now`).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import deque
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from legadapt.controller.safety import SafetyFilter, SafetyMonitor, safe_stop, torque_off_now
from legadapt.controller.state_estimator import StateSource
from legadapt.hardware.interface import ReturnType, Robot
from legadapt import config as C
from legadapt.features import body_displacement
from legadapt.sim.gait import PhaseGait


TIMING_WINDOW = 1000  # recent ticks kept for timing figures: a daemon runs for days, memory must not grow


class SlowPolicy(ABC):
    """What the slow loop calls: ``observe`` the last transition, ``plan`` the next actions."""

    def observe(self, state: np.ndarray, action: np.ndarray, next_state: np.ndarray, displacement: np.ndarray) -> None:
        """The transition of the period that just ended (model states [S], action [A], displacement [3])."""

    @abstractmethod
    def plan(self, state: np.ndarray, pose: np.ndarray, t: float, prev_action: np.ndarray | None) -> np.ndarray:
        """Gait actions [H, A] for the next H control periods, from model state [S] and pose [3]."""


@dataclass
class LoopStats:
    """Counters and timings of a run (times in s)."""

    cycles: int = 0
    ticks: int = 0
    missed_plans: int = 0  # slow-loop deadline misses (realtime)
    missed_periods: int = 0  # whole control periods a stall swallowed: no boundary ran (realtime)
    skipped_ticks: int = 0  # fast-loop periods skipped because the loop was late (realtime)
    stop_reason: str | None = None
    ended_at: float | None = None  # run time (s) at which the walk ended and the stop began
    torque_off_at: float | None = None  # time.monotonic() (s) when a stop request's torque off was done
    tick_read: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))  # s, recent ticks only
    tick_write: deque[float] = field(default_factory=lambda: deque(maxlen=TIMING_WINDOW))
    tick_begun: deque[float] = field(default_factory=lambda: deque(maxlen=8))  # time.monotonic() of recent ticks, s


@dataclass
class Boundary:
    """What the loop hands to ``on_cycle`` at every control boundary."""

    t: float  # s of run time (the loop's ``run_time`` clock)
    state: np.ndarray  # [S] model state now
    pose: np.ndarray  # [3] pose now
    action: np.ndarray  # [A] action chosen for the next period
    transition: tuple | None  # (state, action, next_state, displacement) of the period that ended
    plan_age: float  # s
    missed: bool


class TwoRateLoop:
    """Runs a policy on a robot through the gait, the safety layer and a state source."""

    def __init__(self, robot: Robot, gait: PhaseGait, source: StateSource, policy: SlowPolicy,
                 safety: C.SafetyConfig, servo_period: float, control_period: float, mode: str = "lockstep",
                 on_cycle: Callable[[Boundary], None] | None = None,
                 on_tick: Callable[[float, np.ndarray], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False,
                 run_time: Callable[[], float] | None = None) -> None:
        """``should_stop()``: a stop request (torque off at the next tick). ``run_time()``: the
        timeline (s) of boundaries and ticks; default: the robot clock since the end of the ramp."""
        if mode not in ("lockstep", "realtime"):
            raise ValueError(f"unknown loop mode {mode!r}; allowed: lockstep, realtime")
        self.robot, self.gait, self.source, self.policy = robot, gait, source, policy
        self.safety_cfg = safety
        self.dt = servo_period
        self.ticks_per_cycle = max(1, int(round(control_period / servo_period)))
        self.mode = mode
        self.on_cycle, self.on_tick, self.should_stop = on_cycle, on_tick, should_stop
        self.filter = SafetyFilter(gait.kin.lower, gait.kin.upper, safety, servo_period)
        self.monitor = SafetyMonitor(safety)
        self.stats = LoopStats()
        self.phase = 0.0
        self._next_deadline: int | None = None
        self._grid = 0  # fast periods elapsed since the first tick, skipped ones included
        self.t0 = 0.0
        self.run_time = run_time or (lambda: self.now() - self.t0)

    # ------------------------------------------------------------ clock
    def now(self) -> float:
        """Robot time (s): simulated time in lockstep, wall time in realtime."""
        advance = getattr(self.robot, "advance", None)
        return self.robot.time if (self.mode == "lockstep" and advance) else time.perf_counter()

    def _wait_tick(self) -> None:
        """Advance one fast period: simulation step (lockstep) or absolute deadline (realtime)."""
        advance = getattr(self.robot, "advance", None)
        if self.mode == "lockstep":
            advance(self.dt)
            self._grid += 1
            return
        period_ns = int(self.dt * 1e9)
        if self._next_deadline is None:
            self._next_deadline = time.perf_counter_ns() + period_ns
        if advance is not None:
            advance(self.dt)  # a simulated robot paced to the wall clock
        remaining = self._next_deadline - time.perf_counter_ns()
        if remaining > 0:
            time.sleep(max(0.0, remaining - 300_000) / 1e9)  # sleep, then spin the last 0.3 ms
            while time.perf_counter_ns() < self._next_deadline:
                pass
            self._next_deadline += period_ns
            self._grid += 1
        else:  # late: skip the missed periods, no catch-up burst
            late = int(-remaining // period_ns + 1)
            self.stats.skipped_ticks += late - 1
            self._next_deadline += late * period_ns
            self._grid += late

    def _tick(self, q_target: np.ndarray) -> None:
        """One fast-loop tick with an already filtered command: write, wait, read."""
        self.stats.tick_begun.append(time.monotonic())
        t = time.perf_counter()
        if self.robot.write(q_target) is not ReturnType.OK:
            raise RobotFault(f"write failed: {self.robot.last_error}")
        t1 = time.perf_counter()
        self._wait_tick()
        t2 = time.perf_counter()
        if self.robot.read() is not ReturnType.OK:
            raise RobotFault(f"read failed: {self.robot.last_error}")
        self.stats.tick_write.append(t1 - t)
        self.stats.tick_read.append(time.perf_counter() - t2)
        self.stats.ticks += 1
        if self.on_tick:
            self.on_tick(self.run_time(), q_target)

    # ------------------------------------------------------------ run
    def start(self, resume: bool = False) -> bool:
        """Ramp from the measured pose to standing (through the filter), then mark the run start.

        ``resume``: after a reconnection, the state estimate carries on (pose, progress)
        instead of starting over. False when the robot did not stand: a stop request
        (torque is off at once) or a robot fault (``stats.stop_reason`` says which).
        """
        if self.mode == "realtime":
            _try_realtime_priority()
        try:
            self._ramp_up()
        except RobotFault as exc:
            self.stats.stop_reason = f"robot fault: {exc}"
            return False
        if self.stats.stop_reason:
            self._torque_off_now()
            return False
        mark = getattr(self.robot, "mark_run_start", None)
        if mark:
            mark()
        self.t0 = self.now()
        (self.source.resume if resume else self.source.reset)(self.robot.state)
        return True

    def _ramp_up(self) -> None:
        if self.robot.read() is not ReturnType.OK:
            raise RobotFault(f"read failed: {self.robot.last_error}")
        self.filter.reset(self.robot.state.q)
        target = self.gait.joint_targets(0.0, np.zeros(self.gait.action_dim))
        start = self.robot.state.q.copy()
        n = max(1, int(round(self.safety_cfg.ramp_time / self.dt)))
        for k in range(1, n + 1):
            if self.should_stop():
                self.stats.stop_reason = "stop requested"
                return
            self._tick(self.filter(start + (target - start) * k / n))

    def run(self, duration: float) -> LoopStats:
        """Run for ``duration`` s of robot time (or until stopped); always ends with torque off.

        A stop request turns torque off at once; every other end lowers the body first.
        """
        try:
            self._run(duration)
        except RobotFault as exc:
            self.stats.stop_reason = f"robot fault: {exc}"
        finally:
            self.stats.ended_at = self.run_time()
            if self.stats.stop_reason == "stop requested":
                self._torque_off_now()
            else:
                safe_stop(self.robot, self.gait, self.filter, self.safety_cfg, self.dt, self._stop_tick)
        return self.stats

    def _torque_off_now(self) -> None:
        torque_off_now(self.robot)
        self.stats.torque_off_at = time.monotonic()

    def _stop_tick(self, q: np.ndarray) -> None:
        try:
            self._tick(q)
        except RobotFault:
            pass

    def _run(self, duration: float) -> None:
        if self.mode == "realtime":
            return self._run_realtime(duration)
        prev = None
        for _ in range(int(round(duration / (self.dt * self.ticks_per_cycle)))):
            s, pose, t = self.source.model_state().copy(), self.source.pose().copy(), self.run_time()
            transition = self._transition(prev, s, pose)
            plan = self.policy.plan(s, pose, t, prev[2] if prev else None)
            action = np.clip(plan[0], -1, 1)
            self._emit(Boundary(t, s, pose, action, transition, 0.0, False))
            plan_time = self.now()
            if self._run_ticks(lambda k: action, lambda: self.now() - plan_time, self._grid + self.ticks_per_cycle):
                return
            prev = (s, pose, action)

    def _run_ticks(self, action_at: Callable[[int], np.ndarray], plan_age: Callable[[], float], until: int) -> bool:
        """Fast ticks up to fast period ``until`` of the grid (the next boundary); True if the run must stop."""
        k = 0
        while self._grid < until:
            if self.should_stop():
                self.stats.stop_reason = self.stats.stop_reason or "stop requested"
                return True
            self.phase = (self.phase + self.gait.params.frequency * self.dt) % 1.0
            self._tick(self.filter(self.gait.joint_targets(self.phase, action_at(k))))
            k += 1
            self.source.update(self.robot.state, self.phase)
            reason = self.monitor.check(self.source.model_state(), plan_age())
            if reason:
                self.stats.stop_reason = reason
                return True
        return False

    def _transition(self, prev, s: np.ndarray, pose: np.ndarray):
        if prev is None:
            return None
        s0, pose0, a0 = prev
        disp = body_displacement(pose0[:2], pose0[2], pose[:2], pose[2])
        self.policy.observe(s0, a0, s, disp)
        return (s0, a0, s, disp)

    def _emit(self, b: Boundary) -> None:
        self.stats.cycles += 1
        if self.on_cycle:
            self.on_cycle(b)

    # ------------------------------------------------------------ realtime
    def _run_realtime(self, duration: float) -> None:
        worker = _PlannerThread(self.policy)
        worker.start()
        try:
            self._realtime_cycles(worker, self.now() + duration)
        finally:
            worker.stop()

    def _realtime_cycles(self, worker: _PlannerThread, end: float) -> None:
        """Control boundaries every ``ticks_per_cycle`` fast periods of the grid until ``end`` (robot clock, s)."""
        tpc = self.ticks_per_cycle
        st = {"plan": None, "index": 0, "time": self.now(), "pending": False}
        prev, boundary = None, self._grid
        while self.now() < end:
            skipped = (self._grid - boundary) // tpc  # whole periods a stall swallowed
            self.stats.missed_periods += skipped
            boundary += skipped * tpc
            s, pose, t = self.source.model_state().copy(), self.source.pose().copy(), self.run_time()
            transition = self._transition(prev, s, pose)
            missed = st["pending"]
            if missed:  # the plan asked for at the last boundary never came: step along the old one
                self.stats.missed_plans += 1
            st["index"] += skipped + missed
            worker.request(s, pose, t, prev[2] if prev else None)
            st["pending"] = True
            used: list[np.ndarray] = []

            def action_at(k: int) -> np.ndarray:
                fresh = worker.result()
                if fresh is not None:  # switch the moment the new plan lands
                    st.update(plan=fresh[0], index=0, time=fresh[1], pending=False)
                plan = st["plan"]  # none yet at the start: stand (zero action) until the first plan lands
                used.append(np.zeros(self.gait.action_dim) if plan is None else np.clip(plan[min(st["index"], len(plan) - 1)], -1, 1))
                return used[-1]

            self._emit(Boundary(t, s, pose, action_at(0), transition, self.now() - st["time"], missed))
            used.clear()
            boundary += tpc
            if self._run_ticks(action_at, lambda: self.now() - st["time"], boundary):
                if st["plan"] is None and (self.stats.stop_reason or "").startswith("stale plan"):
                    self.stats.stop_reason = "no plan within the stale-plan limit at start"
                return
            prev = (s, pose, used[len(used) // 2] if used else np.zeros(self.gait.action_dim))


class RobotFault(RuntimeError):
    """The robot returned ERROR on read or write."""


class _PlannerThread:
    """The slow loop in its own thread: takes the newest request, publishes (plan, time done)."""

    def __init__(self, policy: SlowPolicy) -> None:
        self.policy = policy
        self._cv = threading.Condition()
        self._request: tuple | None = None
        self._result: tuple | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="legadapt-slow-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, *args) -> None:
        with self._cv:
            self._request = args  # an unserved older request is dropped: plan for the newest state
            self._cv.notify_all()

    def result(self) -> tuple | None:
        with self._cv:
            r, self._result = self._result, None
            return r

    def wait_result(self, timeout: float) -> tuple | None:
        with self._cv:
            self._cv.wait_for(lambda: self._result is not None, timeout)
            r, self._result = self._result, None
            return r

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=2.0)

    def _loop(self) -> None:
        _normal_priority()  # threads inherit SCHED_FIFO from the fast loop that starts them
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._request is not None)
                if self._stop:
                    return
                args, self._request = self._request, None
            plan = self.policy.plan(*args)
            with self._cv:
                self._result = (plan, time.perf_counter())
                self._cv.notify_all()


def _try_realtime_priority(priority: int = 50) -> None:
    """SCHED_FIFO for the calling thread (Linux: pid 0 is this thread only) if allowed; a warning otherwise."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, PermissionError, OSError) as exc:
        warnings.warn(f"SCHED_FIFO refused ({exc}); running at normal priority: expect more timing jitter",
                      RuntimeWarning, stacklevel=2)


def _normal_priority() -> None:
    """The calling thread back to SCHED_OTHER (lowering one's own priority is always allowed)."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        pass
