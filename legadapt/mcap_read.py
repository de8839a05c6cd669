"""Reading legadapt MCAP logs, including files cut short by a crash.

:func:`read_log` walks the records from the start of the file and never uses the summary
section, so a file that a killed process left without its footer is read up to its last
whole chunk; :class:`Recovery` says how much was dropped and why. The format and the
writer are in :mod:`legadapt.mcap_log`.
"""

from __future__ import annotations

import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Metadata
from mcap.stream_reader import breakup_chunk

from legadapt.features import FeatureSpec
from legadapt.mcap_log import CHANNELS, CLOCK_METADATA_NAME, LOG_FORMAT_VERSION, MAGIC, METADATA_NAME, LogError

@dataclass
class Recovery:
    """How much of a file was read: all of it (``complete``) or up to its last whole record."""

    complete: bool
    bytes_total: int
    bytes_used: int
    bytes_dropped: int
    messages_read: int
    reason: str  # "" when complete, else why reading stopped


@dataclass
class LogContents:
    """A log's metadata and decoded messages (``messages[channel]``: dicts in file order)."""

    path: str
    spec: FeatureSpec | None
    config: dict | None
    info: dict | None
    messages: dict[str, list[dict]]
    recovery: Recovery
    format_version: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


_OPCODE_NAMES = {int(o): o.name for o in Opcode}


def read_log(path: str | os.PathLike, channels: Iterable[str] | None = None) -> LogContents:
    """Read a log from its first byte, stopping at the first truncated or corrupt record.

    ``channels`` restricts which channels are JSON-decoded (all by default). Raises
    :class:`LogError` for a missing, empty or non-MCAP file, or unreadable ``legadapt``
    metadata. Never uses the summary section.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise LogError(f"{path}: cannot open log: {e.strerror or e}") from e
    wanted = None if channels is None else set(channels)
    with f:
        if size == 0:
            raise LogError(f"{path}: empty file (0 bytes), not an MCAP log")
        head = f.read(len(MAGIC))
        if head != MAGIC[:len(head)]:
            raise LogError(f"{path}: not an MCAP file (bad magic {head!r})")
        if len(head) < len(MAGIC):
            raise LogError(f"{path}: truncated inside the MCAP magic ({size} bytes)")
        return _walk(f, path, size, wanted)


def _walk(f: io.BufferedReader, path: Path, size: int, wanted: set[str] | None) -> LogContents:
    pos, reason, complete, n_messages = len(MAGIC), "", False, 0
    channels: dict[int, tuple[str, str]] = {}
    messages: dict[str, list[dict]] = {name: [] for name in CHANNELS}
    meta: dict[str, str] = {}
    first = True
    while True:
        if pos == size:
            reason = f"file ends at byte {pos} without a footer (writer did not finish)"
            break
        head = f.read(9)
        if len(head) < 9:
            reason = f"truncated record header at byte {pos}"
            break
        opcode, length = struct.unpack("<BQ", head)
        name = _OPCODE_NAMES.get(opcode, f"opcode {opcode:#x}")
        if opcode == 0 or 0x0F < opcode < 0x80:
            reason = f"corrupt record at byte {pos}: invalid opcode {opcode:#x}"
            break
        if first and opcode != Opcode.HEADER:
            raise LogError(f"{path}: not an MCAP log: first record is {name}, expected HEADER")
        first = False
        if pos + 9 + length > size:
            reason = f"truncated {name} record at byte {pos}: needs {9 + length} bytes, {size - pos} left"
            break
        body = f.read(length)
        try:
            got = _records(opcode, body, channels, wanted, meta)
        except Exception as e:  # noqa: BLE001 - any decoding failure means a corrupt record
            reason = f"corrupt {name} record at byte {pos}: {type(e).__name__}: {e}"
            break
        pos += 9 + length
        n_messages += got[0]
        for topic, msg in got[1]:
            messages.setdefault(topic, []).append(msg)
        if opcode == Opcode.FOOTER:
            tail = f.read(len(MAGIC))
            complete = tail == MAGIC and pos + len(MAGIC) == size
            if tail == MAGIC:
                pos += len(MAGIC)
            reason = "" if complete else f"bad or missing closing magic at byte {pos}"
            break
    recovery = Recovery(complete, size, pos, size - pos, n_messages, reason)
    spec, config, info, version = _parse_meta(path, meta)
    if version is not None and version < 2:  # format 1 logged imu_quat as w,x,y,z
        for msg in messages.get("state", []):
            q = msg.get("imu_quat")
            if isinstance(q, list) and len(q) == 4:
                msg["imu_quat"] = q[1:] + q[:1]
    return LogContents(str(path), spec, config, info, messages, recovery, version, meta)


def _records(opcode: int, body: bytes, channels: dict[int, tuple[str, str]], wanted: set[str] | None,
             meta: dict[str, str]) -> tuple[int, list[tuple[str, dict]]]:
    """Decode one top-level record: (messages seen, decoded (topic, message) pairs)."""
    stream = ReadDataStream(io.BytesIO(body))
    if opcode == Opcode.METADATA:
        md = Metadata.read(stream)
        if md.name in (METADATA_NAME, CLOCK_METADATA_NAME):
            meta.update(md.metadata)
        return 0, []
    if opcode == Opcode.CHANNEL:
        ch = Channel.read(stream)
        channels[ch.id] = (ch.topic, ch.message_encoding)
        return 0, []
    if opcode == Opcode.MESSAGE:
        inner: list = [Message.read(stream, len(body))]
    elif opcode == Opcode.CHUNK:
        inner = breakup_chunk(Chunk.read(stream), validate_crc=True)
    else:
        return 0, []
    count, out = 0, []
    for rec in inner:
        if isinstance(rec, Channel):
            channels[rec.id] = (rec.topic, rec.message_encoding)
        elif isinstance(rec, Message):
            count += 1
            topic, encoding = channels.get(rec.channel_id, ("", ""))
            if encoding == "json" and (wanted is None or topic in wanted):
                msg = json.loads(rec.data)
                if not isinstance(msg, dict):
                    raise ValueError(f"message on {topic!r} is not a JSON object")
                msg.setdefault("t", (rec.log_time - int(meta.get("time_origin_unix_ns", 0))) * 1e-9)
                out.append((topic, msg))
    return count, out


def _parse_meta(path: Path, meta: dict[str, str]) -> tuple[FeatureSpec | None, dict | None, dict | None, int | None]:
    if not meta:
        return None, None, None, None
    try:
        version = int(meta.get("format_version", "0"))
        spec = FeatureSpec.from_dict(json.loads(meta["feature_spec"])) if "feature_spec" in meta else None
        config = json.loads(meta.get("config", "null"))
        info = json.loads(meta.get("info", "null"))
    except (ValueError, TypeError, KeyError) as e:
        raise LogError(f"{path}: unreadable '{METADATA_NAME}' metadata: {e}") from e
    if version > LOG_FORMAT_VERSION:
        raise LogError(f"{path}: log format {version} is newer than this legadapt reads ({LOG_FORMAT_VERSION})")
    return spec, config, info, version
