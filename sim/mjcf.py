"""Generate the MuJoCo MJCF model of the hexapod from :class:`RobotDescription`.

Notes on the choices (design.md, "Simulation"):

* ``integrator="implicitfast"``: the servo damping on 30-90 g links diverges with Euler.
* ``jacobian="dense"``: MuJoCo 4.0.0 has a sparse-Cholesky bug (fixed in 4.0.1, which
  the package index does not carry yet); a dense Jacobian never takes that path.
* The floor is a plane on a mocap body, so a slope really tilts the ground (writing
  ``geom_quat`` at run time does nothing in MuJoCo 4) and the IMU sees the tilt.
* A massless ``payload`` body is welded to the torso; a payload perturbation writes its
  mass and position, which MuJoCo folds into the composite inertia every step.
* Inertias are explicit (``inertiafromgeom="false"``) and identical to the URDF's.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from legadapt.robot.schema import JOINT_KINDS
from legadapt.robot.description import RobotDescription, LinkSpec, inertia_box, inertia_capsule_x

#: Default physics step of the MuJoCo backend (s).
MJ_TIMESTEP = 0.002
FLOOR_BODY = "floor"
TORSO_BODY = "torso"
PAYLOAD_BODY = "payload"
IMU_SITE = "imu"


def _fmt(*values: float) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _link_inertial(parent: ET.Element, link: LinkSpec, extra_mass_at_end: float = 0.0) -> None:
    """Inertial of a link lying along +x from its joint, optional point mass at the tip."""
    m = link.mass + extra_mass_at_end
    com = (link.mass * 0.5 * link.length + extra_mass_at_end * link.length) / m
    ixx, iyy, izz = inertia_capsule_x(link.mass, link.length, link.radius)
    # parallel-axis terms of both parts about the combined centre of mass
    shift = link.mass * (0.5 * link.length - com) ** 2 + extra_mass_at_end * (link.length - com) ** 2
    ET.SubElement(parent, "inertial", pos=_fmt(com, 0, 0), mass=f"{m:.6g}", diaginertia=_fmt(ixx, iyy + shift, izz + shift))


def build_mjcf(desc: RobotDescription, timestep: float = MJ_TIMESTEP, floor_friction: float | None = None) -> str:
    """Return the MJCF XML text of the hexapod on a flat floor.

    The floor geom has priority, so its friction is the foot/floor contact's: it starts at
    ``floor_friction`` or, by default, the feet's ``desc.foot_friction`` (as in PyBullet,
    where the contact takes foot × floor with the floor at 1); a ``floor_friction``
    perturbation later sets it directly.
    """
    floor_friction = desc.foot_friction if floor_friction is None else floor_friction
    root = ET.Element("mujoco", model="legadapt_hexapod")
    ET.SubElement(root, "compiler", angle="radian", inertiafromgeom="false", autolimits="true")
    ET.SubElement(root, "option", timestep=f"{timestep:.6g}", integrator="implicitfast", jacobian="dense", cone="pyramidal")
    default = ET.SubElement(root, "default")
    ET.SubElement(
        default, "joint", armature=f"{desc.servo.armature:.6g}", frictionloss=f"{desc.servo.friction_loss:.6g}", limited="true"
    )
    # robot geoms collide with the floor only (contype 1 vs conaffinity 2)
    ET.SubElement(default, "geom", contype="1", conaffinity="2", condim="3", friction=_fmt(desc.foot_friction, 0.005, 0.0001))
    ET.SubElement(ET.SubElement(root, "visual"), "global", offwidth="640", offheight="480")

    world = ET.SubElement(root, "worldbody")
    ET.SubElement(world, "light", pos="0 0 3", dir="0 0 -1", directional="true")
    floor = ET.SubElement(world, "body", name=FLOOR_BODY, mocap="true")
    ET.SubElement(
        floor, "geom", name="floor", type="plane", size="0 0 0.05", contype="2", conaffinity="1",
        priority="1", friction=_fmt(floor_friction, 0.005, 0.0001), rgba="0.6 0.65 0.7 1",
    )

    standing_z = standing_height(desc)
    torso = ET.SubElement(world, "body", name=TORSO_BODY, pos=_fmt(0, 0, standing_z))
    ET.SubElement(torso, "freejoint", name="root")
    ET.SubElement(torso, "inertial", pos="0 0 0", mass=f"{desc.body_mass:.6g}", diaginertia=_fmt(*inertia_box(desc.body_mass, desc.body_size)))
    ET.SubElement(torso, "geom", name="body", type="box", size=_fmt(*(0.5 * s for s in desc.body_size)), rgba="0.2 0.3 0.8 1")
    ET.SubElement(torso, "site", name=IMU_SITE, pos=_fmt(*desc.imu_offset), size="0.01")
    payload = ET.SubElement(torso, "body", name=PAYLOAD_BODY, pos="0 0 0")
    ET.SubElement(payload, "inertial", pos="0 0 0", mass="1e-9", diaginertia="1e-12 1e-12 1e-12")

    for leg_i, leg in enumerate(desc.leg_names):
        hx, hy = desc.hip_xy[leg_i]
        coxa = ET.SubElement(torso, "body", name=f"{leg}_coxa", pos=_fmt(hx, hy, 0), euler=_fmt(0, 0, desc.mount_yaw[leg_i]))
        _add_joint(coxa, f"{leg}_coxa", "0 0 1", desc.joint_limits["coxa"])
        _link_inertial(coxa, desc.coxa)
        ET.SubElement(coxa, "geom", type="capsule", fromto=_fmt(0, 0, 0, desc.coxa.length, 0, 0), size=f"{desc.coxa.radius:.6g}", rgba="0.3 0.3 0.3 1")
        femur = ET.SubElement(coxa, "body", name=f"{leg}_femur", pos=_fmt(desc.coxa.length, 0, 0))
        _add_joint(femur, f"{leg}_femur", "0 -1 0", desc.joint_limits["femur"])
        _link_inertial(femur, desc.femur)
        ET.SubElement(femur, "geom", type="capsule", fromto=_fmt(0, 0, 0, desc.femur.length, 0, 0), size=f"{desc.femur.radius:.6g}", rgba="0.3 0.3 0.3 1")
        tibia = ET.SubElement(femur, "body", name=f"{leg}_tibia", pos=_fmt(desc.femur.length, 0, 0))
        _add_joint(tibia, f"{leg}_tibia", "0 -1 0", desc.joint_limits["tibia"])
        _link_inertial(tibia, desc.tibia)
        ET.SubElement(tibia, "geom", type="capsule", fromto=_fmt(0, 0, 0, desc.tibia.length, 0, 0), size=f"{desc.tibia.radius:.6g}", rgba="0.5 0.5 0.5 1")
        ET.SubElement(tibia, "geom", name=f"{leg}_foot", type="sphere", pos=_fmt(desc.tibia.length, 0, 0), size=f"{desc.foot_radius:.6g}", rgba="0.1 0.1 0.1 1")

    _override_joint_servos(root, desc)
    actuators = ET.SubElement(root, "actuator")
    servos = iter(desc.joint_servos)
    for leg in desc.leg_names:
        for kind in JOINT_KINDS:
            lo, hi = desc.joint_limits[kind]
            s = next(servos)
            ET.SubElement(
                actuators, "position", name=f"{leg}_{kind}", joint=f"{leg}_{kind}", kp=f"{s.kp:.6g}", kv=f"{s.kv:.6g}",
                forcerange=_fmt(-s.stall_torque, s.stall_torque), ctrlrange=_fmt(lo, hi),
            )
    sensors = ET.SubElement(root, "sensor")
    ET.SubElement(sensors, "framequat", name="imu_quat", objtype="site", objname=IMU_SITE)
    ET.SubElement(sensors, "gyro", name="imu_gyro", site=IMU_SITE)
    ET.SubElement(sensors, "accelerometer", name="imu_acc", site=IMU_SITE)
    return ET.tostring(root, encoding="unicode")


def _override_joint_servos(root: ET.Element, desc: RobotDescription) -> None:
    """Armature and friction of the joints whose servo differs from the default class's (``servos:`` groups)."""
    overrides = dict(desc.servo_overrides)
    for joint in root.iter("joint"):
        s = overrides.get(joint.get("name"))
        if s is not None:
            joint.set("armature", f"{s.armature:.6g}")
            joint.set("frictionloss", f"{s.friction_loss:.6g}")


def _add_joint(body: ET.Element, name: str, axis: str, limits: tuple[float, float]) -> None:
    ET.SubElement(body, "joint", name=name, type="hinge", axis=axis, range=_fmt(*limits))


def standing_height(desc: RobotDescription) -> float:
    """Initial torso height (m) used by the generated model."""
    return desc.gait.body_height + desc.foot_radius + 0.005


__all__ = ["build_mjcf", "MJ_TIMESTEP", "FLOOR_BODY", "TORSO_BODY", "PAYLOAD_BODY", "IMU_SITE", "standing_height"]
