"""MCAP logs: round trip, concurrency, idempotent finish, truncated and killed files, bad files."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.data_stream import ReadDataStream
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import breakup_chunk

from legadapt.features import make_spec
from legadapt.mcap_log import CHANNELS, LOG_FORMAT_VERSION, LogError, LogWriter
from legadapt.mcap_read import read_log
from conftest import HEXAPOD

SPEC = make_spec("per_side", 0.1, HEXAPOD)
S, A = SPEC.state_dim, SPEC.action_dim


def sample_messages(t: float, rng: np.random.Generator) -> dict[str, dict]:
    """One message per channel, arrays as numpy."""
    return {
        "state": {"q": rng.normal(size=18), "qd": rng.normal(size=18), "effort": rng.normal(size=18),
                  "imu_quat": np.array([1.0, 0, 0, 0]), "gyro": rng.normal(size=3), "acc": rng.normal(size=3),
                  "model_state": rng.normal(size=S).astype(np.float32)},
        "command": {"q": rng.normal(size=18), "action": rng.uniform(-1, 1, A)},
        "transition": {"episode": np.int64(2), "condition": "limp_LF", "state": rng.normal(size=S),
                       "action": rng.uniform(-1, 1, A), "next_state": rng.normal(size=S),
                       "displacement": np.array([0.01, -0.002, 0.03])},
        "adaptation": {"loss_before": np.float32(0.5), "loss_after": 0.25, "fallback": np.bool_(False)},
        "planner": {"cost": 3.5, "plan_time": 0.02, "iterations": 3},
        "timing": {"read": 1e-3, "adapt": 2e-3, "plan": 3e-2, "write": 1e-3, "cycle": 0.04, "missed": 0},
        "events": {"kind": "start", "message": "hello", "data": {"x": np.arange(3), "nested": {"y": 1}}},
    }


def record_layout(data: bytes) -> list[tuple[int, int, int, int]]:
    """Top-level records of a whole MCAP file: (start, end, opcode, messages in it)."""
    out, pos = [], 8
    while pos < len(data) - 8:
        opcode, length = struct.unpack_from("<BQ", data, pos)
        end = pos + 9 + length
        n = 0
        if opcode == 0x06:
            chunk = Chunk.read(ReadDataStream(io.BytesIO(data[pos + 9:end])))
            n = sum(isinstance(r, Message) for r in breakup_chunk(chunk))
        out.append((pos, end, opcode, n))
        pos = end
    return out


def write_log(path: Path, n: int, chunk_size: int = 2048) -> None:
    with LogWriter(path, SPEC, chunk_size=chunk_size) as log:
        for i in range(n):
            log.write("transition", {"episode": 0, "condition": "nominal", "state": np.full(S, float(i)),
                                     "action": np.zeros(A), "next_state": np.full(S, i + 1.0),
                                     "displacement": np.zeros(3)}, t=0.1 * i)


def test_round_trip_all_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "run.mcap"
    sent = []
    with LogWriter(path, SPEC, config={"gait": {"frequency": 2.0}}, info={"robot": "sim"}) as log:
        for k in range(5):
            msgs = sample_messages(0.1 * k, rng)
            for channel, msg in msgs.items():
                assert log.write(channel, msg, t=0.1 * k)
            sent.append(msgs)
    assert log.finished and log.error is None and log.dropped == 0
    assert log.messages_written == 5 * len(CHANNELS)

    got = read_log(path)
    assert got.spec == SPEC and got.config == {"gait": {"frequency": 2.0}} and got.info == {"robot": "sim"}
    assert got.format_version == LOG_FORMAT_VERSION and got.metadata["spec_fingerprint"] == SPEC.fingerprint()
    assert got.recovery.complete and got.recovery.bytes_dropped == 0 and got.recovery.reason == ""
    assert got.recovery.messages_read == 5 * len(CHANNELS)
    for channel in CHANNELS:
        assert len(got.messages[channel]) == 5
        for k, msg in enumerate(got.messages[channel]):
            assert msg["t"] == pytest.approx(0.1 * k)
            for key, value in sent[k][channel].items():
                if isinstance(value, np.ndarray):
                    assert isinstance(msg[key], list)
                    np.testing.assert_allclose(msg[key], value, rtol=1e-7)
    assert got.messages["events"][0]["data"] == {"x": [0, 1, 2], "nested": {"y": 1}}
    assert got.messages["adaptation"][0]["fallback"] is False

    # Independent check with the mcap package's own indexed reader: schemas and encodings.
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert {c.topic for c in summary.channels.values()} == set(CHANNELS)
        assert all(c.message_encoding == "json" for c in summary.channels.values())
        assert all(s.encoding == "jsonschema" for s in summary.schemas.values())
        schema = next(s for s in summary.schemas.values() if s.name == "legadapt.transition")
        assert json.loads(schema.data)["required"][:3] == ["t", "episode", "condition"]
        assert sum(1 for _ in reader.iter_messages(topics=["state"])) == 5


def test_non_finite_written_as_null(tmp_path: Path) -> None:
    path = tmp_path / "nan.mcap"
    with LogWriter(path, SPEC) as log:
        log.write("planner", {"cost": float("nan"), "plan_time": np.inf, "iterations": 1}, t=0.0)
        log.write("command", {"q": np.array([np.nan] + [0.0] * 17), "action": [1.0, float("-inf")]}, t=0.1)
    raw = path.read_bytes()
    assert b"NaN" not in raw and b"Infinity" not in raw
    got = read_log(path).messages
    assert got["planner"][0]["cost"] is None and got["planner"][0]["plan_time"] is None
    assert np.isnan(np.asarray(got["command"][0]["q"], dtype=float)[0])
    assert got["command"][0]["action"] == [1.0, None]


def test_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "threads.mcap"
    n = 500
    with LogWriter(path, SPEC, chunk_size=4096) as log:
        def work(k: int) -> None:
            for i in range(n):
                log.write("events", {"kind": f"w{k}", "message": str(i), "data": {"i": i}}, t=0.001 * i)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert log.dropped == 0 and log.messages_written == 4 * n
    events = read_log(path).messages["events"]
    assert len(events) == 4 * n
    for k in range(4):  # each thread's messages arrive complete and in its order
        assert [int(e["message"]) for e in events if e["kind"] == f"w{k}"] == list(range(n))


def test_finish_idempotent_and_late_writes_dropped(tmp_path: Path) -> None:
    path = tmp_path / "idem.mcap"
    log = LogWriter(path, SPEC)
    log.write("events", {"kind": "a", "message": "", "data": {}}, t=0.0)
    log.finish()
    size = path.stat().st_size
    log.finish()
    with log:
        pass
    assert path.stat().st_size == size and log.finished
    assert not log.write("events", {"kind": "late", "message": "", "data": {}}, t=1.0)
    assert log.dropped == 1
    assert read_log(path).recovery.complete


def test_queue_full_drops_without_blocking(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "full.mcap", SPEC, queue_size=10)
    t0 = time.perf_counter()
    results = [log.write("timing", {"read": 0, "adapt": 0, "plan": 0, "write": 0, "cycle": 0, "missed": 0}, t=0.0)
               for _ in range(20000)]
    elapsed = time.perf_counter() - t0
    log.finish()
    assert log.dropped == results.count(False) > 0
    assert log.messages_written == results.count(True)
    assert elapsed < 2.0


def test_bad_arguments(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "bad.mcap", SPEC) as log:
        with pytest.raises(ValueError, match="allowed: state, command, transition"):
            log.write("imu", {}, t=0.0)
        with pytest.raises(ValueError, match="lacks"):
            log.write("planner", {"cost": 1.0}, t=0.0)
        with pytest.raises(ValueError, match="finite"):
            log.write("planner", {"cost": 1.0, "plan_time": 0.0, "iterations": 0}, t=float("nan"))
    with pytest.raises(FileExistsError):
        LogWriter(tmp_path / "bad.mcap", SPEC)


@pytest.mark.parametrize("fraction", [0.5, 0.9, None])
def test_truncated_file_recovers_whole_chunks(tmp_path: Path, fraction: float | None) -> None:
    full = tmp_path / "full.mcap"
    write_log(full, 400)
    data = full.read_bytes()
    layout = record_layout(data)
    assert sum(n for *_, n in layout) == 400 and sum(op == 0x06 for _, _, op, _ in layout) > 5
    cut = len(data) - 10 if fraction is None else int(len(data) * fraction)
    if cut in {end for _, end, *_ in layout}:  # the writer's thread chunks by time, so record ends vary from run to run:
        cut -= 1                               # cut inside a record, as a crash does
    cut_path = tmp_path / "cut.mcap"
    cut_path.write_bytes(data[:cut])

    got = read_log(cut_path)
    whole = [r for r in layout if r[1] <= cut]
    expected = sum(n for *_, n in whole)
    assert got.recovery.messages_read == expected == len(got.messages["transition"])
    assert got.recovery.bytes_used == whole[-1][1] and got.recovery.bytes_total == cut
    assert got.recovery.bytes_dropped == cut - whole[-1][1] > 0
    assert got.recovery.complete is False and "truncated" in got.recovery.reason
    assert [m["state"][0] for m in got.messages["transition"]] == list(range(expected))
    assert got.spec == SPEC


def test_every_cut_point_is_readable(tmp_path: Path) -> None:
    full = tmp_path / "full.mcap"
    write_log(full, 60, chunk_size=512)
    data = full.read_bytes()
    layout = record_layout(data)
    first_header_end = layout[0][1]
    for cut in range(first_header_end, len(data), 29):
        (tmp_path / "c.mcap").write_bytes(data[:cut])
        got = read_log(tmp_path / "c.mcap")
        assert got.recovery.messages_read == sum(n for _, end, _, n in layout if end <= cut)
        assert not got.recovery.complete


def test_corrupt_chunk_stops_there(tmp_path: Path) -> None:
    full = tmp_path / "full.mcap"
    write_log(full, 200)
    data = bytearray(full.read_bytes())
    chunks = [r for r in record_layout(bytes(data)) if r[2] == 0x06]
    start, end, _, _ = chunks[2]
    data[end - 20] ^= 0xFF  # inside the compressed payload of the third chunk
    (tmp_path / "bad.mcap").write_bytes(bytes(data))
    got = read_log(tmp_path / "bad.mcap")
    assert got.recovery.messages_read == chunks[0][3] + chunks[1][3]
    assert got.recovery.bytes_used == start and "corrupt CHUNK" in got.recovery.reason


CHILD = """
import sys, time, numpy as np
from legadapt.features import make_spec
from legadapt.mcap_log import LogWriter
from legadapt.robot.description import load_description
log = LogWriter(sys.argv[1], make_spec("per_side", 0.1, load_description()), chunk_size=1024, flush_interval=0.05)
i = 0
while True:
    log.write('transition', {'episode': 0, 'condition': 'nominal', 'state': np.full(28, float(i)),
              'action': np.zeros(2), 'next_state': np.zeros(28), 'displacement': np.zeros(3)}, t=0.01 * i)
    i += 1
    if i == 50:
        print('running', flush=True)
    time.sleep(0.001)
"""


def test_recover_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 10
        while path.stat().st_size < 6000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    assert proc.returncode == -signal.SIGKILL
    got = read_log(path)
    assert not got.recovery.complete and got.spec == SPEC
    n = got.recovery.messages_read
    assert n > 0 and [m["state"][0] for m in got.messages["transition"]] == list(range(n))


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello world, not a log at all", "bad magic"),
    (b"\x89MCA", "truncated inside the MCAP magic"),
    (b"\x89MCAP0\r\n\x05" + bytes(8), "first record is MESSAGE"),
])
def test_not_a_log(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "junk.mcap"
    path.write_bytes(content)
    with pytest.raises(LogError, match=match) as err:
        read_log(path)
    assert "junk.mcap" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="cannot open"):
        read_log(tmp_path / "nope.mcap")


def test_channel_filter(tmp_path: Path) -> None:
    path = tmp_path / "f.mcap"
    rng = np.random.default_rng(1)
    with LogWriter(path, SPEC) as log:
        for channel, msg in sample_messages(0.0, rng).items():
            log.write(channel, msg, t=0.0)
    got = read_log(path, channels=["transition"])
    assert len(got.messages["transition"]) == 1 and got.messages["state"] == []
    assert got.recovery.messages_read == len(CHANNELS)


def test_unserialisable_message_is_dropped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "cyc.mcap"
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with LogWriter(path, SPEC) as log:
        log.write("events", {"kind": "bad", "message": "", "data": cyclic}, t=0.0)
        time.sleep(0.1)
        assert log.write("events", {"kind": "good", "message": "", "data": {}}, t=0.1)
    assert log.dropped == 1 and isinstance(log.message_error, RecursionError) and log.error is None
    assert [e["kind"] for e in read_log(path).messages["events"]] == ["good"]
