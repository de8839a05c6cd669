"""A picture of the 3D scene at one instant of a run, drawn with matplotlib from the run's log.

What Foxglove's 3D panel shows with ``deploy/foxglove_layout.json``, made here without Foxglove: the robot's
geometry posed by the logged joint angles on its estimated pose (roll and pitch from the IMU), the path, the
best plan's predicted body path and the sampled candidates of that cycle, and the walked trails (estimate
and, in simulation, truth). Made by the same functions that write the log's Foxglove channels
(:mod:`legadapt.controller.foxglove_view`), from the log's JSON channels. ``legadapt scene RUN.mcap``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from legadapt.config import parse_config  # noqa: E402
from legadapt.controller.foxglove_view import CANDIDATE_COLOR, PATH_COLOR, PLAN_COLOR, body_rotation  # noqa: E402
from legadapt.mcap_log import LogError  # noqa: E402
from legadapt.mcap_read import read_log  # noqa: E402
from legadapt.paths import task_path  # noqa: E402
from legadapt.sim.mjcf import standing_height  # noqa: E402
from legadapt.sim.robot_shapes import RobotShapes, Shape  # noqa: E402

HALF_VIEW = 0.35  # m of ground shown on each side of the view's centre
PT_PER_M = 300.0  # line widths and marker sizes: points per m of the shape's diameter (about the plot's scale)


def draw_scene(log_path: Path, out: Path | None = None, at: float | None = None) -> Path:
    """Draw the scene of ``log_path`` at run time ``at`` s (default: 60 % of the run) to ``out`` (PNG)."""
    log = read_log(log_path)
    cfg = parse_config(log.config, str(log_path))
    planner = [m for m in log.messages.get("planner", []) if m.get("pose") is not None and m.get("plan_poses") is not None]
    states = log.messages.get("state", [])
    if not planner or not states:
        raise LogError(f"{log_path}: no planner cycle with a planned path to draw (a log of `legadapt run` from before "
                       f"plan_poses were logged, or not a run log); draw another run's log")
    times = np.array([m["t"] for m in planner])
    at = float(times[0] + 0.6 * (times[-1] - times[0])) if at is None else at
    cyc = planner[int(np.argmin(np.abs(times - at)))]
    state = min(states, key=lambda m: abs(m["t"] - cyc["t"]))
    desc = cfg.robot_description
    fig = plt.figure(figsize=(15, 6.5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    top = fig.add_subplot(1, 2, 2)
    path_points = task_path(cfg.task).points
    pose = np.asarray(cyc["pose"], dtype=float)
    world = _body_to_world(pose, state.get("imu_quat"), standing_height(desc))
    shapes = RobotShapes(desc).shapes(np.asarray(state["q"], dtype=float))
    _draw_robot(ax, shapes, world)
    _draw_robot_top(top, shapes, world)
    _ground_lines(ax, planner, cyc, path_points)
    _ground_lines(top, planner, cyc, path_points)
    cx, cy = pose[:2] + 0.5 * (np.asarray(cyc["plan_poses"])[-1, :2] - pose[:2])
    top.set(xlim=(cx - HALF_VIEW, cx + HALF_VIEW), ylim=(cy - HALF_VIEW, cy + HALF_VIEW), xlabel="x (m)", ylabel="y (m)",
            title="from above")
    top.set_aspect("equal")
    ax.set(xlim=(cx - HALF_VIEW, cx + HALF_VIEW), ylim=(cy - HALF_VIEW, cy + HALF_VIEW), zlim=(0, 0.3),
           xlabel="x (m)", ylabel="y (m)", zlabel="z (m)")
    ax.set_box_aspect((1, 1, 0.3 / (2 * HALF_VIEW)))
    ax.view_init(elev=38, azim=-145)
    fig.suptitle(f"{Path(log_path).name} at t = {cyc['t']:.1f} s: the robot on its estimated pose, the path, the best "
                 f"plan's predicted body path and {len(cyc.get('candidate_poses') or [])} sampled candidates", fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    out = out or Path(log_path).with_suffix(".scene.png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _ground_lines(ax, planner: list[dict], cyc: dict, path_points: np.ndarray) -> None:
    """The path, the trails up to this cycle, the candidates and the best plan (on the ground plane; 3D or 2D axes)."""
    flat = not hasattr(ax, "zaxis")

    def line(xy: np.ndarray, z: float, **kw) -> None:
        ax.plot(xy[:, 0], xy[:, 1], **kw) if flat else ax.plot(xy[:, 0], xy[:, 1], z, **kw)

    line(path_points, 0.0, color=PATH_COLOR[:3], lw=2, label="path")
    walked = [m for m in planner if m["t"] <= cyc["t"]]
    line(np.array([m["pose"] for m in walked]), 0.0, color="C0", lw=1, label="walked (estimate)")
    truth = np.array([m["true_pose"] for m in walked if m.get("true_pose") is not None])
    if len(truth):
        line(truth, 0.0, color="C3", lw=1, label="walked (truth)")
    for i, c in enumerate(cyc.get("candidate_poses") or []):
        line(np.asarray(c), 0.005, color=CANDIDATE_COLOR[:3], lw=0.8, label="candidates" if i == 0 else None)
    line(np.asarray(cyc["plan_poses"]), 0.01, color=PLAN_COLOR[:3], lw=2.5, label="best plan (predicted)")


def _body_to_world(pose: np.ndarray, imu_quat, height: float):
    """Body frame -> world: the estimated pose at the standing height, roll and pitch from the IMU."""
    rot = Rotation.from_quat(body_rotation(pose[2], None if imu_quat is None else np.asarray(imu_quat, dtype=float)))
    origin = np.array([pose[0], pose[1], height])
    return lambda p: rot.apply(p) + origin


def _axis_ends(s: Shape, rot: Rotation) -> np.ndarray:
    """The two ends [2, 3] (m, body frame) of a cylinder's axis (its local z)."""
    return np.array([s.pos + rot.apply([0, 0, h]) for h in (-0.5 * s.size[2], 0.5 * s.size[2])])


def _draw_robot_top(ax, shapes: list[Shape], world) -> None:
    """The robot seen from above: the body's outline, the links as lines, the feet as dots (faint, under the plans)."""
    for s in shapes:
        rot = Rotation.from_quat(s.quat)
        if s.kind == "cube":
            corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]]) * 0.5 * s.size
            pts = world(rot.apply(corners) + s.pos)
            ax.fill(pts[:, 0], pts[:, 1], color=tuple(s.rgba[:3]), alpha=0.2)
        elif s.kind == "cylinder":
            ends = world(_axis_ends(s, rot))
            ax.plot(ends[:, 0], ends[:, 1], color="0.6", lw=2, alpha=0.6)
        elif not s.cap:
            p = world(s.pos[None])[0]
            ax.plot(p[0], p[1], "o", color="0.3", ms=4)


def _draw_robot(ax, shapes: list[Shape], world) -> None:
    for s in shapes:
        color = tuple(float(v) for v in s.rgba[:3])
        rot = Rotation.from_quat(s.quat)
        if s.kind == "cube":
            corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * 0.5 * s.size
            pts = world(rot.apply(corners) + s.pos)
            faces = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]
            ax.add_collection3d(Poly3DCollection([pts[f] for f in faces], facecolor=color, edgecolor="k", alpha=0.3, lw=0.5))
        elif s.kind == "cylinder":
            ends = world(_axis_ends(s, rot))
            ax.plot(ends[:, 0], ends[:, 1], ends[:, 2], color=color, lw=PT_PER_M * s.size[0], solid_capstyle="round")
        elif not s.cap:  # a capsule's end spheres: the round line caps draw them
            p = world(s.pos[None])[0]
            ax.scatter(*p, color=color, s=(PT_PER_M * s.size[0]) ** 2, depthshade=False)
