"""``legadapt calibrate servos|imu|flow|latency|sysid``: dispatch to each procedure's ``main``.

Wire it like ``fake-robot`` (each procedure owns its arguments)::

    if argv[:1] == ["calibrate"]:
        from legadapt.calibration.cli import main as calibrate_main
        return calibrate_main(argv[1:])

Also runnable as ``python -m calibration <procedure> ...``.
"""

from __future__ import annotations

import importlib
import sys

PROCEDURES: dict[str, str] = {
    "servos": "servo zero offsets and direction signs (jig + nudges, or the emulator)",
    "imu": "IMU gyro and accelerometer bias from a still period",
    "flow": "optical-flow sensor lens offset and scale from a turn on the spot and a straight walk",
    "latency": "bus round trip of one fast cycle and the servo rate it allows",
    "sysid": "fit simulator parameters (servo gain and damping, floor friction, payload) to a recorded log",
}


def usage() -> str:
    lines = ["usage: legadapt calibrate {" + ",".join(PROCEDURES) + "} [options]", "", "procedures:"]
    lines += [f"  {name:8s} {text}" for name, text in PROCEDURES.items()]
    lines += ["", "legadapt calibrate <procedure> --help lists each procedure's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``argv[0]``'s procedure with the remaining arguments; exit status 2 on a bad procedure name."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in PROCEDURES:
        print(f"error: unknown calibration {name!r}\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(f"legadapt.calibration.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main())
