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

import numpy as np  # noqa: E402

from legadapt.controller import cli_checks as checks
from legadapt import __version__
from legadapt.config import ConfigError, LegadaptConfig, config_doc, load_config
from legadapt.config.base import StateSourceName

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_SAFETY_STOP = 0, 1, 2, 3


#: Error types that mean 'the input is unusable' (exit 2), not 'legadapt broke' (exit 1): module, class.
#: Looked up only in modules already imported, so that refusing a config never waits for torch to load.
BAD_INPUT_ERRORS = (("legadapt.dynamics.datasets", "DatasetError"), ("legadapt.dynamics.checkpoint", "CheckpointError"),
                    ("legadapt.mcap_log", "LogError"), ("legadapt.calibration.common", "CalibrationError"),
                    ("legadapt.controller.ros2_export", "ExportError"))


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """The :data:`BAD_INPUT_ERRORS` classes of the modules imported so far (an error of any other can't be one)."""
    return (ConfigError, *(getattr(sys.modules[m], c) for m, c in BAD_INPUT_ERRORS if m in sys.modules))


def _parse_action(text: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--action must be comma-separated numbers in [-1, 1], got {text!r}") from None
    if not np.all(np.abs(values) <= 1.0):
        raise argparse.ArgumentTypeError(f"--action values must lie in [-1, 1], got {text!r}")
    return values


def _cmd_walk(args: argparse.Namespace) -> int:
    from legadapt.controller.open_loop import walk_open_loop
    from legadapt.hardware.interface import CallbackReturn
    from legadapt.sim.sim_robot import SimRobot
    from legadapt.sim.hexapod import make_gait

    cfg = checks.override(load_config(args.config), "sim", backend=args.backend)
    duration = args.duration if args.duration is not None else cfg.task.duration
    robot = SimRobot(cfg)
    try:
        if robot.configure() is not CallbackReturn.SUCCESS or robot.activate() is not CallbackReturn.SUCCESS:
            print(f"error: could not start the simulated robot: {robot.last_error}", file=sys.stderr)
            return EXIT_INTERNAL
        gait = make_gait(robot.hexapod.desc, cfg.gait)
        action = args.action if args.action is not None else np.ones(gait.action_dim)
        if action.shape[0] != gait.action_dim:
            print(f"error: --action needs {gait.action_dim} values for gait.action_mode={cfg.gait.action_mode}", file=sys.stderr)
            return EXIT_BAD_INPUT
        pert = ", ".join(f"{p.kind}@{p.start:g}s" for p in cfg.perturbations) or "none"
        print(f"walking {duration:g} s on {cfg.sim.backend}, action {np.round(action, 2).tolist()}, perturbations: {pert}")
        res = walk_open_loop(robot, gait, action, duration, robot.servo_period)
    finally:
        robot.shutdown()
    dx, dy = res.displacement
    print(f"distance {np.hypot(dx, dy):.2f} m (dx {dx:+.2f}, dy {dy:+.2f}) in {res.duration:.1f} s: "
          f"speed {res.speed:.3f} m/s, turn {np.degrees(res.turn_rate):+.1f} deg/s, "
          f"max tilt {np.degrees(res.max_tilt):.1f} deg, {'FELL' if res.fell else 'upright'}; "
          f"real-time factor {res.duration / res.wall_time:.1f}x")
    return EXIT_OK if not res.fell else EXIT_INTERNAL


def _cmd_collect(args: argparse.Namespace) -> int:
    from legadapt.controller.collect import collect, parse_shard

    cfg = load_config(args.config)
    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.episodes is not None:
        cfg = cfg.model_copy(update={"collect": cfg.collect.model_copy(update={"episodes": args.episodes})})
    s = collect(cfg, args.out, shard, workers=args.workers, progress=not args.quiet)
    print(f"collected shard {shard[0]}/{shard[1]}: {s.written} episodes written, {s.skipped_existing} already there, "
          f"{s.transitions} transitions ({s.transitions / cfg.task.control_rate / 3600:.2f} h), {s.falls} falls, "
          f"{len(s.errors)} errors, in {s.wall_time:.1f} s -> {s.out_dir}")
    for err in s.errors[:10]:
        print(f"  error: {err}", file=sys.stderr)
    return EXIT_OK if not s.errors else EXIT_INTERNAL


def _cmd_train(args: argparse.Namespace) -> int:
    from legadapt.dynamics.train import train
    from legadapt.features import spec_of

    logs = [*args.logs, *(args.logs_option or [])]
    if not logs:
        print("error: give the logs to train on: legadapt train LOGS... --out MODEL (MCAP files or directories)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    cfg = checks.override(load_config(args.config), "train", method=args.method, max_steps=args.max_steps, device=args.device)
    spec = spec_of(cfg)
    if args.resume:
        from legadapt.dynamics.checkpoint import load_torch_file
        from legadapt.dynamics.train import _resume_path

        if _resume_path(args.out).exists():  # refused (malicious, corrupt) before any training starts
            load_torch_file(_resume_path(args.out), what="resume file")
    summary = train(logs, spec, cfg.train, args.out, resume=args.resume, progress=not args.quiet)
    if summary.world_size == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(summary.text())
    return EXIT_OK


def _cmd_evaluate_dynamics(args: argparse.Namespace) -> int:
    import json

    from legadapt.dynamics.evaluate import evaluate, variants_from_checkpoints
    from legadapt.features import spec_of

    cfg = load_config(args.config)
    spec = spec_of(cfg)
    models = _model_options(args.model)
    if models is None:
        return EXIT_BAD_INPUT
    from legadapt.dynamics.adaptation import Gate

    acfg = cfg.controller.adaptation
    adapters = variants_from_checkpoints(models, spec, Gate(args.gate_holdout if args.gate_holdout is not None
                                                            else acfg.gate_holdout, acfg.gate_min_gain))
    result = evaluate(args.logs, spec, adapters, args.M or cfg.train.M, args.horizon or cfg.controller.planner.horizon)
    print(f"prediction error on held-out logs, window M = {args.M or cfg.train.M}: one-step (squared error / held-out "
          f"variance, mean over the target features of each group; 1.0 = predicting the mean), and the pose error of "
          f"an open-loop rollout of the logged actions over the planner's horizon:\n")
    print(result.markdown())
    if args.json:
        args.json.write_text(json.dumps({"overall": result.overall, "per_condition": result.per_condition,
                                         "counts": result.counts, "transitions": result.transitions,
                                         "horizon": result.horizon}, indent=2))
    return EXIT_OK


def _run_config(args: argparse.Namespace) -> LegadaptConfig:
    """The config of ``legadapt run``: file, calibration overlays, then the command-line overrides, all validated."""
    cfg = load_config(args.config)
    if args.calibration:
        from legadapt.calibration.overlay import apply_overlay_files

        cfg = apply_overlay_files(cfg, args.calibration)
    cfg = checks.override(cfg, "controller", model=args.model, mode=args.mode, adapter=args.adapter,
                          state_source=args.state_source)
    cfg = checks.live_updates(cfg, args.live)
    cfg = checks.override(cfg, "sim", backend=args.sim_backend)
    cfg = checks.override(cfg, "serial", port=args.port)
    return checks.override(cfg, "robot", backend=args.backend)


def _cmd_run(args: argparse.Namespace) -> int:
    stop = stop_request.install()
    stop.arm()  # until the daemon is about to power the robot, a stop request just ends the command (main: exit 0)
    cfg = _run_config(args)
    checks.check_log_target(cfg, args.log)
    stop_request.import_unless_stopped(["legadapt.controller.daemon"])  # torch, MuJoCo: ~2 s, a stop request answered
    from legadapt.controller.daemon import PreflightError, run  # after the config checks: refusing it never waits for torch

    tty = sys.stdout.isatty()
    try:
        summary = run(cfg, backend=cfg.robot.backend, duration=args.duration, log_path=args.log, stop=stop,
                      status=(lambda line: print("\r" + line, end="", flush=True)) if tty else (lambda line: print(line, flush=True)))
    except PreflightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if tty:
        print()
    print(summary.text())
    if summary.log_path and summary.log_path.exists() and not stop.is_set():  # a stop request exits at once
        from legadapt.controller.plots import plot_run

        print(f"plot: {plot_run(summary.log_path)}")
    code = EXIT_SAFETY_STOP if summary.stop_reason and not stop.is_set() else EXIT_OK
    if stop.signal is not None:
        stop_request.exit_now(code)  # gone within 1 s of the signal: no interpreter teardown
    return code


MODEL_KINDS = ("grbal", "mb", "rebal", "pearl", "attention")


def _model_options(items: list[str] | None) -> dict[str, Path] | None:
    """``--model KIND=PATH`` options as {kind: path}; None (after an error message) if one is malformed."""
    models = {}
    for item in items or []:
        kind, sep, path = item.partition("=")
        if not sep or kind not in MODEL_KINDS or not path:
            print(f"error: --model takes KIND=PATH with KIND one of {', '.join(MODEL_KINDS)}, got {item!r}", file=sys.stderr)
            return None
        models[kind] = Path(path)
    return models


def _cmd_perturb(args: argparse.Namespace) -> int:
    import json

    from legadapt.controller.perturb import run_suite
    from legadapt.controller.report import markdown, write_report
    from legadapt.config import load_scenario, load_suite

    if bool(args.suite) == bool(args.scenario):
        print("error: give exactly one of --suite NAME|FILE or --scenario FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.suite:
        from legadapt import resources

        path = Path(args.suite)
        if not path.is_file():
            path = resources.shipped("configs", "suites") / f"{args.suite}.yaml"
        if not path.is_file():
            known = ", ".join(resources.shipped_names("configs", "suites"))
            print(f"error: no suite {args.suite!r} (neither a file nor a shipped suite); shipped suites: {known}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        suite = load_suite(path)
    else:
        suite = load_scenario(args.scenario, args.variants)
    if args.variants and args.suite:
        suite = suite.model_copy(update={"variants": args.variants})
    models = _model_options(args.model)
    if models is None:
        return EXIT_BAD_INPUT
    if models:
        suite = suite.model_copy(update={"models": {**suite.models, **{k: str(p) for k, p in models.items()}}})
    out = args.out or Path("runs/perturb") / suite.name
    if args.rescore:
        from legadapt.controller.perturb import rescore

        if not (out / "results.json").is_file():
            print(f"error: --rescore scores the logs of an earlier run, but {out} has no results.json: "
                  f"run the suite there first (without --rescore), or give its --out", file=sys.stderr)
            return EXIT_BAD_INPUT
        results = rescore(suite, out)
    else:
        from legadapt.controller.perturb import jobs_for

        checks.check_suite_models(suite)
        workers, note = checks.worker_count(args.workers, len(jobs_for(suite, out)))
        if note:
            print(f"note: {note}", file=sys.stderr)
        results = run_suite(suite, out, workers=workers, progress=not args.quiet)
    wall = json.loads((out / "results.json").read_text())["wall_time"]
    report = write_report(suite, results, out, wall)
    print(markdown(suite, results, wall))
    print(f"report: {report}\nresults: {out / 'results.json'}\nplots: {out}/*.png\nlogs: {out / 'logs'}")
    failed = [r for r in results if r.error]
    for r in failed[:10]:
        print(f"  run failed: {r.scenario} {r.variant} seed {r.seed}: {r.error}", file=sys.stderr)
    return EXIT_OK if not failed else EXIT_INTERNAL


def _cmd_export(args: argparse.Namespace) -> int:
    from legadapt.controller.ros2_export import export_ros2

    summary = export_ros2(args.log, args.out)  # --ros2 is the only format (required by the parser)
    if summary.log_note:
        print(f"note: {summary.log_note}", file=sys.stderr)
    print(summary.text())
    return EXIT_OK


def _cmd_scene(args: argparse.Namespace) -> int:
    from legadapt.controller.scene_picture import draw_scene

    print(f"scene: {draw_scene(args.log, args.out, args.at)}")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    checks.check_log_target(cfg, None, create=False)
    print(f"{args.config}: OK")
    print(cfg.model_dump_json(indent=2))
    return EXIT_OK


def _cmd_config_doc(args: argparse.Namespace) -> int:
    print(config_doc())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="legadapt", description="Online adaptation controller for legged robots.")
    parser.add_argument("--version", action="version", version=f"legadapt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    walk = sub.add_parser("walk", help="walk the simulated robot open-loop with its gait (no model)")
    walk.add_argument("--config", type=Path, default=Path("configs/hexapod_sim.yaml"), help="robot config YAML")
    walk.add_argument("--backend", choices=["mujoco", "pybullet"], help="override sim.backend")
    walk.add_argument("--duration", type=float, help="seconds to walk (default: task.duration)")
    walk.add_argument("--action", type=_parse_action, help="gait action, e.g. '1,1' (per side) or one value per leg (per_leg)")
    walk.set_defaults(func=_cmd_walk)

    col = sub.add_parser("collect", help="collect simulated experience across perturbations as MCAP logs")
    col.add_argument("--config", type=Path, default=Path("configs/collect/train.yaml"), help="config with a collect section")
    col.add_argument("--out", type=Path, required=True, help="output directory (one MCAP file per episode)")
    col.add_argument("--shard", default="0/1", help="this machine's share of the episode list, i/n (default 0/1)")
    col.add_argument("--workers", type=int, help="worker processes (default: collect.workers)")
    col.add_argument("--episodes", type=int, help="override collect.episodes (the whole collection)")
    col.add_argument("--quiet", action="store_true", help="no progress bar")
    col.set_defaults(func=_cmd_collect)

    tr = sub.add_parser("train", help="(meta-)train the dynamics model from logs (also under torchrun)")
    tr.add_argument("logs", type=Path, nargs="*", metavar="LOGS", help="MCAP files or directories of them")
    tr.add_argument("--logs", dest="logs_option", type=Path, nargs="+", metavar="LOGS",
                    help="the same, as an option (not under torchrun, which takes --logs for its own --logs-specs)")
    tr.add_argument("--out", type=Path, required=True, help="checkpoint to write (best model)")
    tr.add_argument("--config", type=Path, default=Path("configs/train/default.yaml"), help="config with a train section")
    tr.add_argument("--method", choices=["grbal", "mb", "rebal", "pearl", "attention"], help="override train.method")
    tr.add_argument("--max-steps", type=int, help="override train.max_steps")
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    tr.add_argument("--resume", action="store_true", help="continue from OUT.resume if it exists")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate-dynamics", help="held-out prediction error of trained models: one-step by feature group, pose over the horizon")
    ev.add_argument("--logs", type=Path, nargs="+", required=True, help="held-out MCAP files or directories")
    ev.add_argument("--model", action="append", required=True, help="METHOD=CHECKPOINT, METHOD in grbal, mb, rebal, pearl, attention")
    ev.add_argument("--config", type=Path, default=Path("configs/train/default.yaml"))
    ev.add_argument("--M", type=int, help="adaptation window (default: train.M)")
    ev.add_argument("--gate-holdout", type=int, help="also evaluate GrBAL with the step gate holding back N transitions "
                    "(default: controller.adaptation.gate_holdout)")
    ev.add_argument("--horizon", type=int, help="rollout steps for the pose error (default: controller.planner.horizon)")
    ev.add_argument("--json", type=Path, help="also write the figures as JSON")
    ev.set_defaults(func=_cmd_evaluate_dynamics)

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
    rn.set_defaults(func=_cmd_run)

    pt = sub.add_parser("perturb", help="sim-to-real perturbation tests: every controller variant side by side")
    pt.add_argument("--suite", help="suite name in configs/suites (held-out, training-like, mid-run-damage, ci) or a file")
    pt.add_argument("--scenario", type=Path, help="one scenario YAML instead of a suite")
    pt.add_argument("--variants", nargs="+", choices=["grbal", "rebal", "pearl", "attention", "mb", "mbde", "oracle_mb"], help="override the variants")
    pt.add_argument("--out", type=Path, help="output directory (default runs/perturb/<suite>)")
    pt.add_argument("--model", action="append", metavar="KIND=PATH",
                    help="checkpoint of a model kind (grbal, mb, rebal, pearl, attention) instead of the suite's; repeatable")
    pt.add_argument("--workers", type=checks.positive_int, default=2,
                    help="parallel runs (default 2; at most one per run and one per CPU)")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.add_argument("--rescore", action="store_true",
                    help="run nothing: score the logs of an earlier run in --out again (e.g. after changing a "
                         "scenario's recover_band) and rewrite results.json, the report and the plots")
    pt.set_defaults(func=_cmd_perturb)

    sub.add_parser("fake-robot", help="emulated serial robot on a pseudo-terminal (MuJoCo behind the robot's Dynamixel servos + IMU); "
                   "see legadapt fake-robot --help")

    sub.add_parser("calibrate", help="servo offsets/directions, IMU bias, bus latency, simulator system identification; "
                   "see legadapt calibrate --help")

    ex = sub.add_parser("export", help="export a run's MCAP log for other tools: --ros2 writes a rosbag2 (ros2 bag play OUT)")
    ex.add_argument("--ros2", action="store_true", required=True,
                    help="write a rosbag2 (MCAP storage): joint states, IMU, poses, /tf, plans, URDF (the only format)")
    ex.add_argument("log", type=Path, help="the run's MCAP log (legadapt run --log)")
    ex.add_argument("out", type=Path, help="rosbag2 directory to create (must not exist, or be empty)")
    ex.set_defaults(func=_cmd_export)

    sc = sub.add_parser("scene", help="draw the 3D scene of a run at one instant (robot, path, plans) as a PNG, from its log")
    sc.add_argument("log", type=Path, help="the run's MCAP log")
    sc.add_argument("--at", type=float, help="run time, s (default: 60 %% of the run)")
    sc.add_argument("--out", type=Path, help="PNG path (default: the log with .scene.png)")
    sc.set_defaults(func=_cmd_scene)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("config", type=Path)
    check.set_defaults(func=_cmd_check_config)

    doc = sub.add_parser("config-doc", help="print every config option")
    doc.set_defaults(func=_cmd_config_doc)
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
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
