"""Onboard state estimates against the simulator's truth, per sensor set: velocity error and drift.

Each sensor set estimates the same open-loop walks (``controller.estimator_walk``: 8 s of the
gait curving right, then left) on the intact robot, with the front-left leg limp, and on a 10 deg
side slope and a 10 deg uphill, each with and without the limp leg; one walk per seed (the seed draws the sensors' noise).
Printed: the velocity RMSE (m/s, body frame x / y) and the final position error as % of the
distance walked, the mean over seeds (the largest in brackets); and how far the feet on the floor
slid over the walk, integrated at every physics step, as % of the distance walked: the drift that
legs and IMU alone cannot avoid (``controller.estimator_walk``, ``measure_slide``).

Sensor sets: ``legs`` -- IMU + leg odometry, the complementary filter of ``state_source: estimated``;
``ekf legs`` -- the EKF of ``controller.fusion`` with the same two; ``ekf legs+flow`` -- the EKF with the
optical-flow sensor of the robot description (``state_source: estimated+flow``); ``+mocap`` -- with the
simulated motion-capture stream of ``mocap:``'s defaults (``state_source: estimated+mocap``).
Usage: ``python bench/estimator_drift.py [--seeds 0 1 2] [--seconds 8]``
"""

from __future__ import annotations

import argparse

import numpy as np

from legadapt.config import parse_config
from legadapt.config.mocap import MocapConfig
from legadapt.controller.estimator_walk import walk_beside_truth
from legadapt.controller.fusion import FusedEstimator
from legadapt.controller.mocap import SimulatedMocap
from legadapt.controller.state_estimator import StateEstimator

CONDITIONS = {
    "intact": [],
    "limp LF": [{"kind": "limp_leg", "leg": "LF"}],
    "side slope 10 deg": [{"kind": "slope", "roll_deg": 10}],
    "limp LF + side slope": [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "roll_deg": 10}],
    "uphill 10 deg": [{"kind": "slope", "pitch_deg": 10}],
    "limp LF + uphill 10 deg": [{"kind": "limp_leg", "leg": "LF"}, {"kind": "slope", "pitch_deg": 10}],
}
MOCAP = MocapConfig()  # simulated: 100 Hz, 10 ms late, 1 mm and 5 mrad noise
SOURCES = {
    "legs": StateEstimator,
    "ekf legs": FusedEstimator,
    "ekf legs+flow": lambda gait: FusedEstimator(gait, flow=gait.desc.flow),
    "ekf legs+mocap": lambda gait: FusedEstimator(gait, mocap=SimulatedMocap(MOCAP)),
    "ekf legs+flow+mocap": lambda gait: FusedEstimator(gait, flow=gait.desc.flow, mocap=SimulatedMocap(MOCAP)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    print(f"open-loop walks of {args.seconds:g} s, seeds {args.seeds}; velocity RMSE x / y (m/s), drift % of distance "
          f"walked: mean over seeds [largest]")
    print("| condition | walked (m) | feet slid | " + " | ".join(SOURCES) + " |")
    print("|---|---|---|" + "---|" * len(SOURCES))
    for name, perturbations in CONDITIONS.items():
        runs = [walk_beside_truth(parse_config({"sim": {"seed": seed}, "perturbations": perturbations}), SOURCES,
                                  args.seconds, measure_slide=True) for seed in args.seeds]
        cells = []
        for source in SOURCES:
            rmse = np.mean([r[source].vel_rmse for r in runs], axis=0)
            drift = [r[source].drift_percent for r in runs]
            err_mm = 1000 * np.mean([r[source].drift for r in runs])
            cells.append(f"{rmse[0]:.3f} / {rmse[1]:.3f}, {np.mean(drift):.1f} % [{max(drift):.1f}] ({err_mm:.0f} mm)")
        walked = np.mean([r["legs"].walked for r in runs])
        slid = [r["legs"].slide_percent for r in runs]
        print(f"| {name} | {walked:.2f} | {np.mean(slid):.1f} % [{max(slid):.1f}] | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
