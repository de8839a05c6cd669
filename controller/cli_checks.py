"""Checks the command line makes before anything starts (``controller.cli`` parses and dispatches).

Each refuses bad input with a :class:`legadapt.config.ConfigError` (or the checkpoint's own error)
naming the option, so the command exits 2 before anything is powered: command-line overrides are
validated like the config file, log directories must be writable, every checkpoint of a perturbation
suite must load; and ``perturb --workers`` is bounded by the runs and the CPUs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from legadapt.config import ConfigError, LegadaptConfig, parse_config

def override(cfg: LegadaptConfig, section: str, **updates: object) -> LegadaptConfig:
    """``cfg`` with ``updates`` (not None) in ``section``, validated like the file: a bad override is refused."""
    updates = {k: v for k, v in updates.items() if v is not None}
    if not updates:
        return cfg
    data = cfg.model_dump(mode="json")
    data[section] = {**data[section], **updates}
    return parse_config(data, "the command-line options")


def live_option(text: str) -> tuple[str | None, int | None]:
    """An argparse ``type`` for ``--live``: empty, ``PORT`` or ``HOST:PORT`` -> (host or None, port or None); else a
    usage error (exit 2)."""
    host, sep, port = text.rpartition(":")
    if text and not (port.isdigit() and int(port) <= 65535 and (host or not sep)):
        raise argparse.ArgumentTypeError(f"expected PORT or HOST:PORT (port 0-65535), got {text!r}")
    return (host or None), (int(port) if port else None)


def live_updates(cfg: LegadaptConfig, live_arg: tuple[str | None, int | None] | None) -> LegadaptConfig:
    """``cfg`` with the live view switched on by ``--live [HOST:]PORT`` (None: as the config says)."""
    if live_arg is None:
        return cfg
    host, port = live_arg
    live = {**cfg.controller.live.model_dump(mode="json"), "enabled": True}
    live.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
    return override(cfg, "controller", live=live)


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1, else a usage error (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def seed(text: str) -> int:
    """An argparse ``type``: a simulation seed, a whole number from 0 to ``SEED_MAX``, else a usage error (exit 2)."""
    from legadapt.config.base import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number from 0 to {SEED_MAX}, got {text!r}")
    return value


def log_dir_problem(directory: Path, create: bool) -> str | None:
    """Why logs cannot be written in ``directory`` (None if they can). ``create``: make it and write a
    temporary file there; else only look: the nearest existing ancestor must be a directory (whether this
    user may write there is left to ``run``: check-config may run as another user than the daemon)."""
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                return None
        existing = next(p for p in (directory, *directory.parents) if p.exists())
        return None if existing.is_dir() else f"{existing} is not a directory"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "strerror", None) or exc)


def check_log_target(cfg: LegadaptConfig, log: Path | None, create: bool = True) -> None:
    """Refuse a log that cannot be written, before anything runs: ConfigError naming the option and the directory."""
    directory, option = (log.parent, "--log") if log else (Path(cfg.controller.log_dir), "controller.log_dir")
    problem = log_dir_problem(directory, create)
    if problem:
        raise ConfigError(f"{option}: cannot write logs in {directory}: {problem}; choose a writable directory")


def check_suite_models(suite) -> None:
    """Every checkpoint the suite's runs use loads and fits the scenarios' features, before any run starts
    (a refused one is a CheckpointError: exit 2, not one failed run per variant)."""
    from legadapt.controller.daemon import resolve_model
    from legadapt.controller.perturb import jobs_for, model_for
    from legadapt.dynamics.checkpoint import load_checkpoint
    from legadapt.features import spec_of

    defaults = parse_config({"robot": {"description": suite.robot}})
    spec = spec_of(defaults)
    for path in sorted({model_for(job) for job in jobs_for(suite, Path("."))}):
        load_checkpoint(resolve_model(path), spec)


def worker_count(requested: int, runs: int) -> tuple[int, str | None]:
    """Processes for ``runs`` runs: at most one per run and one per CPU this process may use; a note if capped."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, min(requested, runs, cpus))
    if n == requested:
        return n, None
    return n, f"--workers {requested} capped at {n}: {runs} run{'s' if runs != 1 else ''}, {cpus} CPU{'s' if cpus != 1 else ''}"
