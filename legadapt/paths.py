"""Reference paths for path following: the five hexapod tasks of Nagabandi et al. 2019.

Every path is a densely sampled polyline in the world xy plane that starts at (0, 0)
heading +x (yaw 0). Shapes (``PATH_NAMES``):

- ``straight``: a line along +x.
- ``left_turn`` / ``right_turn``: 0.5 m straight, a 90° arc of radius 1.0 m to the
  left (counter-clockwise) / right, then straight on (final heading +90° / -90°).
- ``zigzag``: 0.3 m straight, then segments 0.6 m long alternating +30° / -30° from
  +x (the first one half as long, so the path oscillates about the x axis by ±0.15 m),
  each corner rounded by an arc of radius 0.2 m (a legged robot cannot turn on a point
  while walking; a jump in the path heading makes a planner stop and spin).
- ``figure8``: a full left circle of radius 0.6 m (centre (0, 0.6)), then a full right
  circle (centre (0, -0.6)), repeated; both pass through the origin heading +x.

Each shape is continued (straight on, or repeated) until ``length`` is reached, so a
path never runs out before the requested length. Units: m, rad. numpy only.
"""

from __future__ import annotations

import numpy as np

from legadapt.features import wrap_angle

__all__ = ["PATH_NAMES", "Path", "make_path", "wrap_angle"]

PATH_NAMES: tuple[str, ...] = ("straight", "left_turn", "right_turn", "zigzag", "figure8")

TURN_LEAD_IN = 0.5  # m, straight before the turn
TURN_RADIUS = 1.0  # m
ZIGZAG_LEAD_IN = 0.3  # m
ZIGZAG_SEGMENT = 0.6  # m
ZIGZAG_ANGLE = np.deg2rad(30.0)  # rad
ZIGZAG_CORNER_RADIUS = 0.2  # m: corners are arcs, so the path heading never jumps
FIGURE8_RADIUS = 0.6  # m

# A primitive: ("line", length m) or ("arc", radius m, signed turn angle rad; + = left).
_Primitive = tuple


class Path:
    """A polyline path with arc-length parametrisation.

    Attributes:
        points: [N, 2] vertices (m, world xy); ``make_path`` starts them at (0, offset).
        s: [N] arc length at each vertex (m), ``s[0] == 0``, ``s[-1] == length``.
        headings: [N-1] tangent angle of each segment (rad, from +x, counter-clockwise).
    """

    def __init__(self, points: np.ndarray, name: str = "custom") -> None:
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
            raise ValueError(f"path points must have shape [N>=2, 2], got {pts.shape}")
        seg = np.diff(pts, axis=0)
        seg_len = np.linalg.norm(seg, axis=1)
        keep = np.concatenate([[True], seg_len > 1e-12])  # drop repeated vertices
        pts = pts[keep]
        seg = np.diff(pts, axis=0)
        seg_len = np.linalg.norm(seg, axis=1)
        self.name = name
        self.points = pts
        self.s = np.concatenate([[0.0], np.cumsum(seg_len)])
        self._seg = seg  # [N-1, 2]
        self._seg_len = seg_len  # [N-1]
        self._tangent = seg / seg_len[:, None]  # [N-1, 2] unit
        self.headings = np.arctan2(self._tangent[:, 1], self._tangent[:, 0])

    @property
    def length(self) -> float:
        """Total arc length (m)."""
        return float(self.s[-1])

    def point(self, s: np.ndarray | float) -> np.ndarray:
        """Position(s) at arc length ``s`` (m, clipped to [0, length]): [2] or [..., 2]."""
        s = np.clip(np.asarray(s, dtype=float), 0.0, self.length)
        return np.stack([np.interp(s, self.s, self.points[:, 0]), np.interp(s, self.s, self.points[:, 1])], axis=-1)

    def heading(self, s: np.ndarray | float) -> np.ndarray | float:
        """Tangent angle(s) (rad) at arc length ``s`` (m)."""
        i = np.clip(np.searchsorted(self.s, np.asarray(s, dtype=float), side="right") - 1, 0, len(self.headings) - 1)
        return self.headings[i] if np.ndim(i) else float(self.headings[i])

    def project(self, xy: np.ndarray, s_hint: np.ndarray | float | None = None,
                window: float = 1.0) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
        """Nearest point on the path to ``xy`` ([2] or [M, 2], m).

        Args:
            xy: query point(s), world xy (m).
            s_hint: optional arc length(s) (m) near which to search (scalar or [M]). Only
                segments with arc length within ``[s_hint - window/2, s_hint + window]``
                are considered; this keeps progress continuous where a path crosses
                itself (figure-8) or doubles back. ``None`` searches the whole path.
            window: search window size (m) used with ``s_hint``.

        Returns:
            ``(s, cross_track, heading)``, each a float for a [2] query or [M] arrays:
            arc length of the nearest point (m, in [0, length]); signed perpendicular
            offset from the path's tangent line there (m, positive = left of the path);
            path tangent angle there (rad).
        """
        q = np.asarray(xy, dtype=float)
        single = q.ndim == 1
        q = q.reshape(-1, 2)
        hint = None if s_hint is None else np.broadcast_to(np.asarray(s_hint, dtype=float), (q.shape[0],))
        out_s, out_c, out_h = (np.empty(q.shape[0]) for _ in range(3))
        chunk = max(1, 2_000_000 // len(self._seg_len))
        for a in range(0, q.shape[0], chunk):
            b = min(a + chunk, q.shape[0])
            out_s[a:b], out_c[a:b], out_h[a:b] = self._project(q[a:b], None if hint is None else hint[a:b], window)
        if single:
            return float(out_s[0]), float(out_c[0]), float(out_h[0])
        return out_s, out_c, out_h

    def _project(self, q: np.ndarray, hint: np.ndarray | None, window: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = q[:, None, :] - self.points[None, :-1, :]  # [M, N-1, 2]
        t = np.clip(np.einsum("mnk,nk->mn", d, self._seg) / self._seg_len**2, 0.0, 1.0)  # [M, N-1]
        foot = self.points[None, :-1, :] + t[..., None] * self._seg[None]  # [M, N-1, 2]
        dist2 = np.sum((q[:, None, :] - foot) ** 2, axis=-1)
        if hint is not None:
            lo, hi = self.s[None, :-1], self.s[None, 1:]
            outside = (hi < hint[:, None] - 0.5 * window) | (lo > hint[:, None] + window)
            dist2 = np.where(outside, np.inf, dist2)
        j = np.argmin(dist2, axis=1)  # [M]
        rows = np.arange(q.shape[0])
        tj = t[rows, j]
        s = self.s[j] + tj * self._seg_len[j]
        tan = self._tangent[j]
        rel = q - self.points[j]
        cross = tan[:, 0] * rel[:, 1] - tan[:, 1] * rel[:, 0]
        return s, cross, self.headings[j]


def _shape_primitives(name: str) -> tuple[list[_Primitive], list[_Primitive]]:
    """(prefix, repeated tail) primitives of a named shape."""
    if name == "straight":
        return [], [("line", 1.0)]
    if name in ("left_turn", "right_turn"):
        sign = 1.0 if name == "left_turn" else -1.0
        return [("line", TURN_LEAD_IN), ("arc", TURN_RADIUS, sign * np.pi / 2)], [("line", 1.0)]
    if name == "zigzag":
        r, a = ZIGZAG_CORNER_RADIUS, ZIGZAG_ANGLE
        cut = r * np.tan(a)  # a rounded 2a corner starts and ends this far from the sharp vertex
        prefix = [("line", ZIGZAG_LEAD_IN - r * np.tan(a / 2)), ("arc", r, a), ("line", ZIGZAG_SEGMENT / 2 - r * np.tan(a / 2) - cut)]
        return prefix, [("arc", r, -2 * a), ("line", ZIGZAG_SEGMENT - 2 * cut), ("arc", r, 2 * a), ("line", ZIGZAG_SEGMENT - 2 * cut)]
    if name == "figure8":
        return [], [("arc", FIGURE8_RADIUS, 2 * np.pi), ("arc", FIGURE8_RADIUS, -2 * np.pi)]
    raise ValueError(f"unknown path {name!r}; allowed: {', '.join(PATH_NAMES)}")


def make_path(name: str, length: float = 4.0, spacing: float = 0.01, offset: float = 0.0) -> Path:
    """The named reference path, ``length`` m long, sampled every ~``spacing`` m.

    ``offset`` (m) moves the whole path along +y: a robot starting at the origin heading
    +x then starts ``offset`` m to the right of the path (left for a negative offset).

    Raises:
        ValueError: unknown ``name`` (the message lists ``PATH_NAMES``) or non-positive
            ``length`` / ``spacing``.
    """
    prefix, tail = _shape_primitives(name)
    if length <= 0 or spacing <= 0:
        raise ValueError(f"length ({length} m) and spacing ({spacing} m) must be positive")
    x, y, yaw, total = 0.0, 0.0, 0.0, 0.0
    pts: list[np.ndarray] = [np.zeros((1, 2))]
    k = 0
    while total < length - 1e-12:
        prim = prefix[k] if k < len(prefix) else tail[(k - len(prefix)) % len(tail)]
        k += 1
        if prim[0] == "turn":  # sharp corner: heading change only
            yaw += prim[1]
            continue
        seg_len = prim[1] if prim[0] == "line" else abs(prim[1] * prim[2])
        seg_len = min(seg_len, length - total)
        n = max(1, int(np.ceil(seg_len / spacing)))
        u = np.arange(1, n + 1) * (seg_len / n)  # arc length within the primitive
        if prim[0] == "line":
            px, py = x + u * np.cos(yaw), y + u * np.sin(yaw)
            yaw_end = yaw
        else:
            r, sign = prim[1], np.sign(prim[2])
            cx, cy = x - sign * r * np.sin(yaw), y + sign * r * np.cos(yaw)  # circle centre
            ang = yaw + sign * u / r  # heading along the arc
            px, py = cx + sign * r * np.sin(ang), cy - sign * r * np.cos(ang)
            yaw_end = float(ang[-1])
        pts.append(np.stack([px, py], axis=1))
        x, y, yaw, total = float(px[-1]), float(py[-1]), yaw_end, total + seg_len
    return Path(np.concatenate(pts, axis=0) + np.array([0.0, offset]), name)


class ProgressTracker:
    """Follows one moving point along a path: each :meth:`project` searches near the progress the
    previous one found (its own hint, never another estimate's), so the arc length stays
    continuous where the path crosses itself and a second tracker (the simulator's truth beside
    the robot's estimate) is never projected onto the stretch the other thinks it is on."""

    def __init__(self, path: Path, window: float = 1.0, start: float | None = 0.0) -> None:
        self.path, self.window = path, float(window)
        self.s: float | None = start  # m, progress at the last projection (a run starts at the path's start)

    def project(self, xy: np.ndarray) -> tuple[float, float]:
        """(arc length s m, signed cross-track m, + = left) of the point ``xy`` [2] (m)."""
        s, cross, _ = self.path.project(np.asarray(xy, dtype=float)[:2], self.s, self.window)
        self.s = float(s)
        return self.s, float(cross)


def track(path: Path, xy: np.ndarray, window: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Progress s [N] (m) and signed cross-track [N] (m) of the points ``xy`` [N, 2] visited in order."""
    tracker = ProgressTracker(path, window)
    out = np.array([tracker.project(p) for p in np.asarray(xy, dtype=float).reshape(-1, 2)]).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def task_path(task) -> Path:
    """The path of a task config (``legadapt.config.TaskConfig``): long enough for 1.5× the
    distance the run asks for, plus 1 m."""
    return make_path(task.path, max(2.0, 1.5 * task.target_speed * task.duration + 1.0), offset=task.path_offset)


__all__ = ["PATH_NAMES", "Path", "ProgressTracker", "make_path", "task_path", "track", "wrap_angle"]
