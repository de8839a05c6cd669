"""``legadapt perturb`` from the command line: workers bounded by the runs and the CPUs, and a
refused checkpoint is bad input (exit 2) before any run starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from legadapt.controller.cli_checks import worker_count as _worker_count

LEGADAPT = shutil.which("legadapt", path=str(Path(sys.executable).parent)) or "legadapt"
CPUS = len(os.sched_getaffinity(0))


def _suite(tmp_path: Path, models: dict[str, str], duration: float = 2.0) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps({"name": "one", "variants": ["grbal"], "models": models,
                                "scenarios": [{"name": "short", "duration": duration, "seeds": [0]}]}))
    return path


def test_workers_never_exceed_the_runs_or_the_cpus():
    assert _worker_count(12, 1) == (1, f"--workers 12 capped at 1: 1 run, {CPUS} CPU{'s' if CPUS > 1 else ''}")
    assert _worker_count(1, 40) == (1, None)
    assert _worker_count(CPUS, 40) == (CPUS, None)
    n, note = _worker_count(CPUS + 10, 40)
    assert n == CPUS and f"capped at {CPUS}" in note


def test_a_malicious_checkpoint_is_refused_before_any_run(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"format_version": 1, "payload": RunsCode()}, tmp_path / "evil.pt")
    out_dir = tmp_path / "out"
    out = subprocess.run([LEGADAPT, "perturb", "--suite", _suite(tmp_path, {"grbal": str(tmp_path / "evil.pt")}),
                          "--out", out_dir, "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "refusing to load" in out.stderr and "posix.system" in out.stderr and "corrupt" not in out.stderr
    assert "Traceback" not in out.stderr and "this must never run" not in out.stdout
    assert not (out_dir / "results.json").exists(), "no run started"


def test_workers_argument_must_be_positive(tmp_path):
    out = subprocess.run([LEGADAPT, "perturb", "--suite", "ci", "--workers", "0"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "--workers" in out.stderr and "Traceback" not in out.stderr


def test_one_run_uses_one_process_whatever_workers_says(tmp_path):
    out_dir = tmp_path / "out"
    out = subprocess.run([LEGADAPT, "perturb", "--suite", _suite(tmp_path, {"grbal": "models/default.pt"}),
                          "--out", out_dir, "--workers", "12", "--quiet"], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert "note: --workers 12 capped at 1: 1 run" in out.stderr, out.stderr
    assert len(json.loads((out_dir / "results.json").read_text())["results"]) == 1, out.stderr


def test_seeds_replace_every_scenarios_own(tmp_path):
    """``--seeds`` runs each scenario on the seeds given, in place of the suite's (one run per seed); a bad seed is
    a usage error (exit 2) before anything runs."""
    out_dir = tmp_path / "out"
    out = subprocess.run([LEGADAPT, "perturb", "--suite", _suite(tmp_path, {"grbal": "models/default.pt"}, duration=1.5),
                          "--seeds", "4", "7", "4", "--out", out_dir, "--quiet"], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    results = json.loads((out_dir / "results.json").read_text())["results"]
    assert sorted(r["seed"] for r in results) == [4, 7], "each seed once, the suite's seed 0 not run"
    for bad in ("-1", "x", str(2**32)):
        out = subprocess.run([LEGADAPT, "perturb", "--suite", "ci", "--seeds", bad], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 2 and "--seeds" in out.stderr and "expected a seed" in out.stderr, out.stderr
