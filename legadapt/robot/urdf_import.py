"""A robot description from the user's own URDF plus a small YAML that names legs, joints and servos.

A description file may carry an ``urdf:`` section instead of ``body``, ``links``, ``joint_limits`` and
the legs' geometry::

    urdf:
      file: my_robot.urdf          # relative to the description file
      base_link: base_link         # the torso: its collision box and inertial mass
      legs:                        # in joint-vector order; each leg's joints from the body out
        - {name: LF, joints: [lf_hip, lf_thigh, lf_knee], gait_phase: 0.0}   # one entry per leg
      tibia_length: 0.12           # m, knee to foot centre, where the tibia link has no foot sphere

Read from the URDF: the torso's box size and mass; each hip's position and yaw (the coxa joint's
origin); link lengths (the next joint's origin along the link's x axis, the foot sphere for the
tibia), radii (capsule or cylinder collision) and masses (inertial); the joint limits. The leg model
is legadapt's (coxa yaw about +z, femur and tibia pitch about -y, links along +x at zero angles, every
leg alike): a URDF that differs is refused, naming the joint and what differs.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from legadapt.robot.schema import JOINT_KINDS

AXES = {"coxa": (0.0, 0.0, 1.0), "femur": (0.0, -1.0, 0.0), "tibia": (0.0, -1.0, 0.0)}
DEFAULT_RADIUS = 0.01  # m, a link without capsule or cylinder collision geometry


class UrdfError(ValueError):
    """A URDF that does not fit the leg model; the message names the joint or link."""


def _floats(text: str | None, n: int, default: float = 0.0) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else (default,) * n


def _origin(el: ET.Element | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    o = el.find("origin") if el is not None else None
    return (_floats(o.get("xyz") if o is not None else None, 3), _floats(o.get("rpy") if o is not None else None, 3))


class _Urdf:
    def __init__(self, path: Path) -> None:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            raise UrdfError(f"cannot read the URDF {path}: {exc}") from None
        self.links = {el.get("name"): el for el in root.findall("link")}
        self.joints = {el.get("name"): el for el in root.findall("joint")}

    def joint(self, name: str) -> ET.Element:
        if name not in self.joints:
            raise UrdfError(f"the URDF has no joint {name!r}; its joints: {', '.join(self.joints)}")
        return self.joints[name]

    def link(self, name: str) -> ET.Element:
        if name not in self.links:
            raise UrdfError(f"the URDF has no link {name!r}")
        return self.links[name]

    def mass(self, link: str) -> float:
        m = self.link(link).find("inertial/mass")
        if m is None:
            raise UrdfError(f"link {link!r} has no inertial mass")
        return float(m.get("value"))

    def geometry(self, link: str, kind: str) -> tuple[ET.Element, tuple[float, ...]] | None:
        for col in self.link(link).findall("collision"):
            g = col.find(f"geometry/{kind}")
            if g is not None:
                return g, _origin(col)[0]
        return None


def _leg(u: _Urdf, leg: dict, tibia_length: float | None) -> tuple[dict, dict, dict]:
    """(leg entry, link specs, joint limits) of one leg."""
    if len(leg["joints"]) != len(JOINT_KINDS):
        raise UrdfError(f"leg {leg['name']}: name its {len(JOINT_KINDS)} joints ({', '.join(JOINT_KINDS)}), got {leg['joints']}")
    joints = [u.joint(j) for j in leg["joints"]]
    for kind, j in zip(JOINT_KINDS, joints):
        axis = _floats(j.find("axis").get("xyz") if j.find("axis") is not None else None, 3, 1.0)
        if any(abs(a - b) > 1e-6 for a, b in zip(axis, AXES[kind])):
            raise UrdfError(f"joint {j.get('name')} ({kind}): axis {axis}, the leg model needs {AXES[kind]}")
    (hx, hy, _), (_, _, yaw) = _origin(joints[0])
    links, limits = {}, {}
    for i, (kind, j) in enumerate(zip(JOINT_KINDS, joints)):
        child = j.find("child").get("link")
        if i + 1 < len(joints):
            (x, y, z), _ = _origin(joints[i + 1])
            if abs(y) > 1e-6 or abs(z) > 1e-6:
                raise UrdfError(f"joint {joints[i + 1].get('name')}: the link before it must run along x, origin {(x, y, z)}")
            length = x
        else:
            foot = u.geometry(child, "sphere")
            length = foot[1][0] if foot is not None else tibia_length
            if length is None:
                raise UrdfError(f"link {child!r} has no foot sphere: give urdf.tibia_length")
        shape = u.geometry(child, "capsule") or u.geometry(child, "cylinder")
        radius = float(shape[0].get("radius")) if shape is not None else DEFAULT_RADIUS
        links[kind] = {"length": round(length, 9), "radius": radius, "mass": u.mass(child)}
        lim = j.find("limit")
        limits[kind] = [float(lim.get("lower")), float(lim.get("upper"))]
    entry = {"name": leg["name"], "hip": [hx, hy], "mount_yaw_deg": math.degrees(yaw), "gait_phase": leg["gait_phase"]}
    return entry, links, limits


def description_data(data: dict, base_dir: Path) -> dict:
    """A description file's data with its ``urdf:`` section replaced by what the URDF says."""
    spec = data["urdf"]
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or not isinstance(spec.get("legs"), list):
        raise UrdfError("urdf: needs file (the URDF, relative to this file) and legs (name, joints, gait_phase per leg)")
    for leg in spec["legs"]:
        if not isinstance(leg, dict) or not {"name", "joints", "gait_phase"} <= set(leg):
            raise UrdfError(f"urdf.legs: each leg needs name, joints and gait_phase, got {leg!r}")
    u = _Urdf(base_dir / spec["file"])
    base = spec.get("base_link", "base_link")
    box = u.geometry(base, "box")
    if box is None and "body" not in data:
        raise UrdfError(f"link {base!r} has no box collision: give body.size")
    legs, first = [], None
    for leg in spec["legs"]:
        entry, links, limits = _leg(u, leg, spec.get("tibia_length"))
        if first is not None and (links, limits) != first:
            raise UrdfError(f"leg {leg['name']}: its links or limits differ from the first leg's; legadapt's leg "
                            f"model has one of each ({links} vs {first[0]})")
        first = first or (links, limits)
        legs.append(entry)
    if first is None:
        raise UrdfError("urdf.legs: no legs named")
    out = {k: v for k, v in data.items() if k != "urdf"}
    body = {"size": list(_floats(box[0].get("size"), 3)) if box else None, "mass": u.mass(base)}
    out["body"] = {**{k: v for k, v in body.items() if v is not None}, **data.get("body", {})}
    out["links"], out["joint_limits"] = first
    out["legs"] = legs
    return out
