"""An emulated Qualisys Track Manager: the QTM RT protocol (TCP, little-endian) on loopback.

It serves what a QTM with one 6DOF body does to a client streaming 6D frames -- the greeting, ``version``,
``qtmversion``, ``getparameters 6d`` (the body list as XML), ``streamframes <frames> 6d`` and
``streamframes stop`` -- from a ``pose`` callable (the simulator's true pose), so that Qualisys's own
``qtm-rt`` client reads it in tests and ``legadapt fake-robot --mocap-port`` serves it beside the
emulated robot. Frames are captured at ``rate`` Hz on the server's clock, sent ``latency`` s later with
``noise_pos`` / ``noise_yaw``; ``drop_prob`` loses frames (the frame number still counts), :meth:`pause`
stops the cameras for a while (the body is not seen: no frames), :meth:`restart` closes everything
and listens again after a delay (QTM restarted).

Packet layout (QTM RT protocol documentation, version 1.25): an 8-byte header (size including the
header, type: 0 error, 1 command, 2 XML, 3 data), then the payload; text payloads end in a NUL. A data
packet: i64 capture time (µs), u32 frame number, u32 component count; per component u32 size, u32
type (5: 6D), then i32 body count, i16 2D drop rate, i16 out-of-sync rate, and per body 3 f32
position (mm) and 9 f32 rotation matrix, column by column (NaN: body not tracked).
"""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import time
from collections.abc import Callable

import numpy as np

from legadapt.sim.rotations import quat_to_matrix

HEADER = struct.Struct("<II")
ERROR, COMMAND, XML, DATA = 0, 1, 2, 3
COMPONENT_6D = 5
PoseFn = Callable[[], "tuple[np.ndarray, np.ndarray] | None"]  # () -> (position [3] m, quaternion w, x, y, z) or None


def packet(kind: int, payload: bytes) -> bytes:
    """One QTM RT packet."""
    return HEADER.pack(HEADER.size + len(payload), kind) + payload


def text_packet(kind: int, text: str) -> bytes:
    return packet(kind, text.encode() + b"\0")


def frame_packet(capture_us: int, number: int, bodies: list[tuple[np.ndarray, np.ndarray] | None]) -> bytes:
    """A data packet with one 6D component: per body (position [3] mm, rotation [3, 3]) or None (untracked)."""
    body_data = b""
    for body in bodies:
        pos, rot = body if body is not None else (np.full(3, np.nan), np.full((3, 3), np.nan))
        body_data += struct.pack("<3f", *pos) + struct.pack("<9f", *np.asarray(rot).T.reshape(9))
    component = struct.pack("<ihh", len(bodies), 0, 0) + body_data
    return packet(DATA, struct.pack("<qII", capture_us, number, 1) + struct.pack("<II", 8 + len(component), COMPONENT_6D) + component)


def parameters_xml(body: str) -> str:
    """The ``getparameters 6d`` answer for one body."""
    return (f'<QTM_Parameters_Ver_1.25><The_6D><Bodies>1</Bodies><Body><Name>{body}</Name><Enabled>true</Enabled>'
            f'<Color R="255" G="0" B="0"/><MaximumResidual>10</MaximumResidual><MinimumMarkersInBody>3'
            f'</MinimumMarkersInBody></Body></The_6D></QTM_Parameters_Ver_1.25>')


class EmulatedQtm:
    """The server, in its own thread and asyncio loop."""

    def __init__(self, pose: PoseFn, body: str = "hexapod", port: int = 0, rate: float = 100.0, latency: float = 0.01,
                 noise_pos: float = 0.0, noise_yaw: float = 0.0, drop_prob: float = 0.0, seed: int = 0,
                 origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """``origin``: the mocap frame in the world the ``pose`` callable gives: x (m), y (m), yaw (deg)."""
        self.pose, self.body, self.port = pose, body, port
        self.rate, self.latency, self.noise_pos, self.noise_yaw, self.drop_prob = rate, latency, noise_pos, noise_yaw, drop_prob
        self.origin = origin
        self.frames_sent = 0
        self._rng = np.random.default_rng(seed)
        self._t0 = time.monotonic()
        self._paused_until = 0.0
        self._number = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="qtm-emulator", daemon=True)

    def start(self) -> EmulatedQtm:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(timeout=5)

    def pause(self, seconds: float) -> None:
        """The cameras lose the body for ``seconds``: no frames."""
        self._paused_until = time.monotonic() + seconds

    def restart(self, down: float = 0.5) -> None:
        """QTM restarts: every connection closed, nothing listening for ``down`` s, then listening again
        (returns at once)."""
        asyncio.run_coroutine_threadsafe(self._restart(down), self._loop)

    # ------------------------------------------------------------ server
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._listen())
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for w in list(self._writers):
            w.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop.stop()

    async def _restart(self, down: float) -> None:
        self._server.close()
        for w in list(self._writers):
            w.close()
        await asyncio.sleep(down)
        await self._listen()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        writer.write(text_packet(COMMAND, "QTM RT Interface connected"))
        streaming: asyncio.Task | None = None
        try:
            while True:
                size, kind = HEADER.unpack(await reader.readexactly(HEADER.size))
                text = (await reader.readexactly(size - HEADER.size)).rstrip(b"\0").decode(errors="replace").strip()
                words = text.lower().split()
                if kind != COMMAND or not words:
                    writer.write(text_packet(ERROR, "Parse error"))
                elif words[0] == "version":
                    writer.write(text_packet(COMMAND, f"Version set to {words[1] if len(words) > 1 else '1.25'}"))
                elif words[0] == "qtmversion":
                    writer.write(text_packet(COMMAND, "QTM Version is 2024.2 (legadapt emulator)"))
                elif words[0] == "getparameters":
                    writer.write(text_packet(XML, parameters_xml(self.body)))
                elif words[:2] == ["streamframes", "stop"]:
                    if streaming is not None:
                        streaming.cancel()
                elif words[0] == "streamframes" and "6d" in words:
                    streaming = streaming or asyncio.ensure_future(self._stream(writer))
                else:
                    writer.write(text_packet(ERROR, f"Command not supported by the emulator: {text}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if streaming is not None:
                streaming.cancel()
            self._writers.discard(writer)
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        period = 1.0 / self.rate
        next_t = time.monotonic()
        while not writer.is_closing():
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            self._number += 1
            if time.monotonic() < self._paused_until or self._rng.random() < self.drop_prob:
                continue
            data = frame_packet(int((time.monotonic() - self._t0) * 1e6), self._number, [self._measure()])
            self._loop.call_later(self.latency, self._send, writer, data)

    def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)
            self.frames_sent += 1

    def _measure(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The body's pose in the mocap frame, noisy: (position [3] mm, rotation [3, 3])."""
        pose = self.pose()
        if pose is None:
            return None
        pos, quat = pose
        ox, oy, oyaw = self.origin[0], self.origin[1], math.radians(self.origin[2])
        c, s = math.cos(oyaw), math.sin(oyaw)
        to_mocap = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> mocap frame
        p = to_mocap @ (np.asarray(pos, float) - [ox, oy, 0.0]) + self._rng.standard_normal(3) * self.noise_pos
        dyaw = self._rng.standard_normal() * self.noise_yaw
        noise = np.array([[math.cos(dyaw), -math.sin(dyaw), 0.0], [math.sin(dyaw), math.cos(dyaw), 0.0], [0.0, 0.0, 1.0]])
        return p * 1000.0, noise @ to_mocap @ quat_to_matrix(quat)
