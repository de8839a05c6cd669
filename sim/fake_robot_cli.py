"""``legadapt fake-robot``: serve the emulated robot (:mod:`sim.fake_robot`) on a pty until SIGINT/SIGTERM.

It serves whichever robot the config describes (``robot.description``), on the bus its servos speak:
Dynamixel Protocol 2.0 (XM430-W350: the default hexapod), Dynamixel Protocol 1.0 (AX-12A/AX-18A, e.g.
``phantomx``; MX-28/MX-64) or Feetech STS (STS3215, e.g. ``sts_hexapod``). ``--alert`` bits are the
family's hardware error bits (0x20 overload on every family).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from legadapt.hardware import registers as R
from legadapt import config as C
from legadapt.sim.fake_faults import parse_fault
from legadapt.sim.fake_robot import FakeRobot, FaultConfig
from legadapt.sim import fake_robot
from legadapt.sim.qtm_server import EmulatedQtm

# ---------------------------------------------------------------- console entry
def _parse_alert(text: str) -> tuple[int, int]:
    dxl_id, _, bits = text.partition(":")
    return int(dxl_id), int(bits, 0) if bits else R.HW_OVERLOAD


def _parse_mocap_fault(text: str) -> tuple[float, str, float]:
    try:
        t, kind, value = text.split(":")
        if kind not in ("pause", "restart"):
            raise ValueError
        return float(t), kind, float(value)
    except ValueError:
        raise ValueError(f"--mocap-fault {text!r}: expected T:pause:DUR or T:restart:DOWN (seconds)") from None


def _serve_mocap(fake: FakeRobot, args: argparse.Namespace, faults: list[tuple[float, str, float]]) -> EmulatedQtm:
    """The emulated QTM beside the robot, and a thread that plays its scheduled faults."""
    qtm = EmulatedQtm(lambda: fake.true_pose, port=args.mocap_port, latency=args.mocap_latency,
                      noise_pos=args.mocap_noise, noise_yaw=5 * args.mocap_noise, seed=args.seed).start()
    print(f"fake robot: mocap (emulated QTM, body 'hexapod') on 127.0.0.1:{qtm.port}", flush=True)

    def play() -> None:
        while fake._t_active is None and not fake._stop.is_set():
            time.sleep(0.01)
        for t, kind, value in sorted(faults):
            if fake._stop.wait(max(0.0, fake._t_active + t - time.monotonic())):
                return
            print(f"fake robot: t={fake._now():.3f} mocap {kind} {value:g} s", flush=True)
            qtm.pause(value) if kind == "pause" else qtm.restart(value)

    if faults:
        threading.Thread(target=play, name="mocap-faults", daemon=True).start()
    return qtm


def main(argv: list[str] | None = None) -> int:
    """``legadapt fake-robot``: serve an emulated robot on a pty until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(prog="legadapt fake-robot", description=fake_robot.__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="config YAML (default: built-in defaults, the XM430 hexapod); its "
                    "robot.description picks the robot, its servos' family the protocol (Dynamixel 2.0 or 1.0, Feetech)")
    ap.add_argument("--link", help="also make this symlink to the pty (e.g. /tmp/legadapt-fake)")
    ap.add_argument("--drop", type=float, default=0.0, help="probability a reply is dropped")
    ap.add_argument("--corrupt", type=float, default=0.0, help="probability a reply has a corrupt byte")
    ap.add_argument("--delay", type=float, default=0.0, help="reply delay, s")
    ap.add_argument("--alert", action="append", default=[], metavar="ID[:BITS]", help="servo with a hardware error (default bits 0x20 overload)")
    ap.add_argument("--silent", action="append", type=int, default=[], metavar="ID", help="device that never answers")
    ap.add_argument("--disconnect-after", type=float, help="close the pty after this many s (a USB unplug)")
    ap.add_argument("--fault", action="append", default=[], metavar="T:KIND[:ARGS]",
                    help="a fault T s after the client first enables torque: T:garbage:DUR, T:corrupt:N, T:drop:N, "
                         "T:silent:ID[:DUR], T:alert:ID[:BITS], T:disconnect (see sim/fake_faults.py)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    ap.add_argument("--mocap-port", type=int, help="also serve a Qualisys QTM (RT protocol, 127.0.0.1:PORT) streaming the "
                    "robot's true pose as 6DOF body 'hexapod' (sim/qtm_server.py)")
    ap.add_argument("--mocap-latency", type=float, default=0.01, help="mocap: capture-to-send delay, s")
    ap.add_argument("--mocap-noise", type=float, default=0.001, help="mocap: position noise, m RMS (heading: 5x, rad)")
    ap.add_argument("--mocap-fault", action="append", default=[], metavar="T:pause:DUR|T:restart:DOWN",
                    help="mocap: T s after the client first enables torque, lose the body for DUR s, or restart QTM "
                         "(nothing listening for DOWN s)")
    args = ap.parse_args(argv)
    try:
        schedule = tuple(parse_fault(f) for f in args.fault)
        mocap_faults = [_parse_mocap_fault(f) for f in args.mocap_fault]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = C.load_config(args.config) if args.config else C.parse_config({})
    except C.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    faults = FaultConfig(drop_prob=args.drop, corrupt_prob=args.corrupt, reply_delay=args.delay,
                         alerts=dict(_parse_alert(a) for a in args.alert), silent_ids=tuple(args.silent),
                         disconnect_after=args.disconnect_after, schedule=schedule, seed=args.seed)
    fake = FakeRobot(cfg, faults, report=lambda line: print(f"fake robot: {line}", flush=True))
    if args.link:
        if os.path.islink(args.link):
            os.unlink(args.link)
        os.symlink(fake.path, args.link)
    desc = cfg.robot_description
    ids = cfg.serial.servo_ids
    print(f"fake robot: {desc.name}, {desc.n_joints} {desc.servo.model} servos ({fake.family.name} bus, IDs {min(ids)}..{max(ids)}), "
          f"IMU ID {cfg.serial.imu_id}, on {fake.path}" + (f" (link {args.link})" if args.link else ""), flush=True)
    print(fake.path, flush=True)
    qtm = _serve_mocap(fake, args, mocap_faults) if args.mocap_port else None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: fake._stop.set())
    try:
        fake.serve()
    finally:
        fake.stop()
        if qtm is not None:
            qtm.stop()
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)
    print(f"fake robot stopped: {fake.stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
