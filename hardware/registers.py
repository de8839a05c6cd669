"""Register maps and units of the devices on the legadapt servo bus. Pure data, no I/O.

* :data:`XM430` — the control table of a ROBOTIS XM430-W350 (Protocol 2.0, firmware 4x),
  addresses from the ROBOTIS e-manual. Positions are 0..4095 per turn (0.088°/unit),
  2048 = the horn centre; velocity is in 0.229 rev/min; address 126 is *Present
  Current* in 2.69 mA (an XL430 has Present Load there instead).
* :data:`IMU_REGISTERS` — the legadapt IMU bus device (this project's design; the fake
  robot implements it and a real board must follow it). Common header like a servo's
  (model number at 0, firmware at 6, ID at 7); the measurement block is one read of
  :data:`IMU_BLOCK_LENGTH` bytes at :data:`IMU_BLOCK_ADDRESS`, little-endian::

      128  u32      sample stamp, µs of device time (wraps at 2**32)
      132  f32 x 4  orientation quaternion w, x, y, z (world <- sensor)
      148  f32 x 3  angular rate x, y, z, rad/s (sensor frame)
      160  f32 x 3  specific force x, y, z, m/s² (reads +9.81 on z when level and still)

* :data:`FLOW_REGISTERS` — the legadapt optical-flow device (PMW3901 flow chip + VL53L1X range
  finder behind a microcontroller on the servo bus; this project's design like the IMU's). The
  measurement block is one read of :data:`FLOW_BLOCK_LENGTH` bytes at :data:`FLOW_BLOCK_ADDRESS`,
  little-endian, and **reading it clears the motion** (read-to-clear, like the chip's Motion_Burst)::

      128  u32      sample stamp, µs of device time (wraps at 2**32)
      132  u32      interval, µs the motion below was accumulated over (since the previous block read)
      136  i16      delta x, counts along the body's x   (a floor point straight below moving +x)
      138  i16      delta y, counts along the body's y
      140  u16      range, mm along the sensor axis, its mean over the same interval (0xFFFF: no floor in range)
      142  u8       squal, surface quality (0: no valid motion in the interval)
      143  f32 x 3  rotation x, y, z, rad (body frame): the board's gyro integrated over the same
                    interval, as MAVLink's OPTICAL_FLOW_RAD carries it (NaN: no gyro on the board;
                    the board takes its gyro's bias at power-up, standing still)

* :class:`JointMapping` — servo raw units <-> joint angles (rad) with each joint's
  direction sign and zero offset, the numbers calibration finds.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Register:
    """One control-table entry: ``size`` bytes at ``address``; little-endian two's complement unless
    ``big_endian`` / ``sign_bit`` say otherwise."""

    address: int
    size: int
    writable: bool = False
    eeprom: bool = False  # writable only while torque is off
    signed: bool = False
    default: int = 0
    lo: int | None = None  # accepted value range of a write (inclusive)
    hi: int | None = None
    big_endian: bool = False  # Feetech SCS servos (older series) store values high byte first
    sign_bit: int | None = None  # sign-magnitude: this bit is the sign (AX/MX speed and load: 10; Feetech: 15)


XM430_MODEL_NUMBER = 1020
XM430_FIRMWARE = 48
XM430: dict[str, Register] = {
    "model_number": Register(0, 2, default=XM430_MODEL_NUMBER),
    "model_information": Register(2, 4),
    "firmware_version": Register(6, 1, default=XM430_FIRMWARE),
    "id": Register(7, 1, True, True, default=1, lo=0, hi=252),
    "baud_rate": Register(8, 1, True, True, default=1, lo=0, hi=7),
    "return_delay_time": Register(9, 1, True, True, default=250, lo=0, hi=254),  # 2 µs units
    "drive_mode": Register(10, 1, True, True, lo=0, hi=13),
    "operating_mode": Register(11, 1, True, True, default=3, lo=0, hi=16),
    "secondary_id": Register(12, 1, True, True, default=255, lo=0, hi=255),
    "protocol_type": Register(13, 1, True, True, default=2, lo=1, hi=2),
    "homing_offset": Register(20, 4, True, True, signed=True, lo=-1_044_479, hi=1_044_479),
    "moving_threshold": Register(24, 4, True, True, default=10, lo=0, hi=1023),
    "temperature_limit": Register(31, 1, True, True, default=80, lo=0, hi=100),  # °C
    "max_voltage_limit": Register(32, 2, True, True, default=160, lo=60, hi=160),  # 0.1 V
    "min_voltage_limit": Register(34, 2, True, True, default=95, lo=60, hi=160),
    "pwm_limit": Register(36, 2, True, True, default=885, lo=0, hi=885),
    "current_limit": Register(38, 2, True, True, default=1193, lo=0, hi=1193),  # 2.69 mA
    "velocity_limit": Register(44, 4, True, True, default=200, lo=0, hi=1023),  # 0.229 rpm
    "max_position_limit": Register(48, 4, True, True, default=4095, lo=0, hi=4095),
    "min_position_limit": Register(52, 4, True, True, default=0, lo=0, hi=4095),
    "shutdown": Register(63, 1, True, True, default=52, lo=0, hi=255),
    "torque_enable": Register(64, 1, True, lo=0, hi=1),
    "led": Register(65, 1, True, lo=0, hi=1),
    "status_return_level": Register(68, 1, True, default=2, lo=0, hi=2),
    "registered_instruction": Register(69, 1),
    "hardware_error_status": Register(70, 1),
    "velocity_i_gain": Register(76, 2, True, default=1920, lo=0, hi=16383),
    "velocity_p_gain": Register(78, 2, True, default=100, lo=0, hi=16383),
    "position_d_gain": Register(80, 2, True, lo=0, hi=16383),
    "position_i_gain": Register(82, 2, True, lo=0, hi=16383),
    "position_p_gain": Register(84, 2, True, default=800, lo=0, hi=16383),
    "feedforward_2nd_gain": Register(88, 2, True, lo=0, hi=16383),
    "feedforward_1st_gain": Register(90, 2, True, lo=0, hi=16383),
    "bus_watchdog": Register(98, 1, True, lo=0, hi=127),
    "goal_pwm": Register(100, 2, True, signed=True, lo=-885, hi=885),
    "goal_current": Register(102, 2, True, signed=True, lo=-1193, hi=1193),
    "goal_velocity": Register(104, 4, True, signed=True, lo=-200, hi=200),
    "profile_acceleration": Register(108, 4, True, lo=0, hi=32767),
    "profile_velocity": Register(112, 4, True, lo=0, hi=32767),
    "goal_position": Register(116, 4, True, signed=True, lo=0, hi=4095),
    "realtime_tick": Register(120, 2),  # ms
    "moving": Register(122, 1),
    "moving_status": Register(123, 1),
    "present_pwm": Register(124, 2, signed=True),
    "present_current": Register(126, 2, signed=True),  # 2.69 mA
    "present_velocity": Register(128, 4, signed=True),  # 0.229 rpm
    "present_position": Register(132, 4, signed=True),  # 0.088°
    "velocity_trajectory": Register(136, 4, signed=True),
    "position_trajectory": Register(140, 4, signed=True),
    "present_input_voltage": Register(144, 2, default=120),  # 0.1 V
    "present_temperature": Register(146, 1, default=36),  # °C
}
XM430_TABLE_SIZE = 148  # bytes emulated (0..147)

#: Hardware Error Status (70) bits.
HW_INPUT_VOLTAGE, HW_OVERHEATING, HW_ENCODER, HW_ELECTRICAL_SHOCK, HW_OVERLOAD = 0x01, 0x04, 0x08, 0x10, 0x20
HW_ERROR_TEXT = {HW_INPUT_VOLTAGE: "input voltage", HW_OVERHEATING: "overheating", HW_ENCODER: "motor encoder",
                 HW_ELECTRICAL_SHOCK: "electrical shock", HW_OVERLOAD: "overload"}


def describe_hardware_error(bits: int) -> str:
    """Text of Hardware Error Status bits, e.g. ``'overload (0x20)'``."""
    names = [text for bit, text in HW_ERROR_TEXT.items() if bits & bit] or ["unknown"]
    return f"{' + '.join(names)} (0x{bits:02X})"

#: The block the fast loop reads from every servo: present current, velocity, position.
STATE_BLOCK_ADDRESS = 126
STATE_BLOCK_LENGTH = 10

POSITION_CENTER = 2048  # raw position of the horn centre
RAD_PER_POSITION = 2.0 * math.pi / 4096.0  # rad per position unit (0.088°)
RAD_S_PER_VELOCITY = 0.229 * 2.0 * math.pi / 60.0  # rad/s per velocity unit (0.229 rpm)
AMP_PER_CURRENT = 2.69e-3  # A per current unit
NM_PER_AMP = 4.1 / 2.3  # N·m per A: XM430-W350 stall torque / stall current at 12 V (approximation)

# ---------------------------------------------------------------- IMU device
IMU_MODEL_NUMBER = 0x4C41  # "AL": legadapt IMU
IMU_FIRMWARE = 1


def _device_header(model: int, firmware: int, default_id: int) -> dict[str, Register]:
    """The header every legadapt bus device shares with a servo: model number, firmware, ID, return delay."""
    return {"model_number": Register(0, 2, default=model), "firmware_version": Register(6, 1, default=firmware),
            "id": Register(7, 1, True, True, default=default_id, lo=0, hi=252),
            "return_delay_time": Register(9, 1, True, True, default=0, lo=0, hi=254)}


IMU_REGISTERS: dict[str, Register] = {
    **_device_header(IMU_MODEL_NUMBER, IMU_FIRMWARE, 100),
    "stamp_us": Register(128, 4),
    "quat": Register(132, 16),
    "gyro": Register(148, 12),
    "acc": Register(160, 12),
}
IMU_BLOCK_ADDRESS = 128
IMU_BLOCK_LENGTH = 44
IMU_TABLE_SIZE = 172
_IMU_STRUCT = struct.Struct("<I4f3f3f")


def pack_imu(stamp_us: int, quat: np.ndarray, gyro: np.ndarray, acc: np.ndarray) -> bytes:
    """The IMU measurement block (:data:`IMU_BLOCK_LENGTH` bytes)."""
    return _IMU_STRUCT.pack(int(stamp_us) & 0xFFFFFFFF, *map(float, quat), *map(float, gyro), *map(float, acc))


def unpack_imu(block: bytes) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Stamp (µs), quaternion [4], gyro [3] (rad/s), acc [3] (m/s²) from the IMU block."""
    v = _IMU_STRUCT.unpack(bytes(block[:IMU_BLOCK_LENGTH]))
    return v[0], np.array(v[1:5]), np.array(v[5:8]), np.array(v[8:11])


# ---------------------------------------------------------------- optical-flow device
FLOW_MODEL_NUMBER = 0x4C46  # "FL": legadapt optical flow
FLOW_FIRMWARE = 2  # 2: the block carries the board's integrated gyro
FLOW_REGISTERS: dict[str, Register] = {
    **_device_header(FLOW_MODEL_NUMBER, FLOW_FIRMWARE, 101),
    "stamp_us": Register(128, 4),
    "interval_us": Register(132, 4),
    "delta_x": Register(136, 2, signed=True),
    "delta_y": Register(138, 2, signed=True),
    "range_mm": Register(140, 2),
    "squal": Register(142, 1),
    "rotation_x": Register(143, 4),
    "rotation_y": Register(147, 4),
    "rotation_z": Register(151, 4),
}
FLOW_BLOCK_ADDRESS = 128
FLOW_BLOCK_LENGTH = 27
FLOW_TABLE_SIZE = 160
FLOW_NO_RANGE = 0xFFFF
_FLOW_STRUCT = struct.Struct("<IIhhHB3f")


def pack_flow(stamp_us: int, interval_us: int, delta: np.ndarray, range_m: float, squal: int,
              rotation: np.ndarray | None = None) -> bytes:
    """The flow measurement block (:data:`FLOW_BLOCK_LENGTH` bytes); ``range_m`` NaN: no floor in range;
    ``rotation`` [3] rad over the interval, None: the board has no gyro."""
    mm = FLOW_NO_RANGE if not math.isfinite(range_m) else min(int(round(range_m * 1000)), FLOW_NO_RANGE - 1)
    dx, dy = (int(np.clip(d, -32767, 32767)) for d in delta)
    turn = (math.nan,) * 3 if rotation is None else tuple(map(float, rotation))
    return _FLOW_STRUCT.pack(int(stamp_us) & 0xFFFFFFFF, int(interval_us) & 0xFFFFFFFF, dx, dy, max(mm, 0), int(squal), *turn)


def unpack_flow(block: bytes) -> tuple[int, float, np.ndarray, float, int, np.ndarray | None]:
    """Stamp (µs), interval (s), delta [2] (counts), range (m, NaN: none), squal and rotation [3] (rad over
    the interval; None: no gyro on the board) from the flow block."""
    stamp, interval, dx, dy, mm, squal, *turn = _FLOW_STRUCT.unpack(bytes(block[:FLOW_BLOCK_LENGTH]))
    rotation = None if not all(map(math.isfinite, turn)) else np.array(turn, dtype=float)
    return (stamp, interval * 1e-6, np.array([dx, dy], dtype=float),
            (float("nan") if mm == FLOW_NO_RANGE else mm / 1000.0), squal, rotation)


def to_bytes(value: int, reg: Register) -> bytes:
    """Encode ``value`` for ``reg`` (two's complement where signed, sign-magnitude where ``sign_bit``)."""
    value = int(value)
    order = "big" if reg.big_endian else "little"
    if reg.sign_bit is not None:
        magnitude = min(abs(value), (1 << reg.sign_bit) - 1)
        return (magnitude | ((1 << reg.sign_bit) if value < 0 else 0)).to_bytes(reg.size, order)
    return value.to_bytes(reg.size, order, signed=reg.signed)


def from_bytes(data: bytes, reg: Register) -> int:
    """Decode ``reg``'s bytes (see :func:`to_bytes`)."""
    order = "big" if reg.big_endian else "little"
    if reg.sign_bit is not None:
        raw = int.from_bytes(data, order)
        magnitude = raw & ((1 << reg.sign_bit) - 1)
        return -magnitude if raw >> reg.sign_bit & 1 else magnitude
    return int.from_bytes(data, order, signed=reg.signed)


# ---------------------------------------------------------------- joint mapping
@dataclass(frozen=True)
class ServoUnits:
    """A servo model's raw units: position ``center`` (raw at the horn centre) and ``rad_per_position``
    over raw 0..``position_max``; ``rad_s_per_velocity``; ``nm_per_effort`` (N·m per raw unit of present
    current or load, approximate) up to ``effort_max``."""

    center: int
    rad_per_position: float
    position_max: int
    rad_s_per_velocity: float
    nm_per_effort: float
    effort_max: int


#: XM430-W350: 4096 positions per turn, 0.229 rpm, current in 2.69 mA times the torque constant.
XM430_UNITS = ServoUnits(POSITION_CENTER, RAD_PER_POSITION, 4095, RAD_S_PER_VELOCITY, AMP_PER_CURRENT * NM_PER_AMP, 1193)


class JointMapping:
    """Servo units <-> joint units for a set of joints, with mounting direction and zero offset.

    ``servo_angle = (raw - center) * rad_per_position`` (rad, the servo's own sense; 0.088° and 2048
    on an XM430, 0.29° and 512 on an AX-12A: :class:`ServoUnits`, one per joint or one for all);
    ``q = direction * (servo_angle - zero_offset)``. ``directions`` are ±1;
    ``zero_offsets`` (rad) are the servo angles at which the joints are at 0.
    """

    def __init__(self, directions: np.ndarray, zero_offsets: np.ndarray,
                 units: ServoUnits | tuple[ServoUnits, ...] = XM430_UNITS) -> None:
        self.directions = np.asarray(directions, dtype=float)
        self.zero_offsets = np.asarray(zero_offsets, dtype=float)
        if not np.all(np.abs(self.directions) == 1.0):
            raise ValueError(f"directions must be +1 or -1, got {self.directions}")
        per_joint = units if isinstance(units, tuple) else (units,) * len(self.directions)
        field_of = lambda name: np.array([getattr(u, name) for u in per_joint], dtype=float)  # noqa: E731
        self.center, self.rad_per_position = field_of("center"), field_of("rad_per_position")
        self.position_max, self.rad_s_per_velocity = field_of("position_max"), field_of("rad_s_per_velocity")
        self.nm_per_effort, self.effort_max = field_of("nm_per_effort"), field_of("effort_max")

    def q_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Joint angles (rad) from raw present positions."""
        return self.directions * ((np.asarray(raw, dtype=float) - self.center) * self.rad_per_position - self.zero_offsets)

    def raw_from_q(self, q: np.ndarray) -> np.ndarray:
        """Raw goal positions (int64, rounded) for joint angles ``q`` (rad)."""
        servo_angle = self.directions * np.asarray(q, dtype=float) + self.zero_offsets
        return np.rint(servo_angle / self.rad_per_position + self.center).astype(np.int64)

    def qd_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Joint velocities (rad/s) from raw present velocities."""
        return self.directions * np.asarray(raw, dtype=float) * self.rad_s_per_velocity

    def raw_from_qd(self, qd: np.ndarray) -> np.ndarray:
        return np.rint(self.directions * np.asarray(qd, dtype=float) / self.rad_s_per_velocity).astype(np.int64)

    def effort_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Joint torques (N·m) from raw present current or load (approximate)."""
        return self.directions * np.asarray(raw, dtype=float) * self.nm_per_effort

    def raw_from_effort(self, tau: np.ndarray) -> np.ndarray:
        raw = np.rint(self.directions * np.asarray(tau, dtype=float) / self.nm_per_effort)
        return np.clip(raw, -self.effort_max, self.effort_max).astype(np.int64)

    def raw_limits(self, q_lower: np.ndarray, q_upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Min and max raw position limits that keep joints inside [q_lower, q_upper] (rad)."""
        a, b = self.raw_from_q(q_lower), self.raw_from_q(q_upper)
        top = self.position_max.astype(np.int64)
        return np.clip(np.minimum(a, b), 0, top), np.clip(np.maximum(a, b), 0, top)
