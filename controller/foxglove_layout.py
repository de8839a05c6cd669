"""The Foxglove layout shipped as ``deploy/foxglove_layout.json``, built with foxglove-sdk's layout types.

One row: the 3D scene (the robot on its estimated pose, the true pose in simulation, the path, the best plan
and the candidates; the camera follows ``base``) beside a column of two plots: cross-track error (estimate and,
in simulation, truth; m) and the adaptation loss before and after the online step (normalised MSE).
A test keeps the shipped file equal to what this builds and checks that every topic it names is in a real log.
"""

from __future__ import annotations

import foxglove.layouts as fl

from legadapt.controller.foxglove_view import BASE, WORLD


def build_layout() -> fl.Layout:
    """The layout (see the module docstring)."""
    scene = fl.ThreeDeePanel(title="robot, path and plans", config=fl.ThreeDeeConfig(
        follow_tf=BASE, fixed_frame=WORLD, follow_mode="follow-position",
        topics={"/scene/robot": fl.BaseRendererSceneUpdateTopicSettings(visible=True),
                "/scene/path": fl.BaseRendererSceneUpdateTopicSettings(visible=True),
                "/scene/plan": fl.BaseRendererSceneUpdateTopicSettings(visible=True),
                "/pose": fl.BaseRendererPoseTopicSettings(visible=True, type="arrow", color="#1f77b4"),
                "/pose_true": fl.BaseRendererPoseTopicSettings(visible=True, type="arrow", color="#d62728")}))
    cross_track = fl.PlotPanel(title="cross-track (m)", config=fl.PlotConfig(show_legend=True, paths=[
        fl.PlotSeries(value="planner.cross_track", label="estimate"),
        fl.PlotSeries(value="planner.true_cross_track", label="truth (simulation)")]))
    loss = fl.PlotPanel(title="adaptation loss (normalised MSE)", config=fl.PlotConfig(show_legend=True, paths=[
        fl.PlotSeries(value="adaptation.loss_before", label="before the step"),
        fl.PlotSeries(value="adaptation.loss_after", label="after the step")]))
    plots = fl.SplitContainer(direction="column", items=[fl.SplitItem(content=cross_track), fl.SplitItem(content=loss)])
    return fl.Layout(content=fl.SplitContainer(direction="row", items=[fl.SplitItem(proportion=2, content=scene),
                                                                       fl.SplitItem(proportion=1, content=plots)]))


def layout_json() -> str:
    """The layout as the JSON text Foxglove imports (indented, newline at the end)."""
    import json

    return json.dumps(json.loads(build_layout().to_json()), indent=2) + "\n"
