"""Provenance of a shipped model: what data and settings made it, written next to it as JSON.

``python -m dynamics.provenance models/default.pt --collect-config configs/collect/train_ranges.yaml
--train-config configs/train/default.yaml --data runs/data/train_ranges --train-seconds 780``
writes ``models/default.json`` from the checkpoint's own record (method, architecture, feature
spec, best step, validation losses, transitions used) and the two configs, with the commands that
rebuild it.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

from dynamics.checkpoint import load_checkpoint


def _config_dict(text: str) -> dict:
    """The checkpoint stores its training config as the repr of a dict."""
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else text
    except (ValueError, SyntaxError):
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"unparsed": text}


def provenance(model: Path, collect_config: Path, train_config: Path, data: list[Path],
               train_seconds: float | None) -> dict:
    """The provenance record of ``model`` (a dict ready for JSON)."""
    ck = load_checkpoint(model)
    training = dict(ck.meta.get("training", {}))
    period = float(ck.spec.control_period)
    transitions = int(training.get("transitions_used", 0))
    cfg = _config_dict(training.get("config", {}))
    data_args = " ".join(str(d) for d in data)
    return {
        "model": str(model),
        "method": cfg.get("method", ck.meta.get("adaptation", {}).get("kind")),
        "train_settings": cfg,
        "adaptation": ck.meta.get("adaptation"),
        "architecture": ck.meta.get("architecture"),
        "feature_spec": {"action_mode": ck.spec.action_mode, "control_period_s": period},
        "data": {"collect_config": str(collect_config), "logs": [str(d) for d in data],
                 "episodes": sum(len(list(Path(d).glob("*.mcap"))) for d in data),
                 "transitions": transitions, "hours": round(transitions * period / 3600.0, 3),
                 "backend": "mujoco", "state_source": "privileged", "policy": "random gait actions"},
        "train_config": str(train_config),
        "commands": [f"legadapt collect --config {collect_config} --out {data_args}",
                     f"legadapt train {data_args} --out {model} --config {train_config}"],
        "best_step": training.get("best_step"),
        "validation": training.get("validation"),
        "train_wall_time_s": train_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynamics.provenance", description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--collect-config", type=Path, required=True)
    ap.add_argument("--train-config", type=Path, required=True)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--train-seconds", type=float, default=None, help="wall time of the training run, s")
    args = ap.parse_args(argv)
    record = provenance(args.model, args.collect_config, args.train_config, args.data, args.train_seconds)
    out = args.model.with_suffix(".json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"provenance: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
