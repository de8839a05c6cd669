"""Every reply the bus can receive leaves it in a known state: a result, or a named BusError; the
port closed on error by its owner, and a reconnect (a fresh exclusive open of the same port) working.

Real pieces only: the bus talks to a pseudo-terminal through pyserial (``exclusive=True``, the
flock a leaked port would keep), a thread on the master side answers every request with bytes
hypothesis chose; ``SerialRobot`` runs against the emulated robot (``FakeRobot``, MuJoCo behind
the pty) whose replies are replaced on the wire. The replies are CRC-valid but malformed
packets (a status without its error byte, the wrong length, a foreign ID or instruction,
broken byte stuffing, a bad fast-sync-read layout), mixed with garbage and cut short.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from legadapt.hardware import protocol as P
from legadapt.hardware.bus import BusError, DynamixelBus
from legadapt.hardware.interface import CallbackReturn, LifecycleState, ReturnType
from legadapt.hardware.serial_robot import SerialRobot
from legadapt.config import parse_config
from legadapt.sim.fake_robot import FakeRobot

LEGADAPT = shutil.which("legadapt", path=str(Path(sys.executable).parent)) or "legadapt"
EXAMPLES = int(os.environ.get("LEGADAPT_FUZZ_EXAMPLES", "300"))
ROBOT_EXAMPLES = max(8, EXAMPLES // 30)
IDS = [1, 2, 3]


def frame(dxl_id: int, body: bytes) -> bytes:
    """A packet with a valid CRC around ``body`` (INST + params, sent as is: stuffing may be broken)."""
    head = P.HEADER + bytes((dxl_id,)) + (len(body) + 2).to_bytes(2, "little") + body
    return head + P.crc16(head).to_bytes(2, "little")


NO_ERROR_BYTE = frame(2, bytes((P.Instruction.STATUS,)))  # a status from ID 2 without its error byte, CRC valid

ids = st.sampled_from([*IDS, 0, 7, P.BROADCAST_ID])
statuses = st.builds(lambda i, params: frame(i, bytes((P.Instruction.STATUS,)) + params), ids, st.binary(max_size=40))
others = st.builds(lambda i, inst, params: frame(i, bytes((inst,)) + params), ids, st.integers(0, 255), st.binary(max_size=12))
stuffing = st.builds(lambda i, params: frame(i, bytes((P.Instruction.STATUS, 0)) + b"\xff\xff\xfd" + params), ids,
                     st.binary(max_size=6))
packets = st.one_of(statuses, others, stuffing)
replies = st.builds(lambda parts, garbage, cut: (b"".join(parts) + garbage)[:len(b"".join(parts) + garbage) - cut],
                    st.lists(packets, min_size=1, max_size=3), st.binary(max_size=8), st.integers(0, 3))
operations = st.sampled_from(["ping", "read", "write", "sync_read", "fast_sync_read"])


class Responder:
    """The far end of a pseudo-terminal: answers every instruction packet with ``reply``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.reply = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        parser = P.PacketParser()
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.01)[0]:
                for pkt in parser.feed(os.read(self.master, 4096)):
                    if not pkt.is_status and self.reply:
                        os.write(self.master, self.reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def responder():
    r = Responder()
    yield r
    r.close()


def transact(bus: DynamixelBus, op: str) -> object:
    """One transaction of kind ``op`` on IDs 1-3; checks the shape of what it returns."""
    if op == "ping":
        model, firmware = bus.ping(2)
        assert 0 <= model <= 0xFFFF and 0 <= firmware <= 0xFF
        return model
    if op == "read":
        data = bus.read(2, 132, 4)
        assert len(data) == 4
        return data
    if op == "write":
        return bus.write(2, 64, b"\x01")
    data = getattr(bus, op)(132, 4, IDS)
    assert sorted(data) == IDS and all(len(v) == 4 for v in data.values())
    return data


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=replies, op=operations)
@example(reply=NO_ERROR_BYTE, op="ping")  # the reply of issue 11 (item 12): it escaped as MalformedPacketError
@example(reply=NO_ERROR_BYTE, op="read")
def test_any_reply_gives_a_result_or_a_named_bus_error_and_the_port_reopens(responder, reply, op):
    responder.reply = reply
    bus = DynamixelBus(responder.path, timeout=0.004, retries=1)
    try:
        transact(bus, op)
    except BusError as exc:
        assert str(exc).strip(), "the error is named"
    finally:
        bus.close()  # what every owner of a bus does on error
    DynamixelBus(responder.path).close()  # the exclusive lock went with the port: a reconnect opens it


def test_the_reply_without_an_error_byte_is_named_malformed(responder):
    responder.reply = NO_ERROR_BYTE
    with DynamixelBus(responder.path, timeout=0.004, retries=2) as bus:
        with pytest.raises(BusError, match="malformed reply .*without its error byte.* servo\\(s\\) 2"):
            bus.ping(2)
        assert bus.stats.malformed == 3 and bus.stats.retries == 2


def test_an_unforeseen_failure_inside_a_transaction_closes_the_port(responder):
    responder.reply = frame(2, bytes((P.Instruction.STATUS, 0, 0x20, 0x04, 0x2A)))  # a valid ping reply

    def broken_check(statuses):
        raise IndexError("a case nobody foresaw")

    bus = DynamixelBus(responder.path, timeout=0.004)
    bus._check = broken_check  # the one stand-in: an internal step failing in a way no reply can cause any more
    with pytest.raises(BusError, match="failed unexpectedly .*IndexError: a case nobody foresaw.*port closed"):
        bus.ping(2)
    assert not bus._ser.is_open
    DynamixelBus(responder.path).close()


# ---------------------------------------------------------------- SerialRobot, emulated robot, replies replaced
class HostileFakeRobot(FakeRobot):
    """The emulated robot; the next ``len(queue)`` replies on the wire are replaced by ``queue.pop(0)(reply)``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue: list = []

    def _wire_faults(self, raw: bytes) -> bytes:
        raw = super()._wire_faults(raw)
        if self.queue and raw:
            return self.queue.pop(0)(raw)
        return raw


MUTATIONS = {
    "no error byte": lambda raw: frame(raw[4], bytes((P.Instruction.STATUS,))),
    "data cut short": lambda raw: frame(raw[4], P.decode_packet(raw).raw[7:-2][:-1]),
    "foreign instruction": lambda raw: frame(raw[4], bytes((P.Instruction.WRITE,)) + raw[8:-2]),
    "broken stuffing": lambda raw: frame(raw[4], bytes((P.Instruction.STATUS, 0)) + b"\xff\xff\xfd\x00"),
}


@pytest.fixture(scope="module")
def hostile_fake():
    fake = HostileFakeRobot(parse_config({})).start()
    yield fake
    fake.stop()


def _active_robot(port: str) -> SerialRobot:
    # a patient reply timeout (0.1 s): the bad replies come at once, and the emulator thread shares the 2 cores,
    # so a late good reply on a busy machine must not count as one more bad one
    robot = SerialRobot(parse_config({"serial": {"port": port, "timeout": 0.1}}))
    assert robot.configure() is CallbackReturn.SUCCESS, robot.last_error
    assert robot.activate() is CallbackReturn.SUCCESS, robot.last_error
    return robot


@settings(max_examples=ROBOT_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(MUTATIONS)), count=st.integers(1, 8))
@example(kind="no error byte", count=8)  # enough to reach the torque-off barrier of on_error too
def test_serial_robot_closes_the_port_on_any_reply_and_reconnects(hostile_fake, kind, count):
    robot = _active_robot(hostile_fake.path)
    try:
        hostile_fake.queue[:] = [MUTATIONS[kind]] * count
        results = [robot.read() for _ in range(4)]
        assert (ReturnType.ERROR in results) == (count > robot.cfg.serial.retries), "retries absorb fewer bad replies"
        if ReturnType.ERROR in results:
            assert robot.lifecycle in (LifecycleState.UNCONFIGURED, LifecycleState.FINALIZED)
            assert robot.bus is None, "on_error closed the port"
            assert robot.last_error and "Traceback" not in robot.last_error
        hostile_fake.queue.clear()
    finally:
        robot.shutdown()
    again = _active_robot(hostile_fake.path)  # the reconnect: a fresh exclusive open of the same port
    again.shutdown()


# ---------------------------------------------------------------- calibration on the same reply
@pytest.mark.parametrize("procedure", ["latency", "servos"])
def test_calibration_names_the_malformed_reply_without_a_traceback(responder, procedure, tmp_path):
    responder.reply = b"".join(frame(i, bytes((P.Instruction.STATUS,))) for i in range(1, 19))
    out = subprocess.run([LEGADAPT, "calibrate", procedure, "--port", responder.path, "--out", tmp_path / "c.yaml"],
                         input="\n" * 5, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr  # a bus fault, not bad input
    assert "malformed reply" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "c.yaml").exists()
    DynamixelBus(responder.path).close()  # the procedure closed the port on its way out
