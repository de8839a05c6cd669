"""``SerialRobot``: the :class:`hardware.interface.Robot` over a servo bus.

The robot description's servos, one per joint (IDs ``cfg.serial.servo_ids`` in joint order; the
model of each, ``servo.model``, picks its control table and units in
:mod:`hardware.servo_types`, and with it the bus family: Dynamixel Protocol 2.0 for X series,
Protocol 1.0 for AX/MX, Feetech SCS for STS) and the legadapt IMU device (``cfg.serial.imu_id``)
on one :class:`hardware.servo_bus.ServoBus` — a real USB adapter, or the fake robot's pty
(``legadapt fake-robot``), which is the same to it.

Lifecycle (ros2_control-like, see :mod:`hardware.interface`):

* **configure** opens the port, pings every ID and checks the model numbers (the servo
  type's, e.g. XM430-W350 = 1020, AX-18A = 18, STS3215 = 777; the IMU's), clears hardware
  errors (overload...) where ``serial.reboot_on_alert`` allows — by REBOOT where the family
  has it, else by re-writing Torque Enable (the joints are listed in ``rebooted``) — turns
  torque off, then sets what a fast bus needs and a safe robot wants in EEPROM — Return
  Delay Time 0, position control mode, position limits from the joint limits — writing only
  registers that differ (EEPROM wears).
* **activate** sets each goal to the present position, drops the stiffness register (the
  position P gain; the torque limit on AX) to :data:`SOFT_GAIN_FRACTION` of nominal, enables
  torque and ramps it back up over :data:`RAMP_IN_TIME` s, so nothing jumps however the robot lies.
* **read** is one group read of present position, velocity and effort of all servos (Fast
  Sync Read, Sync Read or Bulk Read where the family has one; one READ per servo on AX) plus
  one READ of the IMU block (and of the flow block where the state source fuses flow);
  **write** is one Sync Write of every goal position. The IMU's calibrated biases (``serial.imu_gyro_bias``, ``imu_acc_bias``)
  are subtracted from its readings. Units: raw <-> rad through each joint's direction and zero offset
  (:class:`hardware.registers.JointMapping`); goals are clamped to the joint limits.
* **deactivate** holds the present position for :data:`HOLD_TIME` s, then disables torque.
* **on_error** broadcasts torque off and closes the port; if even that cannot be sent
  (the adapter is gone) it returns FAILURE and the robot is finalized.

Readings carry ``privileged=None`` always. ``stamp`` (s, on the host's ``time.monotonic()``
scale) is the IMU's own sample stamp (µs of device time, unwrapped past its 2**32 µs wrap)
anchored to the host clock at the first reading: the state estimator differentiates joint
angles over successive stamps, and a host stamp taken when the reply is read carries the
host's scheduling jitter (measured: 2–47 ms periods for a nominal 20 ms under load), the
device stamp only the sampling. A device stamp that strays more than
:data:`STAMP_REANCHOR` s from the host clock (an IMU reboot) is re-anchored. Without an IMU
(``imu_id: null``) the stamp is the host time of the reply and the IMU fields are NaN.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from legadapt.hardware import protocol1 as P1
from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import BROADCAST_ID, BusError, BusTimeout, ServoBus, ServoError, make_bus
from legadapt.hardware.servo_types import bus_servo_types
from legadapt.hardware.interface import CallbackReturn, ReturnType, Robot
from legadapt import config as C
from legadapt.robot_state import FlowReading, ImuReading, RobotState

HOLD_TIME = 0.1  # s, position hold before torque off on deactivate
RAMP_IN_TIME = 0.2  # s, position-gain ramp after torque on
RAMP_STEPS = 5
SOFT_GAIN_FRACTION = 0.1
REBOOT_TIME = 1.0  # s, longest a servo may stay silent after REBOOT
STAMP_REANCHOR = 0.25  # s, device-vs-host clock disagreement that re-anchors the device stamps


class SerialRobot(Robot):
    """A legged robot of Dynamixel servos (the config's robot description) behind the hardware interface."""

    def __init__(self, cfg: C.LegadaptConfig, name: str = "serial") -> None:
        super().__init__(name)
        self.cfg = cfg
        sc = cfg.serial
        desc = cfg.robot_description
        self.joint_names = desc.joint_names
        self.types = bus_servo_types([s.model for s in desc.joint_servos])  # UnknownServo (a ValueError) names the model
        self.table = self.types[0].registers  # one family: one control table layout
        self.family = self.types[0].family
        self.ids = list(sc.servo_ids)
        self._joint_of = dict(zip(self.ids, self.joint_names))  # servo ID -> joint name, for messages
        self.imu_id = sc.imu_id
        # the flow sensor is read where the state source fuses it
        self.flow_id = sc.flow_id if "flow" in cfg.controller.state_source.split("+") else None
        self.flow_gyro = desc.flow is not None and desc.flow.gyro_noise is not None  # the board integrates its gyro
        self.mapping = R.JointMapping(np.array([sc.directions.get(j, 1) for j in self.joint_names], float),
                                      np.array([sc.zero_offsets.get(j, 0.0) for j in self.joint_names]),
                                      tuple(t.units for t in self.types))
        self.q_lower, self.q_upper = desc.lower_limits(), desc.upper_limits()
        self.raw_min, self.raw_max = self.mapping.raw_limits(self.q_lower, self.q_upper)
        self.servo_period = 1.0 / cfg.sim.servo_rate  # s
        self._state_block = self.types[0].state_block()  # (address, length) of position, velocity, effort
        self.bus: ServoBus | None = None
        self._nominal_gain = np.full(len(self.ids), self.table[self.types[0].stiffness].default)
        self._clock = DeviceClock()
        self._gyro_bias = np.asarray(sc.imu_gyro_bias, float)  # rad/s, subtracted from every reading
        self._acc_bias = np.asarray(sc.imu_acc_bias, float)  # m/s²
        self.rebooted: dict[str, str] = {}  # joint -> hardware error cleared by REBOOT at configure
        self.abort: Callable[[], bool] = lambda: False  # a stop request: activate's gain ramp-in ends at once

    # ------------------------------------------------------------ lifecycle hooks
    def _on_configure(self) -> CallbackReturn:
        sc = self.cfg.serial
        self.bus = make_bus(self.family, sc.port, sc.baudrate, sc.timeout, sc.retries)
        bus = self.bus
        bus.raise_on_alert = False  # a servo with a hardware error still answers: find and treat those below
        problems = self._identify_all()
        if not problems:
            problems = self._clear_hardware_errors()
        if problems:
            self.last_error = "configure: bus check failed: " + "; ".join(problems)
            self._close()
            return CallbackReturn.FAILURE
        bus.raise_on_alert = True
        T, stiffness = self.table, self.table[self.types[0].stiffness]
        self._sync_write(T["torque_enable"], np.zeros(len(self.ids), int))
        for j, dxl_id in enumerate(self.ids):
            self._ensure(dxl_id, T["return_delay_time"], 0)
            for name, value in self.types[j].setup.items():
                self._ensure(dxl_id, T[name], value)
            self._ensure(dxl_id, T["min_position_limit"], int(self.raw_min[j]))
            self._ensure(dxl_id, T["max_position_limit"], int(self.raw_max[j]))
            self._nominal_gain[j] = R.from_bytes(bus.read(dxl_id, stiffness.address, stiffness.size), stiffness)
        if self.imu_id is not None:
            self._ensure(self.imu_id, R.IMU_REGISTERS["return_delay_time"], 0)
        if self.flow_id is not None:
            self._ensure(self.flow_id, R.FLOW_REGISTERS["return_delay_time"], 0)
        ret, state = self._read()
        self.state = state
        return CallbackReturn.SUCCESS if ret is ReturnType.OK else CallbackReturn.FAILURE

    def _identify_all(self) -> list[str]:
        """Every device answers with the model number expected of it; the problems otherwise."""
        expected = [(f"{j} (ID {i})", i, t.reg("model_number"), t.model_number, t.name)
                    for j, i, t in zip(self.joint_names, self.ids, self.types)]
        if self.imu_id is not None:
            expected.append((f"IMU (ID {self.imu_id})", self.imu_id, R.IMU_REGISTERS["model_number"], R.IMU_MODEL_NUMBER, "legadapt IMU"))
        if self.flow_id is not None:
            expected.append((f"flow sensor (ID {self.flow_id})", self.flow_id, R.FLOW_REGISTERS["model_number"],
                             R.FLOW_MODEL_NUMBER, "legadapt flow sensor"))
        problems = []
        for what, dxl_id, reg, number, name in expected:
            model = self._model_number(dxl_id, reg)
            if model != number:
                problems.append(f"{what}: " + (f"model {model}, expected {name} ({number})" if model is not None else "no answer"))
        return problems

    def _on_activate(self) -> CallbackReturn:
        raw = self._present_raw_positions()
        self._sync_write(self.table["goal_position"], np.clip(raw, self.raw_min, self.raw_max))
        stiffness = self.table[self.types[0].stiffness]
        soft = np.maximum(1, np.rint(self._nominal_gain * SOFT_GAIN_FRACTION)).astype(int)
        self._sync_write(stiffness, soft)
        self._sync_write(self.table["torque_enable"], np.ones(len(self.ids), int))
        for k in range(1, RAMP_STEPS + 1):
            step_end = time.monotonic() + RAMP_IN_TIME / RAMP_STEPS
            while time.monotonic() < step_end and not self.abort():
                time.sleep(0.002)
            if self.abort():
                break  # the caller turns torque off at once
            self._sync_write(stiffness, np.rint(soft + (self._nominal_gain - soft) * k / RAMP_STEPS).astype(int))
        self._barrier()
        return CallbackReturn.SUCCESS

    def _on_deactivate(self) -> CallbackReturn:
        self._sync_write(self.table["goal_position"], np.clip(self._present_raw_positions(), self.raw_min, self.raw_max))
        time.sleep(HOLD_TIME)
        self._sync_write(self.table["torque_enable"], np.zeros(len(self.ids), int))
        self._barrier()
        return CallbackReturn.SUCCESS

    def _on_cleanup(self) -> CallbackReturn:
        self._close()
        return CallbackReturn.SUCCESS

    def _on_error(self) -> CallbackReturn:
        if self.bus is None:
            return CallbackReturn.SUCCESS
        try:
            self.bus.write(BROADCAST_ID, self.table["torque_enable"].address, b"\x00")  # broadcast: every servo, no reply
            ok = True
        except Exception:  # noqa: BLE001 - the adapter is gone: nothing can reach the servos; the port is closed below
            ok = False
        if ok:
            try:
                self._barrier()
            except Exception:  # noqa: BLE001 - sent; whether a servo answers afterwards does not change that
                pass
        self._close()
        return CallbackReturn.SUCCESS if ok else CallbackReturn.FAILURE

    # ------------------------------------------------------------ cyclic
    def _read(self) -> tuple[ReturnType, RobotState]:
        address, length = self._state_block
        try:
            block = self.bus.group_read(address, length, self.ids, fast=self.cfg.serial.fast_sync_read)
        except BusError as exc:
            joint = self._joint_of.get(exc.servo_id)
            if joint is None:
                raise
            raise (BusTimeout if isinstance(exc, BusTimeout) else BusError)(f"{exc} [ID {exc.servo_id} is {joint}]", exc.servo_id) from exc
        position, velocity, effort = (self._column(block, address, name)
                                      for name in ("present_position", "present_velocity", "present_effort"))
        imu, device_us = self._read_imu()
        stamp = time.monotonic() if device_us is None else self._clock.stamp(device_us, time.monotonic())
        m = self.mapping
        state = RobotState(stamp=stamp, q=m.q_from_raw(position), qd=m.qd_from_raw(velocity),
                           effort=m.effort_from_raw(effort), imu=imu, privileged=None, flow=self._read_flow(stamp))
        return ReturnType.OK, state

    def _column(self, block: dict[int, bytes], address: int, name: str) -> np.ndarray:
        """Register ``name`` of every servo [joints] (raw) from a group read that began at ``address``."""
        reg = self.table[name]
        at = reg.address - address
        return np.array([R.from_bytes(block[i][at:at + reg.size], reg) for i in self.ids], dtype=float)

    def _write(self, q_cmd: np.ndarray) -> ReturnType:
        if q_cmd.shape != (len(self.ids),) or not np.all(np.isfinite(q_cmd)):
            raise ValueError(f"joint command must be {len(self.ids)} finite angles (rad), got shape {q_cmd.shape}")
        raw = self.mapping.raw_from_q(np.clip(q_cmd, self.q_lower, self.q_upper))
        self._sync_write(self.table["goal_position"], np.clip(raw, self.raw_min, self.raw_max))
        return ReturnType.OK

    # ------------------------------------------------------------ helpers
    def _read_imu(self) -> tuple[ImuReading, int | None]:
        """The IMU reading and its device stamp (µs), or NaNs and None without an IMU."""
        if self.imu_id is None:
            return ImuReading(quat=np.full(4, np.nan), gyro=np.full(3, np.nan), acc=np.full(3, np.nan)), None
        stamp_us, quat, gyro, acc = R.unpack_imu(self.bus.read(self.imu_id, R.IMU_BLOCK_ADDRESS, R.IMU_BLOCK_LENGTH))
        return ImuReading(quat=quat, gyro=gyro - self._gyro_bias, acc=acc - self._acc_bias), stamp_us

    def _read_flow(self, stamp: float) -> FlowReading | None:
        """The flow sensor's motion since the last cycle (reading the block clears it), or None without one."""
        if self.flow_id is None:
            return None
        _, interval, delta, rng, squal, rotation = R.unpack_flow(
            self.bus.read(self.flow_id, R.FLOW_BLOCK_ADDRESS, R.FLOW_BLOCK_LENGTH))
        return FlowReading(stamp=stamp, interval=interval, delta=delta, range=rng, squal=squal,
                           rotation=rotation if self.flow_gyro else None)

    def _present_raw_positions(self) -> np.ndarray:
        reg = self.table["present_position"]
        data = self.bus.group_read(reg.address, reg.size, self.ids, fast=False)
        return np.array([R.from_bytes(data[i], reg) for i in self.ids])

    def _sync_write(self, reg: R.Register, values: np.ndarray) -> None:
        self.bus.sync_write(reg.address, reg.size, {i: R.to_bytes(int(v), reg) for i, v in zip(self.ids, values)})

    def _clear_hardware_errors(self) -> list[str]:
        """Clear servos' hardware errors (if ``reboot_on_alert``): REBOOT, or re-write Torque Enable where the family
        has no REBOOT; the problems left."""
        failing = self._hardware_errors(self.ids)
        if not failing:
            return []
        names, how = self._joint_of, "REBOOT" if self.family.reboot else "re-arming (Torque Enable written)"
        if not self.cfg.serial.reboot_on_alert:
            return [f"{names[i]} (ID {i}): hardware error {text}; power-cycle or {how.split(' ')[0]} it "
                    f"(serial.reboot_on_alert: true does that)" for i, text in failing.items()]
        for dxl_id in failing:
            if self.family.reboot:
                self.bus.reboot(dxl_id)
            else:
                self.bus.write(dxl_id, self.table["torque_enable"].address, b"\x00")
        deadline = time.monotonic() + REBOOT_TIME
        while time.monotonic() < deadline:  # a rebooting servo is silent for a moment
            time.sleep(0.01)
            try:
                left = self._hardware_errors(list(failing))
                break
            except BusError:
                continue
        else:
            return [f"{names[i]} (ID {i}): no answer after {how}" for i in failing]
        self.rebooted = {names[i]: text for i, text in failing.items()}
        return [f"{names[i]} (ID {i}): hardware error {text} persists after {how}" for i, text in left.items()]

    def _hardware_errors(self, ids: list[int]) -> dict[int, str]:
        """{servo ID: its hardware error} of ``ids``: the Hardware Error Status register where the family has one,
        else the error byte of each servo's status."""
        if self.family.hardware_error_register:
            reg = self.table["hardware_error_status"]
            status = self.bus.group_read(reg.address, reg.size, ids, fast=False)
            return {i: R.describe_hardware_error(status[i][0]) for i in ids if status[i][0]}
        reg, found = self.table["present_position"], {}
        self.bus.raise_on_alert = True
        try:
            for dxl_id in ids:
                try:
                    self.bus.read(dxl_id, reg.address, reg.size)
                except ServoError as exc:
                    if not exc.hardware_error:
                        raise
                    found[dxl_id] = P1.describe_error(exc.hardware_error, self.family.maker)
        finally:
            self.bus.raise_on_alert = False
        return found

    def _ensure(self, dxl_id: int, reg: R.Register, value: int) -> None:
        """Write ``value`` only if the register holds something else (EEPROM wears)."""
        if R.from_bytes(self.bus.read(dxl_id, reg.address, reg.size), reg) != value:
            self.bus.write(dxl_id, reg.address, R.to_bytes(value, reg))

    def _barrier(self) -> None:
        """One round trip: every write sent before it has reached the servos."""
        try:
            self.bus.ping(self.ids[0])
        except ServoError:
            pass  # an answer all the same

    def _model_number(self, dxl_id: int, reg: R.Register) -> int | None:
        """The model number ``dxl_id`` reports (PING's where it gives one, else register ``reg``); None: no answer."""
        try:
            info = self.bus.ping(dxl_id)
            return info[0] if info is not None else R.from_bytes(self.bus.read(dxl_id, reg.address, reg.size), reg)
        except BusError:
            return None

    def _close(self) -> None:
        if self.bus is not None:
            self.bus.close()
            self.bus = None


class DeviceClock:
    """Device sample stamps (u32 µs, wrapping) -> seconds on the host's monotonic scale.

    stamp = device time (unwrapped) + offset, where the offset follows host − device time
    through a slow low-pass (:data:`OFFSET_GAIN` per reading): successive stamps differ by
    the device's sampling interval (host jitter enters at 1/1000 of its size), and clock
    drift between the two crystals is followed. A jump of more than
    :data:`STAMP_REANCHOR` s (device reboot) starts over from the host time.
    """

    WRAP = 1 << 32  # µs
    OFFSET_GAIN = 1e-3

    def __init__(self) -> None:
        self._last_us: int | None = None
        self._device = 0.0  # s of device time since the first sample, unwrapped
        self._offset = 0.0  # s, host - device

    def stamp(self, device_us: int, host_now: float) -> float:
        """Host-scale time (s) of the sample stamped ``device_us``, read at ``host_now``."""
        if self._last_us is None:
            self._offset = host_now
        else:
            self._device += ((device_us - self._last_us) % self.WRAP) * 1e-6
        self._last_us = device_us
        error = host_now - (self._device + self._offset)
        if abs(error) > STAMP_REANCHOR:
            self._device, self._offset = 0.0, host_now
            return host_now
        self._offset += self.OFFSET_GAIN * error
        return self._device + self._offset
