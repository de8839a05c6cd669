"""``legadapt fake-robot``: serve the emulated robot (:mod:`sim.fake_robot`) on a pty until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from legadapt.hardware import registers as R
from legadapt import config as C
from legadapt.sim.fake_faults import parse_fault
from legadapt.sim.fake_robot import FakeRobot, FaultConfig
from legadapt.sim import fake_robot

# ---------------------------------------------------------------- console entry
def _parse_alert(text: str) -> tuple[int, int]:
    dxl_id, _, bits = text.partition(":")
    return int(dxl_id), int(bits, 0) if bits else R.HW_OVERLOAD


def main(argv: list[str] | None = None) -> int:
    """``legadapt fake-robot``: serve an emulated robot on a pty until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(prog="legadapt fake-robot", description=fake_robot.__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="robot config YAML (default: built-in defaults)")
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
    args = ap.parse_args(argv)
    try:
        schedule = tuple(parse_fault(f) for f in args.fault)
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
    print(f"fake robot: {desc.name}, {desc.n_joints} {desc.servo.model} servos (IDs {cfg.serial.servo_ids[0]}..{cfg.serial.servo_ids[-1]}), "
          f"IMU ID {cfg.serial.imu_id}, on {fake.path}" + (f" (link {args.link})" if args.link else ""), flush=True)
    print(fake.path, flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: fake._stop.set())
    try:
        fake.serve()
    finally:
        fake.stop()
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)
    print(f"fake robot stopped: {fake.stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
