"""``SimRobot``: the :class:`hardware.interface.Robot` over the simulated hexapod.

Like a real robot at power-up, a configured SimRobot is unpowered: it is placed at its
standing pose and collapses onto its belly within ``SETTLE_TIME``. ``activate`` takes
the measured pose as the goal and enables torque; standing up is the controller's ramp.

Either backend (MuJoCo or PyBullet), every perturbation of the config, sensor noise and
latency included. Lockstep: simulated time moves only in :meth:`SimRobot.advance`.
Its readings carry the true body state in ``RobotState.privileged``; a serial robot's
never do.
"""

from __future__ import annotations

import numpy as np

from legadapt.hardware.interface import CallbackReturn, ReturnType, Robot
from legadapt import config as C
from legadapt.robot_state import RobotState
from legadapt.sim.hexapod import SimulatedHexapod, standing_pose

HOLD_TIME = 0.1  # s, position hold before torque off on deactivate
SETTLE_TIME = 0.3  # s, unpowered settling during configure


class SimRobot(Robot):
    """A simulated hexapod behind the hardware interface."""

    def __init__(self, cfg: C.LegadaptConfig, name: str = "sim") -> None:
        super().__init__(name)
        self.cfg = cfg
        self.hexapod: SimulatedHexapod | None = None
        self.servo_period = 1.0 / cfg.sim.servo_rate  # s

    @property
    def time(self) -> float:
        """Simulated time (s)."""
        return self.hexapod.time if self.hexapod is not None else 0.0

    def mark_run_start(self) -> None:
        """Perturbation start times count from now (see ``SimulatedHexapod.mark_run_start``)."""
        self.hexapod.mark_run_start()

    def advance(self, duration: float) -> None:
        """Lockstep: run the simulation for ``duration`` s."""
        self.hexapod.advance(duration)

    # ------------------------------------------------------------ lifecycle hooks
    def _on_configure(self) -> CallbackReturn:
        if self.hexapod is None:
            self.hexapod = SimulatedHexapod.from_config(self.cfg)
        q0, height = standing_pose(self.hexapod.desc, self.cfg.gait)
        self.hexapod.reset(q0, height)
        self.hexapod.set_torque(False)
        self.hexapod.advance(SETTLE_TIME)
        return CallbackReturn.SUCCESS

    def _on_activate(self) -> CallbackReturn:
        hx = self.hexapod
        hx.write(hx.read().q)  # goal = measured pose (through calibration error, like a servo)
        hx.set_torque(True)
        return CallbackReturn.SUCCESS

    def _on_deactivate(self) -> CallbackReturn:
        hx = self.hexapod
        hx.write(hx.read().q)
        hx.advance(HOLD_TIME)
        hx.set_torque(False)
        return CallbackReturn.SUCCESS

    def _on_cleanup(self) -> CallbackReturn:
        if self.hexapod is not None:
            self.hexapod.backend.close()
            self.hexapod = None
        return CallbackReturn.SUCCESS

    def _on_error(self) -> CallbackReturn:
        if self.hexapod is not None:
            self.hexapod.set_torque(False)
        return CallbackReturn.SUCCESS

    # ------------------------------------------------------------ cyclic
    def _read(self) -> tuple[ReturnType, RobotState]:
        return ReturnType.OK, self.hexapod.read()

    def _write(self, q_cmd: np.ndarray) -> ReturnType:
        n = self.hexapod.desc.n_joints
        if q_cmd.shape != (n,) or not np.all(np.isfinite(q_cmd)):
            raise ValueError(f"joint command must be {n} finite angles (rad), got shape {q_cmd.shape}")
        self.hexapod.write(q_cmd)
        return ReturnType.OK
