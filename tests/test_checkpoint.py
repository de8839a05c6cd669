"""Checkpoints: round trip, weights_only loading, and clear errors for every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from legadapt.dynamics.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from legadapt.dynamics.maml import MamlConfig, init_log_lrs, lrs_from_log
from legadapt.dynamics.mlp import DeltaMLP, params, predict
from legadapt.features import make_spec
from conftest import HEXAPOD

SPEC = make_spec("per_side", 0.1, HEXAPOD)


def trained_model() -> DeltaMLP:
    torch.manual_seed(0)
    m = DeltaMLP.from_spec(SPEC, hidden=(32, 16))
    m.fit_normalizers(torch.randn(200, m.input_dim) * 2 + 1, torch.randn(200, m.target_dim) * 0.1)
    return m


def write(path: Path, **kw) -> tuple[DeltaMLP, Path]:
    m = trained_model()
    meta = {"feature_spec": SPEC, "adapter": "grbal", "maml": MamlConfig(learn_inner_lr=True),
            "training": {"epochs": 3, "data": Path("/logs/run1.mcap"), "hidden": (32, 16)}}
    save_checkpoint(path, m, meta, **kw)
    return m, path


def test_round_trip_predictions_identical(tmp_path: Path) -> None:
    m = trained_model()
    lrs = {k: v.detach() for k, v in lrs_from_log(init_log_lrs(params(m), 1e-2)).items()}
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    m.net[0].weight.sum().backward()
    opt.step()
    meta = {"feature_spec": SPEC, "adapter": "grbal", "maml": MamlConfig(learn_inner_lr=True, M=8),
            "training": {"epochs": 3}}
    save_checkpoint(tmp_path / "model.pt", m, meta, lrs=lrs, optimizer_state=opt.state_dict(), extra={"note": "x"})
    ck = load_checkpoint(tmp_path / "model.pt", expected_spec=make_spec("per_side", 0.1, HEXAPOD))
    x = torch.randn(50, m.input_dim)
    assert torch.equal(predict(ck.model, params(ck.model), x), predict(m, params(m), x))
    assert torch.equal(ck.model.in_norm.std, m.in_norm.std) and torch.equal(ck.model.out_norm.mean, m.out_norm.mean)
    assert ck.model.hidden == (32, 16)
    assert ck.maml == MamlConfig(learn_inner_lr=True, M=8) and ck.adapter_kind == "grbal"
    assert ck.spec == SPEC and ck.meta["training"] == {"epochs": 3} and ck.extra == {"note": "x"}
    assert all(torch.equal(ck.lrs[k], lrs[k]) for k in lrs)
    opt2 = torch.optim.Adam(ck.model.parameters(), 1e-3)
    opt2.load_state_dict(ck.optimizer_state)
    assert ck.meta["format_version"] == CHECKPOINT_FORMAT_VERSION and ck.meta["legadapt_version"]


def test_plain_torch_load_weights_only(tmp_path: Path) -> None:
    _, path = write(tmp_path / "m.pt", lrs=0.01)
    data = torch.load(path, weights_only=True)
    assert data["architecture"]["class"] == "DeltaMLP" and data["lrs"] == 0.01
    assert data["training"]["data"] == "/logs/run1.mcap" and data["training"]["hidden"] == [32, 16]
    assert data["feature_spec"]["action_mode"] == "per_side" and data["adaptation"]["kind"] == "grbal"
    assert "in_norm.mean" in data["state_dict"] and "out_norm.std" in data["state_dict"]


def test_spec_mismatch_is_named(tmp_path: Path) -> None:
    _, path = write(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="action_mode") as e:
        load_checkpoint(path, expected_spec=make_spec("per_leg", 0.1, HEXAPOD))
    assert "Retrain" in str(e.value) and "per_side" in str(e.value)
    with pytest.raises(CheckpointError, match="control_period"):
        load_checkpoint(path, expected_spec=make_spec("per_side", 0.05, HEXAPOD))


def test_wrong_format_version(tmp_path: Path) -> None:
    _, path = write(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    data["format_version"] = 99
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_missing_keys_and_bad_state_dict(tmp_path: Path) -> None:
    _, path = write(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    del data["architecture"]
    torch.save(data, tmp_path / "noarch.pt")
    with pytest.raises(CheckpointError, match="missing keys.*architecture"):
        load_checkpoint(tmp_path / "noarch.pt")
    data = torch.load(path, weights_only=True)
    del data["state_dict"]["out_norm.std"]
    torch.save(data, tmp_path / "nostd.pt")
    with pytest.raises(CheckpointError, match="out_norm.std"):
        load_checkpoint(tmp_path / "nostd.pt")


def test_garbage_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 7)
    with pytest.raises(CheckpointError, match="not a torch checkpoint or is corrupt"):
        load_checkpoint(tmp_path / "garbage.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a torch checkpoint or is corrupt"):
        load_checkpoint(tmp_path / "empty.pt")
    _, path = write(tmp_path / "m.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a legadapt checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format_version": 1, "obj": torch.optim.SGD}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="refusing to load.*torch.optim.sgd.SGD"):
        load_checkpoint(tmp_path / "code.pt")


class _RunsCode:
    """Unpickling this would call os.system: what a malicious checkpoint does."""

    def __reduce__(self):
        import os

        return (os.system, ("echo this must never run",))


def test_malicious_checkpoint_is_refused_naming_the_blocked_call(tmp_path: Path) -> None:
    torch.save({"format_version": 1, "payload": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "evil.pt")
    text = str(e.value)
    assert "refusing to load" in text and "posix.system" in text and "run code" in text, text
    assert "corrupt" not in text and text.endswith("use a checkpoint written by legadapt train"), text


def test_save_refuses_inconsistent_input(tmp_path: Path) -> None:
    m = trained_model()
    with pytest.raises(CheckpointError, match="feature_spec"):
        save_checkpoint(tmp_path / "a.pt", m, {})
    with pytest.raises(CheckpointError, match="do not match the feature spec"):
        save_checkpoint(tmp_path / "a.pt", m, {"feature_spec": make_spec("per_leg", 0.1, HEXAPOD)})
    with pytest.raises(CheckpointError, match="adapter kind"):
        save_checkpoint(tmp_path / "a.pt", m, {"feature_spec": SPEC, "adapter": "magic"})
    with pytest.raises(CheckpointError, match="not a tensor or plain value"):
        save_checkpoint(tmp_path / "a.pt", m, {"feature_spec": SPEC, "training": {"opt": object()}})
    assert not list(tmp_path.iterdir())
