"""Small quaternion helpers. Quaternions are ``[w, x, y, z]`` (MuJoCo order), unit norm.

Euler angles are intrinsic roll (x), pitch (y), yaw (z) in rad: R = Rz(yaw) Ry(pitch) Rx(roll).
"""

from __future__ import annotations

import numpy as np


def quat_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Quaternion [4] of the rotation Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.array([
        cr * cp * cy + sr * sp * sy,
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
    ])


def rpy_from_quat(q: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw [3] (rad) of quaternion ``q`` [4]."""
    w, x, y, z = q
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b, shapes [4]."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


def quat_conj(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion [4]."""
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of quaternion ``q`` [4]."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector ``v`` [3] by quaternion ``q`` [4] (frame of q -> parent frame)."""
    return quat_to_matrix(q) @ np.asarray(v, dtype=float)


def quat_rotate_inv(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate ``v`` [3] from the parent frame into the frame of ``q``."""
    return quat_to_matrix(q).T @ np.asarray(v, dtype=float)


def quat_from_xyzw(q: np.ndarray) -> np.ndarray:
    """Reorder a PyBullet ``[x, y, z, w]`` quaternion to ``[w, x, y, z]``."""
    return np.array([q[3], q[0], q[1], q[2]])


def quat_to_xyzw(q: np.ndarray) -> np.ndarray:
    """Reorder ``[w, x, y, z]`` to PyBullet's ``[x, y, z, w]``."""
    return np.array([q[1], q[2], q[3], q[0]])
