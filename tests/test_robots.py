"""Robots are data: every shipped description loads, builds both simulators and walks; a broken description is
refused naming its key; and no source file names a leg, a joint or a joint count of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from conftest import walk
from legadapt.config import ConfigError, load_config, parse_config
from legadapt.features import make_spec
from legadapt.resources import shipped, shipped_names
from legadapt.robot.description import load_description
from legadapt.sim.mjcf import TORSO_BODY, build_mjcf
from legadapt.sim.urdf import build_urdf

REPO = Path(__file__).resolve().parents[1]
ROBOTS = shipped_names("configs", "robots")
CORE = ("controller", "dynamics", "planners", "hardware", "sim", "calibration", "legadapt")


def test_three_robots_ship():
    assert {"hexapod", "phantomx", "sts_hexapod", "quadruped"} <= set(ROBOTS)


@pytest.mark.parametrize("name", ROBOTS)
def test_a_shipped_robot_builds_both_simulators_and_its_features(name):
    desc = load_description(name)
    assert desc.name == name and len(desc.joint_names) == desc.n_joints == 3 * desc.n_legs
    model = mujoco.MjModel.from_xml_string(build_mjcf(desc))
    assert model.nu == desc.n_joints and model.njnt == desc.n_joints + 1  # + the free joint
    assert abs(float(model.body(TORSO_BODY).subtreemass[0]) - desc.total_mass) < 1e-6, "the MJCF carries the description's masses"
    assert build_urdf(desc).count("<joint ") == desc.n_joints
    spec = make_spec("per_leg", 0.1, desc)
    assert spec.state_dim == 10 + desc.n_joints and spec.action_dim == desc.n_legs and spec.robot == name
    cfg = parse_config({"robot": {"description": name}})
    assert cfg.serial.servo_ids == list(desc.servo_ids) and cfg.gait.stance_radius == desc.gait.stance_radius


def test_the_default_hexapod_keeps_its_feature_layout():
    """The shipped checkpoints were trained on this layout: 18 joints LF..RH, state 28, target 31."""
    spec = make_spec("per_side", 0.1, load_description("hexapod"))
    assert spec.state_dim == 28 and spec.target_dim == 31
    assert spec.state_names[10:13] == ("q_LF_coxa", "q_LF_femur", "q_LF_tibia") and spec.state_names[-1] == "q_RH_tibia"
    assert abs(load_description("hexapod").total_mass - 2.51) < 1e-9  # kg


@pytest.mark.parametrize("name, action, expect", [
    ("phantomx", [1.0, 1.0], "forward"), ("phantomx", [1.0, -0.6], "right"), ("phantomx", [-0.6, 1.0], "left"),
    ("sts_hexapod", [1.0, 1.0], "forward"), ("sts_hexapod", [1.0, -0.6], "right"), ("sts_hexapod", [-0.6, 1.0], "left"),
    ("quadruped", [1.0, 1.0], "forward"), ("quadruped", [1.0, -0.6], "right"), ("quadruped", [-0.6, 1.0], "left"),
    ("quadruped", [-1.0, -1.0], "backward"),
])
def test_every_robot_walks_and_turns(name, action, expect):
    res = walk("mujoco", action, duration=5.0, robot={"description": name})
    print(f"{name} {action}: speed {res.speed:.3f} m/s, turn {np.degrees(res.turn_rate):+.1f} deg/s, "
          f"displacement {np.round(res.displacement, 3)}")
    assert not res.fell
    dx, dy = res.displacement
    if expect == "forward":
        assert res.speed >= 0.15 and dx > 0 and abs(dy) < 0.1 * dx and abs(np.degrees(res.yaw_change)) < 10
    elif expect == "backward":
        assert dx < -0.15 * 5.0
    else:
        rate = np.degrees(res.turn_rate)
        assert (rate < -15.0) if expect == "right" else (rate > 15.0), rate


def _broken(tmp_path: Path, change) -> str:
    data = yaml.safe_load(shipped("configs", "robots/quadruped.yaml").read_text())
    change(data)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        parse_config({"robot": {"description": str(path)}})
    return str(info.value)


@pytest.mark.parametrize("change, named", [
    (lambda d: d["bus"]["servo_ids"].pop(), "bus.servo_ids: 11 IDs for 12 joints"),
    (lambda d: d["legs"][0].update(hip=[0.1, 0.0]), "hip y = 0"),
    (lambda d: d["links"].pop("tibia"), "links must name exactly the joint kinds"),
    (lambda d: d["legs"][1].update(name="LF"), "names must differ"),
    (lambda d: d["servo"].update(kp=float("nan")), "servo.kp"),
    (lambda d: d.update(wings=2), "wings"),
])
def test_a_broken_description_is_refused_naming_the_key(tmp_path, change, named):
    msg = _broken(tmp_path, change)
    assert "robot.description" in msg and named in msg, msg


def test_a_config_naming_a_leg_the_robot_lacks_is_refused():
    with pytest.raises(ConfigError, match=r"robot 'quadruped' has no leg 'LM'; its legs: LF, LH, RF, RH"):
        parse_config({"robot": {"description": "quadruped"}, "perturbations": [{"kind": "limp_leg", "leg": "LM"}]})


def _names_and_counts() -> tuple[set[str], set[int]]:
    names, counts = set(), set()
    for robot in ROBOTS:
        desc = load_description(robot)
        names |= set(desc.leg_names) | set(desc.joint_names)
        counts.add(desc.n_joints)
    return names, counts - {12}  # 12: also register sizes and a hash length; a 12-joint robot is checked by name


CONTROL_TABLES = {"hardware/servo_types.py"}


@pytest.mark.parametrize("folder", CORE)
def test_no_source_names_a_leg_a_joint_or_a_joint_count(folder):
    """The description is the one place that names a leg or a joint: a string constant that is a shipped robot's
    leg or joint name, or an integer that is a shipped robot's joint count, is a hard-coded morphology."""
    names, counts = _names_and_counts()
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        if path.relative_to(REPO).as_posix() in CONTROL_TABLES:
            continue  # register addresses and model numbers (AX-18A is model 18), not joint counts
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and (
                    (isinstance(node.value, str) and node.value in names)
                    or (type(node.value) is int and node.value in counts)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert not found, found


def _urdf_description(tmp_path: Path, urdf_text: str) -> Path:
    """A description file that takes the hexapod's geometry from ``urdf_text`` and the rest from hexapod.yaml."""
    src = yaml.safe_load(shipped("configs", "robots/hexapod.yaml").read_text())
    (tmp_path / "robot.urdf").write_text(urdf_text)
    data = {k: src[k] for k in ("name", "foot", "servo", "bus", "gait", "sensors")}
    data["urdf"] = {"file": "robot.urdf", "base_link": "torso", "legs": [
        {"name": leg["name"], "joints": [f"{leg['name']}_{k}" for k in ("coxa", "femur", "tibia")],
         "gait_phase": leg["gait_phase"]} for leg in src["legs"]]}
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_robot_described_by_its_urdf_plus_a_small_yaml(tmp_path):
    """The hexapod's own URDF read back through a description that names only legs, joints, servos and bus:
    the same robot (to the URDF's 6 significant digits)."""
    hexapod = load_description("hexapod")
    got = load_description(_urdf_description(tmp_path, build_urdf(hexapod)))
    assert got.leg_names == hexapod.leg_names and got.joint_names == hexapod.joint_names
    assert np.allclose(got.mount_yaw, hexapod.mount_yaw, atol=1e-5) and got.hip_xy == hexapod.hip_xy
    assert (got.coxa, got.femur, got.tibia, got.joint_limits) == (hexapod.coxa, hexapod.femur, hexapod.tibia, hexapod.joint_limits)
    assert got.body_size == hexapod.body_size and got.body_mass == hexapod.body_mass
    assert mujoco.MjModel.from_xml_string(build_mjcf(got)).nu == 18


def test_a_urdf_that_does_not_fit_the_leg_model_is_refused_naming_the_joint(tmp_path):
    text = build_urdf(load_description("hexapod"))
    flipped = text.replace('<joint name="RM_femur" type="revolute">', '<joint name="RM_femur" type="revolute">', 1)
    flipped = flipped.split('<joint name="RM_femur"', 1)
    flipped = flipped[0] + '<joint name="RM_femur"' + flipped[1].replace('xyz="0 -1 0"', 'xyz="0 1 0"', 1)
    with pytest.raises(ConfigError, match=r"joint RM_femur \(femur\): axis \(0.0, 1.0, 0.0\)"):
        load_description(_urdf_description(tmp_path, flipped))


def test_a_servo_per_joint(tmp_path):
    """``servos:`` puts another servo on some joints (by name, or a kind on every leg); the simulators use it
    joint by joint, and a config's per-unit servo values change only the joints with the default servo."""
    data = yaml.safe_load(shipped("configs", "robots/hexapod.yaml").read_text())
    data["servos"] = [{"joints": ["tibia"], "model": "XL430-W250", "kp": 12.0, "stall_torque": 1.4},
                      {"joints": ["LF_coxa"], "max_speed": 3.0}]
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(data))
    desc = load_description(path)
    servos = dict(zip(desc.joint_names, desc.joint_servos))
    assert servos["RM_tibia"].model == "XL430-W250" and servos["RM_tibia"].kp == 12.0 and servos["RM_femur"].kp == 20.0
    assert servos["LF_coxa"].max_speed == 3.0 and servos["LM_coxa"].max_speed == 4.8
    model = mujoco.MjModel.from_xml_string(build_mjcf(desc))
    tibia, femur = model.actuator("LH_tibia"), model.actuator("LH_femur")
    assert tibia.forcerange[1] == pytest.approx(1.4) and tibia.gainprm[0] == pytest.approx(12.0)
    assert femur.forcerange[1] == pytest.approx(4.1) and femur.gainprm[0] == pytest.approx(20.0)
    unit = parse_config({"robot": {"description": str(path), "servo": {"kp": 25.0}}}).robot_description
    kp = dict(zip(unit.joint_names, unit.servo_values("kp")))
    assert kp["RH_coxa"] == 25.0 and kp["RH_tibia"] == 12.0
    data["servos"] = [{"joints": ["LM_knee"], "kp": 5.0}]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"servos\[0\].joints: \['LM_knee'\]"):
        load_description(path)


def test_a_description_given_as_a_config_is_named_for_what_it_is():
    with pytest.raises(ConfigError, match="is a robot description, not a config"):
        load_config(shipped("configs", "robots/quadruped.yaml"))
