"""The robot interface (ros2_control-style lifecycle) and its implementations on real hardware.

The simulator implements this interface in :mod:`sim.sim_robot` (``SimRobot``); hardware never imports the simulator.
"""

from legadapt.hardware.interface import CallbackReturn, LifecycleError, LifecycleState, ReturnType, Robot

__all__ = ["CallbackReturn", "LifecycleError", "LifecycleState", "ReturnType", "Robot"]
