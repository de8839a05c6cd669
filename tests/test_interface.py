"""The hardware interface lifecycle (ros2_control-like), on the real SimRobot."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_config
from legadapt.hardware.interface import CallbackReturn, LifecycleError, LifecycleState, ReturnType
from legadapt.sim.sim_robot import SimRobot


@pytest.fixture
def robot():
    r = SimRobot(make_config("mujoco"))
    yield r
    r.shutdown()


def test_lifecycle_transitions(robot):
    assert robot.lifecycle is LifecycleState.UNCONFIGURED
    with pytest.raises(LifecycleError, match="cannot activate from state unconfigured"):
        robot.activate()
    assert robot.configure() is CallbackReturn.SUCCESS and robot.lifecycle is LifecycleState.INACTIVE
    assert robot.activate() is CallbackReturn.SUCCESS and robot.lifecycle is LifecycleState.ACTIVE
    assert robot.deactivate() is CallbackReturn.SUCCESS and robot.lifecycle is LifecycleState.INACTIVE
    assert robot.cleanup() is CallbackReturn.SUCCESS and robot.lifecycle is LifecycleState.UNCONFIGURED
    robot.shutdown()
    assert robot.lifecycle is LifecycleState.FINALIZED


def test_read_returns_timestamped_state_with_privileged_truth(robot):
    robot.configure()
    robot.advance(0.5)  # configured = unpowered, lying where it collapsed; let it come to rest
    assert robot.read() is ReturnType.OK
    s = robot.state
    assert s.q.shape == s.qd.shape == s.effort.shape == (18,)
    assert s.imu.quat.shape == (4,) and s.imu.gyro.shape == (3,) and s.imu.acc.shape == (3,)
    assert s.imu.acc[2] == pytest.approx(9.81, abs=0.3), "standing still the IMU reads gravity"
    assert s.privileged is not None and s.privileged.pos[2] > 0.02, "torso resting on the floor"
    t0 = s.stamp
    robot.advance(0.1)
    robot.read()
    assert robot.state.stamp == pytest.approx(t0 + 0.1)


def test_inactive_robot_ignores_commands(robot):
    robot.configure()
    robot.advance(0.5)
    robot.read()
    q0 = robot.state.q.copy()
    target = q0.copy()
    target[1] -= 0.5
    assert robot.write(target) is ReturnType.OK
    robot.advance(0.5)
    robot.read()
    assert robot.ignored_writes == 1
    assert np.allclose(robot.state.q, q0, atol=0.02), "unpowered and ignoring commands"
    robot.activate()
    robot.write(target)
    robot.advance(0.5)
    robot.read()
    assert robot.state.q[1] == pytest.approx(target[1], abs=0.05), "active: it follows"


def test_activate_starts_from_the_measured_pose(robot):
    robot.configure()
    robot.advance(0.5)
    robot.read()
    q_rest = robot.state.q.copy()
    robot.activate()
    robot.advance(0.3)
    robot.read()
    assert np.allclose(robot.state.q, q_rest, atol=0.03), "no jump on activation"


def test_torque_on_holds_the_collapsed_pose_from_the_first_step(backend):
    """A servo's profile starts where its joint is when torque comes on: no kick from a goal
    left over from before the collapse (it used to throw the robot 0.17 m into the air). The
    collapse leaves a femur 0.04 rad past its servo limit, which the goal is clipped to."""
    robot = SimRobot(make_config(backend))
    try:
        robot.configure()
        robot.read()
        q_rest, z_rest = robot.state.q.copy(), robot.state.privileged.pos[2]
        robot.activate()
        worst_q, worst_z = 0.0, 0.0
        for _ in range(30):  # 0.3 s in 10 ms steps
            robot.advance(0.01)
            robot.read()
            worst_q = max(worst_q, float(np.abs(robot.state.q - q_rest).max()))
            worst_z = max(worst_z, float(robot.state.privileged.pos[2] - z_rest))
        assert worst_q < 0.1, f"a joint moved {worst_q:.2f} rad while holding the measured pose"
        assert worst_z < 0.005, f"the torso rose {worst_z:.3f} m while holding"
    finally:
        robot.shutdown()


def test_the_stand_up_ramp_keeps_the_feet_on_a_slope(backend):
    """Standing up on a 15° slope the body rises on its feet and stays where it lay (m)."""
    from legadapt.sim.gait import PhaseGait
    robot = SimRobot(make_config(backend, [{"kind": "slope", "pitch_deg": 15, "ramp_time": 0}]))
    try:
        robot.configure()
        robot.read()
        x_rest = robot.state.privileged.pos[0]
        robot.activate()
        hx = robot.hexapod
        gait = PhaseGait(hx.desc)
        start, target = robot.state.q.copy(), gait.joint_targets(0.0, np.zeros(gait.action_dim))
        floor_force = []
        for k in range(1, 51):  # a 1 s ramp at 50 Hz, as the control loop's
            robot.write(start + (target - start) * k / 50)
            robot.advance(0.02)
            floor_force.append(hx.backend.floor_normal_force())
        robot.read()
        slid = x_rest - robot.state.privileged.pos[0]
        assert min(floor_force) > 5.0, f"the robot left the floor while standing up ({min(floor_force):.1f} N)"
        assert slid < 0.02, f"it slid {slid:.3f} m downhill while standing up"
    finally:
        robot.shutdown()


def test_deactivate_holds_then_removes_torque(robot):
    robot.configure()
    robot.activate()
    robot.deactivate()
    robot.advance(0.2)
    robot.read()
    assert np.allclose(robot.state.effort, 0.0), "torque off after deactivate"


def test_exception_in_write_is_error_and_leaves_robot_safe(robot):
    robot.configure()
    robot.activate()
    assert robot.write(np.full(18, np.nan)) is ReturnType.ERROR
    assert "finite" in robot.last_error
    assert robot.lifecycle is LifecycleState.UNCONFIGURED, "on_error SUCCESS -> unconfigured"
    robot.advance(0.1)
    assert np.allclose(robot.hexapod.backend.joint_state()[2], 0.0), "torque off after the error"
    assert robot.read() is ReturnType.ERROR, "no reads until configured again"
    assert robot.configure() is CallbackReturn.SUCCESS


def test_exception_in_read_is_error(robot, monkeypatch):
    robot.configure()
    robot.activate()

    def broken():
        raise OSError("sensor bus gone")

    monkeypatch.setattr(robot.hexapod, "read", broken)
    assert robot.read() is ReturnType.ERROR
    assert "sensor bus gone" in robot.last_error
    assert robot.lifecycle is LifecycleState.UNCONFIGURED
