"""``legadapt perturb``: sim-to-real perturbation tests, every controller variant side by side.

Each (scenario, seed, variant) is one run of the daemon in lockstep simulation, in
parallel worker processes. Metrics come from the run's own log, scored against the
simulator's true pose (the controller itself only sees its onboard estimate):

* mean and max |cross-track error| (m) of the true pose, projected onto the path near the
  truth's own progress (never the estimate's, which may under-read the distance walked);
* progress along the path (m) and the task score: the distance made good along the path
  while staying inside the scenario's corridor (m) -- a robot that stands still scores 0;
* whether the run stopped before its end (a safety stop: a fall, a robot fault), and why;
* fell (a tilt safety stop);
* time to recover after mid-run damage (s): from the onset of the last perturbation that
  starts mid-run until the error is back within ``recover_band`` for good (settling time:
  the last exit from the band counts, so a slow drift off the path is not "recovered"
  before it began), with the peak error after the onset;
* adapt + plan cycle time (ms, median).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from legadapt import config as C
from legadapt.controller import stop_request
from legadapt.mcap_read import read_log
from legadapt.paths import task_path, track

RECOVER_HOLD = 1.0  # s the error must stay inside the band to count as recovered
ADAPTER = {"grbal": "auto", "grbal_ensemble": "auto", "rebal": "auto", "pearl": "auto", "attention": "auto", "mb": "mb",
           "mbde": "mbde", "oracle_mb": "mb"}
LABEL = {"grbal": "GrBAL", "grbal_ensemble": "GrBAL ensemble", "rebal": "ReBAL", "pearl": "PEARL", "attention": "attention",
         "mb": "MB", "mbde": "MB+DE", "oracle_mb": "oracle MB"}
MODEL_KIND = {"mbde": "mb", "grbal_ensemble": "grbal"}  # variants that run another variant's model


@dataclass
class RunResult:
    scenario: str
    variant: str
    seed: int
    mean_cross_track: float = math.nan  # m
    max_cross_track: float = math.nan  # m
    progress: float = math.nan  # m
    task_score: float = math.nan  # m made good along the path inside the corridor
    fell: bool = False
    recovery_time: float | None = None  # s; None = no mid-run damage (or never recovered, see never_recovered)
    never_recovered: bool = False  # mid-run damage and the run ended outside the band
    peak_after_onset: float | None = None  # m, largest cross-track error after the mid-run onset
    cycle_ms: float = math.nan
    loss_before: float = math.nan
    loss_after: float = math.nan
    stop_reason: str | None = None  # None = ran its whole duration
    log: str = ""
    error: str | None = None

    @property
    def failed(self) -> str | None:
        """Why this run does not count as a completed run (an error or a stop before its end), or None."""
        return self.error or (f"stopped: {self.stop_reason}" if self.stop_reason else None)


@dataclass(frozen=True)
class Job:
    suite: C.SuiteConfig
    scenario: C.ScenarioConfig
    variant: str
    seed: int
    out: Path

    @property
    def log(self) -> Path:
        """The run's MCAP log."""
        return self.out / "logs" / f"{self.scenario.name}-{self.variant}-s{self.seed}.mcap"


def model_for(job: Job) -> str | None:
    if job.variant == "oracle_mb":
        return job.scenario.oracle_model
    return job.suite.models.get(MODEL_KIND.get(job.variant, job.variant))


def jobs_for(suite: C.SuiteConfig, out: Path) -> list[Job]:
    """Every (scenario, seed, variant) with a model to run; oracle only where a scenario names one."""
    jobs = []
    for sc in suite.scenarios:
        for seed in sc.seeds:
            for v in suite.variants:
                job = Job(suite, sc, v, seed, out)
                if model_for(job):
                    jobs.append(job)
    return jobs


def _controller_options(job: Job) -> dict:
    """The suite's controller options, with the ensemble's members for the grbal_ensemble variant."""
    options = dict(job.suite.controller)
    if job.variant == "grbal_ensemble":
        options["adaptation"] = {**options.get("adaptation", {}), "ensemble": list(job.suite.ensemble)}
    return options


def _config(job: Job) -> C.LegadaptConfig:
    sc = job.scenario
    return C.parse_config({
        "robot": {"description": job.suite.robot},
        "sim": {"backend": sc.backend, "seed": job.seed},
        "perturbations": [p.model_dump(mode="json") for p in sc.perturbations],
        "task": {"path": sc.path, "duration": sc.duration, "target_speed": sc.target_speed},
        "controller": {**_controller_options(job), "model": model_for(job), "adapter": ADAPTER[job.variant],
                       "state_source": sc.state_source, "status_interval": 60,
                       "planner": {**job.suite.controller.get("planner", {}), "seed": job.seed}},
    }, f"scenario {sc.name}")


def run_job(job: Job) -> RunResult:
    """One daemon run, scored from its log (runs in a worker process)."""
    import torch

    from legadapt.controller.daemon import run

    torch.set_num_threads(1)
    res = RunResult(job.scenario.name, job.variant, job.seed)
    log = job.log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    try:
        summary = run(_config(job), log_path=log, status=lambda line: None, stop=stop_request.REQUEST)
        if stop_request.REQUEST.is_set():  # the suite was stopped: a partial run is not a result
            began = log.exists()
            res.error = ("interrupted: the suite was stopped during this run (its log is finished)" if began else
                         "interrupted: the suite was stopped before this run began")
            res.log = str(log) if began else ""
            return res
        res.stop_reason, res.fell = summary.stop_reason, bool(summary.stop_reason and summary.stop_reason.startswith("tilt"))
        res.cycle_ms, res.loss_before, res.loss_after = 1e3 * summary.cycle_p50, summary.loss_before, summary.loss_after
        score(res, read_log(log, channels={"planner"}).messages["planner"], job.scenario)
    except Exception as exc:  # noqa: BLE001 - one failed run is a result, not the end of the suite
        res.error = f"{type(exc).__name__}: {exc}"
    res.log = str(log)
    return res


def score(res: RunResult, planner: list[dict], sc: C.ScenarioConfig) -> None:
    """Fill the path metrics of ``res`` from the planner channel: the simulator's true pose where
    logged (tracked along the path on its own), else the controller's own pose."""
    if not planner:
        res.error = res.error or "no control cycle was logged"
        return
    key = "true_pose" if "true_pose" in planner[0] else "pose"
    t = np.array([m["t"] for m in planner])
    xy = np.array([m[key][:2] for m in planner], dtype=float)
    s, e = track(task_path(_task(sc)), xy)
    xt = np.abs(e)
    res.mean_cross_track, res.max_cross_track = float(xt.mean()), float(xt.max())
    res.progress = float(s[-1])
    res.task_score = task_score(s, xt, sc.corridor)
    onsets = [p.start for p in sc.perturbations if p.start > 0]
    if onsets:
        rec = recovery_time(t, xt, max(onsets), sc.recover_band)
        res.never_recovered = not math.isfinite(rec)
        res.recovery_time = rec if math.isfinite(rec) else None
        after = xt[t >= max(onsets)]
        res.peak_after_onset = float(after.max()) if after.size else None


def task_score(s: np.ndarray, abs_xt: np.ndarray, corridor: float) -> float:
    """Distance made good along the path while inside the corridor (m): the sum of the progress
    steps s[i] - s[i-1] (negative when walking back) over the steps that start and end within
    ``corridor`` m of the path. Standing still scores 0, and so does walking outside the corridor."""
    inside = (abs_xt[1:] <= corridor) & (abs_xt[:-1] <= corridor)
    return float(np.sum(np.diff(s)[inside]))


def _task(sc: C.ScenarioConfig) -> C.TaskConfig:
    return C.TaskConfig(path=sc.path, duration=sc.duration, target_speed=sc.target_speed)


def recovery_time(t: np.ndarray, err: np.ndarray, onset: float, band: float, hold: float = RECOVER_HOLD) -> float:
    """Settling time: s from ``onset`` until |err| is back within ``band`` for good.

    The error may take a while to grow after the damage, so this is measured from the
    last sample outside the band (0 if the error never left it after ``onset``); inf if
    the run ends outside the band or less than ``hold`` s after its last return.
    """
    after = np.flatnonzero(t >= onset)
    out = after[err[after] > band]
    if out.size == 0:
        return 0.0
    last = out[-1]
    if last + 1 >= len(t) or t[-1] - t[last + 1] < hold:
        return math.inf
    return float(t[last + 1] - onset)


def rescore(suite: C.SuiteConfig, out: Path) -> list[RunResult]:
    """Score an earlier run's logs again with ``suite``'s scenarios; rewrites ``out/results.json``.

    Raises:
        FileNotFoundError: ``out`` has no results.json (nothing was run there).
    """
    saved = json.loads((out / "results.json").read_text())
    scenarios = {sc.name: sc for sc in suite.scenarios}
    results = []
    for entry in saved["results"]:
        res = RunResult(**{k: v for k, v in entry.items() if k in RunResult.__dataclass_fields__})
        if res.scenario in scenarios and res.log and Path(res.log).exists() and not res.error:
            score(res, read_log(res.log, channels={"planner"}).messages["planner"], scenarios[res.scenario])
        results.append(res)
    _write_results(out, suite, results, saved.get("wall_time"))
    return results


def run_suite(suite: C.SuiteConfig, out: Path, workers: int = 2, progress: bool = True) -> list[RunResult]:
    """Run every job of ``suite`` in ``workers`` processes; writes ``out/results.json``."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(suite, out)
    results: list[RunResult] = []
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(jobs), desc=f"perturb {suite.name}", unit="run", disable=not progress) as bar:
            if workers <= 1:
                for job in jobs:
                    results.append(run_job(job))
                    bar.update()
            else:
                results = _run_in_processes(jobs, workers, bar)
    except SuiteInterrupted as stopped:
        results = stopped.results
        raise SuiteInterrupted(results, f"{sum(not r.error for r in results)} of {len(jobs)} runs finished; "
                                        f"their results are in {out / 'results.json'}") from None
    finally:
        order = {(j.scenario.name, j.variant, j.seed): i for i, j in enumerate(jobs)}
        results.sort(key=lambda r: order[(r.scenario, r.variant, r.seed)])
        _write_results(out, suite, results, time.perf_counter() - t0)
    return results


class SuiteInterrupted(KeyboardInterrupt):
    """A suite stopped by SIGINT or SIGTERM: ``results`` [RunResult] holds the runs that finished (and, marked
    with an error, the ones that were stopped)."""

    def __init__(self, results: list[RunResult], message: str = "") -> None:
        super().__init__(message)
        self.results = results


def _run_in_processes(jobs: list[Job], workers: int, bar: tqdm, run=None) -> list[RunResult]:
    """``jobs`` in ``workers`` spawned processes. A worker that dies (killed, out of memory, a crash in a native
    library) fails the run it held, named, instead of leaving the suite waiting forever (a ``multiprocessing.Pool``
    waits for a dead worker's result indefinitely; seen once in a 27-run suite)."""
    results: list[RunResult] = []
    futures: dict = {}  # future -> Job
    # In each worker SIGINT and SIGTERM set the stop latch, which the daemon honours like ``systemctl stop`` (torque
    # off, log finished), instead of a traceback per worker or a log cut short.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=stop_request.install)
    try:
        with stop_request.sigterm_as_interrupt():
            for job in jobs:
                futures[pool.submit(run or run_job, job)] = job
            for future in as_completed(futures):
                results.append(_result(future, futures[future]))
                bar.update()
    except KeyboardInterrupt:
        raise SuiteInterrupted(_stop_workers(pool, futures)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _result(future, job: Job) -> RunResult:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return RunResult(job.scenario.name, job.variant, job.seed, log=str(job.log),
                         error=f"the worker process running it died ({exc})")


def _stop_workers(pool: ProcessPoolExecutor, futures: dict) -> list[RunResult]:
    """Cancel the runs not begun, ask the workers to stop the ones under way (SIGTERM: each daemon run stops and
    finishes its log) and wait for them; the results of every run that finished or was stopped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor's workers (cleared by shutdown)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except (ProcessLookupError, TypeError):
            pass
    return [_result(future, job) for future, job in futures.items()
            if not future.cancelled() and (future.done() or future.running())]


def _write_results(out: Path, suite: C.SuiteConfig, results: list[RunResult], wall_time: float | None) -> None:
    """``out/results.json``: strict JSON (a figure that is not a finite number is null)."""
    data = {"suite": suite.model_dump(mode="json"), "wall_time": wall_time, "results": [asdict(r) for r in results]}
    (out / "results.json").write_text(json.dumps(_finite(data), indent=2, default=str, allow_nan=False))


def _finite(x):
    """``x`` with every non-finite float (NaN, ±inf) replaced by None, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
