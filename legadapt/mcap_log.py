"""MCAP logs: the controller writes them, the dynamics datasets read them.

Format (design.md, "Logs"): one MCAP file per run, chunked (small chunks, zstd), one
channel per kind of record, each with a JSON Schema (schema encoding ``jsonschema``) and
JSON messages, so Foxglove opens the file as it is. Message fields are listed in
:data:`CHANNELS`; every message carries ``t`` (s), which is also its MCAP log time (ns).
Non-finite floats (NaN, ±inf) are written as JSON ``null`` (JSON has no NaN); numpy turns
them back into NaN with ``np.asarray(values, dtype=float)``.

A metadata record named ``legadapt`` holds the feature spec, its fingerprint, the config,
free-form run info and the log format version, each a JSON string.

:class:`LogWriter` never blocks its caller: messages go to a bounded queue and a daemon
thread serialises and writes them; each chunk is handed to the OS in one write as soon as
it is full or ``flush_interval`` s old, so a killed process leaves whole chunks behind.
:func:`legadapt.mcap_read.read_log` walks the records from the start (never the summary),
so a file cut short by a crash is read up to its last whole chunk.
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from mcap.writer import CompressionType, Writer

from legadapt import __version__
from legadapt.features import FeatureSpec

LOG_FORMAT_VERSION = 1
METADATA_NAME = "legadapt"
MAGIC = b"\x89MCAP0\r\n"
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


def _arr(desc: str, n: int | None = None) -> dict:
    s: dict[str, Any] = {"type": "array", "items": {"type": ["number", "null"]}, "description": desc + " (non-finite: null)"}
    if n is not None:
        s["minItems"] = s["maxItems"] = n
    return s


def _num(desc: str, kind: str = "number") -> dict:
    """A scalar field; a number may be null (a non-finite value, e.g. no loss before the first window)."""
    if kind == "number":
        return {"type": ["number", "null"], "description": desc + " (non-finite: null)"}
    return {"type": kind, "description": desc}


def _schema(name: str, props: dict, optional: tuple[str, ...] = ()) -> dict:
    props = {"t": {"type": "number", "description": "time, s"}, **props}
    return {"title": f"legadapt.{name}", "type": "object", "properties": props,
            "required": [k for k in props if k not in optional]}


#: Channel name -> JSON Schema of its messages. S = state dim, A = action dim, J = joints (see the spec: the robot description's joint order).
CHANNELS: dict[str, dict] = {
    "state": _schema("state", {
        "q": _arr("joint positions [J], rad"), "qd": _arr("joint velocities [J], rad/s"),
        "effort": _arr("joint efforts [J], N·m"), "imu_quat": _arr("IMU orientation quaternion w,x,y,z", 4),
        "gyro": _arr("IMU angular velocity, rad/s", 3), "acc": _arr("IMU acceleration, m/s²", 3),
        "model_state": _arr("model state [S]")}, optional=("model_state",)),
    "command": _schema("command", {"q": _arr("joint targets [J], rad"), "action": _arr("gait action [A], 1")}),
    "transition": _schema("transition", {
        "episode": _num("episode index", "integer"), "condition": _num("condition name", "string"),
        "state": _arr("model state at t-period [S]"), "action": _arr("gait action [A]"),
        "next_state": _arr("model state at t [S]"),
        "displacement": _arr("body-frame displacement dx m, dy m, dyaw rad", 3)}),
    "adaptation": _schema("adaptation", {
        "loss_before": _num("loss on the window before the inner step"),
        "loss_after": _num("loss on the window after the inner step"),
        "fallback": _num("adapted model rejected, meta-trained one used", "boolean")}),
    "planner": _schema("planner", {"cost": _num("best plan cost"), "plan_time": _num("planning time, s"),
                                   "iterations": _num("optimiser iterations", "integer"),
                                   "pose": _arr("estimated world pose x m, y m, yaw rad", 3),
                                   "cross_track": _num("signed distance from the path, m (+ = left)"),
                                   "progress": _num("arc length reached along the path, m"),
                                   "plan": {"type": "array", "description": "planned gait actions [H][A]"},
                                   "true_pose": _arr("simulation only: true world pose x m, y m, yaw rad", 3),
                                   "true_cross_track": _num("simulation only: true signed distance from the path, m"),
                                   "true_progress": _num("simulation only: true arc length reached, m")},
                       optional=("pose", "cross_track", "progress", "plan", "true_pose", "true_cross_track", "true_progress")),
    "timing": _schema("timing", {
        "read": _num("read phase, s"), "adapt": _num("adapt phase, s"), "plan": _num("plan phase, s"),
        "write": _num("write phase, s"), "cycle": _num("whole cycle, s"),
        "missed": _num("missed periods so far", "integer")}),
    "events": _schema("events", {"kind": _num("event kind", "string"), "message": _num("text", "string"),
                                 "data": {"type": "object", "description": "free-form details"}}),
}
_REQUIRED = {name: frozenset(s["required"]) - {"t"} for name, s in CHANNELS.items()}


class LogError(Exception):
    """A log file that cannot be read: missing, empty, not MCAP, or unreadable metadata."""


def _jsonable(v: Any) -> Any:
    """JSON-ready copy of ``v``: numpy -> Python, non-finite floats -> None."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            return np.where(np.isfinite(v), v, None).tolist()
        return v.tolist()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class _Sink:
    """Unbuffered output file: each write reaches the OS at once (whole records survive a kill)."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        self._fd = os.open(path, flags, 0o644)
        self._pos = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)


def _finish_ref(ref: weakref.ref) -> None:
    writer = ref()
    if writer is not None:
        writer.finish()


class LogWriter:
    """Writes one MCAP log from any thread without blocking (see the module docstring).

    ``chunk_size`` (bytes, uncompressed) and ``flush_interval`` (s) bound what a crash loses;
    ``queue_size`` messages may wait; beyond that new ones are dropped and counted in
    ``dropped``. A file error stops the writer thread and is kept in ``error`` (later
    messages are dropped); a message that cannot be serialised is dropped and its error
    kept in ``message_error``.
    """

    def __init__(self, path: str | os.PathLike, spec: FeatureSpec, config: dict | None = None,
                 info: dict | None = None, chunk_size: int = 32 * 1024, *, flush_interval: float = 0.5,
                 queue_size: int = 20000, compression: str = "zstd", overwrite: bool = False) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"unknown compression {compression!r}; allowed: {', '.join(_COMPRESSION)}")
        self.path = Path(path)
        self.spec = spec
        self.queue_size = int(queue_size)
        self.flush_interval = float(flush_interval)
        self.dropped = 0
        self.messages_written = 0
        self.error: BaseException | None = None
        self.message_error: Exception | None = None
        self._queue: collections.deque = collections.deque()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = _Sink(self.path, overwrite)
        try:
            self._writer = Writer(self._sink, chunk_size=int(chunk_size), compression=_COMPRESSION[compression])
            self._writer.start(profile="", library=f"legadapt/{__version__}")
            self._writer.add_metadata(METADATA_NAME, {
                "format_version": str(LOG_FORMAT_VERSION),
                "feature_spec": json.dumps(spec.to_dict()),
                "spec_fingerprint": spec.fingerprint(),
                "config": json.dumps(_jsonable(config), default=str),
                "info": json.dumps(_jsonable(info), default=str),
            })
            self._channel_ids = {}
            for name, schema in CHANNELS.items():
                sid = self._writer.register_schema(schema["title"], "jsonschema", json.dumps(schema).encode())
                self._channel_ids[name] = self._writer.register_channel(name, "json", sid)
        except BaseException:
            self._sink.close()
            raise
        self._sequence = dict.fromkeys(CHANNELS, 0)
        self._thread = threading.Thread(target=self._run, name=f"LogWriter({self.path.name})", daemon=True)
        self._thread.start()
        self._atexit = functools.partial(_finish_ref, weakref.ref(self))
        atexit.register(self._atexit)

    def write(self, channel: str, msg: dict, t: float) -> bool:
        """Queue ``msg`` (``t`` in s overrides any ``t`` in it); False if it was dropped.

        numpy arrays are copied now; other values are serialised later, so the caller must
        not mutate nested lists/dicts after the call.
        """
        if channel not in CHANNELS:
            raise ValueError(f"unknown log channel {channel!r}; allowed: {', '.join(CHANNELS)}")
        missing = _REQUIRED[channel].difference(msg)
        if missing:
            raise ValueError(f"{channel} message lacks {', '.join(sorted(missing))}")
        t = float(t)
        if not (math.isfinite(t) and t >= 0.0):
            raise ValueError(f"log time must be finite and >= 0 s, got {t}")
        if self._closing or len(self._queue) >= self.queue_size or self.error is not None:
            with self._count_lock:
                self.dropped += 1
            return False
        snapshot = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in msg.items()}
        snapshot["t"] = t
        self._queue.append((channel, t, snapshot))
        return True

    @property
    def pending(self) -> int:
        """Messages queued but not yet written."""
        return len(self._queue)

    def _run(self) -> None:
        last_flush, unflushed = time.monotonic(), 0
        try:
            while True:
                try:
                    channel, t, msg = self._queue.popleft()
                except IndexError:
                    if self._closing:
                        break
                    self._stop.wait(0.02)
                else:
                    unflushed += self._write_one(channel, t, msg)
                if unflushed and time.monotonic() - last_flush >= self.flush_interval:
                    self._writer.flush()
                    last_flush, unflushed = time.monotonic(), 0
            self._writer.finish()
        except BaseException as e:  # noqa: BLE001 - kept for the owner; the caller must not crash
            self.error = e
            with self._count_lock:
                self.dropped += len(self._queue)
                self._queue.clear()
        finally:
            try:
                self._sink.close()
            except OSError as e:
                self.error = self.error or e

    def _write_one(self, channel: str, t: float, msg: dict) -> int:
        try:
            data = json.dumps(_jsonable(msg), separators=(",", ":"), allow_nan=False, default=str).encode()
        except (TypeError, ValueError, RecursionError) as e:
            with self._count_lock:
                self.dropped += 1
            self.message_error = e
            return 0
        ns = int(round(t * 1e9))
        self._writer.add_message(self._channel_ids[channel], ns, data, ns, self._sequence[channel])
        self._sequence[channel] += 1
        self.messages_written += 1
        return 1

    def finish(self, timeout: float = 10.0) -> None:
        """Write what is queued, the summary and the footer; close the file. Idempotent.

        Takes no lock, so it is safe from a signal handler (even one interrupting
        :meth:`write` or :meth:`finish`) and from atexit; waits at most ``timeout`` s for
        the writer thread, which ends by itself once it sees the file closing.
        """
        first = not self._closing
        self._closing = True
        if first:
            self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if first:
            atexit.unregister(self._atexit)
        if not self._thread.is_alive() and self._queue:  # raced past the closing check in write()
            with self._count_lock:
                self.dropped += len(self._queue)
                self._queue.clear()

    @property
    def finished(self) -> bool:
        """True once the file is closed (footer written unless ``error`` is set)."""
        return self._closing and not self._thread.is_alive()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
