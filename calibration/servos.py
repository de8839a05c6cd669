"""Servo zero offsets and direction signs: ``legadapt calibrate servos``.

What it finds: for each joint the :class:`hardware.registers.JointMapping` numbers,
``q = direction * (servo_angle - zero_offset)`` (rad), written as the overlay
``serial: {directions: {...}, zero_offsets: {...}}`` that ``SerialRobot`` applies.

The procedure (:func:`calibrate_servos`), the same on a real robot and the emulator;
only the *witness*, who knows the true joint angles, differs:

1. **Reference posture.** The witness puts the robot in :func:`calibration_pose`
   (every coxa along its mount direction = 0, femur horizontal = 0, tibia pointing
   straight down = -π/2) and keeps it still; the servos' raw positions are averaged over
   a few reads, and ``zero_offset = servo_angle - direction * q_true`` per joint.
2. **Direction signs.** With torque on, holding the present positions, servos are nudged
   by +Δ and -Δ raw units (clipped to their position limits); the witness reports which
   way each joint angle went; ``direction = sign(Δq)``. A joint that does not move (a
   blocked leg, a dead servo) is an error, not a guess.
3. Torque off.

Real robot (:class:`OperatorWitness`): put the robot on a stand, legs free. Step 1:
torque off, the operator sets each leg in the jig pose (a square: femur level, tibia
plumb; coxa along the leg's mount yaw, 45° front/hind legs, 90° middle) and presses
Enter. Step 2: for one servo at a time the operator answers which way it moved:
``+`` means coxa counter-clockwise seen from above, femur lifting the leg, tibia
swinging the foot up/outwards (the sign conventions of :mod:`legadapt.robot.description`).

Emulator (:class:`EmulatorWitness`): the emulated robot is driven into the reference
posture through the bus with its *true* mounting (what the operator's hands do on a
real robot) and it reports the simulator's true joint angles, so all 18 servos are
nudged at once. Loads make the true pose differ from the commanded one a little; the
offsets use the true angles, so that does not matter.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from legadapt.calibration import common as K
from legadapt.calibration.overlay import write_yaml
from legadapt.hardware import registers as R
from legadapt.hardware.servo_bus import ServoBus
from legadapt.hardware.servo_types import XM430_W350, ServoType
from legadapt.robot.schema import JOINT_KINDS

#: Reference posture of one leg, rad, per joint kind: coxa 0, femur 0 (level), tibia -π/2 (plumb).
LEG_CALIBRATION_POSE = {"coxa": 0.0, "femur": 0.0, "tibia": -np.pi / 2}


def calibration_pose(n_joints: int) -> np.ndarray:
    """The reference posture [joints] (rad): every leg in :data:`LEG_CALIBRATION_POSE`."""
    return np.tile([LEG_CALIBRATION_POSE[k] for k in JOINT_KINDS], n_joints // len(JOINT_KINDS))
NUDGE_RAW = 80  # raw units (0.12 rad) each way in the direction probe
NUDGE_SETTLE = 0.3  # s to wait after each nudge
MIN_MOTION = 0.25  # fraction of the commanded motion a joint must follow
MAX_OFFSET = 3.14  # rad, the config's bound on a zero offset

Nudge = Callable[[Sequence[int], int], None]  # nudge(joint indices, sign): goals = hold + sign * Δ; waits to settle


class Witness(Protocol):
    """Who knows the true joint angles during calibration."""

    def place(self, bus: ServoBus, ids: Sequence[int], servo: ServoType) -> None:
        """Put the robot (servos of type ``servo``) in :func:`calibration_pose` and keep it still."""

    def pose(self) -> np.ndarray:
        """True joint angles [joints] (rad) now."""

    def free(self) -> None:
        """Get the robot ready for the direction probe (legs free to move, hands clear)."""

    def motion(self, nudge: Nudge) -> np.ndarray:
        """Signed joint motion [joints] caused by +Δ servo units (rad, or ±1 where only the sign is known)."""


class EmulatorWitness:
    """The simulator behind an emulated robot (:class:`sim.fake_robot.FakeRobot`) as witness."""

    def __init__(self, fake, settle: float = 1.2) -> None:
        self.fake = fake
        self.settle = settle  # s to stand up and come to rest in the reference posture

    def place(self, bus: ServoBus, ids: Sequence[int], servo: ServoType) -> None:
        raw = self.fake.mapping.raw_from_q(calibration_pose(len(ids)))  # the emulator's TRUE mounting: the operator's hands
        K.sync_write_register(bus, ids, servo.reg("goal_position"), raw)
        K.set_torque(bus, ids, True, servo)
        time.sleep(self.settle)

    def pose(self) -> np.ndarray:
        return self.fake.joint_state()[0]

    def free(self) -> None:
        """Nothing to do: the robot stays in the reference posture and is probed there."""

    def motion(self, nudge: Nudge) -> np.ndarray:
        every = list(range(len(self.fake.mapping.directions)))
        nudge(every, +1)
        plus = self.pose()
        nudge(every, -1)
        minus = self.pose()
        nudge(every, 0)
        return (plus - minus) / 2.0


class OperatorWitness:
    """A person with a jig at a real robot, asked on the terminal."""

    def __init__(self, joint_names: Sequence[str], ask: Callable[[str], str] = input,
                 say: Callable[[str], None] = print) -> None:
        self.joint_names = tuple(joint_names)
        self.ask, self.say = ask, say

    def place(self, bus: ServoBus, ids: Sequence[int], servo: ServoType) -> None:
        K.set_torque(bus, ids, False, servo)
        self.say("Torque is off. With the robot on its stand, set every leg to the calibration pose:\n"
                 "  coxa along the leg's mount direction, femur level, tibia plumb (pointing straight down).")
        self.ask("Press Enter when every leg is in the jig and still: ")

    def pose(self) -> np.ndarray:
        return calibration_pose(len(self.joint_names))

    def free(self) -> None:
        self.ask("Remove the jig (robot on its stand, legs free, hands clear); torque comes on next. Press Enter: ")

    def motion(self, nudge: Nudge) -> np.ndarray:
        out = np.zeros(len(self.joint_names))
        for j, name in enumerate(self.joint_names):
            nudge([j], +1)
            hint = {"coxa": "counter-clockwise seen from above", "femur": "leg up", "tibia": "foot up/outwards"}[name.split("_")[1]]
            while not out[j]:
                answer = self.ask(f"{name} moved: + ({hint}) or - ? ").strip()
                out[j] = {"+": 1.0, "-": -1.0}.get(answer, 0.0)
            nudge([j], 0)
        return out


@dataclass
class ServoCalibration:
    """Mounting of each joint's servo, in joint order (``joint_names``)."""

    joint_names: tuple[str, ...]
    directions: np.ndarray  # [joints] ±1
    zero_offsets: np.ndarray  # [joints] rad, servo angle at joint angle 0
    reference_raw: np.ndarray  # [joints] raw positions read in the reference posture
    reference_pose: np.ndarray  # [joints] rad, true joint angles there
    motion: np.ndarray  # [joints] joint motion per +Δ probe (rad; ±1 from an operator)
    servo: ServoType = XM430_W350

    def mapping(self) -> R.JointMapping:
        return R.JointMapping(self.directions, self.zero_offsets, self.servo.units)

    def overlay(self) -> dict:
        """The config overlay ``serial: {directions, zero_offsets}``."""
        return {"serial": {
            "directions": {n: int(d) for n, d in zip(self.joint_names, self.directions)},
            "zero_offsets": {n: round(float(o), 5) for n, o in zip(self.joint_names, self.zero_offsets)}}}

    def write(self, path: str | Path) -> Path:
        """Write the overlay YAML (with a comment header) to ``path``."""
        return write_yaml(path, self.overlay(), [
            "legadapt calibrate servos: joint mounting, q = direction * (servo_angle - zero_offset)",
            "directions: +1/-1; zero_offsets: rad from the horn centre (raw 2048 on X and MX, 512 on AX), servo sense.",
            "Merge into the robot config (or calibration.overlay.apply_overlay_files)."])


def calibrate_servos(bus: ServoBus, ids: Sequence[int], witness: Witness, joint_names: Sequence[str],
                     nudge_raw: int = NUDGE_RAW, settle: float = NUDGE_SETTLE, samples: int = 5,
                     servo: ServoType = XM430_W350) -> ServoCalibration:
    """Run the procedure of the module docstring on the servos ``ids`` (of type ``servo``) of the joints
    ``joint_names`` (joint order)."""
    ids, joint_names = list(ids), tuple(joint_names)
    if len(ids) != len(joint_names):
        raise K.CalibrationError(f"need the {len(joint_names)} servo IDs in joint order, got {len(ids)}")
    witness.place(bus, ids, servo)
    raw, q_ref = _reference(bus, ids, witness, samples, joint_names, servo)
    witness.free()
    hold = K.read_raw_positions(bus, ids, servo)
    lo = K.sync_read_register(bus, ids, servo.reg("min_position_limit"))
    hi = K.sync_read_register(bus, ids, servo.reg("max_position_limit"))
    K.sync_write_register(bus, ids, servo.reg("goal_position"), np.clip(hold, lo, hi))
    K.set_torque(bus, ids, True, servo)
    try:
        motion = witness.motion(_nudger(bus, ids, np.clip(hold, lo, hi), lo, hi, nudge_raw, settle, servo))
    finally:
        K.set_torque(bus, ids, False, servo)
    expected = nudge_raw * servo.units.rad_per_position
    stuck = [name for j, name in enumerate(joint_names) if abs(motion[j]) < MIN_MOTION * expected]
    if stuck:
        raise K.CalibrationError(f"joint(s) {', '.join(stuck)} did not follow a {expected:.3f} rad nudge "
                                 f"(moved {np.round(motion, 4).tolist()} rad): blocked leg, joint limit or dead servo?")
    directions = np.sign(motion)
    offsets = K.raw_to_servo_angle(raw, servo) - directions * q_ref
    offsets = np.clip((offsets + np.pi) % (2 * np.pi) - np.pi, -MAX_OFFSET, MAX_OFFSET)
    return ServoCalibration(joint_names, directions, offsets, raw, q_ref, motion, servo)


def _reference(bus: ServoBus, ids: list[int], witness: Witness, samples: int,
               joint_names: tuple[str, ...], servo: ServoType) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw positions [joints] and mean true pose [joints] (rad) over ``samples`` reads, 20 ms apart."""
    raws, poses = [], []
    for _ in range(samples):
        raws.append(K.read_raw_positions(bus, ids, servo))
        poses.append(witness.pose())
        time.sleep(0.02)
    raws = np.array(raws, dtype=float)
    spread = raws.max(axis=0) - raws.min(axis=0)
    if spread.max() > 3:
        moving = [joint_names[j] for j in np.flatnonzero(spread > 3)]
        raise K.CalibrationError(f"the robot moved while the reference posture was read ({', '.join(moving)}): keep it still")
    return raws.mean(axis=0), np.mean(poses, axis=0)


def _nudger(bus: ServoBus, ids: list[int], hold: np.ndarray, lo: np.ndarray, hi: np.ndarray, delta: int,
            settle: float, servo: ServoType) -> Nudge:
    def nudge(joints: Sequence[int], sign: int) -> None:
        goal = hold.copy()
        idx = list(joints)
        goal[idx] = np.clip(hold[idx] + sign * delta, lo[idx], hi[idx])
        K.sync_write_register(bus, ids, servo.reg("goal_position"), goal)
        bus.ping(ids[0])  # the goals have arrived
        time.sleep(settle)
    return nudge


def random_mounting(seed: int, n_joints: int, max_offset: float = 0.3, flip_prob: float = 0.3,
                    fit: tuple[np.ndarray, np.ndarray, ServoType] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random true mounting for an emulated robot: directions [joints] (±1) and offsets [joints] (rad, |o| <= max_offset).

    ``fit = (q_lower, q_upper, servo)``: offsets are narrowed so that every joint's range (rad) stays inside the
    servo's readable range, as a real robot is built (an AX reads 300°: a PhantomX tibia's 3 rad leaves it 0.02 rad).
    """
    rng = np.random.default_rng(seed)
    directions = np.where(rng.random(n_joints) < flip_prob, -1.0, 1.0)
    offsets = rng.uniform(-max_offset, max_offset, n_joints)
    if fit is not None:
        q_lower, q_upper, servo = fit
        u = servo.units
        lowest, highest = -u.center * u.rad_per_position, (u.position_max - u.center) * u.rad_per_position  # rad
        a, b = directions * np.asarray(q_lower), directions * np.asarray(q_upper)  # servo angle = these + offset
        offsets = np.clip(offsets, lowest - np.minimum(a, b), highest - np.maximum(a, b))
    return directions, offsets


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """``legadapt calibrate servos``: find the mounting, write the overlay YAML."""
    ap = argparse.ArgumentParser(prog="legadapt calibrate servos", description=__doc__.split("\n\n")[0])
    K.add_bus_arguments(ap, "servos")
    ap.add_argument("--mounting-error", type=K.bounded(int, 0, 2**32 - 1), metavar="SEED",
                    help="with --emulate: give the emulated servos a random true mounting (offsets up to ±0.3 rad, some signs flipped)")
    ap.add_argument("--nudge", type=K.bounded(int, 1, 1000), default=NUDGE_RAW, help="probe motion, raw units (default: %(default)s)")
    args = ap.parse_args(argv)
    return K.run_cli(_main, args)


def _main(args: argparse.Namespace) -> int:
    cfg = K.load_config(args.config)
    ids, joints = cfg.serial.servo_ids, cfg.robot_description.joint_names
    if not args.emulate:
        with K.bus_for(cfg, args.port) as bus:
            result = calibrate_servos(bus, ids, OperatorWitness(joints), joints, args.nudge, servo=K.servo_type_of(cfg))
        return _report(result, args.out, None)
    from legadapt.sim.fake_robot import FakeRobot

    desc = cfg.robot_description
    fit = (desc.lower_limits(), desc.upper_limits(), K.servo_type_of(cfg))
    dirs, offs = random_mounting(args.mounting_error, len(joints), fit=fit) if args.mounting_error is not None else (None, None)
    with FakeRobot(cfg, directions=dirs, zero_offsets=offs) as fake, K.bus_for(cfg, fake.path) as bus:
        result = calibrate_servos(bus, ids, EmulatorWitness(fake), joints, args.nudge, servo=K.servo_type_of(cfg))
        return _report(result, args.out, fake.mapping)


def _report(result: ServoCalibration, out: Path, truth: R.JointMapping | None) -> int:
    path = result.write(out)
    for j, name in enumerate(result.joint_names):
        line = f"{name:9s} direction {int(result.directions[j]):+d}  zero offset {result.zero_offsets[j]:+.4f} rad"
        if truth is not None:
            line += f"   (true {int(truth.directions[j]):+d} {truth.zero_offsets[j]:+.4f})"
        print(line)
    print(f"wrote {path}")
    return 0


__all__ = ["LEG_CALIBRATION_POSE", "calibration_pose", "EmulatorWitness", "OperatorWitness", "ServoCalibration", "Witness", "calibrate_servos",
           "main", "random_mounting"]
