"""The emulated serial robot: the simulated robot behind its servo bus (any family the robot description names) on a pty.

``FakeRobot(cfg)`` opens a pseudo-terminal (``os.openpty``, raw mode) and serves, on
its slave side (:attr:`FakeRobot.path`), one emulated servo per joint of the model the
robot description gives it (``cfg.robot_description.joint_servos[j].model``, a
:class:`hardware.servo_types.ServoType`; IDs ``cfg.serial.servo_ids``), the legadapt IMU
device (``cfg.serial.imu_id``) and, where the robot description has one, the optical-flow
device (``cfg.serial.flow_id``; register maps in :mod:`hardware.registers`). The bus speaks
the servos' family: Dynamixel Protocol 2.0 (XM430-W350: :class:`sim.servo_emulator.BusEmulator`),
Dynamixel Protocol 1.0 (AX-12A/AX-18A, MX-28/MX-64) or Feetech SCS/STS (STS3215)
(:class:`sim.servo_emulator1.OneByteBusEmulator`). Any client of that protocol can open the
path like a USB adapter: ROBOTIS's ``dynamixel_sdk``, Feetech's ``scservo_sdk``,
:class:`hardware.bus.DynamixelBus`, ``SerialRobot``.

Physics: the MuJoCo (or PyBullet) :class:`sim.hexapod.SimulatedHexapod` of ``cfg``,
with its perturbations (start times count from power-on). It runs in real time:
**whenever the serving loop wakes — on every received packet, at least every**
:data:`TICK` **s — the physics is advanced by the elapsed wall time** (whole physics
steps, at most :data:`MAX_CATCH_UP` s at once; a longer stall is skipped and counted in
``overruns``), then the packet is answered from the state at that moment. Like a real
robot at power-up the servos start with torque off and the robot settles on its belly.

Mounting: servo raw units (each model's own: :class:`hardware.registers.ServoUnits`) map to
joint angles through each joint's direction sign and zero offset
(:class:`hardware.registers.JointMapping`), from ``cfg.serial`` unless other "true" values
are given, so calibration can be tested against a robot mounted unlike its config says.

Faults (:class:`FaultConfig` at construction, and at run time through ``faults`` and
the methods), on every family: drop replies with probability ``drop_prob`` or the next N,
corrupt one byte of a reply (its CRC or checksum then fails), delay every reply, raise a
hardware error on a servo (Protocol 2.0: the alert bit and Hardware Error Status; Protocol
1.0 and Feetech: the status error byte's bits, cleared as :mod:`sim.servo_emulator` says),
silence a device, fill the line with garbage, close the pty master after
``disconnect_after`` s or on :meth:`disconnect` — to the client exactly a USB unplug
(``SerialException``).

Frames from the host: Protocol 2.0 status packets (echoes) are ignored. In Protocol 1.0 a
status frame looks like an instruction, so a frame is ignored only if it equals, byte for
byte, a reply sent since the last instruction and within :data:`ECHO_WINDOW` s (each reply is
ignored once; a pty has no echo, this is only a guard); every other frame is an instruction.
The price: a servo with an input-voltage error (0x01) answers a PING with the PING's own
bytes, so the host's next identical PING to it, sent within the window, goes unanswered once.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from legadapt.hardware import protocol as P
from legadapt.hardware import protocol1 as P1
from legadapt.hardware import registers as R
from legadapt.hardware.servo_types import ServoType, bus_servo_types
from legadapt import config as C
from legadapt.sim.fake_faults import ScheduledFault
from legadapt.sim.hexapod import SimulatedHexapod, standing_pose
from legadapt.sim.servo_emulator import BusEmulator, DeviceTable, FlowTable, ImuTable, ServoTable
from legadapt.sim.servo_emulator1 import OneByteBusEmulator

TICK = 0.002  # s, longest the serving loop sleeps between physics catch-ups
MAX_CATCH_UP = 0.1  # s of physics advanced at most per wake; beyond that time is skipped
SETTLE_TIME = 0.6  # s, unpowered settling at power-up (the collapse is over by then)
ECHO_WINDOW = 0.5  # s: a P1 frame equal to a reply sent this recently (since the last instruction) is its echo
CORRUPT_FROM = {2: 7, 1: 4}  # protocol -> first byte a corruption may flip (INST / ERR on): frame stays, check fails


@dataclass
class FaultConfig:
    """Faults the fake robot injects. Mutable: change fields at run time."""

    drop_prob: float = 0.0  # probability each reply packet is not sent
    corrupt_prob: float = 0.0  # probability each reply has one byte flipped (its CRC fails)
    reply_delay: float = 0.0  # s added before every reply
    alerts: dict[int, int] = field(default_factory=dict)  # servo id -> hardware error bits at power-up (0x20 overload)
    silent_ids: tuple[int, ...] = ()  # devices that never answer
    disconnect_after: float | None = None  # s after start(): close the pty master (a USB unplug)
    schedule: tuple[ScheduledFault, ...] = ()  # faults at times after the first torque enable
    seed: int = 0  # seed of the drop/corrupt/garbage draws


@dataclass
class FakeStats:
    """Counters of the wire side."""

    replies_sent: int = 0
    replies_dropped: int = 0
    replies_corrupted: int = 0
    rx_crc_errors: int = 0  # instruction packets that failed their CRC (or checksum)
    overruns: int = 0  # physics catch-ups cut to MAX_CATCH_UP


class FakeRobot:
    """An emulated serial robot (the config's robot description, its servos' bus family) on a pseudo-terminal."""

    def __init__(self, cfg: C.LegadaptConfig, faults: FaultConfig | None = None,
                 directions: np.ndarray | None = None, zero_offsets: np.ndarray | None = None,
                 report=None) -> None:
        """``directions``/``zero_offsets`` [joints]: true mounting if it differs from ``cfg.serial``;
        ``report(line)`` gets one line per injected fault and per torque change."""
        self.cfg = cfg
        self.faults = faults or FaultConfig()
        self.stats = FakeStats()
        sc = cfg.serial
        joints = cfg.robot_description.joint_names
        dirs = np.array([sc.directions.get(j, 1) for j in joints], float) if directions is None else directions
        offs = np.array([sc.zero_offsets.get(j, 0.0) for j in joints]) if zero_offsets is None else zero_offsets
        self.servo_types: tuple[ServoType, ...] = bus_servo_types([s.model for s in cfg.robot_description.joint_servos])
        self.family = self.servo_types[0].family
        self.mapping = R.JointMapping(dirs, offs, tuple(t.units for t in self.servo_types))
        self.hexapod = SimulatedHexapod.from_config(cfg)
        q0, height = standing_pose(self.hexapod.desc, cfg.gait)
        self.hexapod.reset(q0, height)
        self.hexapod.set_torque(False)
        self.hexapod.advance(SETTLE_TIME)
        lo, hi = self.mapping.raw_limits(self.hexapod.desc.lower_limits(), self.hexapod.desc.upper_limits())
        self.servos = [ServoTable(i, t, int(a), int(b)) for i, t, a, b in zip(sc.servo_ids, self.servo_types, lo, hi)]
        self.imu = ImuTable(sc.imu_id) if sc.imu_id is not None else None
        has_flow = sc.flow_id is not None and self.hexapod.flow is not None
        self.flow = FlowTable(sc.flow_id, self.hexapod.flow.spec.range_timing == "interval") if has_flow else None
        self.bus = self._make_bus([*self.servos, *(d for d in (self.imu, self.flow) if d is not None)])
        self.true_pose: tuple[np.ndarray, np.ndarray] | None = None  # (position [3] m, quaternion w, x, y, z)
        self._lock = threading.RLock()
        self.report = report or (lambda line: None)
        self._t_start = time.monotonic()
        self._t_active: float | None = None  # monotonic time of the first torque enable
        self._torque_any = False  # some servo has torque on
        for dxl_id, bits in self.faults.alerts.items():
            self.raise_alert(dxl_id, bits)
        for dxl_id in self.faults.silent_ids:
            self.silence(dxl_id)
        self._refresh_present()
        q = self.hexapod.read().q
        for s, raw in zip(self.servos, np.clip(self.mapping.raw_from_q(q), lo, hi)):
            s.set("goal_position", int(raw))
        self._rng = np.random.default_rng(self.faults.seed)
        self._drop_next = 0
        self._corrupt_next = 0
        self._parser = P.PacketParser() if self.family.protocol == 2 else P1.FrameParser()
        self._pending: list[tuple[float, bytes]] = []  # (due time, reply bytes)
        self._sent: deque[tuple[float, bytes]] = deque(maxlen=256)  # (send time, reply) since the last instruction
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = True
        self._sim_start = self.hexapod.time
        self._pending_faults = sorted(self.faults.schedule, key=lambda f: f.at)
        self._timed: list[tuple[float, ScheduledFault]] = []  # (end time, fault) of faults with a duration
        self._garbage_until = 0.0

    def _make_bus(self, devices: list[DeviceTable]) -> BusEmulator | OneByteBusEmulator:
        """The instruction handler of the servos' family: Protocol 2.0, or Protocol 1.0 / Feetech."""
        if self.family.protocol == 2:
            return BusEmulator(devices)
        return OneByteBusEmulator(devices, self.family)

    # ------------------------------------------------------------ runtime API
    def start(self) -> FakeRobot:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve, name="fake-robot", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the pty (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        with self._lock:
            self._close_master()
            if self._slave >= 0:
                os.close(self._slave)
                self._slave = -1
            self.hexapod.backend.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_next(self, n: int = 1) -> None:
        """Drop the next ``n`` reply packets."""
        with self._lock:
            self._drop_next += n

    def corrupt_next(self, n: int = 1) -> None:
        """Flip one byte in each of the next ``n`` reply packets."""
        with self._lock:
            self._corrupt_next += n

    def raise_alert(self, dxl_id: int, bits: int = R.HW_OVERLOAD) -> None:
        """A hardware error on servo ``dxl_id``, its torque off: Protocol 2.0 sets Hardware Error Status ``bits``
        and the alert bit until REBOOT; Protocol 1.0 and Feetech set the status error byte's hardware bits
        (MX: until REBOOT; AX, STS: until the host writes Torque Enable; see :mod:`sim.servo_emulator`)."""
        with self._lock:
            servo = self._servo(dxl_id)
            servo.raise_hardware_error(bits)
            self._apply_servo_commands()

    def silence(self, dxl_id: int, silent: bool = True) -> None:
        """Make device ``dxl_id`` stop (or resume) answering."""
        with self._lock:
            dev = self.bus.device(dxl_id)
            if dev is None:
                raise KeyError(f"no device with ID {dxl_id} on the fake bus")
            dev.silent = silent

    def disconnect(self) -> None:
        """Close the pty master now: the client sees a USB unplug."""
        with self._lock:
            self._close_master()

    def mark_run_start(self) -> None:
        """Perturbations not yet active start ``start`` s from now (see ``SimulatedHexapod``)."""
        with self._lock:
            self.hexapod.mark_run_start()

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """True joint angles (rad) and goal angles (rad) [joints], for tests."""
        with self._lock:
            goals = np.array([s.get("goal_position") for s in self.servos])
            return self.hexapod.read().q, self.mapping.q_from_raw(goals)

    def torque_enabled(self) -> np.ndarray:
        """Torque Enable of each servo [joints] (bool)."""
        with self._lock:
            return np.array([s.torque_enabled for s in self.servos])

    # ------------------------------------------------------------ serving loop
    def serve(self) -> None:
        """Serve until :meth:`stop` (or a disconnect); the physics follows the wall clock."""
        self._t_start = time.monotonic()
        self._sim_start = self.hexapod.time
        while not self._stop.is_set() and self._master >= 0:
            now = time.monotonic()
            wait = TICK if not self._pending else max(0.0, min(TICK, self._pending[0][0] - now))
            try:
                ready, _, _ = select.select([self._master], [], [], wait)
            except (OSError, ValueError):  # master closed by disconnect() meanwhile
                break
            with self._lock:
                if self._master < 0:
                    break
                self._catch_up()
                if ready:
                    self._receive()
                self._run_schedule()
                self._send_due()
                after = self.faults.disconnect_after
                if after is not None and time.monotonic() - self._t_start >= after:
                    self._close_master()

    def _catch_up(self) -> None:
        dt = self.hexapod.backend.timestep
        lag = (time.monotonic() - self._t_start) - (self.hexapod.time - self._sim_start)
        if lag > MAX_CATCH_UP:
            self.stats.overruns += 1
            self._sim_start += lag - MAX_CATCH_UP  # skip the stalled time
            lag = MAX_CATCH_UP
        n = int(lag / dt)
        if n > 0:
            self.hexapod.advance(n * dt)
            self._reapply_torque_mask()

    def _receive(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no client has the slave open: nothing to read
                return
            raise
        crc_before = self._parser.crc_errors
        packets = self._parser.feed(data)
        self.stats.rx_crc_errors += self._parser.crc_errors - crc_before
        for pkt in packets:
            if self._is_reply(pkt):
                continue
            self._sent.clear()  # an instruction: the replies before it can no longer come back as echoes
            self._refresh_present()
            replies = self.bus.handle(pkt)
            self._apply_servo_commands()
            due = time.monotonic() + self.faults.reply_delay
            for _, raw in replies:
                self._pending.append((due, self._wire_faults(raw)))

    def _is_reply(self, pkt: P.Packet | P1.Frame) -> bool:
        """Whether a received frame is a device's reply (an echo), not an instruction for the devices."""
        if isinstance(pkt, P.Packet):
            return pkt.is_status
        now = time.monotonic()
        for sent in self._sent:
            if sent[1] == pkt.raw and now - sent[0] <= ECHO_WINDOW:
                self._sent.remove(sent)
                return True
        return False

    def _wire_faults(self, raw: bytes) -> bytes:
        if time.monotonic() < self._garbage_until:
            self.stats.replies_corrupted += 1
            return self._rng.integers(0, 256, len(raw) + int(self._rng.integers(0, 16)), dtype=np.uint8).tobytes()
        if self._drop_next > 0 or (self.faults.drop_prob > 0 and self._rng.random() < self.faults.drop_prob):
            self._drop_next = max(0, self._drop_next - 1)
            self.stats.replies_dropped += 1
            return b""
        if self._corrupt_next > 0 or (self.faults.corrupt_prob > 0 and self._rng.random() < self.faults.corrupt_prob):
            self._corrupt_next = max(0, self._corrupt_next - 1)
            self.stats.replies_corrupted += 1
            buf = bytearray(raw)
            k = int(self._rng.integers(CORRUPT_FROM[self.family.protocol], len(buf)))  # frame stays, check fails
            buf[k] ^= int(self._rng.integers(1, 256))
            return bytes(buf)
        return raw

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, raw = self._pending.pop(0)
            if not raw:
                continue
            try:
                os.write(self._master, raw)
                self.stats.replies_sent += 1
                self._sent.append((now, raw))
            except BlockingIOError:  # the client is not reading: the bytes are lost, as on a wire
                self.stats.replies_dropped += 1

    def _now(self) -> float:
        """s since serving started (the clock of the report lines)."""
        return time.monotonic() - self._t_start

    def _run_schedule(self) -> None:
        now = time.monotonic()
        for end, fault in [x for x in self._timed if x[0] <= now]:
            self._timed.remove((end, fault))
            if fault.kind == "silent":
                self.silence(fault.target, False)
            self.report(f"t={self._now():.3f} fault over: {fault.describe()}")
        if self._garbage_until and now < self._garbage_until and self._rng.random() < 0.2:
            self._pending.append((now, self._rng.integers(0, 256, 12, dtype=np.uint8).tobytes()))  # noise between replies
        while self._pending_faults and self._t_active is not None and now - self._t_active >= self._pending_faults[0].at:
            self._inject(self._pending_faults.pop(0), now)

    def _inject(self, fault: ScheduledFault, now: float) -> None:
        self.report(f"t={self._now():.3f} fault: {fault.describe()}")
        if fault.kind == "garbage":
            self._garbage_until = now + fault.duration
        elif fault.kind == "corrupt":
            self._corrupt_next += fault.count
        elif fault.kind == "drop":
            self._drop_next += fault.count
        elif fault.kind == "silent":
            self.silence(fault.target)
        elif fault.kind == "alert":
            self.raise_alert(fault.target, fault.count)
        elif fault.kind == "disconnect":
            self._close_master()
        if fault.duration is not None:
            self._timed.append((now + fault.duration, fault))

    def _close_master(self) -> None:
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
            self.connected = False

    # ------------------------------------------------------------ physics coupling
    def _servo(self, dxl_id: int) -> ServoTable:
        for s in self.servos:
            if s.id == dxl_id:
                return s
        raise KeyError(f"no servo with ID {dxl_id} on the fake bus")

    def _refresh_present(self) -> None:
        state = self.hexapod.read()
        self.true_pose = (state.privileged.pos.copy(), state.privileged.quat.copy())  # what a mocap system sees
        m = self.mapping
        pos, vel = m.raw_from_q(state.q), m.raw_from_qd(state.qd)
        effort = m.raw_from_effort(state.effort)  # clipped to each model's effort_max
        tick = int(self.hexapod.time * 1000)
        for j, s in enumerate(self.servos):
            s.set_present(int(pos[j]), int(vel[j]), int(effort[j]), tick)
        if self.imu is not None:
            imu = state.imu
            self.imu.set_measurement(R.pack_imu(int(self.hexapod.time * 1e6), imu.quat, imu.gyro, imu.acc))
        if self.flow is not None and state.flow is not None:
            f = state.flow
            self.flow.add_motion(int(self.hexapod.time * 1e6), f.delta, f.range, f.squal, f.rotation)

    def _apply_servo_commands(self) -> None:
        if any(s.goal_changed for s in self.servos):
            goals = np.array([s.get("goal_position") for s in self.servos])
            self.hexapod.write(self.mapping.q_from_raw(goals))
            for s in self.servos:
                s.goal_changed = False
        if any(s.torque_changed for s in self.servos):
            for s in self.servos:
                s.torque_changed = False
            self._reapply_torque_mask(recompute=True)
            self._report_torque()

    def _report_torque(self) -> None:
        """A report line when the robot goes from no servo powered to some, or back."""
        n = sum(s.torque_enabled for s in self.servos)
        if (n > 0) != self._torque_any:
            self._torque_any = n > 0
            self.report(f"t={self._now():.3f} torque {'on' if n else 'off'} ({n} of {len(self.cfg.serial.servo_ids)} servos on)")
        if n and self._t_active is None:
            self._t_active = time.monotonic()

    def _reapply_torque_mask(self, recompute: bool = False) -> None:
        mask = np.array([s.torque_enabled for s in self.servos], dtype=float)
        if recompute:
            self.hexapod.set_torque(bool(mask.any()))  # the hexapod's own scales (perturbations)
        if mask.any() and not mask.all():
            b = self.hexapod.backend
            b.set_motor_scales(b.kp_scale, b.force_scale * mask)
