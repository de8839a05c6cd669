"""Bad input is refused before anything runs, with the field and the allowed values named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from legadapt.config import PERTURBATION_KINDS, ConfigError, config_doc, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    return str(info.value)


def test_shipped_configs_are_valid():
    skip = ("suites", "robots")  # suites: test_perturb; robots: test_robots
    paths = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not set(skip) & set(p.parts))
    assert paths
    for path in paths:
        load_config(path)


def test_unknown_perturbation_names_the_allowed_ones():
    msg = _error({"perturbations": [{"kind": "limp_legg", "leg": "LF"}]})
    assert "perturbations[0]" in msg and "limp_legg" in msg
    assert all(kind in msg for kind in PERTURBATION_KINDS)


@pytest.mark.parametrize("data,field,hint", [
    ({"perturbations": [{"kind": "limp_leg", "leg": "XX"}]}, "perturbations[0].leg", "its legs: LF, LM, LH, RF, RM, RH"),
    ({"perturbations": [{"kind": "slope", "pitch_deg": 40}]}, "perturbations[0].pitch_deg", "25"),
    ({"perturbations": [{"kind": "payload", "mass": 1.0, "offset": [0.5, 0, 0]}]}, "perturbations[0]", "|x| <= 0.12"),
    ({"perturbations": [{"kind": "action_latency", "delay": -1}]}, "perturbations[0].delay", "greater than 0"),
    ({"perturbations": [{"kind": "limp_leg", "leg": "LF", "start": -1}]}, "perturbations[0].start", "greater than or equal to 0"),
    ({"sim": {"backend": "ode"}}, "sim.backend", "'mujoco' or 'pybullet'"),
    ({"sim": {"servo_rate": 33}}, "sim", "whole fraction"),
    ({"gait": {"frequency": 9}}, "gait.frequency", "4"),
    ({"gait": {"freq": 2}}, "gait.freq", "unknown option"),
    ({"robot": {"servo": {"kp": "stiff"}}}, "robot.servo.kp", "number"),
])
def test_out_of_range_and_unknown_fields_are_named(data, field, hint):
    msg = _error(data)
    assert field in msg and hint in msg, msg


def test_top_level_must_be_a_mapping():
    assert "mapping" in _error([1, 2, 3])


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sim:\n  backend: mujoco\n  seed: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        load_config(bad)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_option_is_documented():
    doc = config_doc()
    for key in ("robot.servo.kp", "gait.stride_length", "sim.backend", "task.path", "kind: slope", "pitch_deg", "delay"):
        assert key in doc
    assert "): None" not in doc and "— None" not in doc, "an option without a description"


@pytest.mark.parametrize("text,needle", [
    ("perturbations:\n  - {kind: teleport}\n", "unknown perturbation 'teleport'"),
    ("sim: {backend: [oops\n", "malformed YAML"),
])
def test_cli_refuses_bad_config_without_a_traceback(tmp_path, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "walk", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
