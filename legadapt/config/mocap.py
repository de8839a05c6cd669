"""The ``mocap:`` section: where a motion-capture pose comes from, and how late and noisy it is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from legadapt.config.base import _Section


class MocapConfig(_Section):
    """A motion-capture system streaming the robot's pose (``controller.state_source: estimated+mocap``).

    ``qualisys``: a Qualisys Track Manager (QTM) on the network, read with Qualisys's own ``qtm-rt``
    client over the QTM RT protocol (TCP, little-endian port); the robot is one 6DOF body of the
    QTM project. ``simulated``: in simulation only, the simulator's true pose with this section's
    latency, noise and dropouts, in simulated time (what the perturbation suites use).
    """

    system: Literal["qualisys", "simulated"] = Field("simulated", description="qualisys: a QTM server (qtm-rt client); simulated: the simulator's truth, delayed and noisy (sim backend only).")
    host: str = Field("127.0.0.1", min_length=1, description="QTM host name or address.")
    port: int = Field(22223, ge=1, le=65535, description="QTM RT port (22223: little-endian).")
    body: str = Field("hexapod", min_length=1, description="Name of the robot's 6DOF body in the QTM project.")
    origin: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="The mocap frame in the controller's world frame: x (m), y (m), yaw (deg).")
    latency: float = Field(0.01, ge=0, le=0.5, description="Capture-to-arrival delay of a frame, s: the least delay (qualisys: added to the shortest delay seen, which the client takes as the clock offset) or the simulated delay.")
    timeout: float = Field(0.3, gt=0, le=10, description="No frame for this long: mocap_lost event; the estimate carries on from the onboard sensors until frames come back (mocap_restored).")
    reconnect_interval: float = Field(1.0, gt=0, le=60, description="Seconds between connection attempts after the stream is lost (qualisys).")
    noise_pos: float = Field(0.001, ge=0, le=0.1, description="Position noise of a frame, m RMS (simulated; the filter's measurement noise for both).")
    noise_yaw: float = Field(0.005, ge=0, le=0.5, description="Heading noise of a frame, rad RMS (simulated; the filter's measurement noise for both).")
    rate: float = Field(100.0, gt=0, le=1000, description="Frames per second (simulated; a QTM server streams at its own capture rate).")
    drop_prob: float = Field(0.0, ge=0, lt=1, description="Probability that a frame is lost (simulated).")
