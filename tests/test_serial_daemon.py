"""The daemon on the serial path: the emulated robot on a pty, a USB unplug mid-run, reconnection."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_run_config
from legadapt.mcap_read import read_log

REPO = Path(__file__).resolve().parents[1]


def _fake_robot(link: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "fake-robot", "--link", str(link), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not link.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no pty"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_unplug_mid_run_is_safe_then_the_daemon_reconnects(tiny_model, tmp_path):
    link = tmp_path / "robot"
    cfg = tmp_path / "c.yaml"
    write_run_config(cfg, tiny_model, mode="realtime", reconnect_backoff=0.5, reconnect_attempts=6)
    text = cfg.read_text() + f"serial: {{port: {link}}}\n"
    cfg.write_text(text)
    log = tmp_path / "run.mcap"
    first = _fake_robot(link, "--disconnect-after", "9")
    daemon = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--backend", "serial", "--config", str(cfg),
                               "--log", str(log), "--duration", "14"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    second = None
    try:
        first.wait(timeout=60)  # the USB unplug: the first robot's pty closes
        if link.is_symlink():
            link.unlink()
        second = _fake_robot(link)  # plugged back in
        out, err = daemon.communicate(timeout=120)
    finally:
        for p in (daemon, first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert daemon.returncode == 0, err[-3000:]
    contents = read_log(log)
    assert contents.recovery.complete
    kinds = [e["kind"] for e in contents.messages["events"]]
    assert "robot_fault" in kinds and "reconnected" in kinds and kinds[-1] == "safe_stop", kinds
    fault_t = next(e["t"] for e in contents.messages["events"] if e["kind"] == "robot_fault")
    times = [m["t"] for m in contents.messages["transition"]]
    assert any(t < fault_t for t in times) and any(t > fault_t + 1.0 for t in times), "logging went on after the reconnect"
    assert "robot_fault" in out and "reconnected" in out


def _path_errors(log: Path) -> tuple[float, float]:
    """Mean |cross-track| (m) and final progress (m) of a run, from its planner channel."""
    planner = read_log(log).messages["planner"]
    return (sum(abs(m["cross_track"]) for m in planner) / len(planner), planner[-1]["progress"])


@pytest.mark.slow
def test_serial_run_keeps_the_path_like_the_simulated_run(tmp_path):
    """The straight-line task over the bus, against the same run on the simulated backend.

    The path starts 0.2 m to the robot's left, so the mean cross-track error measures how
    the controller steers onto the path (on a plain straight start both stay within
    1–3 cm, where run-to-run noise is larger than 20 %). Both runs: the default model and
    controller, realtime, onboard state estimate; the emulated robot is the same MuJoCo
    hexapod as the simulated backend, behind 18 emulated servos and the IMU on a pty.
    """
    import yaml

    link = tmp_path / "robot"
    cfg = tmp_path / "straight.yaml"
    cfg.write_text(yaml.safe_dump({
        "controller": {"model": str(REPO / "models" / "default.pt"), "state_source": "estimated", "mode": "realtime"},
        "task": {"path": "straight", "duration": 12.0, "target_speed": 0.2, "path_offset": 0.2},
        "serial": {"port": str(link)}}))
    fake = _fake_robot(link)
    try:
        serial = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--backend", "serial", "--config", str(cfg),
                                 "--log", str(tmp_path / "serial.mcap")], cwd=REPO, capture_output=True, text=True, timeout=180)
    finally:
        fake.terminate()
        fake.wait(timeout=30)
    assert serial.returncode == 0, serial.stderr[-3000:]
    sim = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--config", str(cfg),
                          "--log", str(tmp_path / "sim.mcap")], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert sim.returncode == 0, sim.stderr[-3000:]
    ct_serial, progress_serial = _path_errors(tmp_path / "serial.mcap")
    ct_sim, progress_sim = _path_errors(tmp_path / "sim.mcap")
    print(f"mean cross-track: serial {ct_serial:.3f} m, simulated {ct_sim:.3f} m (ratio {ct_serial / ct_sim:.2f}); "
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
    cfg.write_text(cfg.read_text() + f"serial: {{port: {link}}}\n")
    log = tmp_path / "run.mcap"
    fake = _fake_robot(link, "--fault", fault)
    try:
        daemon = subprocess.run([sys.executable, "-m", "controller.cli", "run", "--backend", "serial", "--config", str(cfg),
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
    fault_event = next(e for e in events if e["kind"] == "robot_fault")
    assert re.search(cause, fault_event["message"]), fault_event["message"]
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
