"""What any robot reports when read: the types shared by simulation, hardware and controller.

Shapes are given per field; units are SI (m, s, rad, N·m). Joint vectors follow
the robot description's joint order (leg-major coxa/femur/tibia; 18 joints on the default hexapod).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImuReading:
    """What an IMU on the torso measures, in its sensor frame."""

    quat: np.ndarray  # [4] orientation w, x, y, z (world <- sensor)
    gyro: np.ndarray  # [3] angular rate, rad/s
    acc: np.ndarray  # [3] specific force, m/s² (reads +9.81 on z when level and still)


@dataclass
class FlowReading:
    """What a downward optical-flow sensor reports (``legadapt.robot.description.FlowSensorSpec``).

    ``delta`` is the image motion of the floor accumulated since the previous reading, in the
    sensor's counts, along the body's x and y: a floor point straight below moves by
    ``counts_per_rad * (-v_x / range + w_y)`` per second along x and ``counts_per_rad * (-v_y / range - w_x)``
    along y, for the lens velocity v (m/s) and the body rate w (rad/s), both in the body frame.
    ``rotation`` is the sensor board's own gyro integrated over the same interval, so that the
    rotation in ``delta`` can be taken out with the rotation of that very interval (as PX4FLOW
    boards report it in MAVLink's OPTICAL_FLOW_RAD).
    """

    stamp: float  # s, robot clock of this reading
    interval: float  # s, time the motion in ``delta`` was accumulated over
    delta: np.ndarray  # [2] counts along body x, y
    range: float  # m, distance to the floor along the sensor's axis (NaN: out of range)
    squal: int  # surface quality 0..255 (0: no valid motion)
    rotation: np.ndarray | None = None  # [3] rad, body frame, turned over ``interval`` (None: no gyro on the board)


@dataclass
class BaseState:
    """The true torso pose and velocity. PRIVILEGED: only a simulator knows it."""

    pos: np.ndarray  # [3] m, world frame
    quat: np.ndarray  # [4] w, x, y, z (world <- body)
    lin_vel: np.ndarray  # [3] m/s, world frame
    ang_vel: np.ndarray  # [3] rad/s, world frame


@dataclass
class RobotState:
    """One timestamped reading of a robot.

    ``privileged`` is ``None`` on a real robot; in simulation it carries the true body
    state, which a controller may use only where it says so (e.g. tests, oracles).
    """

    stamp: float  # s, robot clock (simulated time in simulation)
    q: np.ndarray  # [joints] joint positions, rad
    qd: np.ndarray  # [joints] joint velocities, rad/s
    effort: np.ndarray  # [joints] joint torques, N·m
    imu: ImuReading
    privileged: BaseState | None = None
    flow: FlowReading | None = None  # the optical-flow sensor's reading, if the robot has one
