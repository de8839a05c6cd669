"""Optical-flow sensor mounting offset and scale from two short walks: ``legadapt calibrate flow``.

Procedure (:func:`calibrate_flow`), on a flat, textured floor with room to walk 1 m:

1. **Offset.** The robot turns on the spot for ``turn`` s. The body barely moves, so the lens moves
   on a circle about the turning axis: its velocity is ``w x r`` for the lens position r. With
   the lens velocities from the flow (taking r = 0) and the gyro, least squares gives r_x, r_y
   (``lens_x = -w_z r_y``, ``lens_y = w_z r_x``; r_z stays the description's).
2. **Scale.** The robot walks straight at half stride for ``walk`` s. The distance the flow
   integrates over the distance walked is the factor on ``counts_per_rad`` (the lens's focal length
   and the chip's resolution vary from unit to unit). The distance walked is measured with a tape
   (``--measure``: the robot pauses to be marked, then asks) or, without one, by the legs' own
   odometry (the simulated robot, lockstep: within 1 % and 1.3 % of the true factor; over the emulated
   robot's pty in real time the legs' figure varied by up to 9 % between runs: repeat it, on a quiet computer).

Result: an overlay setting ``serial.flow_position`` and ``serial.flow_scale`` (``legadapt run
--calibration FILE``), which the flow-fused estimator uses in place of the description's values.
Refused (:class:`calibration.common.CalibrationError`): no flow sensor, a turn too slow to see the
offset, or readings the sensor could not track.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from legadapt.calibration import common as K
from legadapt.calibration.overlay import write_yaml
from legadapt.controller.flow_velocity import flow_velocity
from legadapt.controller.leg_odometry import LegOdometry
from legadapt.controller.open_loop import ramp_to
from legadapt.controller.slip import SlipMonitor
from legadapt.hardware.interface import CallbackReturn, ReturnType, Robot
from legadapt.robot.description import FlowSensorSpec
from legadapt.robot_state import RobotState
from legadapt.sim.gait import PhaseGait
from legadapt.sim.hexapod import make_gait

MIN_TURN_RATE = 0.2  # rad/s of mean |yaw rate| below which the turn cannot show the offset
WALK_ACTION = 0.5  # stride of the straight walk: half strides slip least, so the legs measure the distance best


@dataclass
class FlowCalibration:
    """The flow sensor's lens position (body frame, m) and the factor on its counts per rad."""

    position: np.ndarray  # [3] m
    scale: float
    turn_rate: float  # rad/s, mean |yaw rate| of the turn
    walked_legs: float  # m, the straight walk by leg odometry
    walked_flow: float  # m, the same by the flow at scale 1
    samples: int

    def write(self, path: str | Path) -> Path:
        header = [f"legadapt calibrate flow: lens at {np.round(self.position, 4).tolist()} m (turn at {self.turn_rate:.2f} rad/s),",
                  f"scale {self.scale:.4f} (walked {self.walked_legs:.3f} m by the legs, {self.walked_flow:.3f} m by the flow),",
                  f"{self.samples} readings"]
        return write_yaml(path, {"serial": {"flow_position": [round(float(v), 5) for v in self.position],
                                            "flow_scale": round(self.scale, 5)}}, header)


def record(robot: Robot, gait: PhaseGait, action: np.ndarray, seconds: float) -> list[tuple[RobotState, float]]:
    """Walk the gait with a constant ``action`` for ``seconds``; every reading with its gait phase."""
    period = robot.servo_period
    out, phase, deadline = [], 0.0, time.monotonic()
    for _ in range(int(round(seconds / period))):
        phase = (phase + gait.params.frequency * period) % 1.0
        if robot.write(gait.joint_targets(phase, action)) is not ReturnType.OK or robot.read() is not ReturnType.OK:
            raise K.CalibrationError(f"the robot stopped answering during the calibration walk: {robot.last_error}")
        out.append((robot.state, phase))
        advance = getattr(robot, "advance", None)
        if advance is not None:
            advance(period)
        else:
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))
    return out


def _flow_reads(spec: FlowSensorSpec, samples):
    """(state, phase, its flow velocity and noise or None) for each (state, phase) sample in order, each read's
    range taken over its interval with the previous read's (:func:`controller.flow_velocity.flow_velocity`)."""
    previous = float("nan")
    for state, phase in samples:
        if state.flow is None:
            yield state, phase, None
            continue
        yield state, phase, flow_velocity(spec, state.flow, state.imu.gyro, previous_range=previous)
        previous = state.flow.range


def _lens_velocities(spec: FlowSensorSpec, samples) -> tuple[np.ndarray, np.ndarray]:
    """Lens velocities [n, 2] (m/s, flow taken at r = 0) and gyro rates [n, 3] of the tracked readings."""
    at_origin = replace(spec, position=(0.0, 0.0, 0.0))
    lens, gyro = [], []
    for state, _, v in _flow_reads(at_origin, samples):
        if v is not None:
            lens.append(v[0])
            gyro.append(state.imu.gyro)
    return np.array(lens).reshape(-1, 2), np.array(gyro).reshape(-1, 3)


def fit_offset(spec: FlowSensorSpec, turn) -> tuple[np.ndarray, float]:
    """Lens position [3] (m) from a turn on the spot, and the turn's mean |yaw rate| (rad/s)."""
    lens, gyro = _lens_velocities(spec, turn)
    if len(lens) < 20:
        raise K.CalibrationError(f"only {len(lens)} flow readings tracked the floor during the turn: check that the "
                                 f"sensor faces a textured floor within its range ({spec.min_range:g}-{spec.max_range:g} m)")
    wz = gyro[:, 2]
    rate = float(np.mean(np.abs(wz)))
    if rate < MIN_TURN_RATE:
        raise K.CalibrationError(f"the robot turned at {rate:.2f} rad/s on average: too slow to see the lens offset "
                                 f"(needs {MIN_TURN_RATE} rad/s); is it standing on a slippery floor?")
    A = np.concatenate([np.stack([np.zeros_like(wz), -wz], axis=1), np.stack([wz, np.zeros_like(wz)], axis=1)])
    b = np.concatenate([lens[:, 0], lens[:, 1]])
    (rx, ry), *_ = np.linalg.lstsq(A, b, rcond=None)
    return np.array([rx, ry, spec.position[2]]), rate


def fit_scale(spec: FlowSensorSpec, gait: PhaseGait, walk) -> tuple[float, float, float]:
    """(scale, metres by the legs, metres by the flow at scale 1) over a straight walk.

    The flow's distance sums every reading's motion (each covers the time since the previous one); the legs'
    holds the last stance velocity between stances, as the plain estimator does."""
    legs = LegOdometry(gait, SlipMonitor(threshold=1.0))
    legs.reset(walk[0][0])
    d_legs, d_flow, v_held = np.zeros(2), np.zeros(2), np.zeros(2)
    t_prev = walk[0][0].stamp
    for state, phase, v_flow in _flow_reads(spec, walk[1:]):
        v_legs, _ = legs.update(state, phase)
        v_held = v_held if v_legs is None else v_legs[:2]
        d_legs += v_held * (state.stamp - t_prev)
        t_prev = state.stamp
        if v_flow is not None:
            d_flow += v_flow[0] * state.flow.interval
    walked_legs, walked_flow = float(np.linalg.norm(d_legs)), float(np.linalg.norm(d_flow))
    if walked_legs < 0.2:
        raise K.CalibrationError(f"the robot walked only {walked_legs:.2f} m by its legs: too little to find the scale")
    return walked_flow / walked_legs, walked_legs, walked_flow


def calibrate_flow(robot: Robot, gait: PhaseGait, spec: FlowSensorSpec, turn: float = 4.0, walk: float = 6.0,
                   measured: Callable[[], float] | None = None, say: Callable[[str], None] = print) -> FlowCalibration:
    """Stand up, turn on the spot, walk straight, settle; the fitted offset and scale. ``robot`` must be active.

    ``measured``: asked after the walk for the distance walked as measured (m, start to end of the straight
    walk, e.g. with a tape); the scale is then the flow's distance over it. Without it the legs measure it
    (an intact robot on a grippy floor: its feet do not slide).
    """
    stand = gait.joint_targets(0.0, np.zeros(gait.action_dim))
    ramp_to(robot, stand, robot.servo_period)
    turning = record(robot, gait, np.array([1.0, -1.0]), turn)
    position, rate = fit_offset(spec, turning)
    ramp_to(robot, stand, robot.servo_period)
    if measured is not None:
        say("mark the robot's position now: it walks straight in 3 s")
        ramp_to(robot, stand, robot.servo_period, duration=3.0)
    straight = record(robot, gait, np.array([WALK_ACTION, WALK_ACTION]), walk)
    scale, walked_legs, walked_flow = fit_scale(replace(spec, position=tuple(position)), gait, straight)
    ramp_to(robot, stand, robot.servo_period)
    if measured is not None:
        distance = measured()
        if not 0.1 <= distance <= 10.0:
            raise K.CalibrationError(f"a measured distance of {distance:g} m is not plausible (the walk is about 0.5 m)")
        scale, walked_legs = walked_flow / distance, distance
    return FlowCalibration(position, scale, rate, walked_legs, walked_flow, len(turning) + len(straight))


# ---------------------------------------------------------------- command line
def _ask_distance() -> float:
    text = input("distance walked from the mark, m: ")
    try:
        return float(text)
    except ValueError:
        raise K.CalibrationError(f"{text!r} is not a distance in metres") from None



def main(argv: list[str] | None = None) -> int:
    """``legadapt calibrate flow``: the robot turns on the spot, then walks 1 m straight."""
    ap = argparse.ArgumentParser(prog="legadapt calibrate flow", description=__doc__.split("\n\n")[0])
    K.add_bus_arguments(ap, "flow")
    ap.add_argument("--turn", type=K.bounded(float, 1, 60), default=4.0, help="turn on the spot, s (default: %(default)s)")
    ap.add_argument("--walk", type=K.bounded(float, 1, 60), default=6.0, help="straight walk, s (default: %(default)s)")
    ap.add_argument("--measure", action="store_true", help="ask for the straight walk's distance as measured with a tape "
                    "(more accurate than the legs' own odometry)")
    return K.run_cli(_main, ap.parse_args(argv))


def _main(args: argparse.Namespace) -> int:
    from legadapt.hardware.serial_robot import SerialRobot

    cfg = K.load_config(args.config)
    desc = cfg.robot_description
    if desc.flow is None or cfg.serial.flow_id is None:
        raise K.CalibrationError(f"robot {desc.name!r} has no optical-flow sensor on its bus (sensors.flow and bus.flow_id "
                                 f"in its description)")
    cfg = cfg.model_copy(update={"controller": cfg.controller.model_copy(update={"state_source": "estimated+flow"})})
    fake = None
    if args.emulate:
        from legadapt.sim.fake_robot import FakeRobot

        fake = FakeRobot(cfg).start()
    port = fake.path if fake is not None else args.port or cfg.serial.port
    robot = SerialRobot(cfg.model_copy(update={"serial": cfg.serial.model_copy(update={"port": port})}))
    try:
        if robot.configure() is not CallbackReturn.SUCCESS or robot.activate() is not CallbackReturn.SUCCESS:
            raise K.CalibrationError(f"the robot did not start: {robot.last_error}")
        print("the robot stands, turns on the spot, then walks about 1 m straight: keep the way clear", flush=True)
        result = calibrate_flow(robot, make_gait(desc, cfg.gait), desc.flow, args.turn, args.walk,
                                measured=_ask_distance if args.measure else None)
    finally:
        robot.shutdown()
        if fake is not None:
            fake.stop()
    print(f"lens at {np.round(result.position, 4).tolist()} m (description: {list(desc.flow.position)}), scale "
          f"{result.scale:.4f} ({result.walked_legs:.3f} m by the legs, {result.walked_flow:.3f} m by the flow)")
    print(f"wrote {result.write(args.out)}")
    return 0


__all__ = ["FlowCalibration", "calibrate_flow", "fit_offset", "fit_scale", "main", "record"]
