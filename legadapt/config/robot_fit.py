"""A config fitted to its robot: the description's values where the config sets none, names checked against it.

``robot.description`` names the robot (``legadapt.robot``). Before validation, every value the config leaves
unset that the description defines is taken from it: the gait shape, the torso mass, the foot friction,
the servo gains, the bus IDs and rate, the model (``models/<robot>.pt`` where one is shipped). After validation, every leg and joint a config names (perturbations, serial
directions and offsets) must be one of the robot's, and the bus must have one servo ID per joint.
"""

from __future__ import annotations

from typing import Any

from legadapt.resources import find_shipped
from legadapt.robot.description import DEFAULT_ROBOT, RobotDescription, load_description

GAIT_KEYS = ("frequency", "stride_length", "lift_height", "stance_radius", "body_height")
SERVO_KEYS = ("kp", "kv", "stall_torque", "max_speed")


def description_of(data: Any) -> RobotDescription:
    """The description a raw config names (the default hexapod if none); ValueError naming the key."""
    robot = data.get("robot") if isinstance(data, dict) else None
    name = robot.get("description", DEFAULT_ROBOT) if isinstance(robot, dict) else DEFAULT_ROBOT
    if not isinstance(name, str) or not name:
        raise ValueError(f"robot.description: a shipped robot name or the path of a description YAML, got {name!r}")
    try:
        return load_description(name)
    except ValueError as err:  # ConfigError is a ValueError
        raise ValueError(f"robot.description: {err}") from None


def _section(data: dict, key: str) -> dict | None:
    value = data.get(key, {})
    return value if isinstance(value, dict) else None  # not a mapping: validation names it


def with_robot_defaults(data: Any) -> Any:
    """``data`` (raw config) with the unset robot-dependent values taken from its description."""
    if not isinstance(data, dict):
        return data
    desc = description_of(data)
    out = dict(data)
    gait, robot, serial = _section(out, "gait"), _section(out, "robot"), _section(out, "serial")
    if gait is not None:
        out["gait"] = {**{k: getattr(desc.gait, k) for k in GAIT_KEYS}, **gait}
    if robot is not None:
        servo = robot.get("servo", {})
        fitted = {"body_mass": desc.body_mass, "foot_friction": desc.foot_friction, **robot}
        if isinstance(servo, dict):
            fitted["servo"] = {**{k: getattr(desc.servo, k) for k in SERVO_KEYS}, **servo}
        out["robot"] = fitted
    controller = _section(out, "controller")
    if controller is not None and "model" not in controller and desc.name != DEFAULT_ROBOT \
            and find_shipped("models", f"{desc.name}.pt") is not None:
        out["controller"] = {**controller, "model": f"models/{desc.name}.pt"}  # the robot's own shipped model
    sim = _section(out, "sim")
    if sim is not None and desc.servo_rate is not None:
        out["sim"] = {"servo_rate": desc.servo_rate, **sim}
    if serial is not None:
        out["serial"] = {"servo_ids": list(desc.servo_ids), "imu_id": desc.imu_id, "flow_id": desc.flow_id, **serial}
    return out


def robot_name_problems(cfg: Any, desc: RobotDescription) -> list[str]:
    """Each leg or joint ``cfg`` names that the robot does not have, and a bus that does not fit it."""
    legs, joints = set(desc.leg_names), set(desc.joint_names)
    problems = []

    def need(names: Any, known: set[str], where: str, what: str) -> None:
        for name in [names] if isinstance(names, str) else list(names):
            if name not in known:
                problems.append(f"{where}: robot {desc.name!r} has no {what} {name!r}; its {what}s: "
                                f"{', '.join(desc.leg_names if what == 'leg' else desc.joint_names)}")

    for i, p in enumerate(cfg.perturbations):
        for field, what in (("leg", "leg"), ("joint", "joint"), ("joints", "joint"), ("offsets", "joint"),
                            ("gains", "joint")):
            value = getattr(p, field, None)
            if value is not None:
                need(value, legs if what == "leg" else joints, f"perturbations[{i}].{field}", what)
    for where, source in (("controller.state_source", cfg.controller.state_source),
                          ("collect.state_source", cfg.collect.state_source)):
        if "flow" in source.split("+") and desc.flow is None:
            problems.append(f"{where}: {source!r} needs an optical-flow sensor, and robot {desc.name!r} describes none "
                            f"(sensors.flow in its description); use 'estimated', or describe the sensor")
    need(cfg.serial.directions, joints, "serial.directions", "joint")
    need(cfg.serial.zero_offsets, joints, "serial.zero_offsets", "joint")
    if len(cfg.serial.servo_ids) != desc.n_joints:
        problems.append(f"serial.servo_ids: {len(cfg.serial.servo_ids)} IDs for the {desc.n_joints} joints of robot "
                        f"{desc.name!r} (one per joint, in joint order {desc.joint_names[0]} .. {desc.joint_names[-1]})")
    return problems
