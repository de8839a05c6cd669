"""MCAP logs: the controller writes them, the dynamics datasets read them.

Format (design.md, "Logs"): one MCAP file per run, chunked (small chunks, zstd), one
channel per kind of record, each with a JSON Schema (schema encoding ``jsonschema``) and
JSON messages, so Foxglove opens the file as it is. Message fields are listed in
:data:`CHANNELS`; every message carries ``t`` (s, run time). Its MCAP log time is wall-clock
time: ``time_origin_unix_ns + t`` (ns since 1970), where the origin -- the wall-clock instant of
run time 0 -- is in the metadata record ``legadapt.clock`` (``time_origin_unix_ns``, and the
same instant as UTC text).
Non-finite floats (NaN, ±inf) are written as JSON ``null`` (JSON has no NaN); numpy turns
them back into NaN with ``np.asarray(values, dtype=float)``.

A metadata record named ``legadapt`` holds the feature spec, its fingerprint, the config,
free-form run info and the log format version, each a JSON string.

A :class:`LogView` adds channels derived from the JSON messages (the Foxglove scene,
:mod:`legadapt.controller.foxglove_view`): the writer thread asks it for derived messages
after each JSON one and writes them too, with their own schemas and encodings; its
attachments (the robot's URDF) are written at the start. A :class:`LogMirror` (the live
view) receives every message written, JSON and derived, as the same bytes and log time.
Views and mirrors run on the writer thread only, never on the caller's.

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
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from mcap.writer import CompressionType, Writer

from legadapt import __version__
from legadapt.features import FeatureSpec
from legadapt.log_schema import (CHANNELS, CLOCK_METADATA_NAME, JSON_CHANNELS, LOG_FORMAT_VERSION, MAGIC,  # noqa: F401 (API)
                                 METADATA_NAME, ChannelDef, LogMirror, LogView, _REQUIRED, quat_xyzw)

_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


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
    kept in ``message_error`` (a view's or mirror's failure too, counted in ``view_errors``).

    ``time_origin_unix_ns``: wall-clock instant of run time 0 (ns since 1970); ``None`` = now.
    With ``deferred_origin`` the origin is given later by :meth:`set_time_origin` (the daemon's
    run clock starts at the first stand-up); messages wait in the queue until then (or until
    :meth:`finish`, which takes the time the writer was made).
    """

    def __init__(self, path: str | os.PathLike, spec: FeatureSpec, config: dict | None = None,
                 info: dict | None = None, chunk_size: int = 32 * 1024, *, flush_interval: float = 0.5,
                 queue_size: int = 20000, compression: str = "zstd", overwrite: bool = False,
                 time_origin_unix_ns: int | None = None, deferred_origin: bool = False,
                 view: LogView | None = None, mirrors: Iterable[LogMirror] = ()) -> None:
        if compression not in _COMPRESSION:
            raise ValueError(f"unknown compression {compression!r}; allowed: {', '.join(_COMPRESSION)}")
        self.path = Path(path)
        self.spec = spec
        self._chunk_size, self._compression = int(chunk_size), compression
        self.queue_size = int(queue_size)
        self.flush_interval = float(flush_interval)
        self.dropped = 0
        self.messages_written = 0
        self.view_errors = 0
        self.error: BaseException | None = None
        self.message_error: Exception | None = None
        self.created_unix_ns = time.time_ns()
        self.time_origin_unix_ns: int | None = None if deferred_origin else (time_origin_unix_ns or self.created_unix_ns)
        self._origin_written = False
        self.view, self.mirrors = view, tuple(mirrors)
        self._queue: collections.deque = collections.deque()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = _Sink(self.path, overwrite)
        try:
            self._start_file(config, info)
        except BaseException:
            self._sink.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"LogWriter({self.path.name})", daemon=True)
        self._thread.start()
        self._atexit = functools.partial(_finish_ref, weakref.ref(self))
        atexit.register(self._atexit)

    def _start_file(self, config: dict | None, info: dict | None) -> None:
        """Header, metadata, the view's attachments and every channel (JSON and derived)."""
        self._writer = Writer(self._sink, chunk_size=self._chunk_size, compression=_COMPRESSION[self._compression])
        self._writer.start(profile="", library=f"legadapt/{__version__}")
        self._writer.add_metadata(METADATA_NAME, {
            "format_version": str(LOG_FORMAT_VERSION),
            "feature_spec": json.dumps(self.spec.to_dict()),
            "spec_fingerprint": self.spec.fingerprint(),
            "config": json.dumps(_jsonable(config), default=str),
            "info": json.dumps(_jsonable(info), default=str),
        })
        channels = JSON_CHANNELS + (tuple(self.view.channels) if self.view is not None else ())
        if self.view is not None:
            for name, media_type, data in self.view.attachments():
                self._writer.add_attachment(self.created_unix_ns, self.created_unix_ns, name, media_type, data)
        self._channel_ids, self._sequence, schema_ids = {}, {}, {}
        for ch in channels:
            key = (ch.schema_name, ch.schema_encoding, ch.schema_data)
            if key not in schema_ids:
                schema_ids[key] = self._writer.register_schema(*key)
            self._channel_ids[ch.topic] = self._writer.register_channel(ch.topic, ch.message_encoding, schema_ids[key])
            self._sequence[ch.topic] = 0
        for mirror in self.mirrors:
            mirror.open(channels)

    def set_time_origin(self, unix_ns: int) -> None:
        """The wall-clock instant (ns since 1970) of run time 0; the first call wins."""
        if self.time_origin_unix_ns is None:
            self.time_origin_unix_ns = int(unix_ns)

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
                if not self._origin_ready():
                    self._stop.wait(0.02)
                    continue
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

    def _origin_ready(self) -> bool:
        """True once run time 0 has a wall-clock instant (written to the metadata once)."""
        if self._origin_written:
            return True
        if self.time_origin_unix_ns is None:
            if not self._closing:
                return False
            self.time_origin_unix_ns = self.created_unix_ns
        origin = self.time_origin_unix_ns
        utc = datetime.fromtimestamp(origin // 1_000_000_000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        self._writer.add_metadata(CLOCK_METADATA_NAME, {
            "time_origin_unix_ns": str(origin), "time_origin_utc": f"{utc}.{origin % 1_000_000_000:09d}Z",
            "log_time": "time_origin_unix_ns + t (run time, s) in ns"})
        self._origin_written = True
        return True

    def _write_one(self, channel: str, t: float, msg: dict) -> int:
        try:
            data = json.dumps(_jsonable(msg), separators=(",", ":"), allow_nan=False, default=str).encode()
        except (TypeError, ValueError, RecursionError) as e:
            with self._count_lock:
                self.dropped += 1
            self.message_error = e
            return 0
        ns = self.time_origin_unix_ns + int(round(t * 1e9))
        written = self._add(channel, ns, data)
        if self.view is not None:
            try:
                derived = list(self.view.derive(channel, ns, msg))
            except Exception as e:  # noqa: BLE001 - a view must never stop the log
                self.view_errors += 1
                self.message_error = e
                derived = []
            for topic, payload in derived:
                written += self._add(topic, ns, payload)
        return written

    def _add(self, topic: str, ns: int, data: bytes) -> int:
        self._writer.add_message(self._channel_ids[topic], ns, data, ns, self._sequence[topic])
        self._sequence[topic] += 1
        self.messages_written += 1
        for mirror in self.mirrors:
            try:
                mirror.publish(topic, ns, data)
            except Exception as e:  # noqa: BLE001 - the live view must never stop the log
                self.view_errors += 1
                self.message_error = e
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
