"""legadapt train on real logs: it learns, checkpoints, resumes, refuses bad data, runs under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from legadapt.dynamics.checkpoint import load_checkpoint
from legadapt.dynamics.datasets import DatasetError
from legadapt.dynamics.train import train
from legadapt.config import TrainConfig
from legadapt.features import make_spec
from conftest import HEXAPOD

REPO = Path(__file__).resolve().parents[1]
SPEC = make_spec("per_side", 0.1, HEXAPOD)


def _tc(**kw) -> TrainConfig:
    base = dict(hidden=[32, 32], M=8, K=8, meta_batch=4, max_steps=40, eval_every=10, patience=100, val_tasks=20,
                val_fraction=0.3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["grbal", "mb", "rebal", "pearl", "attention"])
def test_training_improves_and_writes_a_loadable_checkpoint(small_logs, tmp_path, method):
    out = tmp_path / f"{method}.pt"
    s = train([small_logs], SPEC, _tc(method=method, rebal_hidden=16), out, progress=False, log=lambda *a: None)
    assert s.steps == 40 and out.exists()
    first, best = s.history[0]["loss"], s.best_val
    assert best <= first and best < 1.0, (first, best)
    ck = load_checkpoint(out, SPEC)
    assert ck.adapter_kind == method and ck.meta["training"]["config"]["method"] == method
    torch.load(out, weights_only=True)


def test_resume_continues_where_it_stopped(small_logs, tmp_path):
    out = tmp_path / "m.pt"
    train([small_logs], SPEC, _tc(max_steps=20), out, progress=False, log=lambda *a: None)
    lines: list[str] = []
    s = train([small_logs], SPEC, _tc(max_steps=40), out, resume=True, progress=False, log=lines.append)
    assert any("resumed" in str(line) and "step 20" in str(line) for line in lines)
    assert s.steps == 40 and [h["step"] for h in s.history] == [10, 20, 30, 40]


def test_early_stopping(small_logs, tmp_path):
    s = train([small_logs], SPEC, _tc(max_steps=400, patience=1, lr=0.5), tmp_path / "m.pt", progress=False,
              log=lambda *a: None)
    assert s.stopped_early and s.steps < 400


def test_bad_data_is_refused_with_a_reason(small_logs, tmp_path):
    with pytest.raises(DatasetError, match="M \\+ K"):
        train([small_logs], SPEC, _tc(M=40, K=40), tmp_path / "m.pt", progress=False, log=lambda *a: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError):
        train([empty], SPEC, _tc(), tmp_path / "m.pt", progress=False, log=lambda *a: None)
    with pytest.raises(DatasetError, match="action_mode"):
        train([small_logs], make_spec("per_leg", 0.1, HEXAPOD), _tc(), tmp_path / "m.pt", progress=False, log=lambda *a: None)


def test_cli_train_reports_bad_logs_without_a_traceback(tmp_path):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not an mcap file at all")
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "train", "--logs", str(junk), "--out", str(tmp_path / "m.pt")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "junk.mcap" in out.stderr and "Traceback" not in out.stderr


DDP_SCRIPT = """
import hashlib, os, sys, torch
from legadapt.dynamics.train import train
from legadapt.config import TrainConfig
from legadapt.features import make_spec
from legadapt.robot.description import load_description
tc = TrainConfig(hidden=[32, 32], M=8, K=8, meta_batch=4, max_steps=12, eval_every=6, patience=100, val_tasks=20,
                 val_fraction=0.3, device="cpu")
import legadapt.dynamics.train as T
captured = {}
orig = T.make_objective
def spy(*a, **k):
    obj = orig(*a, **k)
    captured["obj"] = obj
    return obj
T.make_objective = spy
s = train([sys.argv[1]], make_spec("per_side", 0.1, load_description()), tc, sys.argv[2], progress=False, log=lambda *a: None)
flat = torch.cat([p.detach().flatten() for p in captured["obj"].parameters()])
with open(sys.argv[3] + f".rank{os.environ['RANK']}", "w") as f:
    f.write(f"{s.world_size} {hashlib.sha256(flat.numpy().tobytes()).hexdigest()}")
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_in_lockstep(small_logs, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                          str(small_logs), str(tmp_path / "m.pt"), str(tmp_path / "hash")],
                         capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = (tmp_path / "hash.rank0").read_text().split()
    r1 = (tmp_path / "hash.rank1").read_text().split()
    assert r0[0] == r1[0] == "2", "both processes saw a world of two"
    assert r0[1] == r1[1], "DistributedDataParallel kept the replicas identical"
    assert (tmp_path / "m.pt").exists() and load_checkpoint(tmp_path / "m.pt", SPEC).adapter_kind == "grbal"

