"""The one interface through which the controller talks to any robot.

Modelled on ros2_control's hardware-component lifecycle::

    UNCONFIGURED --configure--> INACTIVE --activate--> ACTIVE
         ^  <------cleanup-------   |   <--deactivate----  |
         |                          |                      |
         +-------- on_error (SUCCESS) <-- any read/write ERROR
    any --shutdown--> FINALIZED           (on_error FAILURE -> FINALIZED)

* ``read()`` and ``write()`` return :class:`ReturnType` OK, ERROR or DEACTIVATE; an
  exception raised inside a backend counts as ERROR, is recorded in ``last_error`` and
  triggers ``on_error``, whose job is to leave the robot safe (torque off).
* An INACTIVE robot can be read but ignores commands (counted in ``ignored_writes``).
* Subclasses implement the ``_on_*``, ``_read`` and ``_write`` hooks only.
"""

from __future__ import annotations

import enum
import logging
from abc import ABC, abstractmethod

import numpy as np

from legadapt.robot_state import RobotState

log = logging.getLogger(__name__)


class LifecycleState(enum.Enum):
    UNCONFIGURED = "unconfigured"
    INACTIVE = "inactive"
    ACTIVE = "active"
    FINALIZED = "finalized"


class ReturnType(enum.Enum):
    OK = "ok"
    ERROR = "error"
    DEACTIVATE = "deactivate"  # the hardware asks to be deactivated (e.g. an e-stop)


class CallbackReturn(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


class LifecycleError(RuntimeError):
    """A lifecycle transition asked for from a state that does not allow it."""


class Robot(ABC):
    """Base class of every robot (simulated, serial): the joints of its description, position commands in rad."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lifecycle = LifecycleState.UNCONFIGURED
        self.state: RobotState | None = None  # last successful reading
        self.last_error: str | None = None
        self.ignored_writes = 0

    # ------------------------------------------------------------ transitions
    def configure(self) -> CallbackReturn:
        """UNCONFIGURED -> INACTIVE: open connections, check the hardware."""
        self._require(LifecycleState.UNCONFIGURED, "configure")
        return self._transition(self._on_configure, LifecycleState.INACTIVE)

    def activate(self) -> CallbackReturn:
        """INACTIVE -> ACTIVE: take the measured pose as goal and enable torque."""
        self._require(LifecycleState.INACTIVE, "activate")
        return self._transition(self._on_activate, LifecycleState.ACTIVE)

    def deactivate(self) -> CallbackReturn:
        """ACTIVE -> INACTIVE: hold position, then disable torque."""
        self._require(LifecycleState.ACTIVE, "deactivate")
        return self._transition(self._on_deactivate, LifecycleState.INACTIVE)

    def cleanup(self) -> CallbackReturn:
        """INACTIVE -> UNCONFIGURED: release connections."""
        self._require(LifecycleState.INACTIVE, "cleanup")
        return self._transition(self._on_cleanup, LifecycleState.UNCONFIGURED)

    def shutdown(self) -> None:
        """Any state -> FINALIZED, deactivating first if active. Never raises."""
        try:
            if self.lifecycle is LifecycleState.ACTIVE:
                self.deactivate()
            if self.lifecycle is LifecycleState.INACTIVE:
                self.cleanup()
        except Exception as exc:  # noqa: BLE001 - shutdown must always finish
            self.last_error = f"shutdown: {exc}"
            self._safe_on_error()
        self.lifecycle = LifecycleState.FINALIZED

    # ------------------------------------------------------------ cyclic I/O
    def read(self) -> ReturnType:
        """Read sensors into ``self.state``. Allowed when INACTIVE or ACTIVE."""
        if self.lifecycle not in (LifecycleState.INACTIVE, LifecycleState.ACTIVE):
            return ReturnType.ERROR
        try:
            ret, state = self._read()
        except Exception as exc:  # noqa: BLE001 - an exception counts as ERROR
            return self._fail("read", exc)
        if state is not None:
            self.state = state
        return ret

    def write(self, q_cmd: np.ndarray) -> ReturnType:
        """Command joint positions [joints] (rad). Ignored (and counted) unless ACTIVE."""
        if self.lifecycle is not LifecycleState.ACTIVE:
            self.ignored_writes += 1
            return ReturnType.OK
        try:
            return self._write(np.asarray(q_cmd, dtype=float))
        except Exception as exc:  # noqa: BLE001
            return self._fail("write", exc)

    def handle_error(self) -> CallbackReturn:
        """Run ``on_error``: SUCCESS -> UNCONFIGURED (may configure again), else FINALIZED."""
        ret = self._safe_on_error()
        self.lifecycle = LifecycleState.UNCONFIGURED if ret is CallbackReturn.SUCCESS else LifecycleState.FINALIZED
        return ret

    # ------------------------------------------------------------ hooks
    @abstractmethod
    def _on_configure(self) -> CallbackReturn: ...

    @abstractmethod
    def _on_activate(self) -> CallbackReturn: ...

    @abstractmethod
    def _on_deactivate(self) -> CallbackReturn: ...

    def _on_cleanup(self) -> CallbackReturn:
        return CallbackReturn.SUCCESS

    @abstractmethod
    def _on_error(self) -> CallbackReturn:
        """Make the robot safe (torque off) after an error. Must not raise."""

    @abstractmethod
    def _read(self) -> tuple[ReturnType, RobotState | None]: ...

    @abstractmethod
    def _write(self, q_cmd: np.ndarray) -> ReturnType: ...

    # ------------------------------------------------------------ internals
    def _require(self, state: LifecycleState, what: str) -> None:
        if self.lifecycle is not state:
            raise LifecycleError(f"{self.name}: cannot {what} from state {self.lifecycle.value}; it needs {state.value}")

    def _transition(self, hook, target: LifecycleState) -> CallbackReturn:
        try:
            ret = hook()
        except Exception as exc:  # noqa: BLE001
            self.last_error = f"{hook.__name__.lstrip('_')}: {exc}"
            log.error("%s: %s", self.name, self.last_error)
            self.handle_error()
            return CallbackReturn.FAILURE
        if ret is CallbackReturn.SUCCESS:
            self.lifecycle = target
        return ret

    def _fail(self, what: str, exc: Exception) -> ReturnType:
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.error("%s: %s", self.name, self.last_error)
        self.handle_error()
        return ReturnType.ERROR

    def _safe_on_error(self) -> CallbackReturn:
        try:
            return self._on_error()
        except Exception as exc:  # noqa: BLE001
            log.error("%s: on_error failed: %s", self.name, exc)
            return CallbackReturn.FAILURE
