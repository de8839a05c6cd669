"""Reference paths (legadapt.paths): shapes, projection, errors."""

from __future__ import annotations

import numpy as np
import pytest

from legadapt.paths import PATH_NAMES, make_path


@pytest.mark.parametrize("name", PATH_NAMES)
def test_own_points_project_onto_path(name: str) -> None:
    p = make_path(name, 8.0)
    assert np.allclose(p.points[0], 0.0) and abs(p.headings[0]) < 0.01  # starts at origin heading +x (first chord of an arc: half a 1 cm step)
    assert p.length == pytest.approx(8.0, abs=1e-3)
    assert np.max(np.linalg.norm(np.diff(p.points, axis=0), axis=1)) <= 0.0101  # densely sampled
    s, cross, _ = p.project(p.points, s_hint=p.s)  # tracking projection
    assert np.max(np.abs(cross)) < 1e-9
    assert np.all(np.diff(s) > 0)
    assert np.allclose(s, p.s, atol=1e-9)
    if name != "figure8":  # figure-8 crosses itself, so the global projection is ambiguous there
        s_global, cross_global, _ = p.project(p.points)
        assert np.all(np.diff(s_global) > 0) and np.max(np.abs(cross_global)) < 1e-9


def test_cross_track_sign_and_point() -> None:
    p = make_path("straight", 4.0)
    s, cross, heading = p.project(np.array([1.0, 0.1]))
    assert s == pytest.approx(1.0) and cross == pytest.approx(0.1) and heading == pytest.approx(0.0)
    assert p.project(np.array([2.0, -0.2]))[1] == pytest.approx(-0.2)
    assert np.allclose(p.point(1.5), [1.5, 0.0])
    assert p.point(np.array([0.5, 9.0])).shape == (2, 2)


def test_left_of_turning_path_is_positive() -> None:
    p = make_path("left_turn", 4.0)
    s_mid = 0.5 + np.pi / 4  # half-way round the arc (radius 1 m, centre (0.5, 1))
    centre = np.array([0.5, 1.0])
    inside = centre + 0.9 * (p.point(s_mid) - centre)  # 0.1 m towards the centre = left
    s, cross, heading = p.project(inside)
    assert s == pytest.approx(s_mid, abs=0.01) and cross == pytest.approx(0.1, abs=1e-3)
    assert heading == pytest.approx(np.pi / 4, abs=0.01)


@pytest.mark.parametrize(("name", "final_heading"), [("left_turn", np.pi / 2), ("right_turn", -np.pi / 2)])
def test_turns_end_at_90_degrees(name: str, final_heading: float) -> None:
    p = make_path(name, 4.0)
    assert p.headings[-1] == pytest.approx(final_heading, abs=1e-6)
    assert p.heading(p.length) == pytest.approx(final_heading, abs=1e-6)
    assert p.points[-1, 0] == pytest.approx(1.5, abs=1e-3)  # 0.5 m lead-in + 1 m radius


def test_zigzag_and_figure8_shapes() -> None:
    z = make_path("zigzag", 4.0)
    headings = np.rad2deg(z.headings)
    assert headings.min() == pytest.approx(-30.0, abs=0.5) and headings.max() == pytest.approx(30.0, abs=0.5)
    assert np.max(np.abs(np.diff(headings))) < 5.0, "rounded corners: the heading never jumps"
    # the sharp zigzag would swing ±0.15 m; rounding the corners by 0.2 m arcs cuts it slightly
    assert 0.10 < np.max(np.abs(z.points[:, 1])) < 0.15
    f = make_path("figure8", 2 * 2 * np.pi * 0.6)
    assert np.max(f.points[:, 1]) == pytest.approx(1.2, abs=1e-3) and np.min(f.points[:, 1]) == pytest.approx(-1.2, abs=1e-3)
    assert np.allclose(f.points[-1], 0.0, atol=1e-3)  # back to the start
    # at the crossing, the tracking projection keeps progress instead of jumping back to 0
    s, _, _ = f.project(np.array([0.0, 0.0]), s_hint=2 * np.pi * 0.6)
    assert s == pytest.approx(2 * np.pi * 0.6, abs=0.02)


def test_unknown_path_name() -> None:
    with pytest.raises(ValueError, match="allowed: straight, left_turn"):
        make_path("spiral")


def test_offset_moves_the_path_sideways():
    p, q = make_path("left_turn", 3.0), make_path("left_turn", 3.0, offset=0.2)
    assert np.allclose(q.points, p.points + [0.0, 0.2]) and q.length == pytest.approx(p.length)
    s, cross, _ = q.project(np.zeros((1, 2)))
    assert s[0] == pytest.approx(0.0, abs=1e-9) and cross[0] == pytest.approx(-0.2), "the origin is 0.2 m right of it"
