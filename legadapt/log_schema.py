"""The log's vocabulary: its channels and their JSON Schemas, the channel record, the format version.

:data:`CHANNELS` lists each JSON channel's message fields (S = state dim, A = action dim, J = joints, in the
robot description's joint order); :mod:`legadapt.mcap_log` writes them, :mod:`legadapt.mcap_read` reads them.
:class:`LogView` and :class:`LogMirror` are what the writer asks of a view that derives more channels (the
Foxglove scene) and of a mirror that receives every message (the live view).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

LOG_FORMAT_VERSION = 2  # 2: imu_quat x,y,z,w (was w,x,y,z); wall-clock log times
METADATA_NAME = "legadapt"
CLOCK_METADATA_NAME = "legadapt.clock"
MAGIC = b"\x89MCAP0\r\n"


def _arr(desc: str, n: int | None = None) -> dict:
    s: dict[str, Any] = {"type": "array", "items": {"type": ["number", "null"]}, "description": desc + " (non-finite: null)"}
    if n is not None:
        s["minItems"] = s["maxItems"] = n
    return s


def _num(desc: str, kind: str = "number") -> dict:
    """A scalar field; a number may be null (a non-finite value, e.g. no loss before the first window)."""
    if kind == "number":
        return {"type": ["number", "null"], "description": desc + " (non-finite: null)"}
    return {"type": kind, "description": desc}


def _schema(name: str, props: dict, optional: tuple[str, ...] = ()) -> dict:
    props = {"t": {"type": "number", "description": "time, s"}, **props}
    return {"title": f"legadapt.{name}", "type": "object", "properties": props,
            "required": [k for k in props if k not in optional]}


#: Channel name -> JSON Schema of its messages. S = state dim, A = action dim, J = joints (see the spec: the robot description's joint order).
CHANNELS: dict[str, dict] = {
    "state": _schema("state", {
        "q": _arr("joint positions [J], rad"), "qd": _arr("joint velocities [J], rad/s"),
        "effort": _arr("joint efforts [J], N·m"), "imu_quat": _arr("IMU orientation quaternion x,y,z,w (the order of Foxglove and ROS; logs of format 1 held w,x,y,z)", 4),
        "gyro": _arr("IMU angular velocity, rad/s", 3), "acc": _arr("IMU acceleration, m/s²", 3),
        "model_state": _arr("model state [S]")}, optional=("model_state",)),
    "command": _schema("command", {"q": _arr("joint targets [J], rad"), "action": _arr("gait action [A], 1")}),
    "transition": _schema("transition", {
        "episode": _num("episode index", "integer"), "condition": _num("condition name", "string"),
        "state": _arr("model state at t-period [S]"), "action": _arr("gait action [A]"),
        "next_state": _arr("model state at t [S]"),
        "displacement": _arr("body-frame displacement dx m, dy m, dyaw rad", 3)}),
    "adaptation": _schema("adaptation", {
        "loss_before": _num("loss on the window before the inner step"),
        "loss_after": _num("loss on the window after the inner step"),
        "fallback": _num("adapted model rejected, meta-trained one used", "boolean"),
        "adapted": _num("with a plain model (adaptation.plain_model): the adaptive model planned this cycle", "boolean"),
        "plain_loss": _num("with a plain model: its loss on the window (normalised MSE)"),
        "offset": _arr("the plain model's offset added to its predicted displacement per period (controller/model_offset.py): "
                       "dx m, dy m, dyaw rad; zeros while a model that adapts plans or the offset is off", 3)},
        optional=("adapted", "plain_loss", "offset")),
    "planner": _schema("planner", {"cost": _num("best plan cost"), "plan_time": _num("planning time, s"),
                                   "iterations": _num("optimiser iterations", "integer"),
                                   "pose": _arr("estimated world pose x m, y m, yaw rad", 3),
                                   "cross_track": _num("signed distance from the path, m (+ = left)"),
                                   "progress": _num("arc length reached along the path, m"),
                                   "plan": {"type": "array", "description": "planned gait actions [H][A]"},
                                   "plan_poses": {"type": "array", "description": "[H+1][3] predicted world poses (x m, y m, yaw rad) of the best candidate of the last planner iteration"},
                                   "candidate_poses": {"type": "array", "description": "[K][H+1][3] the same for K candidates spread over the cost ranking"},
                                   "true_pose": _arr("simulation only: true world pose x m, y m, yaw rad", 3),
                                   "true_cross_track": _num("simulation only: true signed distance from the path, m"),
                                   "true_progress": _num("simulation only: true arc length reached, m")},
                       optional=("pose", "cross_track", "progress", "plan", "plan_poses", "candidate_poses", "true_pose", "true_cross_track", "true_progress")),
    "timing": _schema("timing", {
        "read": _num("read phase, s"), "adapt": _num("adapt phase, s"), "plan": _num("plan phase, s"),
        "write": _num("write phase, s"), "cycle": _num("whole cycle, s"),
        "missed": _num("missed periods so far", "integer")}),
    "events": _schema("events", {"kind": _num("event kind", "string"), "message": _num("text", "string"),
                                 "data": {"type": "object", "description": "free-form details"}}),
}
_REQUIRED = {name: frozenset(s["required"]) - {"t"} for name, s in CHANNELS.items()}


@dataclass(frozen=True)
class ChannelDef:
    """A channel of the log: topic, schema (name, encoding, data) and message encoding."""

    topic: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes
    message_encoding: str


#: The JSON channels as :class:`ChannelDef`.
JSON_CHANNELS: tuple[ChannelDef, ...] = tuple(
    ChannelDef(name, s["title"], "jsonschema", json.dumps(s).encode(), "json") for name, s in CHANNELS.items())


class LogView(Protocol):
    """Channels derived from the JSON messages, made on the writer thread."""

    channels: tuple[ChannelDef, ...]

    def attachments(self) -> Iterable[tuple[str, str, bytes]]:
        """(name, media type, data) of each file attached at the start of the log."""

    def derive(self, channel: str, log_time_ns: int, msg: dict) -> Iterable[tuple[str, bytes]]:
        """(topic, encoded message) pairs derived from ``msg`` of ``channel`` (its log time: ns since 1970)."""


class LogMirror(Protocol):
    """Something that also receives every message written (the live view)."""

    def open(self, channels: tuple[ChannelDef, ...]) -> None:
        """The channels that :meth:`publish` will name, before the first message."""

    def publish(self, topic: str, log_time_ns: int, data: bytes) -> None:
        """One message as written to the file; must not block."""


def quat_xyzw(wxyz: np.ndarray) -> np.ndarray:
    """A quaternion w,x,y,z (MuJoCo's order, the robot state's) as x,y,z,w (the log's, Foxglove's, ROS's)."""
    q = np.asarray(wxyz, dtype=float)
    return np.concatenate([q[1:4], q[:1]])
