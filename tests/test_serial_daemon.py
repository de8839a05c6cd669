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
