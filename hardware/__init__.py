"""The robot interface (ros2_control-style lifecycle) and its implementations."""

from hardware.interface import CallbackReturn, LifecycleError, LifecycleState, ReturnType, Robot

__all__ = ["CallbackReturn", "LifecycleError", "LifecycleState", "ReturnType", "Robot", "SimRobot"]


def __getattr__(name: str):
    if name == "SimRobot":  # lazy: importing hardware must not start a physics engine
        from hardware.sim_robot import SimRobot

        return SimRobot
    raise AttributeError(name)
