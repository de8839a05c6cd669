"""The state source a config names (``controller.state_source``), built for the robot's gait."""

from __future__ import annotations

from legadapt.controller.fusion import FusedEstimator
from legadapt.controller.state_estimator import SLIP_THRESHOLD, PrivilegedSource, StateEstimator, StateSource
from legadapt.sim.gait import PhaseGait


class StateSourceError(ValueError):
    """The state source cannot run on this robot (e.g. flow named, but the robot has no flow sensor)."""


def make_state_source(kind: str, gait: PhaseGait, slip_threshold: float = SLIP_THRESHOLD,
                      flow_scale: float = 1.0) -> StateSource:
    """``privileged`` (the simulator's truth), ``estimated`` (IMU and legs: the complementary filter of
    :class:`controller.state_estimator.StateEstimator`) or ``estimated+flow`` (the EKF of
    :mod:`controller.fusion` with the robot description's optical-flow sensor)."""
    if kind == "privileged":
        return PrivilegedSource()
    if kind == "estimated":
        return StateEstimator(gait, slip_threshold=slip_threshold)
    if kind == "estimated+flow":
        desc = gait.desc
        if desc.flow is None:
            raise StateSourceError(f"state source {kind!r}: robot {desc.name!r} has no optical-flow sensor in its "
                                   f"description (sensors.flow); use state_source: estimated, or describe the sensor")
        return FusedEstimator(gait, flow=desc.flow, flow_scale=flow_scale, slip_threshold=slip_threshold)
    raise StateSourceError(f"unknown state source {kind!r}; allowed: privileged, estimated, estimated+flow")
