"""The robot's pose from a Qualisys Track Manager over the QTM RT protocol, with Qualisys's ``qtm-rt`` client.

A background thread runs the client's asyncio loop: connect, look the body up by name in the 6D
parameters, stream 6D frames; when the connection drops (QTM restarted, network gone) it connects
again every ``mocap.reconnect_interval`` s. Frames are checked (frame numbers: gaps counted as
dropped, older frames ignored; NaN pose: untracked) and queued with their host capture time;
:meth:`QualisysMocap.poll` hands them to the estimator. Nothing here ever raises into the control loop:
a lost stream is ``streaming = False`` (the daemon logs ``mocap_lost``) and the estimate carries on
from the onboard sensors. See :mod:`controller.mocap` for the clock handling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque

import numpy as np

from legadapt.config.mocap import MocapConfig
from legadapt.controller.mocap import MocapFix, MocapStats, to_world
from legadapt.robot_state import RobotState

OFFSET_DRIFT = 20e-6  # s per frame the clock-offset floor may rise: follows a QTM clock running slow


class QualisysMocap:
    """A QTM 6D stream in a background thread; ``poll`` from the control loop."""

    def __init__(self, cfg: MocapConfig) -> None:
        self.cfg = cfg
        self.stats = MocapStats()
        self.error: str | None = None  # a problem that reconnecting cannot fix (no such body)
        self._fixes: deque[MocapFix] = deque(maxlen=1000)  # stamped on the host clock
        self._last_frame: int | None = None
        self._offset = math.inf  # s, least (arrival - capture) seen
        self._last_arrival = -math.inf  # host s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mocap", daemon=True)
        logging.getLogger("qtm_rt").setLevel(logging.CRITICAL)  # its connection errors are ours to report
        self._thread.start()

    @property
    def streaming(self) -> bool:
        """A frame arrived within ``mocap.timeout`` s."""
        return time.monotonic() - self._last_arrival <= self.cfg.timeout

    def poll(self, reading: RobotState) -> list[MocapFix]:
        """Frames received since the last poll, stamped on the robot clock of ``reading``."""
        shift = reading.stamp - time.monotonic()  # robot clock - host clock, now
        out = []
        while self._fixes:
            f = self._fixes.popleft()
            out.append(MocapFix(f.stamp + shift, f.x, f.y, f.yaw))
        return out

    def wait_streaming(self, timeout: float) -> bool:
        """Block until frames flow (or ``timeout`` s): for start-up, never in the control loop."""
        deadline = time.monotonic() + timeout
        while not self.streaming and time.monotonic() < deadline and self.error is None:
            time.sleep(0.01)
        return self.streaming

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    # ------------------------------------------------------------ client thread
    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import qtm_rt

        while not self._stop.is_set() and self.error is None:
            gone = asyncio.Event()
            conn = await qtm_rt.connect(self.cfg.host, self.cfg.port, timeout=2.0, on_disconnect=lambda _=None: gone.set())
            if conn is None:
                await self._sleep(self.cfg.reconnect_interval)
                continue
            try:
                index = self._body_index(await conn.get_parameters(parameters=["6d"]))
                if index is None:
                    return
                self.stats.connects += 1
                await conn.stream_frames(components=["6d"], on_packet=lambda p: self._on_packet(p, index))
                while not self._stop.is_set() and not gone.is_set() and conn.has_transport():
                    await asyncio.sleep(0.05)
            except Exception:  # noqa: BLE001 -- any failure of a connection is a lost stream: connect again
                pass
            finally:
                if conn.has_transport():
                    conn.disconnect()
            await self._sleep(self.cfg.reconnect_interval)

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(0.02)

    def _body_index(self, xml: bytes) -> int | None:
        names = [b.findtext("Name") for b in ET.fromstring(xml).iter("Body")]
        if self.cfg.body not in names:
            self.error = (f"mocap: QTM at {self.cfg.host}:{self.cfg.port} has no 6DOF body {self.cfg.body!r}; its bodies: "
                          f"{', '.join(n for n in names if n) or 'none'} (set mocap.body)")
            return None
        return names.index(self.cfg.body)

    def _on_packet(self, packet, index: int) -> None:
        arrival = time.monotonic()
        n = packet.framenumber
        if self._last_frame is not None and n <= self._last_frame:
            self.stats.out_of_order += 1
            return
        if self._last_frame is not None:
            self.stats.dropped += n - self._last_frame - 1
        self._last_frame = n
        capture = packet.timestamp * 1e-6
        self._offset = min(self._offset + OFFSET_DRIFT, arrival - capture)
        _, bodies = packet.get_6d()
        pos, rot = bodies[index]
        if not np.all(np.isfinite([pos.x, pos.y, pos.z])):
            self.stats.untracked += 1
            return
        m = np.asarray(rot.matrix, dtype=float).reshape(3, 3).T  # QTM sends the matrix column by column
        x, y, yaw = to_world(self.cfg, pos.x / 1000.0, pos.y / 1000.0, math.atan2(m[1, 0], m[0, 0]))
        self._fixes.append(MocapFix(capture + self._offset - self.cfg.latency, x, y, yaw))
        self._last_arrival = arrival
        self.stats.frames += 1
