"""``legadapt train`` from the command line: the README's torchrun command as written, logs given
positionally, and a refused resume file (exit 2, the blocked call named)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legadapt.controller.cli import build_parser
from legadapt.dynamics.checkpoint import load_checkpoint
from legadapt.features import make_spec
from conftest import HEXAPOD

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LEGADAPT = shutil.which("legadapt", path=str(BIN)) or "legadapt"
TINY_TRAIN = """gait: {action_mode: per_side}
task: {control_rate: 10}
train: {hidden: [32, 32], M: 8, K: 8, meta_batch: 4, max_steps: 6, eval_every: 3, patience: 100, val_tasks: 20,
        val_fraction: 0.3, device: cpu}
"""


def readme_torchrun_command() -> str:
    """The one torchrun command line in the README."""
    lines = [ln.strip() for ln in (REPO / "README.md").read_text().splitlines() if ln.strip().startswith("torchrun ")]
    assert len(lines) == 1, lines
    return lines[0]


def _train_options() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    return [o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"]


def test_no_train_option_is_an_abbreviation_of_a_torchrun_option():
    """torchrun parses abbreviations of its own options anywhere on the line, the script's arguments included."""
    from torch.distributed.run import get_args_parser

    theirs = [o for a in get_args_parser()._actions for o in a.option_strings]
    clashes = {o: [t for t in theirs if t.startswith(o)] for o in _train_options()}
    clashes = {o: t for o, t in clashes.items() if t}
    assert clashes == {"--logs": ["--logs-specs", "--logs_specs"]}, "only the backward-compatible --logs clashes"
    assert "--logs" not in readme_torchrun_command()


@pytest.mark.slow
def test_the_readme_torchrun_command_trains_on_two_processes(small_logs, tmp_path):
    """Run the README's command as written, in a directory laid out like the repository: its
    runs/data/train holds a small collection, its configs/train/default.yaml a tiny model."""
    (tmp_path / "runs" / "data").mkdir(parents=True)
    (tmp_path / "runs" / "data" / "train").symlink_to(small_logs)
    (tmp_path / "configs" / "train").mkdir(parents=True)
    (tmp_path / "configs" / "train" / "default.yaml").write_text(TINY_TRAIN)
    command = readme_torchrun_command()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    model = tmp_path / re.search(r"--out (\S+)", command).group(1)
    ck = load_checkpoint(model, make_spec("per_side", 0.1, HEXAPOD))
    assert ck.meta["training"]["config"]["hidden"] == [32, 32], "the directory's config was used"
    report = json.loads(model.with_name(model.name + ".json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 6, report


def test_train_without_logs_and_with_a_malicious_resume_file_exit_2(tmp_path):
    out = subprocess.run([LEGADAPT, "train", "--out", tmp_path / "m.pt"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "give the logs" in out.stderr and "Traceback" not in out.stderr, out.stderr

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"objective": RunsCode()}, tmp_path / "m.pt.resume")
    out = subprocess.run([LEGADAPT, "train", tmp_path / "no-logs-needed", "--out", tmp_path / "m.pt", "--resume"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "refusing to load this resume file" in out.stderr and "posix.system" in out.stderr, out.stderr
    assert "corrupt" not in out.stderr and "Traceback" not in out.stderr and "this must never run" not in out.stdout


def test_seed_option_trains_the_same_recipe_again(small_logs, tmp_path):
    """``--seed`` overrides train.seed: another training of the same recipe (the ensembles' members)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_TRAIN)
    weights = {}
    for seed in (0, 3):
        out = subprocess.run([LEGADAPT, "train", small_logs, "--out", tmp_path / f"s{seed}.pt", "--config", cfg,
                              "--seed", str(seed), "--quiet"], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        ck = load_checkpoint(tmp_path / f"s{seed}.pt")
        assert ck.meta["training"]["config"]["seed"] == seed
        weights[seed] = next(v for k, v in ck.model.state_dict().items() if k.endswith("weight"))
    assert not torch.equal(weights[0], weights[3])


def test_several_seeds_are_trained_and_the_one_validation_chooses_is_kept(small_logs, tmp_path):
    """``--seeds 0 1 --select-on LOGS``: one training per seed beside OUT, each scored on the validation logs (pose
    after the horizon, after the step), and OUT is the one whose worse relative miss is smallest, its choice recorded."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_TRAIN)
    out = tmp_path / "m.pt"
    run = subprocess.run([LEGADAPT, "train", small_logs, "--out", out, "--config", config, "--seeds", "0", "1",
                          "--select-on", small_logs, "--quiet"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "m.pt.json").read_text())["selection"]
    figures = record["candidates"]
    assert set(figures) == {"seed 0", "seed 1"}
    best_pos = min(f["position_cm"] for f in figures.values())
    best_yaw = min(f["heading_deg"] for f in figures.values())
    regret = {k: max(f["position_cm"] / best_pos, f["heading_deg"] / best_yaw) for k, f in figures.items()}
    assert f"seed {record['kept_seed']}" == min(regret, key=regret.get)
    kept = tmp_path / f"m.seed{record['kept_seed']}.pt"
    assert out.read_bytes() == kept.read_bytes(), "OUT is the kept training's checkpoint"
    trained = {s: load_checkpoint(tmp_path / f"m.seed{s}.pt", make_spec("per_side", 0.1, HEXAPOD)) for s in (0, 1)}
    assert [trained[s].meta["training"]["config"]["seed"] for s in (0, 1)] == [0, 1]
    assert f"kept train.seed {record['kept_seed']}" in run.stdout


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0", "1"], "--seeds needs --select-on"),
    (["--seeds", "0", "0", "--select-on", "LOGS"], "give two seeds or more"),
    (["--seeds", "0", "1", "--seed", "3", "--select-on", "LOGS"], "--seeds and --seed are exclusive"),
    (["--select-on", "LOGS"], "give two seeds or more"),
])
def test_seeds_and_select_on_misused_is_bad_input(small_logs, tmp_path, extra, message):
    extra = [str(small_logs) if a == "LOGS" else a for a in extra]
    run = subprocess.run([LEGADAPT, "train", small_logs, "--out", tmp_path / "m.pt", *extra], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "m.pt").exists()
