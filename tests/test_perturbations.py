"""Each perturbation's physical effect, measured, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import standing_hexapod
from conftest import JOINT_NAMES
from legadapt.sim.rotations import rpy_from_quat

G = 9.81  # m/s²
LF_FEMUR = JOINT_NAMES.index("LF_femur")
RF_FEMUR = JOINT_NAMES.index("RF_femur")


def _lift_femurs(hx, lift: float = 0.6, duration: float = 0.6, joints=(LF_FEMUR, RF_FEMUR)) -> np.ndarray:
    """Command femurs (default LF and RF) up by ``lift`` rad, legs in the air; return physical angles."""
    q = hx.q_stand.copy()
    q[list(joints)] += lift
    hx.write(q)
    hx.advance(duration)
    return hx.backend.joint_state()[0]


def test_limp_femur_does_not_reach_its_target(backend):
    hx = standing_hexapod(backend, [{"kind": "limp_leg", "leg": "LF"}])
    target = hx.q_stand[LF_FEMUR] + 0.6
    q = _lift_femurs(hx)
    assert abs(q[RF_FEMUR] - target) < 0.08, "the intact right femur reaches its target"
    assert target - q[LF_FEMUR] > 0.4, "the limp left femur stays far below its target"


def test_limp_leg_starts_mid_run(backend):
    hx = standing_hexapod(backend, [{"kind": "limp_leg", "leg": "LF", "start": 1.2}])
    target = hx.q_stand[LF_FEMUR] + 0.6
    q_before = _lift_femurs(hx, duration=0.6, joints=(LF_FEMUR,))  # t = 0.5 .. 1.1 s: still powered
    assert abs(q_before[LF_FEMUR] - target) < 0.08
    hx.advance(1.0)  # t = 2.1 s: limp since 1.2 s, the leg has dropped
    q_after = hx.backend.joint_state()[0]
    assert target - q_after[LF_FEMUR] > 0.3


def test_locked_joint_does_not_move(backend):
    hx = standing_hexapod(backend, [{"kind": "locked_joint", "joint": "RF_femur", "start": 0.3}])
    locked_at = hx.backend.joint_state()[0][RF_FEMUR]
    q = _lift_femurs(hx)
    assert abs(q[RF_FEMUR] - locked_at) < 0.03, "the locked femur stays where it jammed"
    assert abs(q[LF_FEMUR] - (hx.q_stand[LF_FEMUR] + 0.6)) < 0.08, "the free femur moves"


def _extended_leg_sag(hx) -> float:
    """Hold the LF leg straight out horizontally in the air; how far it droops (rad)."""
    q = hx.q_stand.copy()
    q[LF_FEMUR] = 0.0
    q[LF_FEMUR + 1] = 0.0  # tibia straight
    hx.write(q)
    hx.advance(1.0)
    return float(-hx.backend.joint_state()[0][LF_FEMUR])


def test_weak_motor_droops_under_its_own_leg(backend):
    """A leg held out straight loads its femur with its own weight (~0.1 N·m): the droop
    is that torque over kp, so a servo at 30% gain droops about 3.3 times further."""
    strong = _extended_leg_sag(standing_hexapod(backend))
    weak = _extended_leg_sag(standing_hexapod(backend, [{"kind": "weak_motor", "joints": ["LF_femur"], "kp_scale": 0.3, "force_scale": 0.5}]))
    assert strong > 0.002
    assert weak / strong == pytest.approx(1 / 0.3, rel=0.35), (strong, weak)


def test_weak_motor_torque_stays_within_its_reduced_limit(backend):
    femurs = [f"{leg}_femur" for leg in ("LF", "LM", "LH", "RF", "RM", "RH")]
    idx = [JOINT_NAMES.index(f) for f in femurs]
    hx = standing_hexapod(backend, [{"kind": "payload", "mass": 2.5},
                                    {"kind": "weak_motor", "joints": femurs, "kp_scale": 1.0, "force_scale": 0.05}], settle=1.0)
    assert np.all(np.abs(hx.backend.joint_state()[2][idx]) <= 4.1 * 0.05 + 1e-6)


def test_payload_adds_its_mass(backend):
    hx = standing_hexapod(backend, settle=1.0)
    base = np.mean([hx.backend.floor_normal_force() for _ in range(5) if hx.advance(0.02) is None])
    loaded = standing_hexapod(backend, [{"kind": "payload", "mass": 1.0, "offset": [0.05, 0.0, 0.03]}], settle=1.0)
    heavy = np.mean([loaded.backend.floor_normal_force() for _ in range(5) if loaded.advance(0.02) is None])
    assert base == pytest.approx(hx.desc.total_mass * G, rel=0.05)
    assert heavy - base == pytest.approx(1.0 * G, rel=0.1), (base, heavy)


def test_payload_offset_pitches_the_body(backend):
    """A heavy payload far forward loads the front legs: the nose dips (negative pitch is nose-up)."""
    front = standing_hexapod(backend, [{"kind": "payload", "mass": 2.0, "offset": [0.12, 0.0, 0.0]}], settle=1.0)
    back = standing_hexapod(backend, [{"kind": "payload", "mass": 2.0, "offset": [-0.12, 0.0, 0.0]}], settle=1.0)
    pitch_front = rpy_from_quat(front.read().imu.quat)[1]
    pitch_back = rpy_from_quat(back.read().imu.quat)[1]
    assert pitch_front > pitch_back, "front payload tips the nose down relative to a rear payload"


@pytest.mark.parametrize("pitch_deg,roll_deg", [(15.0, 0.0), (-10.0, 0.0), (0.0, 12.0)])
def test_slope_tilts_the_body_and_the_imu_sees_it(backend, pitch_deg, roll_deg):
    hx = standing_hexapod(backend, [{"kind": "slope", "pitch_deg": pitch_deg, "roll_deg": roll_deg, "ramp_time": 0.5}], settle=1.5)
    roll, pitch, _ = np.degrees(rpy_from_quat(hx.read().imu.quat))
    # climbing +x (positive pitch_deg) raises the nose: body pitch about y is negative
    assert -pitch == pytest.approx(pitch_deg, abs=1.5)
    assert roll == pytest.approx(roll_deg, abs=1.5)
    acc = hx.read().imu.acc
    # nose up: the specific force (pointing up) has a forward component in the body frame
    assert np.degrees(np.arctan2(acc[0], acc[2])) == pytest.approx(pitch_deg, abs=2.0), "gravity seen tilted"


def test_calibration_error_offsets_the_joint_reading(backend):
    hx = standing_hexapod(backend, [{"kind": "calibration_error", "offsets": {"LF_femur": 0.2}, "gains": {"RF_femur": 1.2}}])
    q_cmd = hx.q_stand.copy()
    q_cmd[[LF_FEMUR, RF_FEMUR]] += 0.3
    hx.write(q_cmd)
    hx.advance(0.6)
    physical = hx.backend.joint_state()[0]
    reported = hx.read().q
    assert physical[LF_FEMUR] - reported[LF_FEMUR] == pytest.approx(0.2, abs=0.01)
    assert reported[LF_FEMUR] == pytest.approx(q_cmd[LF_FEMUR], abs=0.08), "the robot believes it is where it was told"
    assert physical[RF_FEMUR] == pytest.approx(1.2 * reported[RF_FEMUR], abs=0.01)


def test_imu_bias_and_noise(backend):
    spec = {"kind": "imu_error", "gyro_bias": [0.05, -0.02, 0.01], "gyro_noise": 0.01, "acc_bias": [0.3, 0.0, 0.0],
            "acc_noise": 0.0, "tilt_bias_deg": [2.0, 0.0]}
    hx = standing_hexapod(backend, [spec], settle=1.0)
    gyros, accs, rolls = [], [], []
    for _ in range(200):
        hx.advance(0.002)
        r = hx.read()
        gyros.append(r.imu.gyro)
        accs.append(r.imu.acc)
        rolls.append(rpy_from_quat(r.imu.quat)[0])
    gyros = np.array(gyros)
    assert gyros.mean(axis=0) == pytest.approx([0.05, -0.02, 0.01], abs=0.004)
    assert gyros.std(axis=0) == pytest.approx([0.01] * 3, rel=0.25)
    assert np.mean(accs, axis=0)[0] == pytest.approx(0.3, abs=0.05)
    assert np.degrees(np.mean(rolls)) == pytest.approx(2.0, abs=0.3)


def _first_move_time(hx, joint: int, delta: float = 0.3, threshold: float = 0.05) -> float:
    q = hx.q_stand.copy()
    q[joint] += delta
    t0 = hx.time
    hx.write(q)
    start = hx.backend.joint_state()[0][joint]
    while hx.time - t0 < 1.0:
        hx.advance(0.002)
        if abs(hx.backend.joint_state()[0][joint] - start) > threshold:
            return hx.time - t0
    return np.inf


def test_action_latency_delays_the_servos(backend):
    prompt = _first_move_time(standing_hexapod(backend), LF_FEMUR)
    late = _first_move_time(standing_hexapod(backend, [{"kind": "action_latency", "delay": 0.08}]), LF_FEMUR)
    assert late - prompt == pytest.approx(0.08, abs=0.01)


def _slide_on_12_degrees(backend: str, perturbations: list, **sections) -> float:
    """Distance (m) a standing robot slides in 1.5 s on a 12° incline (tan 12° = 0.21)."""
    hx = standing_hexapod(backend, [*perturbations, {"kind": "slope", "pitch_deg": 12, "ramp_time": 0.3}], settle=0.5, **sections)
    p0 = hx.read().privileged.pos.copy()
    hx.advance(1.5)
    return float(np.linalg.norm(hx.read().privileged.pos - p0))


def test_floor_friction_decides_whether_the_robot_slides_down_a_slope(backend):
    """Standing on a 12° incline: it holds with mu = 1, slides with mu = 0.1."""
    assert _slide_on_12_degrees(backend, [{"kind": "floor_friction", "mu": 1.0}]) < 0.01
    assert _slide_on_12_degrees(backend, [{"kind": "floor_friction", "mu": 0.1}]) > 0.1


def test_floor_slide_reads_the_feet_skidding_not_the_robot_moving(backend):
    """``floor_slide``: the feet's velocity at their floor contacts, weighted by normal force (the force is the
    floor's whole normal force). Standing still on a 12° incline the body moves only as far as its feet skid:
    with mu = 1 they creep a few millimetres in 1 s (MuJoCo's soft contact), with mu = 0.1 they slide away, and
    in both the skid integrated over the second is the body's displacement."""
    for mu, slides in ((1.0, False), (0.1, True)):
        hx = standing_hexapod(backend, [{"kind": "floor_friction", "mu": mu}, {"kind": "slope", "pitch_deg": 12, "ramp_time": 0.3}])
        p0, skid, dt = hx.read().privileged.pos.copy(), np.zeros(3), hx.backend.timestep
        for _ in range(int(round(1.0 / dt))):
            hx.advance(dt)
            velocity, force = hx.backend.floor_slide()
            skid += velocity * dt
        moved = hx.read().privileged.pos - p0
        assert force == pytest.approx(hx.backend.floor_normal_force(), rel=1e-6) and force > 10.0
        assert np.linalg.norm(moved) > 0.05 if slides else np.linalg.norm(moved) < 0.01
        assert np.linalg.norm(skid - moved) < 0.001 + 0.2 * np.linalg.norm(moved), (skid, moved)


def test_foot_friction_of_the_robot_config_is_the_contact_friction(backend):
    """``robot.foot_friction`` alone (no floor perturbation) decides the slide on 12°."""
    assert _slide_on_12_degrees(backend, [], robot={"foot_friction": 1.0}) < 0.01
    assert _slide_on_12_degrees(backend, [], robot={"foot_friction": 0.1}) > 0.1


def test_perturbations_compose(backend):
    hx = standing_hexapod(backend, [
        {"kind": "payload", "mass": 1.0},
        {"kind": "slope", "pitch_deg": 10, "ramp_time": 0.3},
        {"kind": "calibration_error", "offsets": {"LF_femur": 0.1}},
    ], settle=1.5)
    r = hx.read()
    assert -np.degrees(rpy_from_quat(r.imu.quat)[1]) == pytest.approx(10.0, abs=1.5)
    assert hx.backend.joint_state()[0][LF_FEMUR] - r.q[LF_FEMUR] == pytest.approx(0.1, abs=0.01)
    # on a 10° incline the floor carries the weight's normal component
    weight = (hx.desc.total_mass + 1.0) * G
    assert hx.backend.floor_normal_force() == pytest.approx(weight * np.cos(np.radians(10)), rel=0.08)


def test_payload_starting_mid_run_does_not_move_the_robot(backend):
    """Strapping a payload on changes the mass, not where the robot is (a MuJoCo mj_setConst trap)."""
    from conftest import make_config
    from legadapt.sim.hexapod import SimulatedHexapod, standing_pose

    cfg = make_config(backend, [{"kind": "payload", "mass": 1.0, "start": 0.6}])
    hx = SimulatedHexapod.from_config(cfg)
    q0, height = standing_pose(hx.desc, cfg.gait)
    hx.reset(q0, height, base_xy=(0.3, 0.2), yaw=0.4)  # away from the model's default pose
    hx.write(q0)
    hx.advance(0.5)
    before = hx.read().privileged.pos.copy()
    q_before = hx.backend.joint_state()[0].copy()
    hx.advance(0.12)  # the payload starts at 0.6 s
    after = hx.read().privileged.pos
    assert np.linalg.norm(after[:2] - before[:2]) < 0.01, (before, after)
    assert abs(after[2] - before[2]) < 0.02, "it sags a little under the extra kilogram, no jump"
    assert np.allclose(hx.backend.joint_state()[0], q_before, atol=0.1)
