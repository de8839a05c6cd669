"""The realtime two-rate loop on the simulated hexapod: missed periods are counted, not stretched;
only the fast loop gets SCHED_FIFO."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from conftest import make_config
from legadapt.controller.loop import SlowPolicy, TwoRateLoop
from legadapt.controller.state_sources import make_state_source
from legadapt.sim.sim_robot import SimRobot
from legadapt.sim.hexapod import make_gait


class _Walk(SlowPolicy):
    """Plans 'walk straight' after ``think`` s of work; notes the scheduling policy of the thread it runs on."""

    def __init__(self, think: float = 0.01) -> None:
        self.think = think
        self.policies: set[int] = set()

    def plan(self, state, pose, t, prev_action):
        self.policies.add(os.sched_getscheduler(0))
        time.sleep(self.think)
        return np.full((5, 2), 0.6)


def _run_realtime(duration: float, stalls: tuple[float, ...] = (), stall: float = 0.0):
    """A realtime run in a thread of its own (SCHED_FIFO, where granted, stays with that thread).

    The fast loop blocks for ``stall`` s once run time passes each of ``stalls`` (s).
    """
    cfg = make_config("mujoco")
    robot = SimRobot(cfg)
    robot.configure()
    robot.activate()
    gait = make_gait(robot.hexapod.desc, cfg.gait)
    policy = _Walk()
    pending, fast, walking = list(stalls), set(), []

    def on_tick(t: float, q) -> None:
        if walking and pending and t >= pending[0]:
            pending.pop(0)
            time.sleep(stall)

    loop = TwoRateLoop(robot, gait, make_state_source("privileged", gait), policy, cfg.controller.safety, 0.02, 0.1,
                       "realtime", on_cycle=lambda b: fast.add(os.sched_getscheduler(0)), on_tick=on_tick)

    def body() -> None:
        loop.start()
        walking.append(True)
        loop.run(duration)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=120)
    robot.shutdown()
    return loop, policy, fast


def test_stalls_are_counted_as_missed_control_periods_not_stretched_ones():
    """Two 0.35 s stalls of the fast loop in 4 s: the boundaries they swallow are counted as missed
    periods, and cycles + missed periods = run time × control rate (10 Hz)."""
    loop, _, _ = _run_realtime(4.0, stalls=(1.0, 2.5), stall=0.35)
    st = loop.stats
    walked = st.ended_at
    print(f"{walked:.2f} s: {st.cycles} cycles + {st.missed_periods} missed periods; {st.missed_plans} late plans, "
          f"{st.skipped_ticks} skipped ticks")
    assert st.stop_reason is None, st.stop_reason
    assert st.missed_periods >= 4, "each 0.35 s stall swallows at least 2 whole control periods"
    assert abs(st.cycles + st.missed_periods - walked * 10) <= 1.0


def _fifo_granted() -> bool:
    """Whether this machine grants SCHED_FIFO (root or CAP_SYS_NICE, an RT budget): tried in a throwaway thread."""
    granted: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            granted.append(True)
        except OSError:
            granted.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return granted[0]


@pytest.mark.skipif(not _fifo_granted(), reason="SCHED_FIFO not granted here (needs root or CAP_SYS_NICE)")
def test_only_the_fast_loop_thread_gets_sched_fifo():
    _, policy, fast = _run_realtime(1.0)
    assert fast == {os.SCHED_FIFO}, "the fast loop asks for SCHED_FIFO"
    assert policy.policies == {os.SCHED_OTHER}, "the planner thread must not inherit it"
