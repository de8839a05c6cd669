"""The servo models legadapt drives, and the bus families they speak. Pure data, no I/O.

A :class:`ServoType` is what the bus side needs to know about one servo model: its family (the
protocol and what the protocol can do), the model number it answers with, its control table
(:class:`hardware.registers.Register` by name) and its units. The robot description's
``servo.model`` (and ``servos[].model`` per joint) names one of :data:`SERVO_TYPES`.

Every control table uses the same names for what legadapt reads and writes, whatever the
manufacturer calls them: ``model_number``, ``firmware_version``, ``id``, ``baud_rate``,
``return_delay_time``, ``min_position_limit`` / ``max_position_limit`` (CW / CCW Angle Limit on
AX and MX), ``torque_enable``, ``goal_position``, ``present_position``, ``present_velocity``,
``present_effort`` (Present Current on X series, Present Load elsewhere), and the register
:attr:`ServoType.stiffness` names (ramped in at activate: the position P gain where there is one,
the torque limit on AX, which has none).

Addresses: ROBOTIS e-manual (XM430-W350, AX-12A, AX-18A, MX-28 and MX-64 in Protocol 1.0);
Feetech STS3215 memory table (as lerobot and Feetech's SDK use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from legadapt.hardware import protocol1 as P1
from legadapt.hardware.registers import XM430, XM430_MODEL_NUMBER, XM430_TABLE_SIZE, XM430_UNITS, Register, ServoUnits


@dataclass(frozen=True)
class BusFamily:
    """A servo family's protocol and what it can do on the bus."""

    name: str
    protocol: int  # 2: Dynamixel Protocol 2.0 (CRC-16); 1: the one-byte-checksum frame (Dynamixel 1.0, Feetech)
    maker: str
    sync_read: bool  # one request, every servo answers in turn (Protocol 2.0, Feetech STS)
    fast_sync_read: bool  # one request, one reply packet for all (Protocol 2.0)
    bulk_read: bool  # Dynamixel MX in Protocol 1.0
    reboot: bool  # REBOOT clears a hardware error; without it, re-writing Torque Enable re-arms the servo
    hardware_error_register: bool  # a Hardware Error Status register (else the status byte carries the error)
    byteorder: str = "little"

    def group_read_kind(self, fast: bool = True) -> str:
        """How a read of every servo goes on this bus: 'fast_sync_read', 'sync_read', 'bulk_read' or 'sequential'."""
        if self.fast_sync_read and fast:
            return "fast_sync_read"
        return "sync_read" if self.sync_read else "bulk_read" if self.bulk_read else "sequential"


def _p1_family(name: str, maker: str, byteorder: str = "little") -> BusFamily:
    inst = P1.FAMILY_INSTRUCTIONS[name]
    return BusFamily(name, 1, maker, sync_read=P1.Instruction.SYNC_READ in inst, fast_sync_read=False,
                     bulk_read=P1.Instruction.BULK_READ in inst, reboot=P1.Instruction.REBOOT in inst,
                     hardware_error_register=False, byteorder=byteorder)


FAMILIES: dict[str, BusFamily] = {
    "dynamixel_p2": BusFamily("dynamixel_p2", 2, "ROBOTIS", sync_read=True, fast_sync_read=True, bulk_read=True,
                              reboot=True, hardware_error_register=True),
    "dynamixel_ax": _p1_family("dynamixel_ax", "ROBOTIS"),
    "dynamixel_mx": _p1_family("dynamixel_mx", "ROBOTIS"),
    "feetech_sts": _p1_family("feetech_sts", "Feetech"),
    "feetech_scs": _p1_family("feetech_scs", "Feetech", byteorder="big"),
}


@dataclass(frozen=True)
class ServoType:
    """One servo model on the bus: family, model number, control table, units, stall torque."""

    name: str
    family: BusFamily
    model_number: int
    registers: dict[str, Register]
    table_size: int  # bytes of the control table (the emulator's memory)
    units: ServoUnits
    stiffness: str  # register ramped from soft to nominal when torque comes on
    setup: dict[str, int] = field(default_factory=dict)  # EEPROM values configure ensures (operating mode...)
    eeprom_end: int = 0  # addresses below are EEPROM: writable only with torque off

    def reg(self, name: str) -> Register:
        """The register called ``name`` in this model's control table."""
        return self.registers[name]

    def block(self, *names: str) -> tuple[int, int]:
        """(address, length) of the smallest read covering registers ``names``."""
        regs = [self.registers[n] for n in names]
        start = min(r.address for r in regs)
        return start, max(r.address + r.size for r in regs) - start

    def state_block(self) -> tuple[int, int]:
        """(address, length) of the fast loop's read: present position, velocity and effort."""
        return self.block("present_position", "present_velocity", "present_effort")


def _rpm(rpm_per_unit: float) -> float:
    return rpm_per_unit * 2.0 * math.pi / 60.0


# ---------------------------------------------------------------- ROBOTIS X series, Protocol 2.0
_XM430_REGS = {**XM430, "present_effort": XM430["present_current"]}
XM430_W350 = ServoType("XM430-W350", FAMILIES["dynamixel_p2"], XM430_MODEL_NUMBER, _XM430_REGS, XM430_TABLE_SIZE,
                       XM430_UNITS, stiffness="position_p_gain", setup={"operating_mode": 3}, eeprom_end=64)


# ---------------------------------------------------------------- ROBOTIS AX / MX, Protocol 1.0
def _p1_table(position_max: int, gains: bool) -> dict[str, Register]:
    """The AX/MX control table (Protocol 1.0): EEPROM below 24, RAM from 24; speed and load sign-magnitude (bit 10)."""
    table = {
        "model_number": Register(0, 2), "firmware_version": Register(2, 1),
        "id": Register(3, 1, True, True, default=1, lo=0, hi=253),
        "baud_rate": Register(4, 1, True, True, default=1, lo=0, hi=254),
        "return_delay_time": Register(5, 1, True, True, default=250, lo=0, hi=254),  # 2 µs units
        "min_position_limit": Register(6, 2, True, True, default=0, lo=0, hi=position_max),  # CW Angle Limit
        "max_position_limit": Register(8, 2, True, True, default=position_max, lo=0, hi=position_max),  # CCW
        "temperature_limit": Register(11, 1, True, True, default=70, lo=0, hi=150),  # °C
        "min_voltage_limit": Register(12, 1, True, True, default=60, lo=50, hi=250),  # 0.1 V
        "max_voltage_limit": Register(13, 1, True, True, default=140, lo=50, hi=250),
        "max_torque": Register(14, 2, True, True, default=1023, lo=0, hi=1023),  # 0.1 % of stall
        "status_return_level": Register(16, 1, True, True, default=2, lo=0, hi=2),
        "alarm_led": Register(17, 1, True, True, default=36, lo=0, hi=127),
        "shutdown": Register(18, 1, True, True, default=36, lo=0, hi=127),  # alarm shutdown bits
        "torque_enable": Register(24, 1, True, lo=0, hi=1),
        "led": Register(25, 1, True, lo=0, hi=1),
        "goal_position": Register(30, 2, True, lo=0, hi=position_max),
        "moving_speed": Register(32, 2, True, lo=0, hi=1023),  # 0 = the fastest, no control
        "torque_limit": Register(34, 2, True, default=1023, lo=0, hi=1023),
        "present_position": Register(36, 2),
        "present_velocity": Register(38, 2, sign_bit=10),  # Present Speed
        "present_effort": Register(40, 2, sign_bit=10),  # Present Load, 0.1 % of stall torque
        "present_voltage": Register(42, 1, default=120), "present_temperature": Register(43, 1, default=36),
        "registered": Register(44, 1), "moving": Register(46, 1),
        "lock": Register(47, 1, True, lo=0, hi=1), "punch": Register(48, 2, True, default=32, lo=0, hi=1023),
    }
    if gains:  # MX: a PID position loop where AX has compliance margins and slopes
        table |= {"d_gain": Register(26, 1, True, lo=0, hi=254), "i_gain": Register(27, 1, True, lo=0, hi=254),
                  "p_gain": Register(28, 1, True, default=32, lo=0, hi=254)}
    else:
        table |= {"cw_compliance_margin": Register(26, 1, True, default=1, lo=0, hi=255),
                  "ccw_compliance_margin": Register(27, 1, True, default=1, lo=0, hi=255),
                  "cw_compliance_slope": Register(28, 1, True, default=32, lo=1, hi=254),
                  "ccw_compliance_slope": Register(29, 1, True, default=32, lo=1, hi=254)}
    return table


def _ax(name: str, model_number: int, stall_torque: float) -> ServoType:
    # 0..1023 over 300°, centre 512; 0.111 rpm per speed unit; load in 0.1 % of the stall torque (12 V)
    units = ServoUnits(512, math.radians(300.0 / 1023.0), 1023, _rpm(0.111), stall_torque / 1000.0, 1023)
    return ServoType(name, FAMILIES["dynamixel_ax"], model_number, _p1_table(1023, gains=False), 50, units,
                     stiffness="torque_limit", eeprom_end=24)


def _mx(name: str, model_number: int, stall_torque: float) -> ServoType:
    # 0..4095 per turn, centre 2048; 0.114 rpm per speed unit; load in 0.1 % of the stall torque (12 V)
    units = ServoUnits(2048, 2.0 * math.pi / 4096.0, 4095, _rpm(0.114), stall_torque / 1000.0, 1023)
    return ServoType(name, FAMILIES["dynamixel_mx"], model_number, _p1_table(4095, gains=True), 74, units,
                     stiffness="p_gain", eeprom_end=24)


AX_12A = _ax("AX-12A", 12, 1.5)
AX_18A = _ax("AX-18A", 18, 1.8)
MX_28 = _mx("MX-28", 29, 2.5)
MX_64 = _mx("MX-64", 310, 6.0)


# ---------------------------------------------------------------- Feetech STS (SCS protocol, little-endian)
_STS_TABLE: dict[str, Register] = {
    "firmware_version": Register(0, 1, default=3), "firmware_minor": Register(1, 1, default=10),
    "model_number": Register(3, 2),
    "id": Register(5, 1, True, True, default=1, lo=0, hi=253),
    "baud_rate": Register(6, 1, True, True, default=0, lo=0, hi=7),  # 0: 1 Mbps
    "return_delay_time": Register(7, 1, True, True, default=0, lo=0, hi=254),  # 2 µs units
    "status_return_level": Register(8, 1, True, True, default=1, lo=0, hi=1),  # 0: PING only; 1: every instruction
    "min_position_limit": Register(9, 2, True, True, default=0, lo=0, hi=4095),
    "max_position_limit": Register(11, 2, True, True, default=4095, lo=0, hi=4095),
    "temperature_limit": Register(13, 1, True, True, default=70, lo=0, hi=100),
    "max_voltage_limit": Register(14, 1, True, True, default=80, lo=0, hi=254),  # 0.1 V
    "min_voltage_limit": Register(15, 1, True, True, default=40, lo=0, hi=254),
    "max_torque": Register(16, 2, True, True, default=1000, lo=0, hi=1000),  # 0.1 % of stall
    "unloading_condition": Register(19, 1, True, True, default=44, lo=0, hi=255),  # protection bits that cut torque
    "p_coefficient": Register(21, 1, True, True, default=32, lo=0, hi=254),
    "d_coefficient": Register(22, 1, True, True, default=32, lo=0, hi=254),
    "i_coefficient": Register(23, 1, True, True, default=0, lo=0, hi=254),
    "homing_offset": Register(31, 2, True, True, lo=-2047, hi=2047, sign_bit=11),
    "operating_mode": Register(33, 1, True, True, default=0, lo=0, hi=3),  # 0: position servo
    "torque_enable": Register(40, 1, True, lo=0, hi=2),  # 2: release, hold the present position as zero
    "acceleration": Register(41, 1, True, lo=0, hi=254),
    "goal_position": Register(42, 2, True, lo=0, hi=4095),
    "goal_time": Register(44, 2, True, lo=0, hi=65535),
    "goal_velocity": Register(46, 2, True, lo=0, hi=32767),
    "torque_limit": Register(48, 2, True, default=1000, lo=0, hi=1000),
    "lock": Register(55, 1, True, default=1, lo=0, hi=1),  # 0: EEPROM writes are kept over a power cycle
    "present_position": Register(56, 2),
    "present_velocity": Register(58, 2, sign_bit=15),  # steps/s
    "present_effort": Register(60, 2, sign_bit=10),  # Present Load, 0.1 % of stall torque
    "present_voltage": Register(62, 1, default=74), "present_temperature": Register(63, 1, default=30),
    "status": Register(65, 1), "moving": Register(66, 1),
    "present_current": Register(69, 2),
}
# 4096 steps per turn, centre 2048; velocity in steps/s; load in 0.1 % of 1.9 N·m (19.5 kg·cm at 7.4 V)
STS3215 = ServoType("STS3215", FAMILIES["feetech_sts"], 777, _STS_TABLE, 86,
                    ServoUnits(2048, 2.0 * math.pi / 4096.0, 4095, 2.0 * math.pi / 4096.0, 1.9 / 1000.0, 1000),
                    stiffness="p_coefficient", setup={"operating_mode": 0}, eeprom_end=40)


SERVO_TYPES: dict[str, ServoType] = {t.name: t for t in (XM430_W350, AX_12A, AX_18A, MX_28, MX_64, STS3215)}


class UnknownServo(ValueError):
    """A servo model legadapt has no control table for."""


def servo_type(model: str) -> ServoType:
    """The :class:`ServoType` of a robot description's ``servo.model``; :class:`UnknownServo` names the known ones."""
    try:
        return SERVO_TYPES[model]
    except KeyError:
        raise UnknownServo(f"servo model {model!r} has no control table in legadapt (known: {', '.join(SERVO_TYPES)}); "
                           "add one to hardware/servo_types.py, or use the simulated backend") from None


def bus_servo_types(models: list[str] | tuple[str, ...]) -> tuple[ServoType, ...]:
    """Each joint's :class:`ServoType`; one bus carries one family, and one state block for all."""
    types = tuple(servo_type(m) for m in models)
    families = {t.family.name for t in types}
    if len(families) > 1:
        raise UnknownServo(f"one bus cannot carry servos of different families ({', '.join(sorted(families))}): "
                           "give every joint a servo model of one family")
    blocks = {t.state_block() for t in types}
    if len(blocks) > 1:
        raise UnknownServo(f"the servo models {sorted({t.name for t in types})} keep their state at different addresses "
                           f"({sorted(blocks)}): one group read cannot serve them")
    return types
