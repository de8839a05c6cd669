"""``legadapt run``: the onboard controller daemon.

Order of things, so that bad input never leaves hardware powered:
1. pre-flight, nothing powered: config, checkpoint (feature spec must match the config),
   adapter, path, and a timing check that adapt + plan fits the control period;
2. the robot: configure, activate (systemd READY=1), ramp from the measured pose;
3. the two-rate loop until the task duration, a stop request (SIGTERM/SIGINT) or a safety
   stop; every exit path goes through the safe stop (crouch, then torque off);
4. the MCAP log is finished, the robot shut down, a summary printed.
"""

from __future__ import annotations

import math
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.loop import Boundary, TwoRateLoop
from controller.mpc import AdaptiveMPC, make_adapter_from
from controller.sdnotify import Notifier
from controller.state_estimator import make_state_source
from dynamics.checkpoint import load_checkpoint
from hardware.interface import CallbackReturn, Robot
from legadapt import config as C
from legadapt.features import FeatureSpec, make_spec
from legadapt.mcap_log import LogWriter
from legadapt.paths import task_path
from sim.rotations import rpy_from_quat

REPO = Path(__file__).resolve().parents[1]
FIT_MARGIN = 0.8  # adapt + plan must take at most this share of the control period (realtime)
RECONNECT_MAX_DELAY = 8.0  # s, longest wait between reconnection attempts
HISTORY = 10_000  # control cycles kept for percentiles and traces (17 min at 10 Hz): memory stays bounded


class PreflightError(ValueError):
    """The run cannot start: the message says why and what to change. Nothing was powered."""


@dataclass
class RunSummary:
    """What a run did; distances in m, times in s, losses normalised MSE."""

    duration: float = 0.0
    cycles: int = 0
    stop_reason: str | None = None
    distance: float = 0.0
    progress: float = 0.0  # m along the path
    mean_cross_track: float = math.nan
    max_cross_track: float = math.nan
    cycle_p50: float = math.nan
    cycle_p99: float = math.nan
    missed: int = 0
    fallbacks: int = 0
    loss_before: float = math.nan  # mean over cycles with a full window
    loss_after: float = math.nan
    log_path: Path | None = None
    safe: bool = True  # ended in a safe stop with torque off
    start_pose: np.ndarray | None = None  # [3] pose at the first cycle
    trace: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # recent (t, x, y, yaw, cross-track)
    true_trace: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # simulation: (t, x, y, yaw, xt, progress)
    true_xt: RunningStats | None = None  # simulation: |cross-track| of the true pose over the whole run
    estimated: bool = True  # the controller saw its onboard estimate (not the simulator's truth)

    def text(self) -> str:
        truth = self.true_xt is not None and bool(self.true_trace) and self.estimated  # the sim's truth beside the estimate
        lines = [f"ran {self.duration:.1f} s, {self.cycles} cycles; stop: {self.stop_reason or 'task complete'}",
                 f"path: progress {self.progress:.2f} m, cross-track mean {self.mean_cross_track:.3f} m, max "
                 f"{self.max_cross_track:.3f} m" + (" (the robot's estimate)" if truth else "")]
        if truth:
            lines.append(f"true (simulator): progress {self.true_trace[-1][5]:.2f} m, cross-track mean {self.true_xt.mean:.3f} m, "
                         f"max {self.true_xt.max:.3f} m")
        lines += [f"adapt+plan p50 {1e3 * self.cycle_p50:.1f} ms, p99 {1e3 * self.cycle_p99:.1f} ms; {self.missed} missed "
                  f"deadlines; adaptation loss {self.loss_before:.3f} -> {self.loss_after:.3f} (mean), "
                  f"{self.fallbacks} fallbacks to θ*", f"log: {self.log_path}"]
        return "\n".join(lines)


def resolve_model(path: str | Path) -> Path:
    """A checkpoint path as given, else relative to the repository (the shipped default model)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    return REPO / p if (REPO / p).exists() else p


def build_controller(cfg: C.LegadaptConfig, model: Path) -> tuple[AdaptiveMPC, FeatureSpec, int]:
    """Load and check the model; the adaptive MPC for the config's task. Raises on bad input."""
    spec = make_spec(cfg.gait.action_mode, 1.0 / cfg.task.control_rate)
    ck = load_checkpoint(model, spec)
    window = ck.maml.M if ck.maml else cfg.train.M
    task = cfg.task
    path = task_path(task)
    return AdaptiveMPC(make_adapter_from(ck, cfg.controller.adapter), spec, path, cfg.controller,
                       task.target_speed, window), spec, window


def check_timing(mpc: AdaptiveMPC, spec: FeatureSpec, window: int, runs: int = 5,
                 give_up: float = math.inf) -> tuple[float, float]:
    """Median and max time (s) of adapt + plan on a full window of typical transitions.

    Stops early once a cycle takes longer than ``give_up`` s: the verdict is already clear.
    """
    rng = np.random.default_rng(0)
    s = np.zeros(spec.state_dim)
    s[9] = 1.0  # cos of phase 0
    for _ in range(window):
        mpc.observe(s, rng.uniform(-1, 1, spec.action_dim), s, np.zeros(3))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        mpc.step(s, np.zeros(3))
        times.append(time.perf_counter() - t)
        if times[-1] > give_up:
            break
    return statistics.median(times), max(times)


def make_robot(cfg: C.LegadaptConfig, backend: str) -> Robot:
    if backend == "sim":
        from hardware.sim_robot import SimRobot

        return SimRobot(cfg)
    if backend == "serial":
        from hardware.serial_robot import SerialRobot

        return SerialRobot(cfg)
    raise PreflightError(f"backend {backend!r} is not available; allowed: sim, serial")


def check_backend(cfg: C.LegadaptConfig, backend: str) -> None:
    """A real (serial) robot runs on the wall clock and has no simulator truth."""
    if backend == "serial" and cfg.controller.mode != "realtime":
        raise PreflightError("the serial robot runs in real time: use --mode realtime (controller.mode: realtime)")
    if backend == "serial" and cfg.controller.state_source != "estimated":
        raise PreflightError("the serial robot has only onboard sensors: use controller.state_source: estimated")


def run(cfg: C.LegadaptConfig, backend: str = "sim", duration: float | None = None, log_path: Path | None = None,
        stop: threading.Event | None = None, status=print) -> RunSummary:
    """Run the daemon to the end of the task (or a stop); see the module docstring."""
    ctrl = cfg.controller
    stop = stop or threading.Event()
    if ctrl.threads:
        import torch

        torch.set_num_threads(ctrl.threads)
    check_backend(cfg, backend)
    model = resolve_model(ctrl.model)
    mpc, spec, window = build_controller(cfg, model)
    control_period = 1.0 / cfg.task.control_rate
    p50, worst = check_timing(mpc, spec, window, give_up=3 * control_period if ctrl.mode == "realtime" else math.inf)
    if ctrl.mode == "realtime" and p50 > FIT_MARGIN * control_period:
        raise PreflightError(
            f"adapt + plan takes {1e3 * p50:.0f} ms (median) but the control period is {1e3 * control_period:.0f} ms: "
            f"reduce controller.planner.samples ({ctrl.planner.samples}), horizon ({ctrl.planner.horizon}) or "
            f"iterations ({ctrl.planner.iterations}), or lower task.control_rate")
    mpc, spec, window = build_controller(cfg, model)  # fresh: the timing check must not warm-start the run
    duration = cfg.task.duration if duration is None else duration
    log_path = log_path or Path(ctrl.log_dir) / time.strftime("run-%Y%m%d-%H%M%S.mcap")
    if log_path.exists():
        raise PreflightError(f"log file {log_path} already exists; give another --log path or move it away")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    robot = make_robot(cfg, backend)
    notifier = Notifier()
    summary = RunSummary(log_path=log_path, estimated=ctrl.state_source == "estimated")
    info = {"model": str(model), "adapter": ctrl.adapter, "backend": backend, "mode": ctrl.mode, "command": " ".join(sys.argv),
            "timing_check_p50": p50, "timing_check_max": worst}
    writer = LogWriter(log_path, spec, config=cfg.model_dump(mode="json"), info=info)
    robots = [robot]
    try:
        return _run(cfg, backend, robots, mpc, spec, duration, writer, notifier, stop, status, summary)
    finally:
        writer.finish()
        for r in robots:
            r.shutdown()
        notifier.stopping()
        notifier.close()


def reconnect(cfg: C.LegadaptConfig, backend: str, stop: threading.Event, event) -> Robot | None:
    """A fresh robot after a fault, with exponential back-off; None when out of attempts or stopped."""
    ctrl = cfg.controller
    for attempt in range(1, ctrl.reconnect_attempts + 1):
        delay = min(RECONNECT_MAX_DELAY, ctrl.reconnect_backoff * 2 ** (attempt - 1))
        event("reconnect_wait", f"attempt {attempt} of {ctrl.reconnect_attempts} in {delay:.2f} s", {"delay": delay})
        if stop.wait(delay):
            return None
        robot = make_robot(cfg, backend)
        if robot.configure() is CallbackReturn.SUCCESS and robot.activate() is CallbackReturn.SUCCESS:
            _report_reboots(robot, event)
            event("reconnected", f"robot active again after {attempt} attempt(s)", {"attempt": attempt})
            return robot
        event("reconnect_failed", str(robot.last_error), {"attempt": attempt})
        robot.shutdown()
    return None


def _report_reboots(robot: Robot, event) -> None:
    for joint, error in getattr(robot, "rebooted", {}).items():
        event("servo_rebooted", f"{joint}: hardware error {error} cleared by REBOOT", {"joint": joint, "error": error})


def _run(cfg, backend, robots, mpc, spec, duration, writer, notifier, stop, status, summary) -> RunSummary:
    ctrl = cfg.controller
    robot = robots[0]
    clock = {"offset": 0.0, "fault_at": None}  # s of run time before the current connection; monotonic s of a fault
    for step, ret in (("configure", robot.configure), ("activate", robot.activate)):
        if ret() is not CallbackReturn.SUCCESS:
            raise RuntimeError(f"robot {step} failed: {robot.last_error}")
    notifier.ready()
    gait = _gait(robot, cfg)
    source = make_state_source(ctrl.state_source, gait)
    cycle_times: deque[float] = deque(maxlen=HISTORY)
    xt = RunningStats()  # |cross-track| over the whole run
    losses = [RunningStats(), RunningStats()]  # adaptation loss before, after (full windows)
    last_status = [0.0, 0.0]

    def on_cycle(b: Boundary) -> None:
        robot = robots[-1]
        b.t += clock["offset"]
        st = mpc.stats
        ct = mpc.cross_track(b.pose)
        xt.add(abs(ct))
        if summary.start_pose is None:
            summary.start_pose = np.asarray(b.pose, dtype=float).copy()
        summary.trace.append((b.t, *b.pose, ct))
        cycle_times.append(st.adapt_time + st.plan_time)
        if st.window >= mpc.window_x.maxlen and math.isfinite(st.loss_before) and math.isfinite(st.loss_after):
            losses[0].add(st.loss_before)
            losses[1].add(st.loss_after)
        if b.transition is not None:
            s0, a0, s1, d = b.transition
            writer.write("transition", {"t": b.t, "episode": 0, "condition": "run", "state": s0, "action": a0,
                                        "next_state": s1, "displacement": d}, b.t)
        writer.write("adaptation", {"t": b.t, "loss_before": st.loss_before, "loss_after": st.loss_after,
                                    "fallback": st.fallback}, b.t)
        msg = {"t": b.t, "cost": st.cost, "plan_time": st.plan_time, "iterations": ctrl.planner.iterations,
               "pose": b.pose, "cross_track": ct, "progress": float(mpc.cost.s_hint or 0.0)}
        truth = robot.state.privileged
        if truth is not None:  # simulation: also score against the true pose (never used for control)
            true_pose = np.array([truth.pos[0], truth.pos[1], rpy_from_quat(truth.quat)[2]])
            true_s, true_ct = mpc.project(true_pose)
            msg.update(true_pose=true_pose, true_cross_track=true_ct, true_progress=true_s)
            summary.true_trace.append((b.t, *true_pose, true_ct, true_s))
            summary.true_xt = summary.true_xt or RunningStats()
            summary.true_xt.add(abs(true_ct))
        writer.write("planner", msg, b.t)
        writer.write("timing", {"t": b.t, "read": _last(loop.stats.tick_read), "adapt": st.adapt_time, "plan": st.plan_time,
                                "write": _last(loop.stats.tick_write), "cycle": st.adapt_time + st.plan_time,
                                "missed": loop.stats.missed_plans}, b.t)
        current_action[0] = b.action
        if st.fallback:
            writer.write("events", {"t": b.t, "kind": "adaptation_fallback", "message": "non-finite or exploding loss: θ* used",
                                    "data": {"loss_before": st.loss_before, "loss_after": st.loss_after}}, b.t)
        if not b.missed and not st.fallback and (notifier.watchdog_interval is None or b.t - last_status[1] >= notifier.watchdog_interval):
            notifier.watchdog()
            last_status[1] = b.t
        if b.t - last_status[0] >= ctrl.status_interval:
            last_status[0] = b.t
            line = _status_line(b, cycle_times, loop.stats.missed_plans, ct, st)
            notifier.status(line)
            status(line)

    started = [False]

    current_action = [np.zeros(spec.action_dim)]

    def on_tick(t: float, q_cmd: np.ndarray) -> None:
        s = robots[-1].state
        t += clock["offset"]
        writer.write("command", {"t": max(t, 0.0), "q": q_cmd, "action": current_action[0]}, max(t, 0.0))
        msg = {"t": max(t, 0.0), "q": s.q, "qd": s.qd, "effort": s.effort, "imu_quat": s.imu.quat, "gyro": s.imu.gyro,
               "acc": s.imu.acc}
        if started[0]:
            msg["model_state"] = source.model_state()
        writer.write("state", msg, msg["t"])

    def event(kind: str, message: str, data: dict) -> None:
        t = clock["offset"] + (time.monotonic() - clock["fault_at"] if clock["fault_at"] is not None else 0.0)
        writer.write("events", {"t": t, "kind": kind, "message": message, "data": data}, t)
        status(f"{kind}: {message}")

    _report_reboots(robot, event)
    event("start", "robot active, ramping to stand", {})
    while True:
        loop = TwoRateLoop(robots[-1], gait, source, mpc, ctrl.safety, 1.0 / cfg.sim.servo_rate,
                           1.0 / cfg.task.control_rate, ctrl.mode, on_cycle=on_cycle, on_tick=on_tick,
                           should_stop=stop.is_set)
        started[0] = False
        loop.start()
        started[0] = True
        stats = loop.run(duration - clock["offset"])
        clock["offset"] += max(loop.now() - loop.t0, 0.0)
        if not (stats.stop_reason or "").startswith("robot fault") or stop.is_set():
            break
        # the robot was made safe in the failing cycle (on_error: broadcast torque off, unless the
        # port itself is gone: then nothing reaches the servos, which hold their last goal)
        clock["fault_at"] = time.monotonic()  # run time goes on while the robot is away
        sent = robots[-1].lifecycle.value == "unconfigured"
        event("robot_fault", stats.stop_reason, {"torque_off_sent": sent})
        fresh = reconnect(cfg, backend, stop, event)
        clock["offset"] += time.monotonic() - clock["fault_at"]
        clock["fault_at"] = None
        if fresh is None:
            break
        robots.append(fresh)  # the next loop ramps it from its measured pose and resets the state estimate
    robot = robots[-1]
    t_end = clock["offset"]
    kind = "safe_stop"
    writer.write("events", {"t": t_end, "kind": kind, "message": stats.stop_reason or "task complete",
                            "data": {"cycles": stats.cycles, "missed": stats.missed_plans, "skipped_ticks": stats.skipped_ticks,
                                     "filter_clamped": loop.filter.clamped, "torque_off": robot.lifecycle.value != "active"}},
                 t_end)
    _fill(summary, stats, xt, cycle_times, losses, mpc, t_end)
    summary.safe = robot.lifecycle.value != "active"
    return summary


def _gait(robot: Robot, cfg: C.LegadaptConfig):
    from sim.hexapod import make_description, make_gait

    desc = getattr(getattr(robot, "hexapod", None), "desc", None) or make_description(cfg.robot)
    return make_gait(desc, cfg.gait)


def _last(values: list[float]) -> float:
    return values[-1] if values else 0.0


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


def _status_line(b: Boundary, cycle_times: deque, missed: int, ct: float, st) -> str:
    recent = np.array(cycle_times)[-100:] * 1e3
    return (f"t {b.t:6.1f} s | cycle p50 {np.percentile(recent, 50):5.1f} ms p99 {np.percentile(recent, 99):5.1f} ms | "
            f"misses {missed} | cross-track {ct:+.3f} m | adapt loss {st.loss_before:.3f} -> {st.loss_after:.3f}")


def _fill(summary: RunSummary, stats, xt: RunningStats, cycle_times: deque, losses: list[RunningStats],
          mpc: AdaptiveMPC, t_end: float) -> None:
    summary.duration, summary.cycles, summary.stop_reason = t_end, stats.cycles, stats.stop_reason
    summary.missed, summary.fallbacks = stats.missed_plans, mpc.fallbacks
    if xt.n:
        summary.mean_cross_track, summary.max_cross_track = xt.mean, xt.max
    if cycle_times:
        summary.cycle_p50, summary.cycle_p99 = float(np.percentile(cycle_times, 50)), float(np.percentile(cycle_times, 99))
    summary.loss_before, summary.loss_after = losses[0].mean, losses[1].mean
    if summary.trace and summary.start_pose is not None:
        summary.distance = float(np.linalg.norm(np.asarray(summary.trace[-1][1:3]) - summary.start_pose[:2]))
    summary.progress = float(mpc.cost.s_hint or 0.0)
