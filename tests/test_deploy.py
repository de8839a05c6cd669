"""Deployment: the systemd unit (verify, security exposure, no restart after bad input or a safety
stop), its system user, the config it runs (the real robot, chosen by the config), and an onboard
install without pybullet (an extra: the daemon never imports it; choosing it without it is bad input)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from legadapt.controller.cli import EXIT_BAD_INPUT, EXIT_SAFETY_STOP
from legadapt.config import load_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "legadapt.service"
SYSUSERS = REPO / "deploy" / "legadapt.sysusers"
UNIT_CONFIG = REPO / "configs" / "serial_robot.yaml"
NO_PYBULLET = ("import sys; sys.modules['pybullet'] = sys.modules['pybullet_utils'] = None  # as if not installed\n"
               "from legadapt.controller.cli import main; sys.exit(main(sys.argv[1:]))")


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values...]}}`` of a unit file (keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return out


def _exposure(output: str) -> float:
    return float(re.search(r"Overall exposure level for legadapt\.service: ([0-9.]+)", output).group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_unit_passes_systemd_analyze_verify_and_security_and_its_user_is_created(tmp_path):
    """verify in a root laid out like the robot (the unit, the venv's legadapt, the host's system units);
    security offline; systemd-sysusers on a root that has a dialout group."""
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc" / "systemd" / "system")
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    exe = root / unit_settings()["Service"]["ExecStart"][0].split()[0].lstrip("/")
    exe.parent.mkdir(parents=True)
    shutil.copy(shutil.which("legadapt", path=str(Path(sys.executable).parent)), exe)
    out = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "legadapt.service"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), out.stdout + out.stderr
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    exposure = _exposure(out.stdout)
    print(f"systemd-analyze security: exposure {exposure} (issue 11 measured 9.2 for the unit before)")
    assert exposure <= 5.0, out.stdout

    if shutil.which("systemd-sysusers"):
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
        out = subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSUSERS)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        user = next(line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("legadapt:"))
        assert 0 < int(user[2]) < 1000 and user[6].endswith("nologin"), user  # a system user that cannot log in
        assert "legadapt" in (root / "etc" / "group").read_text().split("dialout:x:20:")[1].splitlines()[0].split(",")


def test_unit_never_restarts_after_bad_input_or_a_safety_stop():
    service = unit_settings()["Service"]
    assert service["Restart"] == ["on-failure"]
    assert set(service["RestartPreventExitStatus"][0].split()) == {str(EXIT_BAD_INPUT), str(EXIT_SAFETY_STOP)} == {"2", "3"}
    assert service["Type"] == ["notify"] and service["WatchdogSec"] == ["2s"]


def test_unit_hardening_leaves_the_bus_and_real_time_and_a_log_directory():
    service = unit_settings()["Service"]
    assert service["User"] == ["legadapt"] and service["SupplementaryGroups"] == ["dialout"]
    assert service["ProtectSystem"] == ["strict"] and service["ProtectHome"] == ["yes"]
    assert service["PrivateTmp"] == ["yes"] and service["NoNewPrivileges"] == ["yes"]
    assert service["DevicePolicy"] == ["closed"] and "/dev/legadapt rw" in service["DeviceAllow"]
    assert "RestrictRealtime" not in service and int(service["LimitRTPRIO"][0]) > 0, "SCHED_FIFO stays possible"
    assert "MemoryDenyWriteExecute" not in service, "torch generates kernels at run time"
    assert service["LogsDirectory"] == ["legadapt"] and service["StateDirectory"] == ["legadapt"]
    sysusers = [line.split() for line in SYSUSERS.read_text().splitlines() if line and not line.startswith("#")]
    assert sysusers[0][:2] == ["u", "legadapt"] and ["m", "legadapt", "dialout"] in sysusers


def test_the_unit_runs_the_serial_robot_chosen_by_its_config():
    service = unit_settings()["Service"]
    command = service["ExecStart"][0].split()
    assert command[1:3] == ["run", "--config"] and "--backend" not in command and "--mode" not in command
    installed = command[3]
    assert f"configs/serial_robot.yaml {installed}" in UNIT.read_text(), "the header installs the shipped config there"
    cfg = load_config(UNIT_CONFIG)
    assert cfg.robot.backend == "serial" and cfg.controller.mode == "realtime"
    assert cfg.controller.state_source == "estimated"
    assert f"{cfg.serial.port} rw" in service["DeviceAllow"], "the unit lets the daemon open the config's port"
    assert cfg.controller.log_dir == f"/var/log/{service['LogsDirectory'][0]}"
    assert f"models/default.pt {cfg.controller.model}" in UNIT.read_text(), "the header installs the model there"


def test_the_models_the_header_installs_are_all_the_controller_needs(tmp_path):
    """Following the header's model install lines into an empty folder, the config's controller builds: the model
    and the plain model it names beside itself (an install of the model alone fails pre-flight, exit 2)."""
    from legadapt.controller.preflight import build_controller

    cfg = load_config(UNIT_CONFIG)
    etc = Path(cfg.controller.model).parent
    lines = re.findall(r"^#\s+install -m 0644 (models/\S+) (\S+)", UNIT.read_text(), flags=re.M)
    assert lines, "the header installs the shipped model"
    for source, target in lines:
        assert Path(target).parent == etc, "models go where the config looks"
        shutil.copy(REPO / source, tmp_path / Path(target).name)
    build_controller(cfg, tmp_path / Path(cfg.controller.model).name)


def test_run_takes_the_backend_from_the_config(tmp_path):
    """robot.backend: serial in the file, no --backend flag: the daemon refuses lockstep for the serial robot."""
    data = yaml.safe_load(UNIT_CONFIG.read_text())
    data["controller"].update(mode="lockstep", model=str(REPO / "models" / "default.pt"), log_dir=str(tmp_path))
    cfg = tmp_path / "robot.yaml"
    cfg.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", cfg], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == EXIT_BAD_INPUT and "serial robot runs in real time" in out.stderr, out.stderr


# ---------------------------------------------------------------- pybullet: an extra
def test_pybullet_is_an_extra_that_the_test_extra_installs():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    required = cfg["options"]["install_requires"]
    extras = cfg["options.extras_require"]
    assert "pybullet" not in required
    assert "pybullet" in extras["pybullet"] and "pybullet" in extras["test"]
    assert 'pip install -e ".[test]"' in (REPO / "README.md").read_text()


def test_without_pybullet_the_onboard_code_runs_and_choosing_it_is_bad_input(tmp_path):
    onboard = ("import sys; sys.modules['pybullet'] = None\n"
               "import legadapt.controller.cli, legadapt.controller.daemon, legadapt.controller.loop\n"
               "import legadapt.hardware.serial_robot, legadapt.sim.sim_robot, legadapt.sim.fake_robot\n"
               "import legadapt.calibration.latency, legadapt.calibration.imu, legadapt.calibration.servos\n"
               "assert 'pybullet' not in [m for m, v in sys.modules.items() if v is not None], 'imported'")
    out = subprocess.run([sys.executable, "-c", onboard], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cfg = tmp_path / "pb.yaml"
    cfg.write_text("sim: {backend: pybullet}\n")
    for args in (["check-config", cfg], ["walk", "--config", REPO / "configs" / "hexapod_sim.yaml", "--backend", "pybullet", "--duration", "1"], ["run", "--config", cfg]):
        out = subprocess.run([sys.executable, "-c", NO_PYBULLET, *map(str, args)], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
        assert out.returncode == EXIT_BAD_INPUT, (args, out.stderr)
        assert "sim.backend" in out.stderr and "pip install 'legadapt[pybullet]'" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_the_daemon_runs_without_pybullet(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"controller": {"planner": {"samples": 64, "horizon": 5}, "log_dir": str(tmp_path),
                                                  "status_interval": 5}}))
    out = subprocess.run([sys.executable, "-c", NO_PYBULLET, "run", "--config", str(cfg), "--duration", "1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert list(tmp_path.glob("run-*.mcap")), "it ran and logged"
