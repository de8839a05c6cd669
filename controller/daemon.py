"""``legadapt run``: the onboard controller daemon.

Order of things, so that bad input never leaves hardware powered:
1. pre-flight, nothing powered (:mod:`controller.preflight`): backend, serial port, log path,
   torch threads, checkpoint (its feature spec must match the config), and a timing check
   that adapt + plan fits the control period;
2. the robot: configure, activate, ramp from the measured pose to standing, then systemd
   READY=1; WATCHDOG=1 pings (:mod:`controller.watchdog`) cover every phase from configure on;
3. the two-rate loop until the task duration, a stop request (SIGTERM/SIGINT) or a safety
   stop. A robot fault is made safe in the failing cycle, then the robot is reconnected with
   exponential back-off; the state estimate carries on where it was;
4. the MCAP log is finished, the robot shut down, a summary printed.

A stop request is honoured at every stage: during the pre-flight nothing is powered; once
the robot is powered, torque goes off at the next fast tick (no crouch). The end of the
task and a safety stop lower the body first. Every message lies on one timeline
(:mod:`controller.run_clock`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from legadapt.controller.change_events import ChangeEvents
from legadapt.controller.foxglove_view import FoxgloveView
from legadapt.controller.live_view import LiveView, LiveViewError
from legadapt.controller.loop import Boundary, LoopStats, TwoRateLoop
from legadapt.controller.preflight import (Preflight, PreflightError, build_controller, check_timing, preflight,  # noqa: F401 (API)
                                  resolve_model)
from legadapt.controller.run_clock import RunClock
from legadapt.controller.run_summary import HISTORY, RunningStats, RunSummary, status_line  # noqa: F401 (API)
from legadapt.controller.safety import torque_off_now
from legadapt.controller.sdnotify import Notifier
from legadapt.controller.state_sources import make_state_source
from legadapt.controller.stop_request import sleep_unless
from legadapt.controller.watchdog import Watchdog
from legadapt.hardware.interface import CallbackReturn, Robot
from legadapt import config as C
from legadapt.mcap_log import LogWriter, quat_xyzw
from legadapt.paths import task_path
from legadapt.sim.rotations import rpy_from_quat

RECONNECT_MAX_DELAY = 8.0  # s, longest wait between reconnection attempts
FINISH_BOUND = 12.0  # s: finishing the log waits at most 10 s for its writer thread, shutting the robot down ~0.2 s
SIM_BRING_UP_BOUND = 10.0  # s: building the simulated robot and letting it settle
HANG_ENV = "LEGADAPT_TEST_HANG_AFTER"  # tests only: s after the run start at which the control loop blocks for good


def make_robot(cfg: C.LegadaptConfig, backend: str, stop=None) -> Robot:
    """The robot of ``backend``; a serial robot's power-up ramp gives way to ``stop.is_set()``."""
    if backend == "sim":
        from legadapt.sim.sim_robot import SimRobot

        return SimRobot(cfg)
    if backend == "serial":
        from legadapt.hardware.serial_robot import SerialRobot

        robot = SerialRobot(cfg)
        if stop is not None:
            robot.abort = stop.is_set
        return robot
    raise PreflightError(f"backend {backend!r} is not available; allowed: sim, serial")


def bring_up_bound(cfg: C.LegadaptConfig, backend: str) -> float:
    """Longest configure or activate may block (s): every bus transaction timing out with every retry."""
    if backend != "serial":
        return SIM_BRING_UP_BOUND
    sc = cfg.serial
    transactions = 6 * (len(sc.servo_ids) + 1)  # ping, model checks, EEPROM reads/writes, gains, state
    return transactions * (sc.retries + 1) * (sc.timeout + 0.005) + 2.0  # + REBOOT wait and the gain ramp-in


def run(cfg: C.LegadaptConfig, backend: str = "sim", duration: float | None = None, log_path: Path | None = None,
        stop=None, status=print) -> RunSummary:
    """Run the daemon to the end of the task (or a stop); see the module docstring.

    ``stop``: anything with ``is_set()`` (a :class:`threading.Event`, the CLI's signal latch).
    """
    ctrl = cfg.controller
    stop = stop or threading.Event()
    summary = RunSummary(estimated=ctrl.state_source.startswith("estimated"), control_rate=cfg.task.control_rate)
    log_path = log_path or Path(ctrl.log_dir) / time.strftime("run-%Y%m%d-%H%M%S.mcap")
    status("pre-flight: loading and timing the controller (nothing powered)")
    pre = preflight(cfg, backend, log_path, stop)
    if hasattr(stop, "hold"):
        stop.hold()  # from here a stop request is the daemon's to honour: it powers the robot next
    if pre is None or stop.is_set():
        summary.powered, summary.stop_reason = False, "stop requested during the pre-flight"
        return summary
    log_path.parent.mkdir(parents=True, exist_ok=True)
    notifier = Notifier()
    watchdog = Watchdog(notifier)
    info = {"model": str(pre.model), "adapter": ctrl.adapter, "backend": backend, "mode": ctrl.mode, "command": " ".join(sys.argv),
            "timing_check_p50": pre.p50, "timing_check_max": pre.worst, "threads": pre.threads,
            "rollout_dtype": str(pre.mpc.rollout_dtype).removeprefix("torch.")}
    status(f"pre-flight: adapt + plan {1e3 * pre.p50:.0f} ms median on {pre.threads} thread(s), rollouts in "
           f"{info['rollout_dtype']} (controller.planner.precision: {ctrl.planner.precision})")
    live = start_live_view(ctrl.live, status)
    writer = LogWriter(log_path, pre.spec, config=cfg.model_dump(mode="json"), info=info, deferred_origin=True,
                       view=FoxgloveView(cfg.robot_description, task_path(cfg.task).points) if ctrl.foxglove_scene else None,
                       mirrors=(live,) if live else ())
    summary.log_path, summary.powered = log_path, False
    daemon = _Daemon(cfg, backend, pre, writer, notifier, watchdog, stop, status, summary)
    try:
        return daemon.run(cfg.task.duration if duration is None else duration)
    finally:
        watchdog.beat(expect=FINISH_BOUND)
        writer.finish()
        if writer.view_errors:  # the JSON channels are whole; a Foxglove or live-view message was not made
            status(f"log: {writer.view_errors} Foxglove/live-view message(s) not made (last: {writer.message_error!r}); "
                   f"the JSON channels are complete")
        for r in daemon.robots:
            r.shutdown()
        if live is not None:
            live.close()
        notifier.stopping()
        watchdog.close()


def start_live_view(live_cfg: C.LiveViewConfig, status) -> LiveView | None:
    """The live view's server when the config asks for it (before anything is powered); refused: PreflightError."""
    if not live_cfg.enabled:
        return None
    try:
        live = LiveView(live_cfg.host, live_cfg.port)
    except LiveViewError as e:
        raise PreflightError(str(e)) from e
    status(f"live view: {live.url} (Foxglove: Open connection -> Foxglove WebSocket -> {live.url})")
    return live


class _Daemon:
    """One run: the robots (one per connection), the loop callbacks, the log, the watchdog."""

    def __init__(self, cfg: C.LegadaptConfig, backend: str, pre: Preflight, writer: LogWriter, notifier: Notifier,
                 watchdog: Watchdog, stop, status, summary: RunSummary) -> None:
        self.cfg, self.backend, self.ctrl = cfg, backend, cfg.controller
        self.mpc, self.spec = pre.mpc, pre.spec
        self.writer, self.notifier, self.watchdog = writer, notifier, watchdog
        self.stop, self.status, self.summary = stop, status, summary
        self.clock = RunClock(self.ctrl.mode == "realtime")
        self.bound = bring_up_bound(cfg, backend)
        self.robots: list[Robot] = []
        self.gait = self.source = self.loop = None
        self.walking = False  # between a stand-up and the stop of a connection
        self.current_action = np.zeros(pre.spec.action_dim)
        self.cycle_times: deque[float] = deque(maxlen=HISTORY)
        self.xt = RunningStats()  # |cross-track| over the whole run
        self.losses = (RunningStats(), RunningStats())  # adaptation loss before, after (full windows)
        self.totals = LoopStats()  # summed over connections
        self.last_status = -math.inf
        self.changes = ChangeEvents(self.event)  # slip, mocap stream, which model plans: an event when one changes
        hang = os.environ.get(HANG_ENV)
        self.hang_after = float(hang) if hang else None

    # ------------------------------------------------------------ the run
    def run(self, duration: float) -> RunSummary:
        robot = self._connect_first()
        if robot is None:
            return self._finish()
        self.gait = _gait(robot, self.cfg)
        sc = self.cfg.serial
        self.source = make_state_source(self.ctrl.state_source, self.gait, self.ctrl.slip_threshold, sc.flow_scale,
                                        self.cfg.mocap, self.cfg.sim.seed, sc.flow_position)
        while True:
            stats = self._connection(robot, duration)
            if stats.stop_reason is None or not stats.stop_reason.startswith("robot fault") or self.stop.is_set():
                break
            # the robot was made safe in the failing cycle (on_error: broadcast torque off, unless the
            # port itself is gone: then nothing reaches the servos, which hold their last goal)
            self._away_from = self.clock.now()
            self.clock.robot_lost()
            self.event("robot_fault", stats.stop_reason, {"torque_off_sent": robot.lifecycle.value == "unconfigured"})
            robot = self._reconnect()
            if robot is None:
                break
            self.summary.reconnects += 1
        return self._finish()

    def _connect_first(self) -> Robot | None:
        """The first robot configured and active; None if a stop came first. Raises if it fails."""
        robot = make_robot(self.cfg, self.backend, self.stop)
        self.robots.append(robot)
        self.watchdog.beat(expect=self.bound)
        self.watchdog.start()
        self.status(f"configuring the {self.backend} robot (nothing powered yet)")
        if not self._bring_up(robot):
            if self.stop.is_set():
                return None
            raise RuntimeError(f"robot {'activate' if self.summary.powered else 'configure'} failed: {robot.last_error}")
        _report_reboots(robot, self.event)
        self.event("start", "robot active, ramping to stand", {})
        return robot

    def _bring_up(self, robot: Robot) -> bool:
        """Configure, then activate ``robot``; False if either failed or a stop came (then nothing more is powered)."""
        if robot.configure() is not CallbackReturn.SUCCESS or self.stop.is_set():
            return False
        self.watchdog.beat(expect=self.bound)
        self.summary.powered = True
        ok = robot.activate() is CallbackReturn.SUCCESS
        if self.stop.is_set():
            torque_off_now(robot)
            self.totals.torque_off_at = time.monotonic()
            return False
        return ok

    def _connection(self, robot: Robot, duration: float) -> LoopStats:
        """Stand ``robot`` up and walk it until the end, a stop or a fault; its loop's stats."""
        ctrl = self.ctrl
        self.loop = loop = TwoRateLoop(robot, self.gait, self.source, self.mpc, ctrl.safety, 1.0 / self.cfg.sim.servo_rate,
                                       1.0 / self.cfg.task.control_rate, ctrl.mode, on_cycle=self.on_cycle,
                                       on_tick=self.on_tick, should_stop=self.stop.is_set, run_time=self.clock.now)
        self.clock.connect(lambda: robot.time)
        self._time_origin()
        first = self.clock.run_start is None
        self.walking = False
        stood = loop.start(resume=not first)
        if stood:
            self._standing(first)
            self.walking = True
            loop.run(duration - (self.clock.now() - self.clock.run_start))
        self.walking = False
        self._add(loop.stats)
        return loop.stats

    def _standing(self, first: bool) -> None:
        if first:
            self.clock.mark_run_start()
            self._time_origin()
            self.notifier.ready()  # READY=1 once the robot stands; systemd arms its watchdog here
            self.watchdog.ping_now()
            self.event("running", "standing: the walk starts", {"run_start": self.clock.run_start})
        else:
            self.summary.away += self.clock.now() - self._away_from
            self.event("running", "standing again: the walk carries on", {"pose": self.source.pose().tolist()})

    def _time_origin(self) -> None:
        """Once run time 0 has a wall-clock instant, the log stamps its messages from it."""
        if self.clock.origin_unix_ns is not None:
            self.writer.set_time_origin(self.clock.origin_unix_ns)

    def _reconnect(self) -> Robot | None:
        """A fresh robot after a fault, with exponential back-off; None when out of attempts or stopped."""
        ctrl = self.ctrl
        for attempt in range(1, ctrl.reconnect_attempts + 1):
            delay = min(RECONNECT_MAX_DELAY, ctrl.reconnect_backoff * 2 ** (attempt - 1))
            self.event("reconnect_wait", f"attempt {attempt} of {ctrl.reconnect_attempts} in {delay:.2f} s", {"delay": delay})
            if sleep_unless(self.stop, delay, beat=self.watchdog.beat):
                return None
            robot = make_robot(self.cfg, self.backend, self.stop)
            self.robots.append(robot)
            self.watchdog.beat(expect=self.bound)
            if self._bring_up(robot):
                _report_reboots(robot, self.event)
                self.event("reconnected", f"robot active again after {attempt} attempt(s)", {"attempt": attempt})
                return robot
            robot.shutdown()
            if self.stop.is_set():
                return None
            self.event("reconnect_failed", str(robot.last_error), {"attempt": attempt})
        return None

    def _add(self, stats: LoopStats) -> None:
        t = self.totals
        t.cycles += stats.cycles
        t.missed_plans += stats.missed_plans
        t.missed_periods += stats.missed_periods
        t.skipped_ticks += stats.skipped_ticks
        t.stop_reason = stats.stop_reason
        if stats.ended_at is not None:
            t.ended_at = stats.ended_at
        t.torque_off_at = stats.torque_off_at or t.torque_off_at
        t.tick_begun = stats.tick_begun

    def _finish(self) -> RunSummary:
        if self.source is not None:
            self.source.close()
        s, t = self.summary, self.totals
        robot = self.robots[-1] if self.robots else None
        reason = t.stop_reason or ("stop requested" if self.stop.is_set() else None)
        if self.stop.is_set() and reason and reason.startswith("robot fault"):
            reason = "stop requested"
        torque_off = robot is None or robot.lifecycle.value != "active"
        self.event("safe_stop", reason or "task complete",
                   {"cycles": t.cycles, "missed": t.missed_plans, "missed_periods": t.missed_periods,
                    "skipped_ticks": t.skipped_ticks, "filter_clamped": self.loop.filter.clamped if self.loop else 0,
                    "torque_off": torque_off, "torque_off_after_request": _after_request(self.stop, t.torque_off_at),
                    "ticks_begun_after_request": _ticks_after_request(self.stop, t.tick_begun)})
        s.stop_reason, s.cycles, s.missed, s.missed_periods = reason, t.cycles, t.missed_plans, t.missed_periods
        s.safe, s.fallbacks = torque_off, self.mpc.fallbacks
        if self.clock.run_start is not None and t.ended_at is not None:
            s.duration = t.ended_at - self.clock.run_start
        _fill(s, self.xt, self.cycle_times, self.losses, self.mpc)
        return s

    # ------------------------------------------------------------ loop callbacks
    def event(self, kind: str, message: str, data: dict) -> None:
        t = max(self.clock.now(), 0.0)
        self.writer.write("events", {"t": t, "kind": kind, "message": message, "data": data}, t)
        self.status(f"{kind}: {message}")

    def on_tick(self, t: float, q_cmd: np.ndarray) -> None:
        self.watchdog.beat()
        if self.hang_after is not None and self.walking and t - self.clock.run_start >= self.hang_after:
            _hang(self.status)
        if t < 0:  # lockstep: the first stand-up lies before the run's timeline
            return
        s = self.robots[-1].state
        self.writer.write("command", {"t": t, "q": q_cmd, "action": self.current_action}, t)
        msg = {"t": t, "q": s.q, "qd": s.qd, "effort": s.effort, "imu_quat": quat_xyzw(s.imu.quat), "gyro": s.imu.gyro, "acc": s.imu.acc}
        if self.walking:
            msg["model_state"] = self.source.model_state()
        self.writer.write("state", msg, t)

    def on_cycle(self, b: Boundary) -> None:
        mpc, st, summary, w = self.mpc, self.mpc.stats, self.summary, self.writer
        ct = mpc.cross_track(b.pose)
        self.xt.add(abs(ct))
        if summary.start_pose is None:
            summary.start_pose = np.asarray(b.pose, dtype=float).copy()
        summary.trace.append((b.t, *b.pose, ct))
        self.cycle_times.append(st.adapt_time + st.plan_time)
        if st.window >= mpc.window_x.maxlen and math.isfinite(st.loss_before) and math.isfinite(st.loss_after):
            self.losses[0].add(st.loss_before)
            self.losses[1].add(st.loss_after)
        if b.transition is not None:
            s0, a0, s1, d = b.transition
            w.write("transition", {"t": b.t, "episode": 0, "condition": "run", "state": s0, "action": a0,
                                   "next_state": s1, "displacement": d}, b.t)
        w.write("adaptation", {"t": b.t, "loss_before": st.loss_before, "loss_after": st.loss_after,
                               "fallback": st.fallback, "offset": st.offset.tolist(), **self.changes.switch(st)}, b.t)
        w.write("planner", self._planner_message(b, ct, st), b.t)
        stats = self.loop.stats
        w.write("timing", {"t": b.t, "read": _last(stats.tick_read), "adapt": st.adapt_time, "plan": st.plan_time,
                           "write": _last(stats.tick_write), "cycle": st.adapt_time + st.plan_time,
                           "missed": self.totals.missed_plans + stats.missed_plans,
                           "missed_periods": self.totals.missed_periods + stats.missed_periods}, b.t)
        self.current_action = b.action
        self.changes.slip(self.source)
        self.changes.mocap(self.source)
        if st.fallback:
            w.write("events", {"t": b.t, "kind": "adaptation_fallback", "message": "non-finite or exploding loss: θ* used",
                               "data": {"loss_before": st.loss_before, "loss_after": st.loss_after}}, b.t)
        if b.t - self.last_status >= self.ctrl.status_interval:
            self.last_status = b.t
            line = status_line(b.t, self.cycle_times, self.totals.missed_plans + stats.missed_plans,
                               self.totals.missed_periods + stats.missed_periods, ct, st)
            self.notifier.status(line)
            self.status(line)

    def _planner_message(self, b: Boundary, ct: float, st) -> dict:
        mpc = self.mpc
        msg = {"t": b.t, "cost": st.cost, "plan_time": st.plan_time, "iterations": self.ctrl.planner.iterations,
               "pose": b.pose, "cross_track": ct, "progress": float(mpc.cost.s_hint or 0.0)}
        if st.plan_poses is not None:
            msg.update(plan_poses=st.plan_poses, candidate_poses=st.candidate_poses)
        slip = self.source.slip()
        if slip is not None:
            msg["slip_mismatch"] = slip.mismatch  # rad/s, the estimator's slip check (controller.slip)
        fusion = getattr(self.source, "stats", None)
        if fusion is not None:  # the EKF's (controller.fusion): legs' consistency, legs vs flow, sources used
            msg.update(leg_nis=fusion.leg_nis, slip_speed=fusion.slip_speed, legs_bias=list(fusion.legs_bias),
                       flow_used=fusion.flow_used, flow_skipped=fusion.flow_skipped)
        truth = self.robots[-1].state.privileged
        if truth is not None:  # simulation: also score against the true pose (never used for control)
            true_pose = np.array([truth.pos[0], truth.pos[1], rpy_from_quat(truth.quat)[2]])
            true_s, true_ct = mpc.project_truth(true_pose)
            msg.update(true_pose=true_pose, true_cross_track=true_ct, true_progress=true_s)
            self.summary.true_trace.append((b.t, *true_pose, true_ct, true_s))
            self.summary.true_xt = self.summary.true_xt or RunningStats()
            self.summary.true_xt.add(abs(true_ct))
        return msg


def _report_reboots(robot: Robot, event) -> None:
    for joint, error in getattr(robot, "rebooted", {}).items():
        event("servo_rebooted", f"{joint}: hardware error {error} cleared at configure (REBOOT, or Torque Enable re-written)", {"joint": joint, "error": error})


def _after_request(stop, when: float | None) -> float | None:
    """s from the stop request to ``when`` (time.monotonic()); None without a request, its time, or ``when``."""
    at = getattr(stop, "requested_at", None)
    return when - at if at is not None and when is not None and stop.is_set() else None


def _ticks_after_request(stop, begun) -> int | None:
    """Fast ticks begun after the stop request (0, or 1 if it came between the check and the tick); None without one."""
    at = getattr(stop, "requested_at", None)
    return sum(t > at for t in begun) if at is not None and stop.is_set() else None


def _hang(status) -> None:
    """The control loop blocks for good, as a real hang would (``LEGADAPT_TEST_HANG_AFTER``, tests only)."""
    status(f"test hook {HANG_ENV}: the control loop hangs now")
    while True:
        time.sleep(1.0)


def _gait(robot: Robot, cfg: C.LegadaptConfig):
    from legadapt.sim.hexapod import make_description, make_gait

    desc = getattr(getattr(robot, "hexapod", None), "desc", None) or make_description(cfg)
    return make_gait(desc, cfg.gait)


def _last(values) -> float:
    return values[-1] if values else 0.0


def _fill(summary: RunSummary, xt: RunningStats, cycle_times: deque, losses, mpc) -> None:
    if xt.n:
        summary.mean_cross_track, summary.max_cross_track = xt.mean, xt.max
    if cycle_times:
        summary.cycle_p50, summary.cycle_p99 = float(np.percentile(cycle_times, 50)), float(np.percentile(cycle_times, 99))
    summary.loss_before, summary.loss_after = losses[0].mean, losses[1].mean
    if summary.trace and summary.start_pose is not None:
        summary.distance = float(np.linalg.norm(np.asarray(summary.trace[-1][1:3]) - summary.start_pose[:2]))
    summary.progress = float(mpc.cost.s_hint or 0.0)
