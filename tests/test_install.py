"""legadapt as a user installs it: a wheel built with ``python -m build``, installed in a fresh virtual
environment, run from a directory that is not the checkout, beside the package index's own ``controller``,
``hardware`` and ``planners`` and a user's ``sim.py``.

The fresh environment gets its third-party dependencies (torch, mujoco, ...) from this test's environment
through a path file, so nothing gigabyte-sized is downloaded; legadapt itself comes only from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis")
#: Packages on the index whose top-level names our folders have (installing the index's controller once
#: overwrote ours; uninstalling its hardware deleted our hardware/__init__.py).
COLLIDING = ("controller", "hardware", "planners")


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    out = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp / "dist"), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    wheels = list((tmp / "dist").glob("legadapt-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_env(tmp: Path) -> Path:
    """A new virtual environment whose only legadapt will be the wheel; dependencies from ours (a path file)."""
    env_dir = tmp / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "legadapt-test-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return env_dir


def _pip(env_dir: Path, *args: str) -> None:
    out = subprocess.run([env_dir / "bin" / "python", "-m", "pip", "--disable-pip-version-check", *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _legadapt(env_dir: Path, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([env_dir / "bin" / "legadapt", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    assert "Traceback" not in out.stderr
    return out


@pytest.mark.slow
def test_the_wheel_runs_outside_the_checkout_beside_colliding_packages(tmp_path):
    wheel = _build_wheel(tmp_path)
    env_dir = _fresh_env(tmp_path)
    _pip(env_dir, "install", "--no-deps", str(wheel))
    _pip(env_dir, "install", "--no-deps", *COLLIDING)  # the index's packages of those names, over ours
    work = tmp_path / "elsewhere"
    work.mkdir()
    for name in ("sim", "controller", "hardware", "dynamics"):  # a user's own modules in the working directory
        (work / f"{name}.py").write_text(f"raise SystemExit('the user\\'s {name}.py was imported')\n")
    where = subprocess.run([env_dir / "bin" / "python", "-I", "-c", "import legadapt.controller as c; print(c.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(env_dir) and not Path(where).is_relative_to(REPO), where

    walk = _legadapt(env_dir, work, "walk", "--duration", "2")
    assert "distance" in walk.stdout
    run = _legadapt(env_dir, work, "run", "--duration", "2")  # the shipped config and default model, as package data
    assert "true (simulator): progress" in run.stdout and list((work / "runs" / "logs").glob("run-*.mcap"))
    quadruped = _legadapt(env_dir, work, "run", "--config", "quadruped_sim.yaml", "--duration", "2")  # another robot
    assert "true (simulator): progress" in quadruped.stdout
    perturb = _legadapt(env_dir, work, "perturb", "--suite", "ci", "--out", str(work / "ci"), "--quiet", timeout=600)
    assert (work / "ci" / "results.json").is_file() and (work / "ci" / "report.md").is_file(), perturb.stdout

    _pip(env_dir, "uninstall", "--yes", *COLLIDING)  # removing them takes nothing of ours
    _legadapt(env_dir, work, "walk", "--duration", "1")
