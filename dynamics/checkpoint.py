"""Model checkpoints: state dict + metadata, readable with ``torch.load(weights_only=True)``.

A checkpoint is one ``torch.save`` of a dict holding only tensors and plain containers,
str, int, float, bool and None (no pickled classes), so loading never executes code::

    format_version    int       CHECKPOINT_FORMAT_VERSION
    legadapt_version  str
    created           str       ISO 8601 UTC; created_unix float (s)
    feature_spec      dict      FeatureSpec.to_dict() (lists for tuples)
    action_mode       str       'per_side' | 'per_leg';  action_dim int
    architecture      dict      {'class': 'DeltaMLP', 'state_dim', 'action_dim', 'target_dim', 'hidden'}
    state_dict        dict      parameters and normaliser buffers (in_norm.*, out_norm.*)
    adaptation        dict      {'kind': 'grbal'|'mb'|'mbde'|'rebal', 'maml': MamlConfig dict | None}
    lrs               None | float | dict[str, Tensor]   positive inner learning rates
    training          dict      training configuration (free-form, plain values)
    optimizer_state   None | dict;   extra  dict

``meta`` given to :func:`save_checkpoint` must carry ``feature_spec`` (a FeatureSpec or its
dict); optional ``adapter`` (kind, default 'grbal'), ``maml`` (MamlConfig or dict) and
``training`` (dict). Problems on load raise :class:`CheckpointError` naming the problem.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import os
import pickle
import re
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import legadapt
from legadapt.dynamics.adaptation import ADAPTER_KINDS
from legadapt.dynamics.maml import InnerLR, MamlConfig
from legadapt.dynamics.mlp import DeltaMLP
from legadapt.features import FeatureSpec

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "feature_spec", "architecture", "state_dict", "adaptation")
#: Model classes a checkpoint can name in ``architecture['class']``: name -> builder(arch dict).
MODEL_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {"DeltaMLP": DeltaMLP.from_architecture}
#: Model classes defined in modules that import this one: imported when a checkpoint names them.
LAZY_MODEL_MODULES = {"RecurrentDynamics": "legadapt.dynamics.rebal", "ContextDynamics": "legadapt.dynamics.context"}


class CheckpointError(Exception):
    """A checkpoint cannot be used; the message says why and what to do."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns; ``model`` is in eval mode on the requested device."""

    model: nn.Module
    lrs: InnerLR | None
    meta: dict
    spec: FeatureSpec = field(repr=False, default=None)  # type: ignore[assignment]
    maml: MamlConfig | None = None
    adapter_kind: str = "grbal"
    optimizer_state: dict | None = field(repr=False, default=None)
    extra: dict = field(default_factory=dict)


def register_model_class(name: str, builder: Callable[[dict], nn.Module]) -> None:
    """Make checkpoints naming model class ``name`` loadable (e.g. the recurrent ReBAL model)."""
    MODEL_BUILDERS[name] = builder


def _plain(value: Any, where: str) -> Any:
    """``value`` as tensors / plain containers / scalars only (weights_only-safe), or CheckpointError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"cannot store {where}: key {k!r} is not a str or int")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"cannot store {where}: {type(value).__name__} is not a tensor or plain value "
                          "(checkpoints hold only tensors, dicts, lists, str, int, float, bool, None)")


def save_checkpoint(path: str | Path, model: nn.Module, meta: Mapping, lrs: InnerLR | None = None,
                    optimizer_state: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename); returns the path."""
    if "feature_spec" not in meta:
        raise CheckpointError("save_checkpoint: meta must contain 'feature_spec' (the FeatureSpec the model was trained for)")
    spec = meta["feature_spec"]
    spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(dict(spec))
    if not hasattr(model, "architecture"):
        raise CheckpointError(f"save_checkpoint: {type(model).__name__} has no architecture() description")
    arch = model.architecture()
    if arch["class"] not in MODEL_BUILDERS:
        raise CheckpointError(f"save_checkpoint: model class {arch['class']!r} is not registered for loading")
    dims = (arch.get("state_dim"), arch.get("action_dim"), arch.get("target_dim"))
    if dims != (spec.state_dim, spec.action_dim, spec.target_dim):
        raise CheckpointError(f"save_checkpoint: model dims (state, action, target) {dims} do not match the feature "
                              f"spec {(spec.state_dim, spec.action_dim, spec.target_dim)}")
    kind = str(meta.get("adapter", "grbal"))
    if kind not in ADAPTER_KINDS:
        raise CheckpointError(f"save_checkpoint: unknown adapter kind {kind!r}; allowed: {', '.join(ADAPTER_KINDS)}")
    maml = meta.get("maml")
    if isinstance(lrs, Mapping):
        names = {k for k, _ in model.named_parameters()}
        if set(lrs) != names:
            raise CheckpointError(f"save_checkpoint: learned rates name {sorted(set(lrs) ^ names)} differently "
                                  "from the model parameters")
    now = time.time()
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "legadapt_version": legadapt.__version__,
        "created": _dt.datetime.fromtimestamp(now, _dt.UTC).isoformat(),
        "created_unix": now,
        "feature_spec": _plain(spec.to_dict(), "feature_spec"),
        "action_mode": spec.action_mode,
        "action_dim": spec.action_dim,
        "architecture": _plain(arch, "architecture"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "adaptation": {"kind": kind, "maml": _plain(maml.to_dict() if isinstance(maml, MamlConfig) else maml, "maml"),
                       "runtime": _plain(dict(meta.get("runtime") or {}), "runtime")},
        "lrs": _plain(lrs, "lrs"),
        "training": _plain(dict(meta.get("training") or {}), "training"),
        "optimizer_state": _plain(optimizer_state, "optimizer_state"),
        "extra": _plain(dict(extra or {}), "extra"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(payload, path)


def _write_atomic(payload: dict, path: Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def set_runtime(path: str | Path, runtime: Mapping) -> Path:
    """Record in an existing checkpoint how it is meant to run (``adaptation.runtime``: ``lr_scale``, ``plain_model``
    relative to the checkpoint's folder), measured after training; everything else is kept. Atomic."""
    path = Path(path)
    data = _read(path, "cpu")
    data["adaptation"] = {**data.get("adaptation", {}), "runtime": _plain(dict(runtime), "runtime")}
    return _write_atomic(data, path)


#: What torch's weights-only unpickler names when a file asks for a callable or class it does not allow:
#: "unsupported GLOBAL posix.system whose module posix is blocked" (a blocked module: code execution), or
#: "Unsupported global: GLOBAL __main__.Foo was not an allowed global by default" (a pickled class).
_BLOCKED_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)(?: whose module ([\w.]+) is blocked)?",
                             re.IGNORECASE)


def _refusal(path: Path, what: str, exc: BaseException) -> CheckpointError:
    """The error for a file ``torch.load(weights_only=True)`` refused, naming what it asked to call."""
    text = " ".join(str(exc).split())
    m = _BLOCKED_GLOBAL.search(text)
    if m is None:
        first = text[:300] if text else type(exc).__name__
        return CheckpointError(f"{path} is not a torch {what} or is corrupt (truncated or damaged; torch.load: "
                               f"{type(exc).__name__}: {first}); write it again with legadapt")
    name, module = m.group(1), m.group(2)
    why, risk = ((f"module {module} is blocked: loading it would call {name}, i.e. run code", " and may be malicious")
                 if module else (f"a pickled {name} object, not a tensor or plain value", ""))
    return CheckpointError(
        f"{path}: refusing to load this {what}: it asks for {name} ({why}). legadapt writes only tensors and plain values, "
        f"so this file was not written by it{risk}; nothing of it was loaded. Do not load it with "
        f"weights_only=False; use a checkpoint written by legadapt train")


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; every failure a :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{what} path is not a regular file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError,
            AttributeError, TypeError, IndexError, MemoryError) as e:
        raise _refusal(path, what, e) from e


def _read(path: Path, map_location: str | torch.device) -> dict:
    data = load_torch_file(path, map_location)
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"{path} is a torch file but not a legadapt checkpoint (no 'format_version')")
    return data


def load_checkpoint(path: str | Path, expected_spec: FeatureSpec | None = None,
                    map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read, validate and rebuild a checkpoint written by :func:`save_checkpoint`.

    ``expected_spec`` is the robot config's feature spec; a mismatch is a CheckpointError
    that names the differing fields.
    """
    path = Path(path)
    data = _read(path, map_location)
    version = data["format_version"]
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, but this legadapt "
                              f"({legadapt.__version__}) reads version {CHECKPOINT_FORMAT_VERSION}; retrain the model "
                              "or load it with the legadapt version that wrote it")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing keys {missing}")
    try:
        spec = FeatureSpec.from_dict(data["feature_spec"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable feature spec: {e}") from e
    if expected_spec is not None:
        diff = expected_spec.mismatch(spec)
        if diff:
            raise CheckpointError(
                f"{path}: feature spec mismatch between the robot config and the checkpoint "
                f"(config vs checkpoint): {diff}. Retrain the model for this config, or run with the config "
                f"it was trained with (action_mode={spec.action_mode!r}, control_period={spec.control_period:g} s).")
    arch = data["architecture"]
    cls = arch.get("class") if isinstance(arch, dict) else None
    if cls in LAZY_MODEL_MODULES and cls not in MODEL_BUILDERS:
        importlib.import_module(LAZY_MODEL_MODULES[cls])  # registers the model class (it imports this module)
    builder = MODEL_BUILDERS.get(arch.get("class") if isinstance(arch, dict) else None)
    if builder is None:
        raise CheckpointError(f"{path}: unknown model class {arch.get('class') if isinstance(arch, dict) else arch!r}; "
                              f"known: {', '.join(MODEL_BUILDERS)}")
    try:
        model = builder(arch)
        model.load_state_dict(data["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the state dict does not fit the architecture {arch}: {e}") from e
    model.to(map_location).eval()
    adaptation = data["adaptation"]
    maml_dict = adaptation.get("maml")
    try:
        maml = MamlConfig.from_dict(maml_dict) if maml_dict else None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable MAML settings: {e}") from e
    meta = {k: v for k, v in data.items() if k not in ("state_dict", "lrs", "optimizer_state", "extra")}
    return LoadedCheckpoint(model=model, lrs=data.get("lrs"), meta=meta, spec=spec, maml=maml,
                            adapter_kind=str(adaptation.get("kind", "grbal")),
                            optimizer_state=data.get("optimizer_state"), extra=data.get("extra") or {})
