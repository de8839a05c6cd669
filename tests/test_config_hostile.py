"""Hostile config input, through the real command line: refused with exit 2, a message naming the field
(or the file and line), no traceback, and nothing powered.

The corpus is ``tests/data/hostile_configs/*.yaml`` (each file's first line says ``# expect: TEXT``,
a piece of the message that names the field) plus special files made here: a FIFO, ``/dev/zero``, a
directory, a file over the size bound, a 5000-character path, and a calibration overlay with a NaN.
``legadapt run`` is pointed at a serial robot on a pseudo-terminal this test holds: "nothing
powered" is checked as "not one byte reached the robot's port".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tty
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from legadapt.config import ConfigError, load_config
from legadapt.config.yaml_file import MAX_BYTES

CORPUS = Path(__file__).parent / "data" / "hostile_configs"
LEGADAPT = shutil.which("legadapt", path=str(Path(sys.executable).parent)) or "legadapt"
DEFAULT_EXPECT = {"empty.yaml": "empty"}


def _expect(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii", "replace")
    return first.removeprefix("# expect:").strip() if first.startswith("# expect:") else DEFAULT_EXPECT[path.name]


def _special_files(tmp: Path) -> list[tuple[Path, str]]:
    """(path, expected text) of hostile inputs that cannot live in the repository."""
    fifo = tmp / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp / "big.yaml"
    big.write_text("# padding\n" * (MAX_BYTES // 10 + 10))
    long_path = tmp / "long_log_dir.yaml"
    long_path.write_text(f"controller: {{log_dir: /tmp/{'x' * 5000}}}\n")
    return [(fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp, "directory"), (big, "KiB"),
            (long_path, "controller.log_dir")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[Path, str]]:
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 25, "the corpus is in the repository"
    return [(f, _expect(f)) for f in files] + _special_files(tmp_path_factory.mktemp("special"))


@pytest.fixture(scope="module")
def robot_port():
    """A pseudo-terminal standing in for the robot's bus: (slave path, master fd)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def _cli(*args: object, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([LEGADAPT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _bytes_waiting(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""


def _check_refused(out: subprocess.CompletedProcess, path: Path, expect: str) -> None:
    assert out.returncode == 2, f"{path.name}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert expect in out.stderr, f"{path.name}: the message does not name {expect!r}:\n{out.stderr}"
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: "), out.stderr


def test_the_loader_refuses_every_hostile_file(corpus):
    for path, expect in corpus:
        if path.name == "unwritable_log_dir.yaml":
            continue  # a valid file: whether the directory can be written is the command line's check (below)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert expect in str(e.value), (path.name, str(e.value))


@pytest.mark.slow
def test_check_config_and_run_refuse_the_corpus_before_anything_is_powered(corpus, robot_port, tmp_path):
    port, master = robot_port
    jobs = [(path, expect, cmd) for path, expect in corpus for cmd in
            (("check-config", path), ("run", "--config", path, "--backend", "serial", "--port", port))]
    with ThreadPoolExecutor(2) as pool:  # two at a time: each is a fresh Python process
        outs = list(pool.map(lambda job: _cli(*job[2], cwd=tmp_path), jobs))
    for (path, expect, cmd), out in zip(jobs, outs):
        _check_refused(out, path, expect)
        assert not out.stdout, f"{cmd[0]} {path.name} printed {out.stdout!r}"
    assert _bytes_waiting(master) == b"", "a refused config must not touch the robot's port"
    assert not list(tmp_path.iterdir()), "nothing was written (no log, no log directory)"
    print(f"hostile corpus: {len(corpus)} inputs x 2 commands, all exit 2")


def test_a_nan_calibration_overlay_is_refused_by_run(tmp_path, robot_port):
    port, master = robot_port
    overlay = tmp_path / "imu.yaml"
    overlay.write_text("serial: {imu_gyro_bias: [0.0, .nan, 0.0]}\n")
    cfg = tmp_path / "robot.yaml"
    cfg.write_text("{}\n")
    out = _cli("run", "--config", cfg, "--calibration", overlay, "--backend", "serial", "--port", port, cwd=tmp_path)
    _check_refused(out, overlay, "serial.imu_gyro_bias[1]")
    assert _bytes_waiting(master) == b""


def test_command_line_overrides_are_validated_too(tmp_path):
    cfg = tmp_path / "robot.yaml"
    cfg.write_text("{}\n")
    out = _cli("run", "--config", cfg, "--log", "/dev/null/run.mcap", cwd=tmp_path)
    _check_refused(out, cfg, "--log")


def test_a_fifo_never_blocks_the_loader(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="FIFO"):  # returns at once: a blocking open would wait for a writer
        load_config(fifo)


def test_duplicate_keys_name_both_lines_and_merge_keys_may_be_overridden(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("task: {duration: 5}\nsim: {seed: 1}\ntask: {duration: 6}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 3: key 'task' given twice .*first on line 1"):
        load_config(dup)
    merged = tmp_path / "merge.yaml"
    merged.write_text("base: &b {duration: 5, path: straight}\n")
    with pytest.raises(ConfigError, match="base"):  # unknown section, but not a duplicate
        load_config(merged)
    ok = tmp_path / "ok.yaml"
    ok.write_text("task:\n  <<: {duration: 5, path: left_turn}\n  duration: 7\n")
    assert load_config(ok).task.duration == 7 and load_config(ok).task.path == "left_turn"
