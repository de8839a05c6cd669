"""A real run's log as Foxglove and ROS tools read it (issue 16): every channel's schema validates its messages,
the Foxglove channels are foxglove-sdk's own types, the scene says what the JSON channels say, and the log times
are wall-clock times on one timeline.

Judges: the official ``mcap`` reader, ``jsonschema``, ``mcap-protobuf-support`` (decodes with the schema stored in
the file) and ``foxglove-sdk`` (its schemas, and its types re-encoding each decoded message to the same bytes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from scipy.spatial.transform import Rotation

from legadapt.robot.description import load_description
from legadapt.sim.robot_shapes import RobotShapes
from legadapt.sim.urdf import build_urdf

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from foxglove import messages as fm

FOXGLOVE_TOPICS = {"/tf": "foxglove.FrameTransforms", "/pose": "foxglove.PoseInFrame", "/pose_true": "foxglove.PoseInFrame",
                   "/joint_states": "foxglove.JointStates", "/scene/robot": "foxglove.SceneUpdate",
                   "/scene/path": "foxglove.SceneUpdate", "/scene/plan": "foxglove.SceneUpdate"}
ENUMS = {"foxglove.LinePrimitive.Type": fm.LinePrimitiveLineType}


def run_daemon(tmp: Path, *extra: str, duration: float = 3.0, mode: str = "lockstep", timeout: float = 300):
    cfg = tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"controller": {"planner": {"samples": 64, "horizon": 5}, "mode": mode},
                                   "task": {"duration": duration}}))
    log = tmp / "run.mcap"
    started = time.time_ns()
    run = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(cfg), "--log", str(log), *extra],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return log, started, time.time_ns()


@pytest.fixture(scope="module")
def lockstep_run(tmp_path_factory):
    return run_daemon(tmp_path_factory.mktemp("fox"))


def to_sdk(pb):
    """A decoded protobuf message as the foxglove-sdk type of the same name (recursively)."""
    name = pb.DESCRIPTOR.full_name
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return (fm.Timestamp if name.endswith("Timestamp") else fm.Duration)(sec=pb.seconds, nsec=pb.nanos)
    cls = getattr(fm, name.removeprefix("foxglove."))
    kwargs = {}
    for field, value in pb.ListFields():
        if field.message_type is not None:
            kwargs[field.name] = [to_sdk(v) for v in value] if _repeated(field) else to_sdk(value)
        elif field.enum_type is not None:
            kinds = ENUMS[field.enum_type.full_name]
            kwargs[field.name] = next(getattr(kinds, m) for m in dir(kinds) if not m.startswith("_")
                                      and isinstance(getattr(kinds, m), kinds) and getattr(kinds, m).value == value)
        else:
            kwargs[field.name] = list(value) if _repeated(field) else value
    return cls(**kwargs)


def _repeated(field) -> bool:
    return getattr(field, "is_repeated", None) if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def read_all(log: Path):
    """(schema, channel, message) of every message, and the file's metadata and attachments, by the official reader."""
    with open(log, "rb") as f:
        reader = make_reader(f)
        items = list(reader.iter_messages(log_time_order=False))
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        attachments = {a.name: a for a in reader.iter_attachments()}
    return items, meta, attachments


def test_every_channel_validates_and_the_foxglove_channels_are_foxglove_sdk_types(lockstep_run) -> None:
    import jsonschema
    from mcap_protobuf.decoder import DecoderFactory

    items, _, _ = read_all(lockstep_run[0])
    decoders, counts, nulls = DecoderFactory(), {}, 0
    for schema, channel, message in items:
        counts[channel.topic] = counts.get(channel.topic, 0) + 1
        if channel.message_encoding == "json":
            assert schema.encoding == "jsonschema"
            body = json.loads(message.data)
            jsonschema.validate(body, json.loads(schema.data))
            nulls += channel.topic == "adaptation" and body["loss_before"] is None
            continue
        assert (channel.message_encoding, schema.encoding) == ("protobuf", "protobuf")
        assert schema.name == FOXGLOVE_TOPICS[channel.topic]
        sdk_type = getattr(fm, schema.name.removeprefix("foxglove."))
        assert schema.data == bytes(sdk_type.get_schema().data), f"{channel.topic}: not foxglove-sdk's own schema"
        decoded = decoders.decoder_for("protobuf", schema)(message.data)
        assert to_sdk(decoded).encode() == message.data, f"{channel.topic}: foxglove-sdk does not re-encode it the same"
    print(f"validated {sum(counts.values())} messages: {counts}")
    assert {"state", "command", "transition", "adaptation", "planner", "timing", "events"} | set(FOXGLOVE_TOPICS) <= set(counts)
    assert counts["/joint_states"] == counts["state"] and counts["/tf"] == counts["/scene/plan"] == counts["planner"]
    assert nulls >= 1, "the first cycle has no window: its losses are null, and valid"


def _decoded(items, topic):
    from mcap_protobuf.decoder import DecoderFactory

    factory = DecoderFactory()
    return [(m.log_time, factory.decoder_for("protobuf", s)(m.data)) for s, c, m in items if c.topic == topic]


def _json(items, topic):
    return [(m.log_time, json.loads(m.data)) for s, c, m in items if c.topic == topic]


def test_the_scene_says_what_the_json_channels_say(lockstep_run) -> None:
    items, _, _ = read_all(lockstep_run[0])
    desc = load_description()
    links = RobotShapes(desc).link_names
    planner = dict(_json(items, "planner"))
    for ns, tf in _decoded(items, "/tf"):
        frames = {t.child_frame_id: t for t in tf.transforms}
        assert set(frames) == {"base", "base_true", *links}
        assert all(frames[f].parent_frame_id == "world" for f in ("base", "base_true"))
        assert all(frames[f].parent_frame_id == "base" for f in links)
        pose, true_pose = planner[ns]["pose"], planner[ns]["true_pose"]
        assert frames["base"].translation.x == pytest.approx(pose[0]) and frames["base"].translation.y == pytest.approx(pose[1])
        assert frames["base_true"].translation.x == pytest.approx(true_pose[0])
        q = frames["base"].rotation
        assert np.arctan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y ** 2 + q.z ** 2)) == pytest.approx(pose[2], abs=1e-6)
    states = dict(_json(items, "state"))
    for ns, js in _decoded(items, "/joint_states"):
        assert [j.name for j in js.joints] == list(desc.joint_names)
        assert [j.position for j in js.joints] == pytest.approx(states[ns]["q"])
    for ns, upd in _decoded(items, "/scene/plan"):
        (plan,) = upd.entities
        best = [(p.x, p.y) for p in plan.lines[-1].points]
        assert np.allclose(best, np.asarray(planner[ns]["plan_poses"])[:, :2])
        assert len(plan.lines) == 1 + len(planner[ns]["candidate_poses"]) > 1


def test_the_robot_in_the_scene_is_the_model_posed_by_the_logged_joint_angles(lockstep_run) -> None:
    """Each link's primitives (/scene/robot, in the link's frame) moved by the link transforms of /tf land where
    the robot's kinematics put its geoms for the last logged joint angles; the primitives are the model's geoms."""
    items, _, _ = read_all(lockstep_run[0])
    desc = load_description()
    n_legs = len(desc.leg_names)
    robot_updates = _decoded(items, "/scene/robot")
    assert len(robot_updates) >= 2, "repeated for viewers who join later"
    entities = {e.id: e for e in robot_updates[0][1].entities}
    assert sum(len(e.cubes) for e in entities.values()) == 1
    assert sum(len(e.cylinders) for e in entities.values()) == 3 * n_legs
    assert sum(len(e.spheres) for e in entities.values()) == 2 * 3 * n_legs + n_legs
    assert all(e.frame_locked and e.frame_id == ("base" if name == "torso" else name) for name, e in entities.items())
    from mcap_protobuf.decoder import DecoderFactory

    decode, q, checked = DecoderFactory().decoder_for, np.zeros(len(desc.joint_names)), 0
    for schema, channel, message in items:  # file order: the view poses the links with the last state it was given
        if channel.topic == "state":
            q = np.asarray(json.loads(message.data)["q"])
        if channel.topic != "/tf" or message.sequence % 7:
            continue
        checked += 1
        frames = {t.child_frame_id: t for t in decode("protobuf", schema)(message.data).transforms}
        placed = []
        for e in entities.values():
            rot, origin = Rotation.identity(), np.zeros(3)
            if e.frame_id != "base":
                f = frames[e.frame_id]
                rot = Rotation.from_quat([f.rotation.x, f.rotation.y, f.rotation.z, f.rotation.w])
                origin = np.array([f.translation.x, f.translation.y, f.translation.z])
            for prim in [*e.cubes, *e.cylinders, *e.spheres]:
                placed.append(rot.apply([prim.pose.position.x, prim.pose.position.y, prim.pose.position.z]) + origin)
        expected = [s.pos for s in RobotShapes(desc).shapes(q)]
        assert np.allclose(sorted(map(tuple, np.round(placed, 6))), sorted(map(tuple, np.round(expected, 6))), atol=2e-6)
    assert checked >= 4


def test_the_body_orientation_is_yaw_from_the_pose_with_roll_and_pitch_from_the_imu() -> None:
    from legadapt.controller.foxglove_view import body_rotation

    rng = np.random.default_rng(0)
    for _ in range(500):
        imu = Rotation.from_euler("ZYX", [rng.uniform(-3, 3), rng.uniform(-1.4, 1.4), rng.uniform(-3, 3)]).as_quat()
        yaw = rng.uniform(-3, 3)
        _, pitch, roll = Rotation.from_quat(imu).as_euler("ZYX")
        expected = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_quat()
        assert abs(np.dot(expected, body_rotation(yaw, imu))) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(body_rotation(0.3, None), Rotation.from_euler("z", 0.3).as_quat())


def test_log_times_are_wall_clock_from_the_run_start_in_the_metadata(lockstep_run) -> None:
    log, started, ended = lockstep_run
    items, meta, attachments = read_all(log)
    origin = int(meta["legadapt.clock"]["time_origin_unix_ns"])
    assert started <= origin <= ended, "run time 0 is an instant of this run, in ns since 1970"
    assert meta["legadapt.clock"]["time_origin_utc"].startswith(time.strftime("%Y-", time.gmtime(origin / 1e9)))
    last: dict[str, int] = {}
    for _, channel, message in items:
        if channel.message_encoding == "json":
            assert message.log_time == origin + round(json.loads(message.data)["t"] * 1e9)
        assert message.log_time >= last.get(channel.topic, origin), f"{channel.topic} goes back in time"
        last[channel.topic] = message.log_time
    urdf = attachments["robot.urdf"]
    assert urdf.media_type == "application/xml" and urdf.data.decode() == build_urdf(load_description())
    joints = {j.get("name") for j in ET.fromstring(urdf.data).iter("joint")}
    assert set(load_description().joint_names) <= joints


def test_a_format_1_log_still_reads_with_its_quaternion_reordered(tmp_path) -> None:
    """Format 1 logged imu_quat as w,x,y,z; reading it gives x,y,z,w like a format 2 log."""
    from legadapt.features import make_spec
    from legadapt.mcap_log import LogWriter, quat_xyzw
    from legadapt.mcap_read import read_log

    spec = make_spec("per_side", 0.1, load_description())
    wxyz = np.array([0.9, 0.1, 0.2, 0.3])
    state = {"q": np.zeros(18), "qd": np.zeros(18), "effort": np.zeros(18), "gyro": np.zeros(3), "acc": np.zeros(3)}
    with LogWriter(tmp_path / "new.mcap", spec) as log:
        log.write("state", {**state, "imu_quat": quat_xyzw(wxyz)}, 0.1)
    import legadapt.mcap_log as ml

    old_version = ml.LOG_FORMAT_VERSION
    ml.LOG_FORMAT_VERSION = 1
    try:
        with LogWriter(tmp_path / "old.mcap", spec) as log:
            log.write("state", {**state, "imu_quat": wxyz}, 0.1)
    finally:
        ml.LOG_FORMAT_VERSION = old_version
    old, new = read_log(tmp_path / "old.mcap"), read_log(tmp_path / "new.mcap")
    assert old.format_version == 1 and new.format_version == 2
    assert old.messages["state"][0]["imu_quat"] == new.messages["state"][0]["imu_quat"] == pytest.approx([0.1, 0.2, 0.3, 0.9])


def test_the_shipped_layout_is_what_foxglove_sdk_builds_and_names_topics_of_a_real_log(lockstep_run) -> None:
    from legadapt.controller.foxglove_layout import layout_json
    from legadapt.resources import shipped

    shipped_text = Path(shipped("deploy", "foxglove_layout.json")).read_text()
    assert shipped_text == layout_json(), "regenerate deploy/foxglove_layout.json from controller/foxglove_layout.py"
    layout = json.loads(shipped_text)
    items, _, _ = read_all(lockstep_run[0])
    topics = {c.topic for _, c, _ in items}
    planner = json.loads(next(m.data for _, c, m in items if c.topic == "planner" and b"true_cross_track" in m.data))
    adaptation = json.loads(next(m.data for _, c, m in items if c.topic == "adaptation"))

    def panels(node):
        if node.get("type") == "panel":
            yield node
        for item in node.get("items", []):
            yield from panels(item["content"])

    found = list(panels(layout["content"]))
    assert {p["panelType"] for p in found} == {"ThreeDee", "Plot"}
    scene = next(p for p in found if p["panelType"] == "ThreeDee")
    assert set(scene["config"]["topics"]) <= topics and scene["config"]["followTf"] == "base"
    for plot in (p for p in found if p["panelType"] == "Plot"):
        for series in plot["config"]["paths"]:
            topic, field = series["value"].split(".")
            assert topic in topics and field in {"planner": planner, "adaptation": adaptation}[topic], series


def test_the_scene_picture_is_drawn_from_the_log(lockstep_run, tmp_path) -> None:
    from legadapt.controller.scene_picture import draw_scene

    out = draw_scene(lockstep_run[0], tmp_path / "scene.png", at=2.0)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
