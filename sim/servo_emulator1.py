"""Emulated one-byte-checksum bus: Dynamixel Protocol 1.0 (AX, MX) and Feetech (STS, SCS) instruction handling.

No physics and no I/O: :class:`OneByteBusEmulator` takes decoded frames (:class:`hardware.protocol1.Frame`)
and returns the status packets the devices on a real bus would send, in bus order. The devices are
:mod:`sim.servo_emulator`'s tables (servos of any :class:`~hardware.servo_types.ServoType`, the IMU and
flow devices, whose register maps stay little-endian whatever the family).

Instructions (``protocol1.FAMILY_INSTRUCTIONS`` says which family has which):

* PING (no data), READ (address, length: one byte each), WRITE, REG_WRITE + ACTION, SYNC_WRITE
  (no reply) on every family; SYNC_READ on Feetech STS (each listed servo answers with its own
  status packet, in order); BULK_READ on Dynamixel MX (``0x00`` then (length, ID, address) per
  servo; each answers in order); REBOOT on Dynamixel MX. In a SYNC_READ or BULK_READ the chain
  stops at a device that does not answer (silent, or no such ID), as the Protocol 2.0 emulator's
  plain Sync Read does: the servos after it wait for a reply that never comes.
* Broadcast (0xFE): PING is answered by every device in ID order; WRITE, REG_WRITE, ACTION and
  REBOOT are carried out with no reply; anything else broadcast (READ, and SYNC_READ / BULK_READ
  where the family lacks them) goes unanswered, as every broadcast but PING does.
* Status Return Level: Dynamixel 0 answers PING only, 1 also READ (and the group reads), 2
  everything. Feetech 0 answers PING and READ (the STS manual: "no reply except to read and PING"),
  1 everything. Devices without the register (IMU, flow) answer everything. Silent devices never
  answer (their instructions are still carried out, as in :class:`sim.servo_emulator.BusEmulator`).

Error byte of every status: the servo's hardware error bits (overload 0x20, overheating 0x04,
input voltage 0x01; :meth:`ServoTable.raise_hardware_error`) plus, on Dynamixel only, why this
instruction was refused:

* 0x08 range error: a value outside the register's range, a write to a read-only, unknown or
  partially covered register, an EEPROM write with torque on (the emulator enforces the X-series
  rule on every model), a READ beyond the control table or of length 0, a frame whose parameters
  do not fit its instruction;
* 0x02 angle-limit error: a goal position outside the CW/CCW angle limits (not applied);
* 0x40 instruction error: an instruction the family lacks, sent to one servo (FACTORY_RESET is not
  emulated and answers the same);
* torque enable refused while a hardware error stands (MX, until REBOOT): no bit of its own, the
  hardware bits already say why.

Feetech servos refuse the same writes **silently**: the write is ignored and the status carries only
the hardware bits; a READ beyond the control table, an unknown instruction and a malformed frame get
no reply at all. A damaged instruction (checksum) never reaches this class: no reply on either family.
"""

from __future__ import annotations

from legadapt.hardware import protocol as P
from legadapt.hardware import protocol1 as P1
from legadapt.hardware.servo_types import BusFamily
from legadapt.sim.servo_emulator import DeviceTable, EmulatorStats

Inst = P1.Instruction
ANGLE_LIMIT_ERROR, RANGE_ERROR, INSTRUCTION_ERROR = 0x02, 0x08, 0x40
#: Dynamixel Protocol 1.0 status bit for each refusal the tables give (Protocol 2.0 error numbers).
DYNAMIXEL_REFUSAL_BITS: dict[int, int] = {
    P.ErrorNumber.NONE: 0, P.ErrorNumber.RESULT_FAIL: 0, P.ErrorNumber.INSTRUCTION: INSTRUCTION_ERROR,
    P.ErrorNumber.DATA_RANGE: RANGE_ERROR, P.ErrorNumber.DATA_LENGTH: RANGE_ERROR, P.ErrorNumber.ACCESS: RANGE_ERROR,
    P.ErrorNumber.DATA_LIMIT: ANGLE_LIMIT_ERROR,
}
_UNANSWERED = -1  # an internal refusal: no status at all (Feetech)
_GROUP_READS = (Inst.SYNC_READ, Inst.BULK_READ)


class OneByteBusEmulator:
    """Devices on one Protocol 1.0 / Feetech bus of ``family``; :meth:`handle` answers one instruction frame."""

    def __init__(self, devices: list[DeviceTable], family: BusFamily) -> None:
        if family.protocol != 1:
            raise ValueError(f"family {family.name!r} speaks Protocol {family.protocol}: use servo_emulator.BusEmulator")
        self.devices = list(devices)
        self.family = family
        self.instructions = P1.FAMILY_INSTRUCTIONS[family.name]
        self.feetech = family.maker == "Feetech"
        self.stats = EmulatorStats()
        self._registered: dict[int, tuple[int, bytes]] = {}  # id(device) -> REG_WRITE waiting for ACTION

    def device(self, dxl_id: int) -> DeviceTable | None:
        """The device answering to ``dxl_id`` (None if there is none)."""
        return next((d for d in self.devices if d.id == dxl_id), None)

    def handle(self, frame: P1.Frame) -> list[tuple[int, bytes]]:
        """The replies ``(device id, status packet bytes)`` to one instruction frame, in the order sent."""
        inst, params = frame.code, frame.params
        self.stats.instructions += 1
        self.stats.by_instruction[inst] = self.stats.by_instruction.get(inst, 0) + 1
        known = inst in self.instructions and inst != Inst.FACTORY_RESET
        if not known:
            self.stats.unknown_instructions += 1
        if known and inst == Inst.SYNC_WRITE:
            self._sync_write(params)
            return []
        if known and inst in _GROUP_READS:
            return self._group_read(inst, params)
        if frame.id == P1.BROADCAST_ID:
            if inst == Inst.PING:  # everyone answers, in ID order
                return [r for d in sorted(self.devices, key=lambda d: d.id) for r in self._unicast(d, inst, params)]
            if known and inst != Inst.READ:
                for d in self.devices:
                    self._unicast(d, inst, params)  # carried out, no reply
            return []
        dev = self.device(frame.id)
        return self._unicast(dev, inst, params) if dev is not None else []

    # ------------------------------------------------------------ one device
    def _unicast(self, dev: DeviceTable, inst: int, params: bytes) -> list[tuple[int, bytes]]:
        """Carry out ``inst`` on ``dev``; its status packet if it answers."""
        refusal, data = self._execute(dev, inst, params)
        if refusal == _UNANSWERED or dev.silent or not self._answers(dev, inst):
            return []
        return [(dev.id, self._status(dev, refusal, data))]

    def _execute(self, dev: DeviceTable, inst: int, params: bytes) -> tuple[int, bytes]:
        """(refusal as a Protocol 2.0 error number, or _UNANSWERED; data read) of one instruction."""
        if inst not in self.instructions or inst == Inst.FACTORY_RESET:
            return self._refuse(P.ErrorNumber.INSTRUCTION), b""
        if inst == Inst.ACTION:
            self._action(dev)
        if inst in (Inst.PING, Inst.ACTION):
            return P.ErrorNumber.NONE, b""
        if inst == Inst.READ:
            if len(params) != 2:
                return self._refuse(P.ErrorNumber.DATA_LENGTH), b""
            error, data = dev.read(params[0], params[1])
            return (self._refuse(error), b"") if error else (P.ErrorNumber.NONE, data)
        if inst in (Inst.WRITE, Inst.REG_WRITE):
            if len(params) < 2:
                return self._refuse(P.ErrorNumber.DATA_LENGTH), b""
            if inst == Inst.REG_WRITE:
                self._register(dev, params[0], bytes(params[1:]))
                return P.ErrorNumber.NONE, b""
            return self._write(dev, params[0], bytes(params[1:])), b""
        if inst == Inst.REBOOT:
            dev.reboot()
        return P.ErrorNumber.NONE, b""

    def _refuse(self, error: int) -> int:
        """A refusal as this family reports it: Feetech answers nothing to a bad read or instruction."""
        return _UNANSWERED if self.feetech else error

    def _write(self, dev: DeviceTable, address: int, data: bytes) -> int:
        error = dev.write(address, data)
        return P.ErrorNumber.NONE if self.feetech else error  # Feetech: a refused write is ignored, no bit

    def _register(self, dev: DeviceTable, address: int, data: bytes) -> None:
        self._registered[id(dev)] = (address, data)
        if "registered" in dev.registers:
            dev.set("registered", 1)

    def _action(self, dev: DeviceTable) -> None:
        """Apply ``dev``'s REG_WRITE, if it has one waiting (a refusal then goes unreported)."""
        pending = self._registered.pop(id(dev), None)
        if pending is not None:
            dev.write(*pending)
            if "registered" in dev.registers:
                dev.set("registered", 0)

    def _answers(self, dev: DeviceTable, inst: int) -> bool:
        """Whether ``dev``'s Status Return Level lets it answer ``inst``."""
        if "status_return_level" not in dev.registers:
            return True
        level = dev.get("status_return_level")
        if self.feetech:
            return level >= 1 or inst in (Inst.PING, Inst.READ)
        return inst == Inst.PING or level >= 2 or (level == 1 and inst in (Inst.READ, *_GROUP_READS))

    def _status(self, dev: DeviceTable, refusal: int, data: bytes) -> bytes:
        bits = 0 if self.feetech else DYNAMIXEL_REFUSAL_BITS.get(refusal, RANGE_ERROR)
        return P1.status_packet(dev.id, (bits | dev.hardware_error) & 0x7F, data)

    # ------------------------------------------------------------ group instructions
    def _sync_write(self, params: bytes) -> None:
        """SYNC_WRITE: address, length, then (ID, data) per servo; no reply."""
        if len(params) < 2:
            return
        address, length = params[0], params[1]
        for k in range(2, len(params) - length, length + 1):
            dev = self.device(params[k])
            if dev is not None:
                dev.write(address, bytes(params[k + 1:k + 1 + length]))

    def _group_read(self, inst: int, params: bytes) -> list[tuple[int, bytes]]:
        """SYNC_READ (address, length, IDs) or BULK_READ (0x00, then length, ID, address per servo)."""
        if inst == Inst.SYNC_READ:
            reads = [(i, params[0], params[1]) for i in params[2:]] if len(params) >= 2 else []
        else:
            body = params[1:] if params[:1] == b"\x00" else b""
            reads = [(body[k + 1], body[k + 2], body[k]) for k in range(0, len(body) - 2, 3)]
        replies: list[tuple[int, bytes]] = []
        for dxl_id, address, length in reads:
            dev = self.device(dxl_id)
            if dev is None or dev.silent:
                break  # the chain stops: later servos wait for a reply that never comes
            error, data = dev.read(address, length)
            if error and self.feetech:
                break
            if self._answers(dev, Inst.READ):
                replies.append((dxl_id, self._status(dev, error, b"" if error else data)))
        return replies
