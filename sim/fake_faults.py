"""Faults the emulated robot injects at chosen times of a run (``legadapt fake-robot --fault``).

A scheduled fault is ``T:KIND[:ARGS]``, where ``T`` (s) counts from the moment the client
first enables torque (the start of its run, however long it took to connect):

==========================  =============================================================
``T:garbage:DUR``           for ``DUR`` s every reply is replaced by random bytes, and
                            random bytes arrive between replies (a wrong baud rate, a
                            noisy line)
``T:corrupt:N``             the next ``N`` replies each have one byte flipped: CRC fails
``T:drop:N``                the next ``N`` replies are not sent
``T:silent:ID[:DUR]``       device ``ID`` stops answering (for ``DUR`` s; for good if
                            omitted): a dead servo, a cut cable
``T:alert:ID[:BITS]``       servo ``ID`` raises a hardware error (bits, default 0x20
                            overload): its torque off; Protocol 2.0: alert bit until a
                            REBOOT; 1.0 / Feetech: status error byte until cleared
                            (sim.servo_emulator)
``T:disconnect``            the pty closes: a USB unplug
==========================  =============================================================

The fake robot prints one line per fault and per torque change, stamped with the same
clock, so a test can measure how long the client took to make the robot safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from legadapt.hardware import registers as R

KINDS = ("garbage", "corrupt", "drop", "silent", "alert", "disconnect")


@dataclass(frozen=True)
class ScheduledFault:
    """One fault: ``kind`` at ``at`` s after the first torque enable."""

    at: float  # s after the first torque enable
    kind: str
    target: int | None = None  # device ID (silent, alert)
    count: int = 0  # replies (corrupt, drop) or Hardware Error Status bits (alert)
    duration: float | None = None  # s (garbage, silent); None = for good

    def describe(self) -> str:
        lasting = f" for {self.duration:g} s" if self.duration is not None else ""
        what = {"garbage": "garbage on the line", "corrupt": f"next {self.count} replies corrupted",
                "drop": f"next {self.count} replies dropped", "silent": f"ID {self.target} silent",
                "alert": f"hardware error 0x{self.count:02X} on servo ID {self.target}",
                "disconnect": "port closed (USB unplug)"}
        return what[self.kind] + lasting


def parse_fault(text: str) -> ScheduledFault:
    """``T:KIND[:ARGS]`` -> :class:`ScheduledFault`; ValueError naming what is wrong."""
    parts = text.split(":")
    usage = f"fault {text!r}: expected T:KIND[:ARGS] with KIND one of {', '.join(KINDS)} (see legadapt fake-robot --help)"
    if len(parts) < 2 or parts[1] not in KINDS:
        raise ValueError(usage)
    try:
        at = float(parts[0])
        kind, args = parts[1], parts[2:]
        if at < 0:
            raise ValueError
        if kind == "garbage" and len(args) == 1:
            return ScheduledFault(at, kind, duration=float(args[0]))
        if kind in ("corrupt", "drop") and len(args) == 1:
            return ScheduledFault(at, kind, count=int(args[0]))
        if kind == "silent" and len(args) in (1, 2):
            return ScheduledFault(at, kind, target=int(args[0]), duration=float(args[1]) if len(args) == 2 else None)
        if kind == "alert" and len(args) in (1, 2):
            return ScheduledFault(at, kind, target=int(args[0]), count=int(args[1], 0) if len(args) == 2 else R.HW_OVERLOAD)
        if kind == "disconnect" and not args:
            return ScheduledFault(at, kind)
    except ValueError:
        pass
    raise ValueError(usage)
