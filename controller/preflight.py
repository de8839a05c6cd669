"""The daemon's pre-flight: everything is loaded and checked before anything is powered.

Cheap checks first, so that a wrong port or backend is named at once rather than after the
seconds the planner timing takes: backend and mode, the serial port, the log path; then
the torch thread count, the checkpoint (its feature spec must match the config), and in
realtime mode a timing check that adapt + plan fits the control period. A stop request
(SIGTERM/SIGINT) is honoured between every step: :func:`preflight` then returns None.
"""

from __future__ import annotations

import math
import os
import stat
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from legadapt.controller.mpc import AdaptiveMPC, make_adapter_from, runtime_settings
from legadapt.hardware.servo_types import UnknownServo, bus_servo_types
from legadapt.dynamics.adaptation import Adapter, MBAdapter
from legadapt.dynamics.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from legadapt.dynamics.datasets import sources_in
from legadapt.dynamics.ensemble import EnsembleAdapter
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.dynamics.switching import Surprise, SwitchingAdapter
from legadapt import config as C
from legadapt import resources
from legadapt.features import FeatureSpec, spec_of
from legadapt.paths import task_path

MAX_AUTO_THREADS = 4  # intra-op threads beyond this buy nothing for a few-hundred-sample MLP planner


class PreflightError(ValueError):
    """The run cannot start: the message says why and what to change. Nothing was powered."""


@dataclass
class Preflight:
    """What the pre-flight loaded and measured (times in s)."""

    model: Path
    mpc: AdaptiveMPC
    spec: FeatureSpec
    window: int
    threads: int
    p50: float = math.nan
    worst: float = math.nan


def resolve_model(path: str | Path) -> Path:
    """A checkpoint path as given (a config's own relative paths are already made absolute next to it), else the
    shipped model of that name (``models/default.pt``; legadapt.resources)."""
    return resources.resolve(path, "models")


def build_controller(cfg: C.LegadaptConfig, model: Path) -> tuple[AdaptiveMPC, FeatureSpec, int]:
    """Load and check the model; the adaptive MPC for the config's task. Raises on bad input."""
    spec = spec_of(cfg)
    ck = load_checkpoint(model, spec)
    check_state_source(model, ck.meta.get("training", {}).get("state_source"), cfg.controller.state_source)
    window = ck.maml.M if ck.maml else cfg.train.M
    task = cfg.task
    adapter = make_adapter_from(ck, cfg.controller.adapter, cfg.controller.adaptation)
    if cfg.controller.adaptation.ensemble:
        adapter = ensemble_of(adapter, cfg.controller, spec)
    plain = plain_model_path(cfg.controller, ck, model)
    if plain is not None and adapter.kind != "mb":
        adapter = with_plain_model(adapter, plain, spec, cfg.controller, window)
    return AdaptiveMPC(adapter, spec, task_path(task), cfg.controller, task.target_speed, window), spec, window


def ensemble_of(adapter: Adapter, ctrl: C.ControllerConfig, spec: FeatureSpec) -> EnsembleAdapter:
    """``adapter`` with the members ``adaptation.ensemble`` names (each with its own run-time settings); a bad member is
    a PreflightError."""
    members = [adapter]
    for name in ctrl.adaptation.ensemble:
        path = resolve_model(name)
        ck = companion_checkpoint(path, spec, ctrl, "controller.adaptation.ensemble")
        member = make_adapter_from(ck, ctrl.adapter, ctrl.adaptation)
        if member.kind != adapter.kind:
            raise PreflightError(f"controller.adaptation.ensemble: {path} runs as {member.kind!r}, the model as "
                                 f"{adapter.kind!r}: an ensemble averages trainings of one kind")
        members.append(member)
    return EnsembleAdapter(members)


def companion_checkpoint(path: Path, spec: FeatureSpec, ctrl: C.ControllerConfig, setting: str,
                         hint: str = "") -> LoadedCheckpoint:
    """A checkpoint the controller runs beside the model (a plain model, an ensemble member), loaded and checked
    against the feature spec and the state source; a bad one is a PreflightError naming ``setting``."""
    try:
        ck = load_checkpoint(path, spec)
    except CheckpointError as e:
        raise PreflightError(f"{setting}: {e}{hint}") from e
    check_state_source(path, ck.meta.get("training", {}).get("state_source"), ctrl.state_source)
    return ck


def plain_model_path(ctrl: C.ControllerConfig, ck: LoadedCheckpoint, model: Path) -> Path | None:
    """The plain model that plans until it is surprised: the config's ``adaptation.plain_model`` ('none' = off),
    else the one the checkpoint names (next to it), else None."""
    name = ctrl.adaptation.plain_model
    if name is not None:
        return None if name.strip().lower() in ("none", "") else resolve_model(name)
    paired = runtime_settings(ck).get("plain_model")
    return (Path(model).parent / paired) if paired else None


def with_plain_model(adapter: Adapter, path: Path, spec: FeatureSpec, ctrl: C.ControllerConfig,
                     window: int) -> SwitchingAdapter:
    """``adapter`` behind a surprise switch from the plain (MB) model at ``path``, judging full windows of ``window``
    transitions; a bad plain model is a PreflightError."""
    plain_ck = companion_checkpoint(path, spec, ctrl, "controller.adaptation.plain_model",
                                    " (or set plain_model: none to plan with the adaptive model alone)")
    if not isinstance(plain_ck.model, DeltaMLP):
        raise PreflightError(f"controller.adaptation.plain_model: {path} is a {type(plain_ck.model).__name__}, not a "
                             "plainly trained MLP; give an MB model (legadapt train --config configs/train/mb.yaml)")
    hold = max(1, round(ctrl.adaptation.surprise_hold / spec.control_period))
    surprise = Surprise(threshold=ctrl.adaptation.surprise, release=0.5 * ctrl.adaptation.surprise, hold=hold,
                        recent=min(Surprise.recent, window), judge_from=window, early=ctrl.adaptation.surprise_early)
    return SwitchingAdapter(MBAdapter(plain_ck.model), adapter, surprise)


def check_state_source(model: Path, trained_on: str | None, running_on: str) -> None:
    """A model trained on an onboard estimate runs on that same estimate: its sensors' errors are in what it learnt.
    (A model trained on the simulator's truth -- older checkpoints say nothing -- runs on any source; one trained on
    logs of several sources, 'mixed: a, b', runs on any of them.)"""
    if trained_on in (None, "privileged"):
        return
    sources = sources_in(trained_on)
    if running_on in sources:
        return
    raise PreflightError(f"{model}: the model was trained on states from {trained_on!r}, and controller.state_source "
                         f"is {running_on!r}: run it with controller.state_source: {' or '.join(sources)} (the same "
                         f"sensors), or give a model trained on {running_on!r} (legadapt collect with "
                         f"collect.state_source: {running_on}) or on the simulator's truth, which runs on any source "
                         f"(--model models/default.pt)")


def check_timing(mpc: AdaptiveMPC, spec: FeatureSpec, window: int, runs: int = 5, give_up: float = math.inf,
                 stop=None) -> tuple[float, float]:
    """Median and max time (s) of adapt + plan on a full window of typical transitions (behind a plain model: with
    the adaptive model engaged, the costlier side).

    Stops early once a cycle takes longer than ``give_up`` s (the verdict is already clear)
    or ``stop.is_set()`` (a stop request).
    """
    if isinstance(mpc.adapter, SwitchingAdapter):
        mpc.adapter.engaged = True  # time the costlier side: the adaptive model's step (the controller is rebuilt after)
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
        if times[-1] > give_up or (stop is not None and stop.is_set()):
            break
    return statistics.median(times), max(times)


def auto_threads(cpus: int | None = None) -> int:
    """torch threads for ``controller.threads: 0``: half the CPUs this process may use, 1 to 4.

    The other half stays for the fast loop, the log writer and whatever else runs on the
    computer: measured on a loaded 2-core machine, 2 threads took 1316 ms (median adapt +
    plan, default model and planner) against 96 ms with 1 -- intra-op threads that wait
    for each other collapse as soon as another process wants the cores.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_THREADS, cpus // 2))


def apply_threads(threads: int) -> int:
    """Set torch's intra-op thread count (0 = :func:`auto_threads`); returns the count used."""
    import torch

    n = threads or auto_threads()
    torch.set_num_threads(n)
    return n


def check_backend(cfg: C.LegadaptConfig, backend: str) -> None:
    """A real (serial) robot runs on the wall clock, has no simulator truth, and needs its port."""
    if backend not in ("sim", "serial"):
        raise PreflightError(f"backend {backend!r} is not available; allowed: sim, serial")
    if backend == "serial" and cfg.controller.mode != "realtime":
        raise PreflightError("the serial robot runs in real time: use --mode realtime (controller.mode: realtime)")
    if backend == "serial" and not cfg.controller.state_source.startswith("estimated"):
        raise PreflightError("the serial robot has no simulator truth: use controller.state_source: estimated "
                             "(or estimated+flow / estimated+mocap with those sensors)")
    if backend == "serial" and "flow" in cfg.controller.state_source.split("+") and cfg.serial.flow_id is None:
        raise PreflightError("controller.state_source names flow, but serial.flow_id is null: give the flow "
                             "sensor's bus ID (bus.flow_id in the robot description), or use state_source: estimated")
    if backend == "serial":
        check_servos(cfg)
        check_port(cfg.serial.port)


def check_servos(cfg: C.LegadaptConfig) -> None:
    """Every joint's servo model has a control table, and they share one bus family."""
    try:
        bus_servo_types([s.model for s in cfg.robot_description.joint_servos])
    except UnknownServo as exc:
        raise PreflightError(f"robot {cfg.robot_description.name!r}: {exc}") from None


def check_mocap(cfg: C.LegadaptConfig, backend: str, wait: float = 5.0) -> None:
    """With motion capture in the state source: a simulated stream only in simulation; a QTM server must
    answer, know the body and stream frames within ``wait`` s -- all before anything is powered."""
    if "mocap" not in cfg.controller.state_source.split("+"):
        return
    m = cfg.mocap
    if m.system == "simulated":
        if backend != "sim":
            raise PreflightError("mocap.system: simulated needs the simulated robot; on a real robot set mocap.system: "
                                 "qualisys and its host, port and body")
        return
    if cfg.controller.mode != "realtime":
        raise PreflightError("motion capture streams on the wall clock: use --mode realtime (controller.mode: realtime)")
    from legadapt.controller.qualisys import QualisysMocap

    probe = QualisysMocap(m)
    try:
        if not probe.wait_streaming(wait):
            raise PreflightError(probe.error or f"mocap: no frames from QTM at {m.host}:{m.port} within {wait:g} s: is QTM "
                                 f"running, streaming real-time data, and reachable (mocap.host, mocap.port)?")
    finally:
        probe.close()


def check_port(port: str) -> None:
    """The serial device exists, is a device, and this user may open it (pyserial URLs pass)."""
    if "://" in port:  # socket://, loop://, rfc2217://: checked when opened
        return
    if not os.path.exists(port):
        link = " (a dangling link)" if os.path.islink(port) else ""
        raise PreflightError(
            f"serial port {port} does not exist{link}: check that the robot's USB adapter is plugged in and powered, "
            f"that serial.port (or --port) names it -- ls /dev/serial/by-id/ lists the adapters -- and, for "
            f"/dev/legadapt, that the udev rule (deploy/99-legadapt-ftdi.rules) is installed")
    mode = os.stat(port).st_mode
    if not stat.S_ISCHR(mode):
        raise PreflightError(f"serial port {port} is not a serial device (a {_kind(mode)}): check serial.port (or --port)")
    if not os.access(port, os.R_OK | os.W_OK):
        raise PreflightError(f"serial port {port}: this user may not open it: add the user to the port's group "
                             f"(usually dialout: sudo usermod -aG dialout USER, then log in again)")


def _kind(mode: int) -> str:
    return "directory" if stat.S_ISDIR(mode) else "regular file" if stat.S_ISREG(mode) else "special file"


def check_log_path(log_path: Path) -> None:
    if log_path.exists():
        raise PreflightError(f"log file {log_path} already exists; give another --log path or move it away")


def preflight(cfg: C.LegadaptConfig, backend: str, log_path: Path, stop) -> Preflight | None:
    """Every check before power, cheapest first; None if a stop was requested meanwhile."""
    ctrl = cfg.controller
    check_backend(cfg, backend)
    check_log_path(log_path)
    check_mocap(cfg, backend)
    threads = apply_threads(ctrl.threads)
    model = resolve_model(ctrl.model)
    if stop.is_set():
        return None
    mpc, spec, window = build_controller(cfg, model)
    period = 1.0 / cfg.task.control_rate
    realtime = ctrl.mode == "realtime"
    p50, worst = check_timing(mpc, spec, window, give_up=3 * period if realtime else math.inf, stop=stop)
    if stop.is_set():
        return None
    if realtime and p50 > ctrl.preflight_margin * period:
        raise PreflightError(
            f"adapt + plan takes {1e3 * p50:.0f} ms (median) but the control period is {1e3 * period:.0f} ms "
            f"(at most {100 * ctrl.preflight_margin:.0f} % of it may go to planning): reduce controller.planner.samples "
            f"({ctrl.planner.samples}), horizon ({ctrl.planner.horizon}) or iterations ({ctrl.planner.iterations}), "
            f"or lower task.control_rate; controller.threads ({ctrl.threads or f'0 = automatic: {threads}'}) sets the "
            f"torch threads -- on a busy or shared computer 1 is often fastest; configs/small_computer.yaml is a profile "
            f"that fits a small onboard computer")
    mpc, spec, window = build_controller(cfg, model)  # fresh: the timing check must not warm-start the run
    return Preflight(model, mpc, spec, window, threads, p50, worst)
