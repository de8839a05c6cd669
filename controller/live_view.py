"""The live view: every channel of the run's log, served over Foxglove's WebSocket protocol.

``legadapt run --live`` (or ``controller.live.enabled``) starts a ``foxglove-sdk`` WebSocket
server (subprotocol ``foxglove.websocket.v1``); open Foxglove, "Open connection", and give it
``ws://HOST:PORT``. A :class:`LiveView` is a :class:`~legadapt.mcap_log.LogMirror` of the log
writer: it advertises the log's channels (the JSON ones and the Foxglove scene of
:mod:`legadapt.controller.foxglove_view`) and hands the server each message as written to the
file, same bytes, same log time. It runs on the log's writer thread, never on the control
threads; the server sends from its own threads and drops messages for a client that cannot
keep up (``message_backlog_size``) instead of waiting for it.
"""

from __future__ import annotations

import foxglove

from legadapt.mcap_log import ChannelDef

BACKLOG = 256  # messages queued per client before the oldest are dropped


class LiveViewError(RuntimeError):
    """The live view cannot start (e.g. the port is taken)."""


class LiveView:
    """A Foxglove WebSocket server mirroring the log's channels (module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, name: str = "legadapt") -> None:
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name=name, host=host, port=port, context=self.context,
                                                message_backlog_size=BACKLOG)
        except Exception as e:  # noqa: BLE001 - the SDK raises its own error types for a bind failure
            raise LiveViewError(f"live view: cannot listen on {host}:{port} ({e}); give another port with "
                                f"--live HOST:PORT or controller.live.port (0 = any free port)") from e
        self.host, self.port = host, self.server.port
        self._channels: dict[str, foxglove.Channel] = {}
        self.published = 0

    @property
    def url(self) -> str:
        """What to give Foxglove's "Open connection" dialog."""
        return f"ws://{self.host}:{self.port}"

    def open(self, channels: tuple[ChannelDef, ...]) -> None:
        for c in channels:
            schema = foxglove.Schema(name=c.schema_name, encoding=c.schema_encoding, data=c.schema_data)
            self._channels[c.topic] = foxglove.Channel(c.topic, message_encoding=c.message_encoding, schema=schema,
                                                       context=self.context)

    def publish(self, topic: str, log_time_ns: int, data: bytes) -> None:
        self._channels[topic].log(data, log_time=log_time_ns)
        self.published += 1

    def close(self) -> None:
        """Stop serving (clients see the connection close)."""
        for ch in self._channels.values():
            ch.close()
        self.server.stop()
