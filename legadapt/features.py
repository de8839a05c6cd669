"""The one definition of the model's state features, action space and prediction target.

Everything that builds, stores or consumes a model state uses this module: the
controller's state estimator, the logs (which carry the spec), the datasets, the
dynamics models and their checkpoints. Nothing else hard-codes indices. The joints
come from the robot description (:mod:`legadapt.robot`): the default hexapod has 18,
so S = 28 and the target 31; a 12-joint quadruped has S = 22.

Model state (body-level, invariant to position and heading), shape [S] = [10 + joints]:

====================  ======  ====================================================
name                  unit    meaning
====================  ======  ====================================================
roll, pitch           rad     torso orientation relative to gravity
vx, vy, vz            m/s     torso linear velocity, body frame
wx, wy, wz            rad/s   torso angular velocity, body frame
phase_sin, phase_cos  1       gait phase, sin/cos of 2π·phase
q_<joint> × joints    rad     joint positions, the description's order (tell a limp leg apart)
====================  ======  ====================================================

Prediction target, shape [S + 3]: the change of every state feature over one
control period, then the torso displacement over that period expressed in the body
frame at its start: ``dx`` (m, forward), ``dy`` (m, left), ``dyaw`` (rad). A planner
integrates the world pose from (dx, dy, dyaw); see :func:`integrate_pose`.

Action, shape [A]: the gait action, stride modulation in [-1, 1] per side
(``stride_left``, ``stride_right``) or per leg (``stride_<leg>`` in the description's leg order).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from legadapt.robot.description import DEFAULT_ROBOT, RobotDescription

FORMAT_VERSION = 1
_BODY = (("roll", "rad"), ("pitch", "rad"), ("vx", "m/s"), ("vy", "m/s"), ("vz", "m/s"),
         ("wx", "rad/s"), ("wy", "rad/s"), ("wz", "rad/s"), ("phase_sin", "1"), ("phase_cos", "1"))
BODY_DIM = len(_BODY)  # 10: the robot-independent head of every state vector
DISPLACEMENT: tuple[tuple[str, str], ...] = (("dx", "m"), ("dy", "m"), ("dyaw", "rad"))
ACTION_MODES = ("per_side", "per_leg")
#: Index slices into the state vector (the body part; the joints follow, see :meth:`FeatureSpec.joint_slice`).
IDX_ROLL, IDX_PITCH = 0, 1
SLICE_VEL = slice(2, 5)
SLICE_GYRO = slice(5, 8)
SLICE_PHASE = slice(8, 10)


@dataclass(frozen=True)
class FeatureSpec:
    """Names, units and order of state, action and target; stored in logs and checkpoints."""

    state_names: tuple[str, ...]
    state_units: tuple[str, ...]
    action_mode: str
    action_names: tuple[str, ...]
    target_names: tuple[str, ...]
    target_units: tuple[str, ...]
    control_period: float  # s, the time one transition spans
    version: int = FORMAT_VERSION
    robot: str = DEFAULT_ROBOT  # the robot description's name (checkpoints written before it existed: the hexapod)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def target_dim(self) -> int:
        return len(self.target_names)

    @property
    def joint_slice(self) -> slice:
        """Index slice of the joint angles in the state vector."""
        return slice(BODY_DIM, self.state_dim)

    @property
    def displacement_slice(self) -> slice:
        """Index slice of (dx, dy, dyaw) in the target vector."""
        return slice(self.state_dim, self.target_dim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)

    def fingerprint(self) -> str:
        """Short hash of the spec: two specs are compatible iff their fingerprints match."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def mismatch(self, other: FeatureSpec) -> str | None:
        """A human-readable description of how ``other`` differs, or None if compatible."""
        diffs = []
        for key in ("version", "robot", "action_mode", "state_names", "action_names", "target_names"):
            a, b = getattr(self, key), getattr(other, key)
            if a != b:
                diffs.append(f"{key}: {_short(a)} vs {_short(b)}")
        if abs(self.control_period - other.control_period) > 1e-9:
            diffs.append(f"control_period: {self.control_period:g} s vs {other.control_period:g} s")
        return "; ".join(diffs) or None


def _short(v: object) -> str:
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def make_spec(action_mode: str, control_period: float, robot: RobotDescription) -> FeatureSpec:
    """The feature spec of ``robot`` for an action mode ('per_side' | 'per_leg') and control period (s)."""
    if action_mode not in ACTION_MODES:
        raise ValueError(f"unknown action mode {action_mode!r}; allowed: {', '.join(ACTION_MODES)}")
    features = _BODY + tuple((f"q_{j}", "rad") for j in robot.joint_names)
    state_names = tuple(n for n, _ in features)
    state_units = tuple(u for _, u in features)
    actions = ("stride_left", "stride_right") if action_mode == "per_side" else tuple(f"stride_{leg}" for leg in robot.leg_names)
    return FeatureSpec(
        state_names=state_names,
        state_units=state_units,
        action_mode=action_mode,
        action_names=actions,
        target_names=tuple(f"d_{n}" for n in state_names) + tuple(n for n, _ in DISPLACEMENT),
        target_units=state_units + tuple(u for _, u in DISPLACEMENT),
        control_period=float(control_period),
        robot=robot.name,
    )


def spec_of(cfg) -> FeatureSpec:
    """The feature spec a config implies: its robot, gait action mode and control rate."""
    return make_spec(cfg.gait.action_mode, 1.0 / cfg.task.control_rate, cfg.robot_description)


#: Groups of prediction targets, by what they describe (see :func:`target_groups`).
TARGET_GROUPS = ("body", "phase", "joints")


def target_groups(spec: FeatureSpec) -> dict[str, list[int]]:
    """Target indices by group: 'body' (what the planner integrates: attitude, velocities and the
    displacement dx, dy, dyaw), 'phase' (gait phase), 'joints' (joint angles)."""
    groups: dict[str, list[int]] = {g: [] for g in TARGET_GROUPS}
    for i, name in enumerate(spec.target_names):
        groups["joints" if name.startswith("d_q_") else "phase" if name.startswith("d_phase") else "body"].append(i)
    return groups


def state_vector(roll: float, pitch: float, v_body: np.ndarray, w_body: np.ndarray, phase: float, q: np.ndarray) -> np.ndarray:
    """Assemble the model state [10 + joints] from its parts (units as in the table above)."""
    out = np.empty(BODY_DIM + len(q))
    out[IDX_ROLL], out[IDX_PITCH] = roll, pitch
    out[SLICE_VEL] = v_body
    out[SLICE_GYRO] = w_body
    out[SLICE_PHASE] = np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)
    out[BODY_DIM:] = q
    return out


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angle(s) to [-π, π) (rad)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def body_displacement(xy0: np.ndarray, yaw0: float, xy1: np.ndarray, yaw1: float) -> np.ndarray:
    """Planar displacement [3] = (dx m, dy m, dyaw rad) from pose 0 to pose 1, in pose 0's heading frame."""
    d = np.asarray(xy1, dtype=float) - np.asarray(xy0, dtype=float)
    c, s = np.cos(yaw0), np.sin(yaw0)
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], float(wrap_angle(yaw1 - yaw0))])


def integrate_pose(pose: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """World pose [..., 3] = (x, y, yaw) after body-frame displacement ``disp`` [..., 3]."""
    x, y, yaw = pose[..., 0], pose[..., 1], pose[..., 2]
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([x + c * disp[..., 0] - s * disp[..., 1], y + s * disp[..., 0] + c * disp[..., 1],
                     wrap_angle(yaw + disp[..., 2])], axis=-1)


def target_vector(state0: np.ndarray, state1: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Prediction target [S + 3]: state change over the period, then the body displacement."""
    return np.concatenate([np.asarray(state1) - np.asarray(state0), disp])
