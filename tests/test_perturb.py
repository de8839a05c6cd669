"""legadapt perturb: scenario validation, the recovery metric, and the small CI suite end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from legadapt.controller.perturb import recovery_time
from legadapt.config import ConfigError, load_scenario, load_suite
from legadapt.mcap_read import read_log

REPO = Path(__file__).resolve().parents[1]


def test_recovery_time():
    t = np.arange(0, 10, 0.1)
    err = np.where((t > 4) & (t < 6.5), 0.2, 0.01)  # knocked off at 4 s, back at 6.5 s
    assert recovery_time(t, err, onset=4.0, band=0.05) == pytest.approx(2.5, abs=0.11)
    assert recovery_time(t, np.full_like(t, 0.01), onset=4.0, band=0.05) == pytest.approx(0.0)
    assert math.isinf(recovery_time(t, np.where(t > 4, 0.2, 0.0), onset=4.0, band=0.05))
    late = np.where((t > 5.5) & (t < 7.0), 0.2, 0.01)  # the error grows only 1.5 s after the damage
    assert recovery_time(t, late, onset=4.0, band=0.05) == pytest.approx(3.0, abs=0.11)
    assert math.isinf(recovery_time(t, np.where(t > 9.5, 0.2, 0.01), onset=4.0, band=0.05)), "out of the band at the end"


def test_shipped_suites_are_valid():
    names = sorted(p.stem for p in (REPO / "configs/suites").glob("*.yaml"))
    assert {"held-out", "training-like", "mid-run-damage", "ci"} <= set(names)
    for name in names:
        load_suite(REPO / f"configs/suites/{name}.yaml")


@pytest.mark.parametrize("body,field", [
    ("name: s\nperturbations: [{kind: teleport}]\n", "unknown perturbation 'teleport'"),
    ("name: s\npath: spiral\n", "scenarios[0].path"),
    ("name: s\nbackend: ode\n", "scenarios[0].backend"),
    ("name: s\nperturbations: [{kind: slope, pitch_deg: 45}]\n", "pitch_deg"),
    ("name: s\nduration: -3\n", "scenarios[0].duration"),
])
def test_bad_scenarios_are_refused_before_any_run(tmp_path, body, field):
    f = tmp_path / "s.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_scenario(f)
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "perturb", "--scenario", str(f), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists(), "nothing ran"


@pytest.mark.suite
@pytest.mark.slow
def test_ci_suite_runs_and_reports(tmp_path):
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "perturb", "--suite", "ci", "--out", str(tmp_path), "--quiet"],
                         capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert {r["variant"] for r in results} == {"grbal", "mb"}
    for r in results:
        assert r["error"] is None and not r["fell"]
        assert r["progress"] > 1.0 and r["mean_cross_track"] < 0.1
        # the damage is scored: either a settling time or a run that ended outside the band
        assert (r["recovery_time"] is None) == r["never_recovered"]
        assert r["peak_after_onset"] is not None and r["peak_after_onset"] <= r["max_cross_track"]
        assert 0.0 <= r["task_score"] <= r["progress"] + 1e-6
    report = (tmp_path / "report.md").read_text()
    assert "| GrBAL |" in report and "| MB |" in report and "## Verdicts" in report
    # The shipped GrBAL plans with MB until the leg goes limp at 4 s: the two runs are the same run until then.
    logs = {r["variant"]: read_log(r["log"], channels={"planner", "adaptation"}).messages for r in results}
    before = [(g["true_pose"], m["true_pose"]) for g, m in zip(logs["grbal"]["planner"], logs["mb"]["planner"]) if g["t"] < 4.0]
    assert len(before) >= 35 and all(g == m for g, m in before), "GrBAL's run left MB's before anything was wrong"
    adapted = [(a["t"], a["adapted"]) for a in logs["grbal"]["adaptation"]]
    assert not any(on for t, on in adapted if t < 4.0) and all(on for t, on in adapted if t > 5.0), adapted
    png = tmp_path / "limp_LF_midrun_ci.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    # scoring again from the logs, nothing run: the same figures
    again = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "perturb", "--suite", "ci", "--out", str(tmp_path), "--rescore"],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    rescored = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["mean_cross_track"], r["recovery_time"]) for r in rescored] == [(r["mean_cross_track"], r["recovery_time"]) for r in results]
    assert all(r["peak_after_onset"] is not None for r in rescored)


def _dies_on_seed_1(job):
    """A run whose worker process dies (as if killed, or crashed in a native library) on seed 1."""
    import os

    from legadapt.controller.perturb import RunResult

    if job.seed == 1:
        os._exit(9)
    return RunResult(job.scenario.name, job.variant, job.seed, mean_cross_track=0.01)


def test_a_dead_worker_fails_its_run_instead_of_hanging_the_suite(tmp_path):
    from tqdm import tqdm

    from legadapt.controller.perturb import _run_in_processes, jobs_for

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nduration: 5\nseeds: [0, 1, 2]\n")
    suite = load_scenario(f, ["mb"])
    jobs = jobs_for(suite, tmp_path)
    with tqdm(disable=True) as bar:
        results = _run_in_processes(jobs, 2, bar, run=_dies_on_seed_1)
    assert len(results) == 3 and any(r.seed == 1 and "died" in (r.error or "") for r in results), results


def test_the_report_compares_state_sources_of_one_condition():
    """The shipped sensor-sets suite: each condition appears once per state source; the report's table puts
    them side by side, the right figures in the right column."""
    from legadapt.config import load_suite
    from legadapt.controller.report import state_source_table

    suite = load_suite("configs/suites/sensor-sets.yaml")
    table = {sc.name: {"grbal": {"mean_xt": 0.01 * (i + 1), "score": 1.0}} for i, sc in enumerate(suite.scenarios)}
    lines = state_source_table(suite, table)
    rows = [line for line in lines if line.startswith("| limp_LF ") or line.startswith("| cross_slope_12 ")]
    assert len(rows) == 2
    assert "| privileged | estimated | estimated+flow | estimated+mocap | estimated+flow+mocap |" in lines[4]
    cells = rows[0].strip("| ").split(" | ")
    assert cells[1:] == [f"GrBAL {k:.1f} (1.00)" for k in (1, 2, 3, 4, 5)]
    one_source = suite.model_copy(update={"scenarios": suite.scenarios[:1]})
    assert state_source_table(one_source, table) == []


def test_the_recovery_goal_holds_in_every_run_not_on_average(tmp_path):
    """Two runs never leave the band, the third is back only 5.6 s after the onset: the mean recovery
    (1.9 s) would pass the 2 s goal, the slowest run does not."""
    from legadapt.controller.perturb import RunResult
    from legadapt.controller.report import aggregate
    from legadapt.controller.verdicts import goals

    (tmp_path / "s.yaml").write_text("name: limp_at_5s\npath: straight\nduration: 20\n"
                                     "perturbations: [{kind: limp_leg, leg: LF, start: 5.0}]\n")
    sc = load_scenario(tmp_path / "s.yaml").scenarios[0]

    def runs(recoveries, peaks):
        return [RunResult(sc.name, v, seed, mean_cross_track=0.01, max_cross_track=0.06, progress=3.0, task_score=3.0,
                          recovery_time=rec, peak_after_onset=peak)
                for v in ("grbal", "mb") for seed, (rec, peak) in enumerate(zip(recoveries, peaks))]

    def recovery_goal(results):
        return next(g for g in goals(sc, aggregate(results)[sc.name], None) if g.name.startswith("recovers"))

    one_slow = recovery_goal(runs([0.0, 0.0, 5.6], [0.030, 0.044, 0.050]))
    assert not one_slow.met and "slowest run 5.6 s" in one_slow.detail
    one_high = recovery_goal(runs([0.0, 0.0, 1.0], [0.030, 0.030, 0.065]))
    assert not one_high.met and "highest peak 6.5 cm" in one_high.detail
    assert recovery_goal(runs([0.0, 1.5, 1.9], [0.030, 0.052, 0.059])).met


def test_the_ensemble_variant_runs_grbal_with_the_suites_members_and_counts_as_adaptive(tmp_path):
    """grbal_ensemble: GrBAL's checkpoint with the suite's ensemble members (the shipped ones by default, resolved like
    the models), the suite's other adaptation options kept; the distance goal takes the best adaptive variant, so an
    ensemble that walks far enough meets it where GrBAL alone does not."""
    from legadapt.controller.perturb import Job, RunResult, _config, jobs_for
    from legadapt.controller.report import aggregate
    from legadapt.controller.verdicts import goals

    (tmp_path / "s.yaml").write_text("name: limp_uphill\npath: straight\nduration: 20\nstate_source: privileged\n"
                                     "perturbations: [{kind: limp_leg, leg: LF}, {kind: slope, pitch_deg: 10}]\n")
    suite = load_scenario(tmp_path / "s.yaml", variants=["grbal", "grbal_ensemble", "mb"])
    suite = suite.model_copy(update={"controller": {"adaptation": {"lr_scale": 0.3}}})
    jobs = {j.variant: j for j in jobs_for(suite, tmp_path)}
    ens, single = _config(jobs["grbal_ensemble"]), _config(jobs["grbal"])
    assert ens.controller.model == single.controller.model == suite.models["grbal"]
    members = ens.controller.adaptation.ensemble
    assert [Path(m).name for m in members] == ["default_member1.pt", "default_member2.pt"] and all(Path(m).is_file() for m in members)
    assert ens.controller.adaptation.lr_scale == 0.3 and not single.controller.adaptation.ensemble
    sc = suite.scenarios[0]
    rows = [RunResult(sc.name, v, 0, mean_cross_track=xt, max_cross_track=0.1, progress=p, task_score=p)
            for v, xt, p in (("grbal", 0.03, 2.15), ("grbal_ensemble", 0.024, 2.25), ("mb", 0.02, 0.3))]
    best = next(g for g in goals(sc, aggregate(rows)[sc.name], 0.184) if g.name.startswith("best"))
    assert best.met and "grbal_ensemble" in best.detail
    alone = next(g for g in goals(sc, aggregate(rows[::2])[sc.name], 0.184) if g.name.startswith("best"))
    assert not alone.met


def _alive(pid: int) -> bool:
    """``pid`` is a running (not zombie) process (Linux /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_suite_keeps_what_finished_finishes_its_logs_and_leaves_no_worker(tmp_path, sig):
    """``kill``, ``timeout`` or systemd send SIGTERM, a terminal's Ctrl-C sends SIGINT to every process of the group.
    Either way the runs under way stop as the daemon stops (torque off, log finished), the results written so far
    are kept in results.json, the command says so and exits 130, and no worker process is left behind (SIGTERM
    used to kill the parent alone: its two workers lived on, idle, and the runs done were lost)."""
    import os
    import signal
    import time

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nduration: 60\nseeds: [0, 1, 2]\n")  # longer than the test waits: it cannot end on its own
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "perturb", "--scenario", str(f), "--variants", "mb",
                             "--out", str(out), "--workers", "2", "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120.0
    while len(list((out / "logs").glob("*.mcap"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "the suite's runs did not start"
    time.sleep(2.0)  # the runs are walking
    os.killpg(proc.pid, signal.SIGINT) if sig == "SIGINT" else proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: 0 of 3 runs finished; their results are in" in err, err
    time.sleep(1.0)
    assert not [p for p in workers if _alive(p)], "a worker outlived the suite"
    results = json.loads((out / "results.json").read_text())["results"]
    assert len(results) >= 2 and all("interrupted" in r["error"] for r in results), results
    stopped = [r for r in results if "during this run" in r["error"]]
    assert len(stopped) >= 2, results
    for r in stopped:  # each stopped run's log is whole: the reader takes it, its last event the safe stop
        events = read_log(r["log"], channels={"events"}).messages["events"]
        assert events[-1]["kind"] == "safe_stop", events[-3:]
