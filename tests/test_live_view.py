"""``legadapt run --live``: a WebSocket client speaking Foxglove's protocol watches the daemon (issue 16).

The client is the ``websockets`` library speaking the protocol by hand (serverInfo, advertise, subscribe, binary
message data), as Foxglove does; the protobuf channels are decoded from the schema the server advertises
(``mcap-protobuf-support``). The server is foxglove-sdk's: it names the protocol ``foxglove.sdk.v1``, which
Foxglove documents as identical to ``foxglove.websocket.v1``; the client offers both.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap.records import Schema
from mcap_protobuf.decoder import DecoderFactory
from websockets.sync.client import connect

SUBPROTOCOLS = ["foxglove.websocket.v1", "foxglove.sdk.v1"]
WATCHED = ("/tf", "/scene/plan", "/scene/robot", "adaptation", "/joint_states")
DURATION = 6.0  # s of walking
CONTROL_RATE = 10.0  # Hz, the shipped config's
STATE_RATE = 50.0  # Hz, the servo rate


def _config(tmp: Path) -> Path:
    cfg = tmp / "live.yaml"
    cfg.write_text(yaml.safe_dump({"controller": {"planner": {"samples": 64, "horizon": 5}, "mode": "realtime",
                                                  "preflight_margin": 5.0},  # a busy CI machine must not refuse the run
                                   "task": {"duration": DURATION}}))
    return cfg


def _start(tmp: Path, name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"{name}.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(_config(tmp)),
                             "--log", str(log), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, log


def _url(proc: subprocess.Popen, lines: list[str]) -> str:
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"live view: (ws://\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError("no live view line:\n" + "".join(lines))


def _watch(url: str) -> tuple[dict[str, list[tuple[float, int, bytes]]], dict[str, dict], str, list[dict]]:
    """Subscribe to WATCHED; every message received until the server goes away: topic -> [(arrival s, log time ns,
    payload)], the channels, the subprotocol, and the server's text frames after the subscription (status,
    advertise, unadvertise: what a failure message shows). A watched topic advertised again under a new id is
    subscribed again, as a Foxglove client does."""
    got: dict[str, list] = {t: [] for t in WATCHED}
    notes: list[dict] = []
    with connect(url, subprotocols=SUBPROTOCOLS, open_timeout=20) as ws:
        chosen, channels = ws.subprotocol, {}
        while not set(WATCHED) <= set(channels):
            frame = json.loads(ws.recv(timeout=20))
            if frame["op"] == "advertise":
                channels.update({c["topic"]: c for c in frame["channels"]})
        subs = {i: topic for i, topic in enumerate(WATCHED, 1)}
        ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": i, "channelId": channels[t]["id"]} for i, t in subs.items()]}))
        try:
            while True:
                frame = ws.recv(timeout=30)
                if isinstance(frame, bytes) and frame[0] == 0x01:
                    sub, log_time = struct.unpack_from("<IQ", frame, 1)
                    got[subs[sub]].append((time.monotonic(), log_time, frame[13:]))
                elif isinstance(frame, str):
                    note = json.loads(frame)
                    notes.append(note)
                    for c in note.get("channels", []) if note["op"] == "advertise" else []:
                        if c["topic"] in WATCHED and c["id"] != channels[c["topic"]]["id"]:  # advertised again: subscribe again
                            channels[c["topic"]] = c
                            subs[len(subs) + 1] = c["topic"]
                            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": len(subs), "channelId": c["id"]}]}))
        except Exception:  # noqa: BLE001 - the daemon ended: the server closed the connection
            pass
    return got, channels, chosen, notes


def _cycle_median(log: Path) -> float:
    with open(log, "rb") as f:
        cycles = [json.loads(m.data)["cycle"] for _, c, m in make_reader(f).iter_messages(topics=["timing"])]
    return float(np.median(cycles[2:]))


def _run_plain(tmp: Path, name: str) -> float:
    proc, log = _start(tmp, name)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return _cycle_median(log)


@pytest.mark.slow
def test_a_foxglove_client_watches_pose_plan_and_loss_live_and_the_loop_does_not_notice(tmp_path) -> None:
    before = _run_plain(tmp_path, "before")
    proc, log = _start(tmp_path, "live", "--live", "127.0.0.1:0")
    lines: list[str] = []
    try:
        url = _url(proc, lines)
        got, channels, chosen, notes = _watch(url)
        lines += proc.stdout.readlines()
        assert proc.wait(timeout=60) == 0, "".join(lines)[-3000:]
    finally:
        proc.kill()
    after = _run_plain(tmp_path, "after")
    assert chosen in SUBPROTOCOLS

    counts = {t: len(v) for t, v in got.items()}
    rates = {t: (len(v) - 1) / ((v[-1][1] - v[0][1]) * 1e-9) for t, v in got.items() if len(v) > 2}
    print(f"live: {counts}; rates (Hz, by log time) {({t: round(r, 1) for t, r in rates.items()})}")
    assert counts["/scene/robot"] >= 2, "the robot's geometry is repeated for viewers who join later"
    for topic in ("/tf", "/scene/plan", "adaptation"):
        assert counts[topic] >= 0.6 * CONTROL_RATE * DURATION, (counts, [(n.get("op"), n.get("message"), [c.get("topic") for c in n.get("channels", [])]) for n in notes[-10:]])
        assert 0.7 * CONTROL_RATE <= rates[topic] <= 1.3 * CONTROL_RATE, rates
    assert 0.7 * STATE_RATE <= rates["/joint_states"] <= 1.3 * STATE_RATE, rates
    lag = [arrive - sent for arrive, sent in zip([a for a, _, _ in got["/tf"]], [n * 1e-9 for _, n, _ in got["/tf"]])]
    assert np.ptp(lag) < 2.0, "messages arrive as the robot walks, not in a burst at the end"

    decode = DecoderFactory().decoder_for
    schema = channels["/scene/plan"]
    plan = decode("protobuf", Schema(id=1, name=schema["schemaName"], encoding="protobuf", data=base64.b64decode(schema["schema"])))(got["/scene/plan"][-1][2])
    assert plan.entities[0].id == "plan" and len(plan.entities[0].lines[-1].points) == 6  # horizon 5 -> 6 poses
    losses = [json.loads(p)["loss_after"] for _, _, p in got["adaptation"]]
    assert sum(x is not None for x in losses) >= len(losses) - 2

    with open(log, "rb") as f:
        reader = make_reader(f)
        on_file = {c.topic: n for c_id, n in reader.get_summary().statistics.channel_message_counts.items()
                   for c in [reader.get_summary().channels[c_id]]}
    assert counts["/tf"] >= on_file["/tf"] - 3, "the live view sent what the file holds (a few before the subscription)"

    live = _cycle_median(log)
    print(f"adapt+plan median: {1e3 * before:.1f} ms without, {1e3 * live:.1f} ms with the live view, {1e3 * after:.1f} ms without")
    assert live <= 1.25 * max(before, after) + 0.005, "the live view slows the control cycle beyond the runs' own spread"


@pytest.mark.slow
def test_one_timeline_in_realtime_from_the_stand_up_ramp_on(tmp_path) -> None:
    """Realtime: every message, the stand-up ramp's included, lies between run time 0 and the end of the run (a
    4 s run once spanned 0-937 s: the ramp was stamped with the machine's uptime)."""
    proc, log = _start(tmp_path, "timeline")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    with open(log, "rb") as f:
        reader = make_reader(f)
        origin = int(next(m for m in reader.iter_metadata() if m.name == "legadapt.clock").metadata["time_origin_unix_ns"])
        times = {}
        for _, c, m in reader.iter_messages(log_time_order=False):
            times.setdefault(c.topic, []).append(m.log_time)
    first, last = min(min(v) for v in times.values()), max(max(v) for v in times.values())
    span = (last - origin) * 1e-9
    print(f"realtime log: first message {1e3 * (first - origin) * 1e-6:.0f} µs after run time 0, last at {span:.2f} s")
    assert first >= origin and span < DURATION + 3.0  # the ramp (1 s), the walk, the safe stop (0.4 s)
    assert all(np.all(np.diff(v) >= 0) for v in times.values())
    state = np.array(times["state"]) - origin
    assert state[0] * 1e-9 < 0.2, "the ramp is logged from its first tick"
