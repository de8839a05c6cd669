"""``legadapt``: the one command-line entry point. Parses, dispatches, and turns errors into messages.

Subcommands:
  run          the adaptive controller daemon (adapt every cycle, plan with MPC), logs to MCAP
  walk         run the simulated robot open-loop with its gait (no model)
  collect      simulated experience across a distribution of perturbations, as MCAP logs
  train        (meta-)train the dynamics model from logs; runs unchanged under torchrun
  evaluate-dynamics  held-out one-step prediction error: GrBAL before/after, MB, MB+DE, ReBAL
  calibrate    servo offsets and directions, IMU bias, bus latency, simulator system identification
  fake-robot   an emulated serial robot on a pseudo-terminal (the same Dynamixel bus, MuJoCo behind it)
  perturb      sim-to-real perturbation suites: GrBAL, ReBAL, MB, MB+DE (and an oracle) side by side
  export       a run's MCAP log as a rosbag2 (--ros2) that ``ros2 bag play`` replays
  check-config validate a config file and print it
  config-doc   print every config option with its default and meaning

Exit codes: 0 success (or stopped on request), 1 internal error, 2 bad input (config, arguments,
checkpoint, logs; nothing was powered), 3 the robot made a safety stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import get_args

from legadapt.controller import stop_request

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "legadapt":  # the program itself, not an import
    stop_request.install()  # before the heavy imports: SIGINT/SIGTERM while loading only set a flag, no traceback
    # No command renders with MuJoCo: without this, `import mujoco` loads GLFW, whose library probe starts Python
    # child processes; a stop request during that probe left a child printing a BrokenPipeError traceback.
    os.environ.setdefault("MUJOCO_GL", "disable")

from legadapt.controller import cli_checks as checks  # noqa: E402 (after the stop handler)
from legadapt.controller import cli_commands as commands  # noqa: E402
from legadapt import __version__  # noqa: E402
from legadapt.config import ConfigError  # noqa: E402
from legadapt.config.base import StateSourceName  # noqa: E402
from legadapt.config.suites import Variant  # noqa: E402
from legadapt.controller.cli_commands import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_SAFETY_STOP  # noqa: F401 (API)


#: Error types that mean 'the input is unusable' (exit 2), not 'legadapt broke' (exit 1): module, class.
#: Looked up only in modules already imported, so that refusing a config never waits for torch to load.
BAD_INPUT_ERRORS = (("legadapt.dynamics.datasets", "DatasetError"), ("legadapt.dynamics.checkpoint", "CheckpointError"),
                    ("legadapt.mcap_log", "LogError"), ("legadapt.calibration.common", "CalibrationError"),
                    ("legadapt.controller.ros2_export", "ExportError"))


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """The :data:`BAD_INPUT_ERRORS` classes of the modules imported so far (an error of any other can't be one). A module
    another thread is still importing (a stop request arrived mid-import) may not define its class yet: skipped."""
    found = (getattr(sys.modules[m], c, None) for m, c in BAD_INPUT_ERRORS if m in sys.modules)
    return (ConfigError, *(e for e in found if e is not None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="legadapt", description="Online adaptation controller for legged robots.")
    parser.add_argument("--version", action="version", version=f"legadapt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    walk = sub.add_parser("walk", help="walk the simulated robot open-loop with its gait (no model)")
    walk.add_argument("--config", type=Path, default=Path("configs/hexapod_sim.yaml"), help="robot config YAML")
    walk.add_argument("--backend", choices=["mujoco", "pybullet"], help="override sim.backend")
    walk.add_argument("--duration", type=float, help="seconds to walk (default: task.duration)")
    walk.add_argument("--action", type=commands.parse_action, help="gait action, e.g. '1,1' (per side) or one value per leg (per_leg)")
    walk.set_defaults(func=commands.cmd_walk)

    col = sub.add_parser("collect", help="collect simulated experience across perturbations as MCAP logs")
    col.add_argument("--config", type=Path, default=Path("configs/collect/train.yaml"), help="config with a collect section")
    col.add_argument("--out", type=Path, required=True, help="output directory (one MCAP file per episode)")
    col.add_argument("--shard", default="0/1", help="this machine's share of the episode list, i/n (default 0/1)")
    col.add_argument("--workers", type=int, help="worker processes (default: collect.workers)")
    col.add_argument("--episodes", type=int, help="override collect.episodes (the whole collection)")
    col.add_argument("--quiet", action="store_true", help="no progress bar")
    col.set_defaults(func=commands.cmd_collect)

    tr = sub.add_parser("train", help="(meta-)train the dynamics model from logs (also under torchrun)")
    tr.add_argument("logs", type=Path, nargs="*", metavar="LOGS", help="MCAP files or directories of them")
    tr.add_argument("--logs", dest="logs_option", type=Path, nargs="+", metavar="LOGS",
                    help="the same, as an option (not under torchrun, which takes --logs for its own --logs-specs)")
    tr.add_argument("--out", type=Path, required=True, help="checkpoint to write (best model)")
    tr.add_argument("--config", type=Path, default=Path("configs/train/default.yaml"), help="config with a train section")
    tr.add_argument("--method", choices=["grbal", "mb", "rebal", "pearl", "attention"], help="override train.method")
    tr.add_argument("--max-steps", type=int, help="override train.max_steps")
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    tr.add_argument("--seed", type=int, help="override train.seed (another training of the same recipe)")
    tr.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                    help="train once per seed (OUT.seedS.pt) and keep, as OUT, the one --select-on chooses")
    tr.add_argument("--select-on", type=Path, nargs="+", metavar="LOGS",
                    help="validation logs of the training conditions for --seeds: the training whose pose after the "
                         "planner's horizon misses least (dynamics/selection.py) is kept")
    tr.add_argument("--resume", action="store_true", help="continue from OUT.resume if it exists")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=commands.cmd_train)

    ev = sub.add_parser("evaluate-dynamics", help="held-out prediction error of trained models: one-step by feature group, pose over the horizon")
    ev.add_argument("--logs", type=Path, nargs="+", required=True, help="held-out MCAP files or directories")
    ev.add_argument("--model", action="append", required=True,
                    help="METHOD[:NAME]=CHECKPOINT, METHOD in grbal, mb, rebal, pearl, attention; repeatable, NAME tells "
                         "apart several checkpoints of one method (e.g. trainings of one recipe: grbal:s0=A grbal:s1=B)")
    ev.add_argument("--config", type=Path, default=Path("configs/train/default.yaml"))
    ev.add_argument("--M", type=int, help="adaptation window (default: train.M)")
    ev.add_argument("--gate-holdout", type=int, help="also evaluate GrBAL with the step gate holding back N transitions "
                    "(default: controller.adaptation.gate_holdout)")
    ev.add_argument("--horizon", type=int, help="rollout steps for the pose error (default: controller.planner.horizon)")
    ev.add_argument("--json", type=Path, help="also write the figures as JSON")
    ev.set_defaults(func=commands.cmd_evaluate_dynamics)

    rn = sub.add_parser("run", help="run the adaptive controller daemon on a robot")
    rn.add_argument("--config", type=Path, default=Path("configs/hexapod_sim.yaml"), help="robot config YAML")
    rn.add_argument("--backend", choices=["sim", "serial"],
                    help="override robot.backend: sim (the simulated robot) or serial (Dynamixel bus, e.g. legadapt fake-robot)")
    rn.add_argument("--port", help="serial: override serial.port (device path, pty, or pyserial URL)")
    rn.add_argument("--sim-backend", choices=["mujoco", "pybullet"], help="override sim.backend")
    rn.add_argument("--model", help="override controller.model (checkpoint)")
    rn.add_argument("--adapter", choices=["auto", "grbal", "mb", "mbde", "rebal", "pearl", "attention"], help="override controller.adapter")
    rn.add_argument("--state-source", choices=list(get_args(StateSourceName)),
                    help="override controller.state_source (estimated+flow: fuse the robot's optical-flow sensor)")
    rn.add_argument("--mode", choices=["lockstep", "realtime"], help="override controller.mode")
    rn.add_argument("--duration", type=float, help="run length, s (default: task.duration)")
    rn.add_argument("--log", type=Path, help="MCAP log path (default: controller.log_dir/run-<time>.mcap)")
    rn.add_argument("--live", nargs="?", const=(None, None), type=checks.live_option, metavar="[HOST:]PORT",
                    help="serve the live view to Foxglove over WebSocket (default 127.0.0.1:8765, controller.live)")
    rn.add_argument("--calibration", type=Path, nargs="+", help="calibration YAML overlays (legadapt calibrate) applied to the config")
    rn.set_defaults(func=commands.cmd_run)

    pt = sub.add_parser("perturb", help="sim-to-real perturbation tests: every controller variant side by side")
    pt.add_argument("--suite", help="suite name in configs/suites (held-out, training-like, mid-run-damage, ci) or a file")
    pt.add_argument("--scenario", type=Path, help="one scenario YAML instead of a suite")
    pt.add_argument("--variants", nargs="+", choices=list(get_args(Variant)), help="override the variants")
    pt.add_argument("--out", type=Path, help="output directory (default runs/perturb/<suite>)")
    pt.add_argument("--model", action="append", metavar="KIND=PATH",
                    help="checkpoint of a model kind (grbal, mb, rebal, pearl, attention) instead of the suite's; repeatable")
    pt.add_argument("--seeds", nargs="+", type=checks.seed, metavar="SEED",
                    help="run every scenario on these seeds instead of its own (more seeds check a claim)")
    pt.add_argument("--workers", type=checks.positive_int, default=2,
                    help="parallel runs (default 2; at most one per run and one per CPU)")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.add_argument("--rescore", action="store_true",
                    help="run nothing: score the logs of an earlier run in --out again (e.g. after changing a "
                         "scenario's recover_band) and rewrite results.json, the report and the plots")
    pt.set_defaults(func=commands.cmd_perturb)

    sub.add_parser("fake-robot", help="emulated serial robot on a pseudo-terminal (MuJoCo behind the robot's Dynamixel servos + IMU); "
                   "see legadapt fake-robot --help")

    sub.add_parser("calibrate", help="servo offsets/directions, IMU bias, bus latency, simulator system identification; "
                   "see legadapt calibrate --help")

    ex = sub.add_parser("export", help="export a run's MCAP log for other tools: --ros2 writes a rosbag2 (ros2 bag play OUT)")
    ex.add_argument("--ros2", action="store_true", required=True,
                    help="write a rosbag2 (MCAP storage): joint states, IMU, poses, /tf, plans, URDF (the only format)")
    ex.add_argument("log", type=Path, help="the run's MCAP log (legadapt run --log)")
    ex.add_argument("out", type=Path, help="rosbag2 directory to create (must not exist, or be empty)")
    ex.set_defaults(func=commands.cmd_export)

    sc = sub.add_parser("scene", help="draw the 3D scene of a run at one instant (robot, path, plans) as a PNG, from its log")
    sc.add_argument("log", type=Path, help="the run's MCAP log")
    sc.add_argument("--at", type=float, help="run time, s (default: 60 %% of the run)")
    sc.add_argument("--out", type=Path, help="PNG path (default: the log with .scene.png)")
    sc.set_defaults(func=commands.cmd_scene)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=commands.cmd_check_config)

    doc = sub.add_parser("config-doc", help="print every config option")
    doc.set_defaults(func=commands.cmd_config_doc)
    return parser


def _dispatch(argv: list[str]) -> int:
    if next((a for a in argv if not a.startswith("-")), None) != "run" and stop_request.release():
        print("interrupted", file=sys.stderr)  # SIGINT/SIGTERM while loading: nothing was started
        return 130
    if argv[:1] == ["fake-robot"]:  # the emulator owns its own arguments
        from legadapt.sim.fake_robot_cli import main as fake_robot_main

        return fake_robot_main(argv[1:])
    if argv[:1] == ["calibrate"]:  # so does calibration
        from legadapt.calibration.cli import main as calibrate_main

        return calibrate_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status per the module docstring, an error message and never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except _bad_input_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt as exc:  # SIGINT; SIGTERM too where a command takes it as one (perturb)
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except stop_request.StopBeforeStart:
        print("stopped before start (stop requested): nothing was powered", file=sys.stderr)
        stop_request.exit_now(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - never a traceback as the user interface
        logging.getLogger("legadapt").debug("internal error", exc_info=True)
        print(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
