"""Plots of a run, from its MCAP log: trajectory against the path, cross-track error over
time, adaptation loss before/after the online step. Written as one PNG next to the log."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from legadapt.mcap_read import read_log  # noqa: E402
from legadapt.paths import make_path  # noqa: E402


def plot_run(log_path: Path, out: Path | None = None, title: str | None = None) -> Path:
    """Render ``log_path`` to ``out`` (default: the log with .png); returns the PNG path."""
    log = read_log(log_path)
    out = out or Path(log_path).with_suffix(".png")
    planner = [m for m in log.messages.get("planner", []) if m.get("pose") is not None]
    adapt = [m for m in log.messages.get("adaptation", []) if m.get("loss_before") is not None]
    events = log.messages.get("events", [])
    task = (log.config or {}).get("task", {})
    perts = (log.config or {}).get("perturbations", [])
    fig, (ax_xy, ax_ct, ax_loss) = plt.subplots(1, 3, figsize=(15, 4.6))
    if planner:
        pose = np.array([m["pose"] for m in planner])
        t = np.array([m["t"] for m in planner])
        ct = np.array([m["cross_track"] for m in planner])
        progress = max(m.get("progress") or 0.0 for m in planner)
        path = make_path(task.get("path", "straight"), max(2.0, progress + 1.0), offset=task.get("path_offset", 0.0))
        ax_xy.plot(path.points[:, 0], path.points[:, 1], "--", color="0.5", label=f"path ({task.get('path', '?')})")
        ax_xy.plot(pose[:, 0], pose[:, 1], color="C0", label="robot (estimated)")
        ax_xy.plot(pose[0, 0], pose[0, 1], "o", color="C0")
        ax_ct.plot(t, 100 * ct, color="C0", label="estimated")
        truth = [m for m in planner if m.get("true_pose") is not None]
        if truth:  # simulation: the simulator's truth, never seen by the controller
            true_pose = np.array([m["true_pose"] for m in truth])
            ax_xy.plot(true_pose[:, 0], true_pose[:, 1], color="C3", lw=1.2, label="robot (true)")
            ax_ct.plot([m["t"] for m in truth], [100 * m["true_cross_track"] for m in truth], color="C3", lw=1.2, label="true")
            ax_ct.legend(loc="best", fontsize=8)
        ax_ct.axhline(0, color="0.5", lw=0.8)
    for p in perts:
        if p.get("start", 0) > 0:
            for ax in (ax_ct, ax_loss):
                ax.axvline(p["start"], color="C3", lw=1, ls=":")
            ax_ct.text(p["start"], ax_ct.get_ylim()[1] * 0.9, f" {p['kind']}", color="C3", fontsize=8, va="top")
    if adapt:
        ta = np.array([m["t"] for m in adapt])
        ax_loss.semilogy(ta, [m["loss_before"] for m in adapt], color="C1", label="before the step (θ*)")
        ax_loss.semilogy(ta, [m["loss_after"] for m in adapt], color="C2", label="after the step")
        ax_loss.legend(loc="upper left", fontsize=8)
    stop = next((e for e in reversed(events) if e["kind"] == "safe_stop"), None)
    ax_xy.set(xlabel="x (m)", ylabel="y (m)", title="trajectory")
    ax_xy.set_aspect("equal", adjustable="datalim")
    ax_xy.legend(loc="best", fontsize=8)
    ax_ct.set(xlabel="time (s)", ylabel="cross-track error (cm, + = left)", title="cross-track error")
    ax_loss.set(xlabel="time (s)", ylabel="window loss (normalised MSE)", title="online adaptation")
    fig.suptitle(title or f"{Path(log_path).name}: {(stop or {}).get('message', 'no stop event')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
