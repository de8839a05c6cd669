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
