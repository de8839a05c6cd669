"""Generate the PyBullet URDF of the hexapod from :class:`RobotDescription`.

Same links, joints, limits and inertias as :func:`sim.mjcf.build_mjcf`. URDF capsules
and cylinders lie along z, so each leg link's geometry is turned by 90° about y to lie
along +x like the MJCF's ``fromto`` capsules.

URDF has no joint armature, so the servo's reflected rotor inertia is added to each leg
link's inertia about its own joint axis (and its long axis, to stay a physical inertia
tensor). That is exact for the joint's own motion and overstates the link's inertia
when the whole body rotates about those axes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from legadapt.robot.description import RobotDescription, LinkSpec, inertia_box, inertia_capsule_x

_ALONG_X = "0 1.5707963 0"


def _fmt(*values: float) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _inertial(link: ET.Element, mass: float, com: tuple[float, float, float], diag: tuple[float, float, float]) -> None:
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "origin", xyz=_fmt(*com), rpy="0 0 0")
    ET.SubElement(inertial, "mass", value=f"{mass:.6g}")
    ixx, iyy, izz = diag
    ET.SubElement(inertial, "inertia", ixx=f"{ixx:.6g}", iyy=f"{iyy:.6g}", izz=f"{izz:.6g}", ixy="0", ixz="0", iyz="0")


def _capsule(link: ET.Element, spec: LinkSpec, rgba: str) -> None:
    for tag in ("visual", "collision"):
        el = ET.SubElement(link, tag)
        ET.SubElement(el, "origin", xyz=_fmt(0.5 * spec.length, 0, 0), rpy=_ALONG_X)
        geom = ET.SubElement(el, "geometry")
        ET.SubElement(geom, "capsule", radius=f"{spec.radius:.6g}", length=f"{spec.length:.6g}")
        if tag == "visual":
            ET.SubElement(ET.SubElement(el, "material", name=""), "color", rgba=rgba)


def _leg_link(robot: ET.Element, name: str, spec: LinkSpec, armature: float, axis: int) -> ET.Element:
    """A leg link; ``armature`` (kg·m²) is added to its inertia about joint ``axis`` (1 = y, 2 = z).

    The same amount goes on the link's long axis x too: a rigid body's principal moments
    must satisfy the triangle inequality, and PyBullet zeroes any inertia that does not.
    """
    link = ET.SubElement(robot, "link", name=name)
    diag = list(inertia_capsule_x(spec.mass, spec.length, spec.radius))
    diag[axis] += armature
    diag[0] += armature
    _inertial(link, spec.mass, (0.5 * spec.length, 0, 0), tuple(diag))
    _capsule(link, spec, "0.3 0.3 0.3 1")
    return link


def _joint(robot: ET.Element, name: str, parent: str, child: str, xyz: tuple, rpy: tuple, axis: str,
           limits: tuple[float, float], effort: float, velocity: float) -> None:
    j = ET.SubElement(robot, "joint", name=name, type="revolute")
    ET.SubElement(j, "parent", link=parent)
    ET.SubElement(j, "child", link=child)
    ET.SubElement(j, "origin", xyz=_fmt(*xyz), rpy=_fmt(*rpy))
    ET.SubElement(j, "axis", xyz=axis)
    ET.SubElement(j, "limit", lower=f"{limits[0]:.6g}", upper=f"{limits[1]:.6g}", effort=f"{effort:.6g}", velocity=f"{velocity:.6g}")


def build_urdf(desc: RobotDescription) -> str:
    """Return the URDF XML text of the robot (joint names as in ``desc.joint_names``)."""
    robot = ET.Element("robot", name=f"legadapt_{desc.name}")
    torso = ET.SubElement(robot, "link", name="torso")
    _inertial(torso, desc.body_mass, (0, 0, 0), inertia_box(desc.body_mass, desc.body_size))
    for tag in ("visual", "collision"):
        el = ET.SubElement(torso, tag)
        ET.SubElement(el, "origin", xyz="0 0 0", rpy="0 0 0")
        ET.SubElement(ET.SubElement(el, "geometry"), "box", size=_fmt(*desc.body_size))
    servos = iter(desc.joint_servos)
    for i, leg in enumerate(desc.leg_names):
        hx, hy = desc.hip_xy[i]
        s = next(servos)
        _leg_link(robot, f"{leg}_coxa", desc.coxa, s.armature, axis=2)
        _joint(robot, f"{leg}_coxa", "torso", f"{leg}_coxa", (hx, hy, 0), (0, 0, desc.mount_yaw[i]), "0 0 1",
               desc.joint_limits["coxa"], s.stall_torque, s.max_speed)
        s = next(servos)
        _leg_link(robot, f"{leg}_femur", desc.femur, s.armature, axis=1)
        _joint(robot, f"{leg}_femur", f"{leg}_coxa", f"{leg}_femur", (desc.coxa.length, 0, 0), (0, 0, 0), "0 -1 0",
               desc.joint_limits["femur"], s.stall_torque, s.max_speed)
        s = next(servos)
        tibia = _leg_link(robot, f"{leg}_tibia", desc.tibia, s.armature, axis=1)
        foot = ET.SubElement(tibia, "collision")
        ET.SubElement(foot, "origin", xyz=_fmt(desc.tibia.length, 0, 0), rpy="0 0 0")
        ET.SubElement(ET.SubElement(foot, "geometry"), "sphere", radius=f"{desc.foot_radius:.6g}")
        _joint(robot, f"{leg}_tibia", f"{leg}_femur", f"{leg}_tibia", (desc.femur.length, 0, 0), (0, 0, 0), "0 -1 0",
               desc.joint_limits["tibia"], s.stall_torque, s.max_speed)
    ET.indent(robot)
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode")
