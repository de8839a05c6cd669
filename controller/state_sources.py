"""The state source a config names (``controller.state_source``), built for the robot's gait."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

from legadapt.config.base import StateSourceName
from legadapt.config.mocap import MocapConfig
from legadapt.controller.fusion import FusedEstimator
from legadapt.controller.mocap import SimulatedMocap
from legadapt.controller.state_estimator import SLIP_THRESHOLD, PrivilegedSource, StateEstimator, StateSource
from legadapt.sim.gait import PhaseGait


class StateSourceError(ValueError):
    """The state source cannot run on this robot (e.g. flow named, but the robot has no flow sensor)."""


def make_state_source(kind: str, gait: PhaseGait, slip_threshold: float = SLIP_THRESHOLD, flow_scale: float = 1.0,
                      mocap: MocapConfig | None = None, seed: int = 0,
                      flow_position: tuple[float, float, float] | None = None) -> StateSource:
    """``privileged`` (the simulator's truth), ``estimated`` (IMU and legs: the complementary filter of
    :class:`controller.state_estimator.StateEstimator`), or the EKF of :mod:`controller.fusion` over IMU and
    legs plus the robot description's optical-flow sensor (``+flow``) and the ``mocap`` system (``+mocap``;
    its simulated stream is seeded by ``seed``). ``flow_scale`` and ``flow_position`` are the flow sensor's
    calibration (``legadapt calibrate flow``; None: the description's lens position)."""
    if kind == "privileged":
        return PrivilegedSource()
    if kind == "estimated":
        return StateEstimator(gait, slip_threshold=slip_threshold)
    base, *extras = kind.split("+")
    if base != "estimated" or not set(extras) <= {"flow", "mocap"} or len(set(extras)) != len(extras):
        raise StateSourceError(f"unknown state source {kind!r}; allowed: {', '.join(get_args(StateSourceName))}")
    desc = gait.desc
    if "flow" in extras and desc.flow is None:
        raise StateSourceError(f"state source {kind!r}: robot {desc.name!r} has no optical-flow sensor in its "
                               f"description (sensors.flow); use state_source: estimated, or describe the sensor")
    flow = desc.flow if flow_position is None or desc.flow is None else replace(desc.flow, position=tuple(flow_position))
    return FusedEstimator(gait, flow=flow if "flow" in extras else None, flow_scale=flow_scale,
                          mocap=_mocap_client(mocap or MocapConfig(), seed) if "mocap" in extras else None,
                          slip_threshold=slip_threshold)


def _mocap_client(cfg: MocapConfig, seed: int):
    if cfg.system == "simulated":
        return SimulatedMocap(cfg, seed)
    from legadapt.controller.qualisys import QualisysMocap

    return QualisysMocap(cfg)
