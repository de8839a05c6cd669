"""Emulated bus devices: control tables of every servo model, and Dynamixel Protocol 2.0 instruction handling.

No physics and no I/O here: :class:`BusEmulator` takes decoded instruction packets and
returns the reply packets the devices on a real bus would send, in bus order.
:mod:`sim.servo_emulator1` does the same for the one-byte-checksum families (Dynamixel
Protocol 1.0, Feetech), over the same tables. :mod:`sim.fake_robot` couples them to the
simulated robot and a pseudo-terminal.

A :class:`ServoTable` is one servo of any :class:`hardware.servo_types.ServoType`: its
register map, table size and EEPROM boundary (``eeprom_end``). Device behaviour follows
the XM430 e-manual where the fake robot needs it, for every model alike:

* EEPROM registers (``Register.eeprom``, or below the type's ``eeprom_end``) are writable
  only with torque off (else access error); read-only registers and partial registers
  refuse writes (access / data length error); values outside a register's range give a
  data range error, goal positions outside the position limits a data limit error. A
  refused write changes nothing. (These are Protocol 2.0 error numbers; the Protocol 1.0
  emulator turns them into its families' status bits.)
* Status Return Level (68): 0 answers PING only, 1 also READ, 2 everything.
* A hardware error sets the alert bit in every status and turns torque off. Where the
  family has a Hardware Error Status register (X series, 70) it holds the bits and torque
  enable is refused (result fail) until REBOOT. Elsewhere (AX, MX, STS) the bits live in
  the servo and every Protocol 1.0 status carries them in its error byte: MX (which has
  REBOOT) refuses torque enable until REBOOT, like the X series; AX and STS have no REBOOT,
  so **any accepted write of Torque Enable clears them** (the host re-arms the servo:
  with 1 torque comes back on, with 0 it stays off). This is the emulator's model of the
  manuals' "re-enable torque after an overload shutdown".
* A *silent* device never answers (a dead servo or a cut cable to it); in a Fast Sync
  Read the chain stops at it, so the client gets a truncated packet and times out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from legadapt.hardware import protocol as P
from legadapt.hardware import protocol1 as P1
from legadapt.hardware import registers as R
from legadapt.hardware.servo_types import XM430_W350, ServoType

EEPROM_END = XM430_W350.eeprom_end  # addresses below are EEPROM on an XM430 (ServoType.eeprom_end per model)
MOVING_RAD_S = 0.05  # rad/s: above it a servo without a Moving Threshold register reports Moving = 1


class DeviceTable:
    """One device's control table: memory plus the register map that guards writes."""

    def __init__(self, dxl_id: int, registers: dict[str, R.Register], size: int) -> None:
        self.registers = registers
        self.mem = bytearray(size)
        for name, reg in registers.items():
            if reg.default:
                self.set(name, reg.default)
        self.set("id", dxl_id)
        self._owner = [None] * size  # byte -> register name
        for name, reg in registers.items():
            for a in range(reg.address, reg.address + reg.size):
                self._owner[a] = name
        self.silent = False

    @property
    def id(self) -> int:
        return self.get("id")

    def get(self, name: str) -> int:
        reg = self.registers[name]
        return R.from_bytes(self.mem[reg.address:reg.address + reg.size], reg)

    def set(self, name: str, value: int) -> None:
        """Set a register from inside the device (bypasses the write rules)."""
        reg = self.registers[name]
        self.mem[reg.address:reg.address + reg.size] = R.to_bytes(value, reg)

    def read(self, address: int, length: int) -> tuple[int, bytes]:
        """(error number, data) of a READ."""
        if length == 0 or address + length > len(self.mem):
            return P.ErrorNumber.ACCESS, b""
        return P.ErrorNumber.NONE, bytes(self.mem[address:address + length])

    def write(self, address: int, data: bytes) -> int:
        """Error number of a WRITE; the write is applied only if it is 0."""
        if address + len(data) > len(self.mem):
            return P.ErrorNumber.ACCESS
        names = []
        for a in range(address, address + len(data)):
            name = self._owner[a]
            if name is None or not self.registers[name].writable:
                return P.ErrorNumber.ACCESS
            if not names or names[-1] != name:
                names.append(name)
        values = {}
        for name in names:
            reg = self.registers[name]
            if reg.address < address or reg.address + reg.size > address + len(data):
                return P.ErrorNumber.DATA_LENGTH
            off = reg.address - address
            values[name] = R.from_bytes(data[off:off + reg.size], reg)
            if reg.lo is not None and not reg.lo <= values[name] <= reg.hi:
                return P.ErrorNumber.DATA_RANGE
        err = self.check_write(values)
        if err:
            return err
        self.mem[address:address + len(data)] = data
        self.after_write(values)
        return P.ErrorNumber.NONE

    def check_write(self, values: dict[str, int]) -> int:
        """Device-specific refusal of a write (error number, 0 = accept)."""
        return P.ErrorNumber.NONE

    def after_write(self, values: dict[str, int]) -> None:
        """React to an accepted write."""

    def reboot(self) -> None:
        """Effect of a REBOOT instruction."""

    @property
    def hardware_error(self) -> int:
        """The device's hardware error bits (0: none; only servos have any)."""
        return 0

    def error_byte(self, number: int) -> int:
        """Protocol 2.0 status error byte for error ``number``."""
        return number


def _fit(value: int, reg: R.Register) -> int:
    """``value`` clipped to what ``reg`` can hold (sign-magnitude registers clip themselves)."""
    if reg.sign_bit is not None:
        return int(value)
    bits = 8 * reg.size
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if reg.signed else (0, (1 << bits) - 1)
    return int(min(max(int(value), lo), hi))


class ServoTable(DeviceTable):
    """One servo of model ``servo`` (XM430-W350 unless given) in position mode, position limits in raw units."""

    def __init__(self, dxl_id: int, servo: ServoType = XM430_W350, min_position: int = 0,
                 max_position: int | None = None) -> None:
        """``min_position``/``max_position``: the position limits (raw; default the model's whole range)."""
        super().__init__(dxl_id, servo.registers, servo.table_size)
        self.servo = servo
        self.set("model_number", servo.model_number)
        max_position = servo.units.position_max if max_position is None else max_position
        self.set("min_position_limit", min_position)
        self.set("max_position_limit", max_position)
        self.set("goal_position", (min_position + max_position) // 2)
        self._error_bits = 0  # hardware error of a family without a Hardware Error Status register
        self.goal_changed = False
        self.torque_changed = False

    @property
    def torque_enabled(self) -> bool:
        return self.get("torque_enable") == 1

    @property
    def hardware_error(self) -> int:
        """Hardware error bits: Hardware Error Status (X series) or the servo's status error bits (P1 families)."""
        if self.servo.family.hardware_error_register:
            return self.get("hardware_error_status")
        return self._error_bits

    def _set_hardware_error(self, bits: int) -> None:
        if self.servo.family.hardware_error_register:
            self.set("hardware_error_status", bits)
            return
        self._error_bits = bits
        if self.servo.family.maker == "Feetech" and "status" in self.registers:
            self.set("status", bits)  # the STS servo status register reports the same bits

    def raise_hardware_error(self, bits: int) -> None:
        """A hardware fault (overload, overheating...): alert on, torque off.

        ``bits``: Hardware Error Status bits on the X series; on the P1 families the status error
        bits, keeping only those that report a hardware condition (``protocol1.HARDWARE_BITS``: a
        refusal bit such as 0x08 range on Dynamixel would mislead), overload (0x20) if none is left."""
        if not self.servo.family.hardware_error_register:
            bits = bits & P1.HARDWARE_BITS[self.servo.family.maker] or R.HW_OVERLOAD
        self._set_hardware_error(self.hardware_error | bits)
        if self.torque_enabled:
            self.set("torque_enable", 0)
            self.torque_changed = True

    def _is_eeprom(self, name: str) -> bool:
        reg = self.registers[name]
        return reg.eeprom or reg.address < self.servo.eeprom_end

    def check_write(self, values: dict[str, int]) -> int:
        torque_on = self.torque_enabled
        if values.get("torque_enable") == 1 and self.hardware_error and self.servo.family.reboot:
            return P.ErrorNumber.RESULT_FAIL  # cleared by REBOOT only
        if torque_on and any(self._is_eeprom(n) for n in values):
            return P.ErrorNumber.ACCESS
        if "goal_position" in values:
            lo, hi = self.get("min_position_limit"), self.get("max_position_limit")
            if not lo <= values["goal_position"] <= hi:
                return P.ErrorNumber.DATA_LIMIT
        return P.ErrorNumber.NONE

    def after_write(self, values: dict[str, int]) -> None:
        self.goal_changed |= "goal_position" in values
        self.torque_changed |= "torque_enable" in values
        if "torque_enable" in values and not self.servo.family.reboot:
            self._set_hardware_error(0)  # AX, STS: writing Torque Enable re-arms the servo

    def reboot(self) -> None:
        self._set_hardware_error(0)
        if self.torque_enabled:
            self.set("torque_enable", 0)
            self.torque_changed = True

    def error_byte(self, number: int) -> int:
        return number | (P.ALERT_BIT if self.hardware_error else 0)

    def set_present(self, position: int, velocity: int, effort: int, tick_ms: int) -> None:
        """What the servo measures, raw units: position, velocity and effort (current or load; 0 while
        torque is off); ``tick_ms`` (ms) feeds Realtime Tick where the model has one; Moving follows."""
        for name, value in (("present_position", position), ("present_velocity", velocity),
                            ("present_effort", effort if self.torque_enabled else 0)):
            self.set(name, _fit(value, self.registers[name]))
        if "realtime_tick" in self.registers:
            self.set("realtime_tick", tick_ms % 32768)
        if "moving_threshold" in self.registers:
            threshold = self.get("moving_threshold")
        else:
            threshold = MOVING_RAD_S / self.servo.units.rad_s_per_velocity
        if "moving" in self.registers:
            self.set("moving", int(abs(velocity) > threshold))


class ImuTable(DeviceTable):
    """The legadapt IMU device (register map in :mod:`hardware.registers`)."""

    def __init__(self, dxl_id: int) -> None:
        super().__init__(dxl_id, R.IMU_REGISTERS, R.IMU_TABLE_SIZE)

    def set_measurement(self, block: bytes) -> None:
        self.mem[R.IMU_BLOCK_ADDRESS:R.IMU_BLOCK_ADDRESS + R.IMU_BLOCK_LENGTH] = block


class FlowTable(DeviceTable):
    """The legadapt optical-flow device: motion and the gyro's rotation accumulate between block reads, and the
    range is their interval's mean (the ranger's timing budget spans the reads); a read clears them."""

    def __init__(self, dxl_id: int, range_over_interval: bool = True) -> None:
        """``range_over_interval``: the range read is the samples' mean since the last block read (False: the last
        sample's, a ranger read at the read)."""
        super().__init__(dxl_id, R.FLOW_REGISTERS, R.FLOW_TABLE_SIZE)
        self.range_over_interval = range_over_interval
        self._delta = np.zeros(2)  # counts since the last block read
        self._turn: np.ndarray | None = None  # rad since the last block read (None: no gyro on the board)
        self._since_us: int | None = None  # device time of the last block read
        self._last_us: int | None = None  # device time of the last sample
        self._ranged = np.zeros(2)  # (m·µs, µs) of the samples with a range since the last block read

    def add_motion(self, stamp_us: int, delta: np.ndarray, range_m: float, squal: int,
                   rotation: np.ndarray | None = None) -> None:
        """One sample of the chip at device time ``stamp_us``: its motion counts [2], range (m; its mean since the
        previous sample, NaN: none), squal, and the board gyro's rotation [3] (rad) since the previous sample
        (None: no gyro)."""
        if self._since_us is None:
            self._since_us = stamp_us
        span = 1 if self._last_us is None else max(stamp_us - self._last_us, 1)  # µs this sample covers
        self._last_us = stamp_us
        self._delta = self._delta + delta if squal else np.zeros(2)
        if rotation is not None:
            self._turn = np.asarray(rotation, dtype=float) + (0.0 if self._turn is None else self._turn)
        if self.range_over_interval:
            if math.isfinite(range_m):
                self._ranged += (range_m * span, span)
            self._range = self._ranged[0] / self._ranged[1] if self._ranged[1] > 0 else float("nan")
        else:
            self._range = range_m
        self._squal = squal
        self._publish(stamp_us)

    def _publish(self, stamp_us: int) -> None:
        self.mem[R.FLOW_BLOCK_ADDRESS:R.FLOW_BLOCK_ADDRESS + R.FLOW_BLOCK_LENGTH] = R.pack_flow(
            stamp_us, stamp_us - self._since_us, self._delta, self._range, self._squal, self._turn)

    def read(self, address: int, length: int) -> tuple[int, bytes]:
        error, data = super().read(address, length)
        motion = R.FLOW_REGISTERS["delta_x"].address
        if error == 0 and self._since_us is not None and address <= motion < address + length:  # read-to-clear
            self._delta = np.zeros(2)
            self._turn = None if self._turn is None else np.zeros(3)
            self._ranged = np.zeros(2)
            self._since_us = self.get("stamp_us")
            self._publish(self._since_us)
        return error, data


@dataclass
class EmulatorStats:
    """What the emulated bus saw."""

    instructions: int = 0
    unknown_instructions: int = 0
    by_instruction: dict[int, int] = field(default_factory=dict)


class BusEmulator:
    """Devices on one bus; :meth:`handle` answers one instruction packet."""

    def __init__(self, devices: list[DeviceTable]) -> None:
        self.devices = list(devices)
        self.stats = EmulatorStats()

    def device(self, dxl_id: int) -> DeviceTable | None:
        return next((d for d in self.devices if d.id == dxl_id), None)

    def handle(self, pkt: P.Packet) -> list[tuple[int, bytes]]:
        """The replies ``(device id, packet bytes)`` to an instruction, in the order sent."""
        if pkt.is_status:
            return []  # another device's reply (or an echo): not for us
        self.stats.instructions += 1
        self.stats.by_instruction[pkt.instruction] = self.stats.by_instruction.get(pkt.instruction, 0) + 1
        inst, params = pkt.instruction, pkt.params
        if inst == P.Instruction.SYNC_WRITE:
            self._sync_write(params)
            return []
        if inst in (P.Instruction.SYNC_READ, P.Instruction.FAST_SYNC_READ):
            return self._sync_read(params, fast=inst == P.Instruction.FAST_SYNC_READ)
        if pkt.id == P.BROADCAST_ID:
            if inst == P.Instruction.PING:  # everyone answers, in ID order
                return [r for d in sorted(self.devices, key=lambda d: d.id) for r in self._unicast(d, pkt)]
            for d in self.devices:
                self._unicast(d, pkt)  # broadcast write/reboot: carried out, no reply
            return []
        dev = self.device(pkt.id)
        return self._unicast(dev, pkt) if dev is not None else []

    # ------------------------------------------------------------ instructions
    def _unicast(self, dev: DeviceTable, pkt: P.Packet) -> list[tuple[int, bytes]]:
        inst, params, level = pkt.instruction, pkt.params, dev.get("status_return_level") if "status_return_level" in dev.registers else 2
        error, data = P.ErrorNumber.NONE, b""
        dxl_id = dev.id
        if inst == P.Instruction.PING:
            data = R.to_bytes(dev.get("model_number"), dev.registers["model_number"]) + bytes((dev.get("firmware_version"),))
        elif inst == P.Instruction.READ:
            if len(params) != 4:
                error = P.ErrorNumber.DATA_LENGTH
            else:
                error, data = dev.read(params[0] | params[1] << 8, params[2] | params[3] << 8)
        elif inst == P.Instruction.WRITE:
            error = P.ErrorNumber.DATA_LENGTH if len(params) < 3 else dev.write(params[0] | params[1] << 8, params[2:])
        elif inst == P.Instruction.REBOOT:
            dev.reboot()
        else:
            self.stats.unknown_instructions += 1
            error = P.ErrorNumber.INSTRUCTION
        answers = inst == P.Instruction.PING or level == 2 or (level == 1 and inst == P.Instruction.READ)
        if dev.silent or (pkt.id == P.BROADCAST_ID and inst != P.Instruction.PING) or not answers:
            return []
        return [(dxl_id, P.status_packet(dxl_id, dev.error_byte(error), data))]

    def _sync_write(self, params: bytes) -> None:
        if len(params) < 4:
            return
        address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
        for k in range(4, len(params) - length, length + 1):
            dev = self.device(params[k])
            if dev is not None:
                dev.write(address, params[k + 1:k + 1 + length])

    def _sync_read(self, params: bytes, fast: bool) -> list[tuple[int, bytes]]:
        if len(params) < 5:
            return []
        address, length = params[0] | params[1] << 8, params[2] | params[3] << 8
        ids = list(params[4:])
        replies: list[tuple[int, bytes]] = []
        entries: list[tuple[int, int, bytes]] = []
        answered = len(ids)
        for n, dxl_id in enumerate(ids):
            dev = self.device(dxl_id)
            if dev is None or dev.silent:  # the chain stops: later servos wait for a reply that never comes
                answered = min(answered, n)
                entries.append((dxl_id, 0, bytes(length)))
                continue
            error, data = dev.read(address, length)
            data = data if error == 0 else bytes(length)
            entries.append((dxl_id, dev.error_byte(error), data))
            if not fast and n < answered:
                replies.append((dxl_id, P.status_packet(dxl_id, dev.error_byte(error), data)))
        if not fast or answered == 0:
            return replies
        packet = P.encode_fast_status(entries)
        if answered < len(ids):  # what the answering servos put on the wire before the silence
            packet = packet[:8 + answered * (length + 4)]
        return [(ids[0], packet)]
