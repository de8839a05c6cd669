"""The daemon over each servo family's bus: the PhantomX (AX-18A, Dynamixel Protocol 1.0, one READ per servo)
and the STS hexapod (STS3215, Feetech SCS, Sync Read), each on its emulated robot, with their shipped models.

One run per robot carries every fault kind the Protocol 2.0 tests give the daemon, one after the other: a
garbled line, a burst of corrupt replies, a silent servo, a servo's hardware error (overload), and a USB unplug
with the robot plugged back in. After each the robot is made safe (torque off, as the emulated robot reports),
the daemon reconnects, stands the robot up again and walks on; the log is complete.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from daemon_helpers import as_deployed
from legadapt.mcap_read import read_log

REPO = Path(__file__).resolve().parents[1]
#: (fake-robot --fault, what the daemon's robot_fault message says), 6 s apart on the emulator's clock from the
#: first torque on; every fault is over (or the robot reconnected) before the next
FAULTS = [
    ("3:garbage:1.5", "checksum|timeout|garbage|malformed"),
    ("9:corrupt:200", "checksum"),  # more than 5 attempts of a Sync Read of 18 servos + the IMU take
    ("15:silent:5:1.5", r"servo\(s\) 5 .*\[ID 5 is \w+\]"),  # STS: the Sync Read's replies stop at servo 5
    ("21:alert:7", "overload"),
    ("27:disconnect", "port lost|read failed|write failed"),
]


def _fake(cfg: Path, link: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "fake-robot", "--config", str(cfg),
                             "--link", str(link), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not link.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no pty"
        time.sleep(0.05)
    return proc


def _config(tmp_path: Path, robot: str, link: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "robot": {"description": robot},
        # 150 samples keep the plan inside its 100 ms period beside the emulator on 2 cores; a patient safety
        # margin on plan age (this test is about the bus, the stale-plan stop has its own tests)
        "controller": {"model": str(REPO / "models" / f"{robot}.pt"), "mode": "realtime", "state_source": "estimated",
                       "planner": {"samples": 150}, "preflight_margin": 5.0, "reconnect_backoff": 0.3,
                       "reconnect_attempts": 12, "status_interval": 1.0, "safety": {"stale_plan": 1.0}},
        "task": {"path": "straight", "duration": 34.0},
        # a patient bus (50 ms, 4 retries): on a busy machine the emulator answers late, and only the injected faults
        # should fault the robot; each of them outlasts 5 attempts
        "serial": {"port": str(link), "timeout": 0.05, "retries": 4}}))
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["phantomx", "sts_hexapod"])
def test_every_bus_fault_is_made_safe_and_the_walk_goes_on(tmp_path, robot):
    link = tmp_path / "robot"
    cfg = _config(tmp_path, robot, link)
    log = tmp_path / "run.mcap"
    first = _fake(cfg, link, *[a for fault, _ in FAULTS for a in ("--fault", fault)])
    daemon = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "run", "--backend", "serial",
                               "--config", str(cfg), "--log", str(log)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=as_deployed)
    second = None
    try:
        first_out = first.communicate(timeout=240)[0]  # served until the unplug
        if link.is_symlink():
            link.unlink()
        time.sleep(0.5)
        second = _fake(cfg, link)  # plugged back in
        out, err = daemon.communicate(timeout=240)
    finally:
        for p in (daemon, first, second):
            if p is not None and p.poll() is None:
                p.kill()
        second_out = second.communicate(timeout=30)[0] if second is not None else ""
    assert daemon.returncode == 0 and "Traceback" not in err, err[-3000:]
    contents = read_log(log)
    assert contents.recovery.complete, contents.recovery.reason
    events = contents.messages["events"]
    faults = [e for e in events if e["kind"] == "robot_fault"]
    reconnects = [e for e in events if e["kind"] == "reconnected"]
    print(f"{robot}: " + "; ".join(f"t={e['t']:.1f} {e['message']}" for e in faults))
    # each injected fault, in order, made a robot fault naming its cause (a machine starved by other jobs may add
    # a stray timeout between them: allowed, and shown above)
    matched = iter(faults)
    for fault, cause in FAULTS:
        event = next((e for e in matched if re.search(cause, e["message"])), None)
        assert event is not None, (fault, [e["message"] for e in faults])
        assert event["data"]["torque_off_sent"] or "disconnect" in fault, (fault, event)
    assert len(faults) <= len(FAULTS) + 3 and len(reconnects) >= len(FAULTS), [(e["kind"], e["message"]) for e in events]
    assert events[-1]["kind"] == "safe_stop" and events[-1]["message"] == "task complete", events[-1]
    # the emulated robot's own account: torque went off after every fault it injected
    torque = [(float(m[1]), m[2]) for m in re.finditer(r"t=([\d.]+) torque (on|off)", first_out)]
    injected = [float(m[1]) for m in re.finditer(r"t=([\d.]+) fault: ", first_out)]
    for t_fault in injected[:-1]:  # the unplug: no bus left to report on
        off = next((t for t, what in torque if what == "off" and t >= t_fault), None)
        assert off is not None and off - t_fault < 1.0, (t_fault, first_out)
    assert "torque on" in second_out and "torque off" in second_out, second_out
    # the walk went on between the faults and after the last one
    planner = contents.messages["planner"]
    last_fault = faults[-1]["t"]
    after = [m["progress"] for m in planner if m["t"] > last_fault]
    print(f"progress {planner[-1]['progress']:.2f} m in all; {after[-1] - after[0]:.2f} m after the unplug")
    assert planner[-1]["progress"] > 1.0 and after[-1] - after[0] > 0.2, (planner[-1]["progress"], after[:1], after[-1:])
