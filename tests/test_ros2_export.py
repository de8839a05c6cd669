"""``legadapt export --ros2``: a real run's log as a rosbag2 that ROS 2 tools replay.

One short simulated run (module scope) is exported through the command line; the bag is read back with
rosbags' rosbag2 ``Reader`` (its metadata, connections, QoS) and its messages compared with the log's, value
by value and stamp by stamp. Where ``mcap-ros2-support`` is installed, the official ``mcap`` reader decodes
the bag's MCAP file too, with the message definitions stored in it (a second CDR decoder, not rosbags').
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from legadapt.mcap_read import read_log
from legadapt.robot.description import load_description
from legadapt.sim.mjcf import standing_height
from legadapt.sim.urdf import build_urdf

from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from legadapt.controller.ros2_export import TOPICS  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LATCHED = {"/robot_description", "/tf_static", "/path_reference", "/path_walked"}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "legadapt.controller.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(log path, wall-clock ns before the run started, after it ended) of a 2 s simulated run."""
    tmp = tmp_path_factory.mktemp("ros2")
    cfg = tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"controller": {"planner": {"samples": 64, "horizon": 5}}, "task": {"duration": 2.0}}))
    log = tmp / "run.mcap"
    started = time.time_ns()
    res = cli("run", "--config", str(cfg), "--log", str(log), timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return log, started, time.time_ns()


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """(bag dir, the export's stdout, the log's contents, {topic: [(bag ns, message)]}, {topic: connection})."""
    out = tmp_path_factory.mktemp("bag") / "bag"
    res = cli("export", "--ros2", str(run[0]), str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    return out, res.stdout, read_log(run[0]), *read_bag(out)


def read_bag(path: Path) -> tuple[dict[str, list], dict]:
    ts = get_typestore(Stores.ROS2_JAZZY)
    msgs: dict[str, list] = {}
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        for conn, stamp, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((stamp, ts.deserialize_cdr(raw, conn.msgtype)))
    return msgs, conns


def ns_of(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def expected_ns(log, t: float) -> int:
    return int(log.metadata["time_origin_unix_ns"]) + int(round(t * 1e9))


def test_the_bag_is_an_mcap_rosbag2_with_each_topic_typed_and_latched_where_published_once(exported) -> None:
    out, stdout, log, msgs, conns = exported
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["relative_file_paths"] == ["bag.mcap"]
    with open(out / "bag.mcap", "rb") as f:
        assert f.read(8) == b"\x89MCAP0\r\n"
    assert {c.topic: c.msgtype for c in conns.values()} == TOPICS  # a simulated run: every topic, /pose_true too
    for topic, conn in conns.items():
        (qos,) = conn.ext.offered_qos_profiles
        assert qos.durability == (QosDurability.TRANSIENT_LOCAL if topic in LATCHED else QosDurability.VOLATILE), topic
    assert f"ros2 bag play {out}" in stdout and len(stdout.strip().splitlines()) == 1
    for topic in TOPICS:
        assert f"{topic} {len(msgs[topic])}" in stdout


def test_counts_match_the_log(exported) -> None:
    _, _, log, msgs, _ = exported
    states, planner = log.messages["state"], [p for p in log.messages["planner"] if p.get("pose") is not None]
    assert len(states) > 50 and len(planner) > 10
    assert len(msgs["/joint_states"]) == len(msgs["/imu"]) == len(states)
    assert len(msgs["/tf"]) == len(msgs["/pose"]) == len(planner)
    assert len(msgs["/pose_true"]) == sum(p.get("true_pose") is not None for p in planner)
    assert len(msgs["/plan"]) == sum(bool(p.get("plan_poses")) for p in planner)
    assert all(len(msgs[t]) == 1 for t in LATCHED)


def test_joint_states_and_imu_are_the_logged_state_at_its_wall_clock_time(exported) -> None:
    _, _, log, msgs, _ = exported
    names = list(load_description(log.config["robot"]["description"]).joint_names)
    for s, (bag_ns, js), (imu_ns, imu) in zip(log.messages["state"], msgs["/joint_states"], msgs["/imu"], strict=True):
        ns = expected_ns(log, s["t"])
        assert bag_ns == imu_ns == ns_of(js.header.stamp) == ns_of(imu.header.stamp) == ns
        assert js.name == names
        np.testing.assert_array_equal(js.position, s["q"])
        np.testing.assert_array_equal(js.velocity, s["qd"])
        np.testing.assert_array_equal(js.effort, s["effort"])
        o, w, a = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        assert [o.x, o.y, o.z, o.w] == s["imu_quat"] and [w.x, w.y, w.z] == s["gyro"] and [a.x, a.y, a.z] == s["acc"]
        for cov in (imu.orientation_covariance, imu.angular_velocity_covariance, imu.linear_acceleration_covariance):
            assert not cov.any()  # all measured: covariance unknown (zeros), never the -1 of an absent quantity
        assert imu.header.frame_id == "imu"


def test_poses_tf_and_plans_are_the_planners(exported) -> None:
    _, _, log, msgs, _ = exported
    height = standing_height(load_description(log.config["robot"]["description"]))
    planner = [p for p in log.messages["planner"] if p.get("pose") is not None]
    states = log.messages["state"]
    for i, p in enumerate(planner):
        ns = expected_ns(log, p["t"])
        (bag_ns, pose), (tf_ns, tf) = msgs["/pose"][i], msgs["/tf"][i]
        assert bag_ns == tf_ns == ns_of(pose.header.stamp) == ns and pose.header.frame_id == "world"
        x, y, yaw = p["pose"]
        assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == (x, y, height)
        q = pose.pose.orientation
        got_yaw, got_pitch, got_roll = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_euler("ZYX")
        assert abs(np.angle(np.exp(1j * (got_yaw - yaw)))) < 1e-9
        before = [s for s in states if s["t"] <= p["t"]]  # roll and pitch: the IMU of the latest state message
        _, pitch, roll = Rotation.from_quat(before[-1]["imu_quat"]).as_euler("ZYX") if before else (0.0, 0.0, 0.0)
        assert abs(got_pitch - pitch) < 1e-9 and abs(got_roll - roll) < 1e-9
        frames = {t.child_frame_id: t for t in tf.transforms}
        assert set(frames) == {"base", "base_true"} and all(t.header.frame_id == "world" for t in tf.transforms)
        base = frames["base"].transform
        assert (base.translation.x, base.translation.y, base.translation.z) == (x, y, height)
        assert (base.rotation.x, base.rotation.y, base.rotation.z, base.rotation.w) == (q.x, q.y, q.z, q.w)
        true = msgs["/pose_true"][i][1].pose.position
        assert (true.x, true.y) == tuple(p["true_pose"][:2]) == (frames["base_true"].transform.translation.x,
                                                                 frames["base_true"].transform.translation.y)
        plan = msgs["/plan"][i][1]
        period = log.spec.control_period
        assert [(ps.pose.position.x, ps.pose.position.y) for ps in plan.poses] == [tuple(pp[:2]) for pp in p["plan_poses"]]
        assert [ns_of(ps.header.stamp) for ps in plan.poses] == [ns + k * round(period * 1e9) for k in range(len(p["plan_poses"]))]
    (walked_ns, walked), = msgs["/path_walked"]
    assert walked_ns == expected_ns(log, planner[-1]["t"])
    assert [(ps.pose.position.x, ps.pose.position.y) for ps in walked.poses] == [tuple(p["pose"][:2]) for p in planner]


def test_the_urdf_static_frames_and_time_range(exported, run) -> None:
    _, _, log, msgs, _ = exported
    desc = load_description(log.config["robot"]["description"])
    origin = int(log.metadata["time_origin_unix_ns"])
    (ns, urdf), = msgs["/robot_description"]
    assert ns == origin and urdf.data == build_urdf(desc)
    (_, static), = msgs["/tf_static"]
    frames = {(t.header.frame_id, t.child_frame_id): t.transform.translation for t in static.transforms}
    assert set(frames) == {("base", "torso"), ("base", "imu")}  # torso: the URDF's root link
    imu = frames[("base", "imu")]
    assert (imu.x, imu.y, imu.z) == tuple(desc.imu_offset)
    assert len(msgs["/path_reference"][0][1].poses) >= 2
    stamps = [ns for topic in msgs.values() for ns, _ in topic]
    _, started, ended = run
    # The bag lies within the run: it starts at run time 0, after the command started, and spans the run's 2 s of
    # run time (a lockstep run's clock is simulated: it may end before or after the wall clock's 2 s).
    assert started <= origin == min(stamps) <= ended
    assert 1.5e9 <= max(stamps) - origin <= 2.6e9


def test_the_official_mcap_reader_decodes_the_bag_with_its_stored_definitions(exported) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out, _, log, msgs, _ = exported
    with open(out / "bag.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        decoded = [(ch.topic, m.log_time, d) for _, ch, m, d in reader.iter_decoded_messages(log_time_order=False)]
    assert {t: sum(1 for x in decoded if x[0] == t) for t in TOPICS} == {t: len(v) for t, v in msgs.items()}
    joints = [(ns, d) for t, ns, d in decoded if t == "/joint_states"]
    for s, (ns, js) in zip(log.messages["state"], joints, strict=True):
        assert ns == expected_ns(log, s["t"]) and list(js.position) == s["q"]


def test_a_log_cut_in_half_exports_up_to_its_last_whole_chunk(run, tmp_path) -> None:
    data = run[0].read_bytes()
    half = tmp_path / "half.mcap"
    half.write_bytes(data[:len(data) // 2])
    (tmp_path / "out").mkdir()  # an existing empty directory is fine
    res = cli("export", "--ros2", str(half), str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "note: log cut short" in res.stderr and "Traceback" not in res.stderr
    log = read_log(half)
    msgs, _ = read_bag(tmp_path / "out")
    assert 0 < len(msgs["/joint_states"]) == len(log.messages["state"]) < len(read_log(run[0]).messages["state"])


@pytest.mark.parametrize("cut", [0, 5, 200])
def test_a_log_with_nothing_to_export_is_refused_without_a_traceback(run, tmp_path, cut) -> None:
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(run[0].read_bytes()[:cut] if cut else b"not an mcap file")
    res = cli("export", "--ros2", str(bad), str(tmp_path / "out"))
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert str(bad) in res.stderr and not (tmp_path / "out").exists()


def test_refusals_an_existing_output_a_missing_log_no_format(run, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = cli("export", "--ros2", str(run[0]), str(out))
    assert res.returncode == 2 and "already exists" in res.stderr and "remove it or give another" in res.stderr
    assert "Traceback" not in res.stderr and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    res = cli("export", "--ros2", str(tmp_path / "missing.mcap"), str(tmp_path / "new"))
    assert res.returncode == 2 and "missing.mcap" in res.stderr and "Traceback" not in res.stderr
    res = cli("export", str(run[0]), str(tmp_path / "new"))
    assert res.returncode == 2 and "--ros2" in res.stderr and not (tmp_path / "new").exists()


def test_without_rosbags_the_error_names_the_extra(monkeypatch, run, tmp_path) -> None:
    from legadapt.controller.ros2_export import ExportError, export_ros2

    for name in ("rosbags.rosbag2", "rosbags.typesys"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(ExportError, match=r'pip install "legadapt\[ros2\]"'):
        export_ros2(run[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()
