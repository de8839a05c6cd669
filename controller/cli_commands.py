"""The ``legadapt`` subcommands' implementations: each takes the parsed arguments and returns the exit code.

:mod:`legadapt.controller.cli` parses and dispatches, and turns errors into messages; heavy modules (torch,
MuJoCo) are imported inside the commands that need them, so that refusing bad input never waits for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from legadapt.controller import cli_checks as checks
from legadapt.controller import stop_request
from legadapt.config import LegadaptConfig, config_doc, load_config

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_SAFETY_STOP = 0, 1, 2, 3


def parse_action(text: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--action must be comma-separated numbers in [-1, 1], got {text!r}") from None
    if not np.all(np.abs(values) <= 1.0):
        raise argparse.ArgumentTypeError(f"--action values must lie in [-1, 1], got {text!r}")
    return values


def cmd_walk(args: argparse.Namespace) -> int:
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


def cmd_collect(args: argparse.Namespace) -> int:
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


def cmd_train(args: argparse.Namespace) -> int:
    from legadapt.dynamics.train import train
    from legadapt.features import spec_of

    logs = [*args.logs, *(args.logs_option or [])]
    if not logs:
        print("error: give the logs to train on: legadapt train LOGS... --out MODEL (MCAP files or directories)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    cfg = checks.override(load_config(args.config), "train", method=args.method, max_steps=args.max_steps, device=args.device,
                          seed=args.seed)
    spec = spec_of(cfg)
    if args.seeds or args.select_on:
        return _train_seeds(args, logs, cfg, spec)
    if args.resume:
        from legadapt.dynamics.checkpoint import load_torch_file
        from legadapt.dynamics.train import _resume_path

        if _resume_path(args.out).exists():  # refused (malicious, corrupt) before any training starts
            load_torch_file(_resume_path(args.out), what="resume file")
    summary = train(logs, spec, cfg.train, args.out, resume=args.resume, progress=not args.quiet)
    if summary.world_size == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(summary.text())
    if summary.world_size > 1:
        from legadapt.dynamics.distributed import exit_worker

        exit_worker(EXIT_OK)
    return EXIT_OK


def _train_seeds(args: argparse.Namespace, logs: list[Path], cfg: LegadaptConfig, spec) -> int:
    """``legadapt train --seeds ... --select-on LOGS``: one training per seed, the one validation chooses kept."""
    from legadapt.dynamics.selection import table, train_and_select

    problem = ("--seeds needs --select-on LOGS (validation logs of the training conditions)" if not args.select_on
               else "--select-on chooses among --seeds S1 S2 ...: give two seeds or more" if len(set(args.seeds or [])) < 2
               else "--seeds and --seed are exclusive" if args.seed is not None
               else "--seeds trains from scratch: drop --resume" if args.resume
               else "--seeds runs in one process: start it without torchrun" if int(os.environ.get("WORLD_SIZE", "1")) > 1
               else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    seeds = list(dict.fromkeys(args.seeds))
    candidates, kept = train_and_select(logs, spec, cfg.train, args.out, seeds, args.select_on,
                                        cfg.controller.planner.horizon, progress=not args.quiet)
    print(table(candidates, kept))
    print(f"kept train.seed {kept.seed}: {args.out} (the trainings: {', '.join(str(c.path) for c in candidates)}; "
          f"the choice in {args.out.name}.json)")
    return EXIT_OK


def cmd_evaluate_dynamics(args: argparse.Namespace) -> int:
    import json

    from legadapt.dynamics.evaluate import evaluate, variants_from_checkpoints
    from legadapt.features import spec_of

    cfg = load_config(args.config)
    spec = spec_of(cfg)
    models = _labelled_model_options(args.model)
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
    (pos_name, pos), (yaw_name, yaw) = result.lowest("pos_h"), result.lowest("yaw_h")
    print(f"\nlowest pose error after the horizon, all logs: position {pos_name} ({100 * pos:.3f} cm), "
          f"heading {yaw_name} ({yaw:.3f} deg)")
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


def cmd_run(args: argparse.Namespace) -> int:
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
    """``--model KIND=PATH`` options as {kind: path}; None (after an error message) if one is malformed or a kind
    is given twice."""
    labelled = _labelled_model_options(items, labels=False)
    return None if labelled is None else {kind: path for kind, path, _ in labelled}


def _labelled_model_options(items: list[str] | None, labels: bool = True) -> list[tuple[str, Path, str]] | None:
    """``--model KIND[:NAME]=PATH`` options as (kind, path, name) in order (NAME tells apart several checkpoints of
    one kind); None (after an error message) if one is malformed or a kind and name are given twice."""
    form = "KIND[:NAME]=PATH" if labels else "KIND=PATH"
    models: list[tuple[str, Path, str]] = []
    for item in items or []:
        key, sep, path = item.partition("=")
        kind, colon, name = key.partition(":")
        if not sep or kind not in MODEL_KINDS or not path or (colon and (not labels or not name)):
            print(f"error: --model takes {form} with KIND one of {', '.join(MODEL_KINDS)}, got {item!r}", file=sys.stderr)
            return None
        if any((k, n) == (kind, name) for k, _, n in models):
            again = f"{kind}:{name}" if name else kind
            print(f"error: --model {again} is given twice: give each checkpoint once"
                  + (" (several of one kind take names: grbal:a=A.pt grbal:b=B.pt)" if labels else ""), file=sys.stderr)
            return None
        models.append((kind, Path(path), name))
    return models


def cmd_perturb(args: argparse.Namespace) -> int:
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
    if args.seeds:
        suite = suite.model_copy(update={"scenarios": [s.model_copy(update={"seeds": list(dict.fromkeys(args.seeds))})
                                                       for s in suite.scenarios]})
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


def cmd_export(args: argparse.Namespace) -> int:
    from legadapt.controller.ros2_export import export_ros2

    summary = export_ros2(args.log, args.out)  # --ros2 is the only format (required by the parser)
    if summary.log_note:
        print(f"note: {summary.log_note}", file=sys.stderr)
    print(summary.text())
    return EXIT_OK


def cmd_scene(args: argparse.Namespace) -> int:
    from legadapt.controller.scene_picture import draw_scene

    print(f"scene: {draw_scene(args.log, args.out, args.at)}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    checks.check_log_target(cfg, None, create=False)
    print(f"{args.config}: OK")
    print(cfg.model_dump_json(indent=2))
    return EXIT_OK


def cmd_config_doc(args: argparse.Namespace) -> int:
    print(config_doc())
    return EXIT_OK
