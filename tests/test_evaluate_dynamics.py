"""`legadapt evaluate-dynamics` on real logs with real checkpoints: several trainings of one method compare in one
table, each under its own name, and the command names the one whose pose after the horizon is nearest the logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEGADAPT = shutil.which("legadapt", path=str(Path(sys.executable).parent)) or "legadapt"


def _legadapt(*args) -> subprocess.CompletedProcess:
    return subprocess.run([LEGADAPT, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=REPO)


def test_several_trainings_of_one_method_compare_under_their_names(small_logs, tiny_model, tmp_path):
    out = _legadapt("evaluate-dynamics", "--logs", small_logs, "--model", f"grbal:tiny={tiny_model}",
                    "--model", f"grbal:shipped={REPO / 'models' / 'default.pt'}", "--json", tmp_path / "ev.json")
    assert out.returncode == 0, out.stderr
    figures = json.loads((tmp_path / "ev.json").read_text())["overall"]
    names = ["GrBAL tiny (before step)", "GrBAL tiny", "GrBAL shipped (before step)", "GrBAL shipped"]
    for metric in ("one_step", "pos_h", "yaw_h"):
        assert list(figures[metric]) == names, "one column per checkpoint and step, in the order given"
    assert figures["pos_h"]["GrBAL tiny"] != figures["pos_h"]["GrBAL shipped"], "each column is its own checkpoint"
    for metric, unit, scale in (("pos_h", "cm", 100.0), ("yaw_h", "deg", 1.0)):
        best = min(figures[metric], key=figures[metric].get)
        assert f"{best} ({scale * figures[metric][best]:.3f} {unit})" in out.stdout.splitlines()[-1]
    assert "| GrBAL tiny (before step) | GrBAL tiny | GrBAL shipped (before step) | GrBAL shipped |" in out.stdout


def test_a_checkpoint_kind_given_twice_without_names_is_refused(tmp_path):
    model = REPO / "models" / "default.pt"
    out = _legadapt("evaluate-dynamics", "--logs", tmp_path, "--model", f"grbal={model}", "--model", f"grbal={model}")
    assert out.returncode == 2 and "--model grbal is given twice" in out.stderr and "grbal:a=A.pt" in out.stderr
    out = _legadapt("perturb", "--suite", "held-out", "--model", f"grbal={model}", "--model", f"grbal={model}")
    assert out.returncode == 2 and "--model grbal is given twice" in out.stderr
    out = _legadapt("perturb", "--suite", "held-out", "--model", f"grbal:a={model}")
    assert out.returncode == 2 and "KIND=PATH" in out.stderr
    assert "Traceback" not in out.stderr
