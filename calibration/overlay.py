"""Calibration results as partial config files ("overlays") and how they are applied.

Every calibration procedure writes a YAML file whose mapping is a *part* of a legadapt
config file (``serial:``, ``robot:``, ``sim:``, ``perturbations:`` ...): merged onto a
full config it yields a valid :class:`legadapt.config.LegadaptConfig`. Merge rules
(:func:`merge`):

* mappings merge key by key, recursively (an overlay's ``serial.zero_offsets`` sets
  the joints it lists and keeps the others; servo calibration lists all 18);
* ``perturbations``: an overlay entry replaces the base entries of the same ``kind``,
  the other base entries stay (system identification adds a payload and a floor
  friction without dropping e.g. a limp leg of a scenario);
* any other list or scalar is replaced.

Apply from Python with :func:`apply_overlay_files` (``cfg = apply_overlay_files(cfg,
["runs/calibration/servos.yaml"])``), or merge the text into the robot's config file
by hand: the keys are ordinary config options (``legadapt config-doc``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from legadapt import config as C
from legadapt.config.yaml_file import read_yaml


def merge(base: Mapping, overlay: Mapping) -> dict:
    """A new mapping: ``overlay`` merged onto ``base`` by the rules of the module docstring."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if key == "perturbations" and isinstance(value, list):
            kinds = {p.get("kind") for p in value if isinstance(p, Mapping)}
            kept = [p for p in out.get(key) or [] if not (isinstance(p, Mapping) and p.get("kind") in kinds)]
            out[key] = kept + copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overlay(cfg: C.LegadaptConfig, overlay: Mapping, source: str = "<overlay>") -> C.LegadaptConfig:
    """``cfg`` with ``overlay`` merged on, validated (:class:`legadapt.config.ConfigError` if invalid)."""
    return C.parse_config(merge(cfg.model_dump(mode="json"), overlay), source)


def read_overlay(path: str | Path) -> dict:
    """The mapping of an overlay file (leading comment lines are ignored); ConfigError if unusable."""
    data = read_yaml(path, "calibration file")
    if not isinstance(data, dict):
        raise C.ConfigError(f"{path}: a calibration file must be a mapping of config sections")
    return data


def apply_overlay_files(cfg: C.LegadaptConfig, paths: Iterable[str | Path]) -> C.LegadaptConfig:
    """``cfg`` with each overlay file merged on in order."""
    for p in paths:
        cfg = apply_overlay(cfg, read_overlay(p), str(p))
    return cfg


def write_yaml(path: str | Path, data: Mapping, header: Iterable[str] = (), check_overlay: bool = True) -> Path:
    """Write ``data`` as YAML after ``header`` comment lines; returns the path.

    With ``check_overlay`` the mapping must merge onto the default config into a valid
    config (raises :class:`legadapt.config.ConfigError` before writing anything if not).
    """
    if check_overlay:
        apply_overlay(C.parse_config({}), data, str(path))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"# {h}\n" if h else "#\n" for h in header)
    p.write_text(lines + yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False), encoding="utf-8")
    return p


class _Dumper(yaml.SafeDumper):
    """Mappings as blocks (one key a line), lists of scalars inline (``[x, y, z]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


__all__ = ["apply_overlay", "apply_overlay_files", "merge", "read_overlay", "write_yaml"]
