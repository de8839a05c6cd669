"""The daemon on the serial path: the emulated robot on a pty, a USB unplug mid-run, reconnection, stop requests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_run_config
from daemon_helpers import NotifyListener, as_deployed, fake_robot, start_daemon, watched_gap
from legadapt.mcap_read import read_log

REPO = Path(__file__).resolve().parents[1]
WATCHDOG_USEC = 2_000_000  # µs: deploy/legadapt.service's WatchdogSec=2s


def _fake_robot(link: Path, *args: str, deployed: bool = False) -> subprocess.Popen:
    """The emulated robot, its output left in its pipes (read with ``communicate``)."""
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "fake-robot", "--link", str(link), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_deployed if deployed else None)
    deadline = time.monotonic() + 60
    while not link.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no pty"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_unplug_mid_run_is_safe_then_the_daemon_reconnects_and_the_estimate_carries_on(tiny_model, tmp_path):
    """A USB unplug 5 s after the daemon first powers the robot (counted from there, not from the emulator's start:
    the daemon's start-up -- torch import, pre-flight timing -- took 3-9 s and once left it 1 s of walking before
    the unplug), the robot plugged back ~2 s later: torque off, reconnection with back-off,
    and the walk carries on where it was -- pose and progress do not restart at 0, the robot keeps
    walking forward along the path. Under systemd's watchdog (WatchdogSec=2s) no ping gap exceeds 1 s,
    back-off waits and bus checks included."""
    link = tmp_path / "robot"
    cfg = tmp_path / "c.yaml"
    write_run_config(cfg, tiny_model, mode="realtime", reconnect_backoff=0.5, reconnect_attempts=6)
    text = cfg.read_text() + f"serial: {{port: {link}}}\n"
    cfg.write_text(text)
    log = tmp_path / "run.mcap"
    listener = NotifyListener(tmp_path / "notify.sock")
    first = _fake_robot(link, "--fault", "5:disconnect")
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "run", "--backend", "serial", "--config", str(cfg),
                               "--log", str(log), "--duration", "14"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    second = None
    try:
        first.wait(timeout=60)  # the USB unplug: the first robot's pty closes
        if link.is_symlink():
            link.unlink()
        time.sleep(1.0)  # unplugged for a while: the daemon's first attempts fail
        second = _fake_robot(link)  # plugged back in
        out, err = daemon.communicate(timeout=120)
        exited = time.monotonic()
    finally:
        for p in (daemon, first, second):
            if p is not None and p.poll() is None:
                p.kill()
        listener.close()
    assert daemon.returncode == 0, err[-3000:]
    contents = read_log(log)
    assert contents.recovery.complete
    events = contents.messages["events"]
    kinds = [e["kind"] for e in events]
    assert "robot_fault" in kinds and "reconnected" in kinds and kinds[-1] == "safe_stop", kinds
    assert "reconnect_failed" in kinds, "the robot was away for a while: some attempts failed, back-off grew"
    fault_t = next(e["t"] for e in events if e["kind"] == "robot_fault")
    times = [m["t"] for m in contents.messages["transition"]]
    assert any(t < fault_t for t in times) and any(t > fault_t + 1.0 for t in times), "logging went on after the reconnect"
    assert "robot_fault" in out and "reconnected" in out
    _assert_the_walk_carries_on(contents.messages["planner"], fault_t, out)
    # systemd's watchdog through the unplug, the back-off waits, the bus checks and the stop
    first, gap = watched_gap(listener, exited)
    print(f"watchdog: READY -> first ping {1e3 * first:.0f} ms, longest gap {1e3 * gap:.0f} ms from READY to STOPPING "
          f"(limit {WATCHDOG_USEC / 2e3:.0f} ms)")
    assert first <= WATCHDOG_USEC / 2e6 and gap <= WATCHDOG_USEC / 2e6


def _assert_the_walk_carries_on(planner: list[dict], fault_t: float, out: str) -> None:
    """After the reconnection the estimate carries on: no jump back to the origin, progress goes on growing."""
    before = [m for m in planner if m["t"] < fault_t]
    after = [m for m in planner if m["t"] > fault_t]
    jump = float(np.linalg.norm(np.subtract(after[0]["pose"][:2], before[-1]["pose"][:2])))
    print(f"pose before the fault {np.round(before[-1]['pose'], 3)}, after the reconnect {np.round(after[0]['pose'], 3)} "
          f"(jump {100 * jump:.1f} cm); progress {before[-1]['progress']:.2f} -> {after[0]['progress']:.2f} -> "
          f"{after[-1]['progress']:.2f} m")
    assert before[-1]["progress"] > 0.2 and jump < 0.05, "the pose resumes where it was"
    assert after[0]["progress"] >= before[-1]["progress"] - 0.05
    assert after[-1]["progress"] > before[-1]["progress"] + 0.15, "the robot keeps walking forward along the path"
    assert after[-1]["pose"][0] > after[0]["pose"][0] + 0.15
    summary_progress = float(re.search(r"path: progress ([\d.]+) m", out)[1])
    assert summary_progress >= after[-1]["progress"] - 0.05, "the summary's progress is the whole run's"


def _path_errors(log: Path) -> tuple[float, float]:
    """Mean |cross-track| (m) and final progress (m) of a run, from its planner channel."""
    planner = read_log(log).messages["planner"]
    return (sum(abs(m["cross_track"]) for m in planner) / len(planner), planner[-1]["progress"])


RUNS_PER_BACKEND = 3  # one realtime run's mean cross-track varies by ~±15 % (timing), the median of three much less


def _straight_run(cfg: Path, log: Path, link: Path | None) -> tuple[float, float]:
    """One realtime run of ``cfg`` on the serial backend (``link``: the emulated robot's pty) or the simulated one;
    mean |cross-track| (m) and final progress (m); the intact robot turns on the spot at the start: no slip alarm."""
    fake = _fake_robot(link, deployed=True) if link is not None else None
    backend = ["--backend", "serial"] if link is not None else []
    try:
        run = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", *backend, "--config", str(cfg),
                              "--log", str(log)], cwd=REPO, capture_output=True, text=True, timeout=180,
                             preexec_fn=as_deployed)
    finally:
        if fake is not None:
            fake.terminate()
            fake.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    events = read_log(log).messages["events"]
    assert "slip_suspected" not in [e["kind"] for e in events], (log.name, events)
    return _path_errors(log)


@pytest.mark.slow
def test_serial_run_keeps_the_path_like_the_simulated_run(tmp_path):
    """The straight-line task over the bus, against the same run on the simulated backend.

    The path starts 0.2 m to the robot's left, so the mean cross-track error measures how
    the controller steers onto the path (on a plain straight start both stay within
    1–3 cm, where run-to-run noise is larger than 20 %). Both runs: the default model and
    controller, realtime, onboard state estimate; the emulated robot is the same MuJoCo
    hexapod as the simulated backend, behind 18 emulated servos and the IMU on a pty.
    A single realtime run's figure depends on the timing it met (ratios 0.96-1.29 between
    single runs), so each backend runs three times, interleaved, and the medians are compared.
    """
    link = tmp_path / "robot"
    cfg = tmp_path / "straight.yaml"
    cfg.write_text(yaml.safe_dump({
        # a busy machine (CI, another job beside it) must not decide the comparison: 150 samples plan within the
        # period even there (~40-60 ms with 1 thread; the default 500 took 200 ms under load and missed plans in
        # one run more than in the other), and preflight_margin lets the run start whatever the timing check saw
        # and stale_plan 1 s: beside a CPU hog one simulated run stopped on a 0.51 s old plan (limit 0.5 s); this test
        # compares path following, the stale-plan stop has its own tests
        "controller": {"model": str(REPO / "models" / "default.pt"), "state_source": "estimated", "mode": "realtime",
                       "planner": {"samples": 150}, "preflight_margin": 5.0, "safety": {"stale_plan": 1.0}},
        "task": {"path": "straight", "duration": 12.0, "target_speed": 0.2, "path_offset": 0.2},
        "serial": {"port": str(link)}}))
    serial, sim = [], []
    for i in range(RUNS_PER_BACKEND):
        serial.append(_straight_run(cfg, tmp_path / f"serial{i}.mcap", link))
        sim.append(_straight_run(cfg, tmp_path / f"sim{i}.mcap", None))
    ct_serial, progress_serial = np.median(serial, axis=0)
    ct_sim, progress_sim = np.median(sim, axis=0)
    print("mean cross-track (m), progress (m) per run: serial " + ", ".join(f"{c:.3f} {p:.2f}" for c, p in serial)
          + "; simulated " + ", ".join(f"{c:.3f} {p:.2f}" for c, p in sim))
    print(f"medians: cross-track serial {ct_serial:.3f} m, simulated {ct_sim:.3f} m (ratio {ct_serial / ct_sim:.2f}); "
          f"progress {progress_serial:.2f} m vs {progress_sim:.2f} m")
    assert abs(ct_serial - ct_sim) <= 0.2 * ct_sim, (ct_serial, ct_sim)
    assert progress_serial > 1.5 and abs(progress_serial - progress_sim) <= 0.2 * progress_sim, (progress_serial, progress_sim)


def _t_of(lines: list[str], marker: str, after: float = -1.0) -> float | None:
    """Time t=... of the first fake-robot report line containing ``marker`` after ``after`` s."""
    for line in lines:
        if marker in line and "t=" in line:
            t = float(line.split("t=")[1].split()[0])
            if t > after:
                return t
    return None


@pytest.mark.slow
@pytest.mark.parametrize("fault, cause", [
    ("3:garbage:1.5", "CRC|timeout|garbage|malformed"),  # a noisy line: every reply garbled for 1.5 s
    ("3:corrupt:40", "CRC"),  # 40 replies in a row fail their CRC: more than the retries absorb
    ("3:silent:5:1.5", r"servo\(s\) 5 .*ID 5 is LM_femur"),  # servo 5 stops answering for 1.5 s
    ("3:alert:7", "alert"),  # servo 7 overloads: alert bit, its torque off; cleared by REBOOT on reconnect
], ids=["garbage", "crc", "silent-servo", "alert-bit"])
def test_bus_faults_make_the_robot_safe_then_the_daemon_reconnects(tiny_model, tmp_path, fault, cause):
    import re

    link = tmp_path / "robot"
    cfg = tmp_path / "c.yaml"
    write_run_config(cfg, tiny_model, mode="realtime", reconnect_backoff=0.3, reconnect_attempts=8)
    # a patient bus (50 ms, 4 retries): beside other jobs the emulator answers late, and only the injected fault
    # should fault the robot; each fault outlasts the 5 attempts
    cfg.write_text(cfg.read_text() + f"serial: {{port: {link}, timeout: 0.05, retries: 4}}\n")
    log = tmp_path / "run.mcap"
    fake = _fake_robot(link, "--fault", fault)
    try:
        daemon = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--backend", "serial", "--config", str(cfg),
                                 "--log", str(log), "--duration", "9"], cwd=REPO, capture_output=True, text=True, timeout=180)
    finally:
        fake.terminate()
        fake_out = fake.communicate(timeout=30)[0].splitlines()
    assert daemon.returncode == 0, daemon.stderr[-3000:]
    contents = read_log(log)
    assert contents.recovery.complete
    events = contents.messages["events"]
    kinds = [e["kind"] for e in events]
    assert "robot_fault" in kinds and "reconnected" in kinds and kinds[-1] == "safe_stop", kinds
    faults = [e for e in events if e["kind"] == "robot_fault"]
    fault_event = next((e for e in faults if re.search(cause, e["message"])), None)  # a stray timeout may come first
    assert fault_event is not None, [e["message"] for e in faults]
    assert fault_event["data"]["torque_off_sent"]
    # the fake robot's own clock: the fault, then every servo's torque off soon after
    injected = _t_of(fake_out, "fault:")
    assert injected is not None, fake_out
    torque_off = _t_of(fake_out, "torque off", after=injected)
    assert torque_off is not None and torque_off - injected < 0.5, fake_out
    print(f"{fault}: torque off {1e3 * (torque_off - injected):.0f} ms after the fault; daemon: {fault_event['message']}")
    if "alert" in fault:
        assert any(e["kind"] == "servo_rebooted" and "overload" in e["message"] for e in events), kinds
    times = [m["t"] for m in contents.messages["transition"]]
    assert any(t > fault_event["t"] + 1.0 for t in times), "logging went on after the reconnect"
    reconnect_t = next(e["t"] for e in events if e["kind"] == "reconnected")
    assert reconnect_t > fault_event["t"], "event times advance while the robot is away"


@pytest.mark.slow
@pytest.mark.parametrize("phase, marker, wait", [
    ("pre-flight", "pre-flight:", 0.0),  # loading and timing the controller: nothing may be powered after this
    ("stand-up", "start: robot active", 0.4),  # half-way up the 1 s ramp
    ("walking", "running: standing", 1.0),
])
def test_a_stop_request_at_any_stage_powers_nothing_more_and_exits_within_a_second(tiny_model, tmp_path, phase, marker,
                                                                                    wait):
    """SIGTERM (systemctl stop) at each stage, on the emulated robot: in the pre-flight the robot is
    never powered; once powered, torque goes off within one fast cycle -- as the fake robot reports
    it, no crouch first -- and the daemon exits within 1 s, log finished, no traceback."""
    link = tmp_path / "robot"
    cfg = write_run_config(tmp_path / "c.yaml", tiny_model, mode="realtime")
    cfg.write_text(cfg.read_text() + f"serial: {{port: {link}}}\n")
    log = tmp_path / "run.mcap"
    fake, fake_out = fake_robot(link)
    daemon, out, err = start_daemon("--backend", "serial", "--config", cfg, "--log", log, "--duration", "600")
    try:
        out.wait_for(marker, daemon)
        time.sleep(wait)
        assert daemon.poll() is None, err.text()
        t_sig = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        elapsed = time.monotonic() - t_sig
        time.sleep(0.5)  # the fake robot's last report lines
    finally:
        for p in (daemon, fake):
            if p.poll() is None:
                p.terminate() if p is fake else p.kill()
        fake.wait(timeout=30)
    out.join(), err.join(), fake_out.join()
    assert daemon.returncode == 0 and "Traceback" not in err.text(), err.text()[-3000:]
    assert elapsed < 1.0, f"exit {elapsed:.2f} s after SIGTERM"
    torque_on = fake_out.first("torque on")
    if phase == "pre-flight":
        print(f"{phase}: exit {1e3 * elapsed:.0f} ms after SIGTERM; torque never on: {torque_on is None}")
        assert torque_on is None, fake_out.text()
        assert "nothing was powered" in err.text() + out.text()
        return
    assert torque_on is not None and torque_on < t_sig, fake_out.text()
    torque_off = fake_out.first("torque off", after=t_sig)
    assert torque_off is not None, fake_out.text()
    stop = read_log(log).messages["events"][-1]
    in_daemon = stop["data"]["torque_off_after_request"]
    print(f"{phase}: torque off {1e3 * in_daemon:.1f} ms after SIGTERM in the daemon, the fake robot's report read "
          f"{1e3 * (torque_off - t_sig):.0f} ms after it; exit {1e3 * elapsed:.0f} ms after it")
    assert stop["kind"] == "safe_stop" and stop["message"] == "stop requested" and stop["data"]["torque_off"] is True
    # "within one fast cycle", counted rather than timed: no fast tick (bus write + read) begins after the request,
    # except the one whose stop check it just missed. On an idle machine that is 20-45 ms (one 20 ms cycle, the bus
    # transaction in flight, the torque-off write); the emulated robot shares the 2 cores, so a busy machine
    # stretches the time but not the count (CI once saw 54 ms).
    assert stop["data"]["ticks_begun_after_request"] <= 1, stop["data"]
    assert in_daemon < 0.25 and torque_off - t_sig < 0.5, "torque off promptly, as the daemon and as the robot saw it"
    assert read_log(log).recovery.complete
