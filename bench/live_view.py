"""What the Foxglove channels and the live view cost the control loop.

Runs the daemon on the simulated hexapod in realtime (the shipped default config: model, planner, rates)
``--repeats`` times in each of three set-ups, interleaved so that a change in the machine's load hits all three:

* ``json only``: ``controller.foxglove_scene: false`` (the log as it was before the Foxglove channels);
* ``scene``: the default: the Foxglove channels derived on the log's writer thread;
* ``scene + live``: also ``--live``, with a Foxglove-protocol client (another process) subscribed to every
  channel for the whole run.

Prints, per set-up, the median over runs of each run's median adapt+plan time (the slow cycle) and of its p99,
the missed control periods, and the ratios to ``json only``. On a shared VM the run-to-run spread of one set-up
can exceed the differences between set-ups, so it also prints the work itself: the writer thread's time to
derive the Foxglove channels and to hand every message to the live view's server, per second of run (replayed
from the last run's log, median of 5 passes), against the 1000 ms of a core in that second.

Usage: ``python bench/live_view.py [--repeats 3] [--duration 8]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from mcap.reader import make_reader

SETUPS = ("json only", "scene", "scene + live")


def client(url: str) -> None:
    """Subscribe to every channel of the live view and drain it until the server goes away."""
    from websockets.sync.client import connect

    with connect(url, subprotocols=["foxglove.websocket.v1", "foxglove.sdk.v1"], open_timeout=30) as ws:
        subscribed, n = False, 0
        try:
            while True:
                frame = ws.recv(timeout=30)
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    if msg["op"] == "advertise" and not subscribed:
                        ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                            {"id": i, "channelId": c["id"]} for i, c in enumerate(msg["channels"], 1)]}))
                        subscribed = True
                else:
                    n += 1
        except Exception:  # noqa: BLE001 - the daemon ended
            pass
    print(f"client received {n} messages")


def run_once(setup: str, tmp: Path, duration: float, index: int) -> dict:
    cfg = tmp / f"{index}.yaml"
    cfg.write_text(yaml.safe_dump({"controller": {"mode": "realtime", "foxglove_scene": setup != "json only",
                                                  "preflight_margin": 5.0}, "task": {"duration": duration}}))
    log = tmp / f"{index}.mcap"
    cmd = [sys.executable, "-m", "legadapt.controller.cli", "run", "--config", str(cfg), "--log", str(log)]
    if setup == "scene + live":
        cmd += ["--live", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = None
    for line in proc.stdout:
        m = re.search(r"live view: (ws://\S+)", line)
        if m:
            watcher = subprocess.Popen([sys.executable, __file__, "--client", m.group(1)], stdout=subprocess.PIPE, text=True)
            break
    proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"{setup}: the run failed")
    received = watcher.communicate(timeout=60)[0].strip() if watcher else ""
    with open(log, "rb") as f:
        timing = [json.loads(m.data) for _, _, m in make_reader(f).iter_messages(topics=["timing"])][2:]
    cycles = np.array([t["cycle"] for t in timing])
    return {"median": float(np.median(cycles)), "p99": float(np.percentile(cycles, 99)),
            "missed_periods": timing[-1].get("missed_periods", 0), "client": received}


def writer_work(log_path: Path) -> tuple[float, float, int]:
    """(derive ms, publish ms) per second of run for the messages of ``log_path``, and the messages published."""
    import time

    from legadapt.config import parse_config
    from legadapt.controller.foxglove_view import FoxgloveView
    from legadapt.controller.live_view import LiveView
    from legadapt.mcap_log import JSON_CHANNELS
    from legadapt.mcap_read import read_log
    from legadapt.paths import task_path

    log = read_log(log_path)
    cfg = parse_config(log.config, str(log_path))
    view = FoxgloveView(cfg.robot_description, task_path(cfg.task).points)
    order = sorted(((m["t"], ch, {k: np.asarray(v) if isinstance(v, list) else v for k, v in m.items()})
                    for ch, msgs in log.messages.items() for m in msgs), key=lambda x: x[0])
    span = order[-1][0] - order[0][0]
    derive, publish = [], []
    live = LiveView(port=0)
    live.open(JSON_CHANNELS + view.channels)
    for _ in range(5):
        t0 = time.perf_counter()
        derived = [(ch, list(view.derive(ch, 0, m))) for _, ch, m in order]
        t1 = time.perf_counter()
        n = 0
        for ch, extra in derived:
            live.publish(ch, 0, b"{}")
            for topic, data in extra:
                live.publish(topic, 0, data)
            n += 1 + len(extra)
        derive.append(t1 - t0)
        publish.append(time.perf_counter() - t1)
    live.close()
    return 1e3 * statistics.median(derive) / span, 1e3 * statistics.median(publish) / span, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0, help="s of walking per run")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client(args.client)
    results: dict[str, list[dict]] = {s: [] for s in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        last_log = None
        for r in range(args.repeats):
            for i, setup in enumerate(SETUPS):
                res = run_once(setup, Path(tmp), args.duration, 10 * r + i)
                results[setup].append(res)
                last_log = Path(tmp) / f"{10 * r + i}.mcap"
                print(f"run {r + 1}/{args.repeats} {setup:13s}: adapt+plan median {1e3 * res['median']:.1f} ms, "
                      f"p99 {1e3 * res['p99']:.1f} ms, missed periods {res['missed_periods']} {res['client']}", flush=True)
        derive_ms, publish_ms, n = writer_work(last_log)
    base = statistics.median(x["median"] for x in results["json only"])
    print(f"\nmedian over {args.repeats} runs of each run's median adapt+plan (realtime, shipped config):")
    for setup in SETUPS:
        med = statistics.median(x["median"] for x in results[setup])
        p99 = statistics.median(x["p99"] for x in results[setup])
        missed = sum(x["missed_periods"] for x in results[setup])
        spread = [1e3 * x["median"] for x in results[setup]]
        print(f"  {setup:13s} {1e3 * med:6.1f} ms (x{med / base:.3f} of json only; runs {min(spread):.1f}-{max(spread):.1f} ms), "
              f"p99 {1e3 * p99:6.1f} ms, missed periods {missed}")
    print(f"writer-thread work per second of run: deriving the Foxglove channels {derive_ms:.1f} ms, handing the run's {n} messages "
          f"to the live view {publish_ms:.1f} ms ({(derive_ms + publish_ms) / 10:.2f} % of one core)")


if __name__ == "__main__":
    main()
