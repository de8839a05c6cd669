"""Adapt only when surprised: a plainly trained model plans until it stops predicting the robot.

Where nothing is wrong, the online step only adds error (the step fits the controller's own smooth
actions and noise): the plainly trained model (MB, more data, no step) plans best. Where the body
has changed beyond what that model learnt (a limp leg it never saw), its error on the last
transitions leaves its usual range by an order of magnitude, and the adaptive model takes over.

:class:`SwitchingAdapter` wraps the two behind the one :class:`~legadapt.dynamics.adaptation.Adapter`
interface. Every cycle it measures the plain model's error on the window (one forward pass over
M transitions, normalised MSE in the plain model's target space: 1.0 = no better than predicting
its training mean):

* **engage** when the mean error of the ``recent`` newest transitions exceeds ``threshold``, judged
  once the window is full (``judge_from`` transitions: a start-up window of a few transitions,
  taken while the robot stands up and sets off, is weak evidence that the body has changed);
  before that (``early``) only when it exceeds ``threshold`` by as much as the window is short
  (``threshold · judge_from / n`` on n transitions): a robot that starts with a limp leg is
  off its model by 3-4× from the first transitions;
* **release** after ``hold`` cycles in a row with the whole window's error below ``release``.

While engaged the adaptive adapter adapts and plans (GrBAL: θ* and its one step per cycle); the
plain model does not step at all. The context says which model it belongs to (``ADAPTED_KEY``),
so :meth:`predict` and :meth:`rollout_model` need no state of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from legadapt.dynamics.adaptation import Adapter, Context, MLPAdapter
from legadapt.dynamics.mlp import predict_norm

#: Context key marking the adaptive model's context (a 0-d tensor; absent = the plain model's).
ADAPTED_KEY = "switch.adapted"


@dataclass(frozen=True)
class Surprise:
    """When the adaptive model takes over from the plain one, and when it hands back.

    ``threshold``: engage when the plain model's normalised MSE over the ``recent`` newest
    transitions exceeds it. ``release``: hand back after ``hold`` cycles in a row with the
    whole window's error below it. ``judge_from``: no release, and no engagement at the plain
    threshold, on a window of fewer transitions (the adaptation window M). ``early``: on a
    shorter window of n ≥ ``recent`` transitions, engage when that error exceeds
    ``threshold · judge_from / n`` (4× the threshold on 4 transitions, 2× on 8).
    """

    threshold: float = 1.0
    recent: int = 4
    release: float = 0.5
    hold: int = 20
    judge_from: int = 16
    early: bool = True

    def __post_init__(self) -> None:
        if not (self.threshold > 0 and 0 < self.release <= self.threshold and 1 <= self.recent <= self.judge_from
                and self.hold >= 1):
            raise ValueError("Surprise: need threshold > 0, 0 < release <= threshold, 1 <= recent <= judge_from, "
                             f"hold >= 1; got {self}")


class SwitchingAdapter(Adapter):
    """The plain model's context until it is surprised, then the adaptive adapter's (see the module doc)."""

    def __init__(self, plain: MLPAdapter, adaptive: Adapter, surprise: Surprise | None = None) -> None:
        super().__init__()
        if plain.steps != 0:
            raise ValueError("SwitchingAdapter: the plain adapter must not take online steps (use MB)")
        self.plain, self.adaptive = plain, adaptive
        self.surprise = surprise or Surprise()
        self.kind = adaptive.kind
        self.engaged = False
        self.calm_cycles = 0
        self.switches = 0  # engagements and releases since the last reset
        self.last_plain_loss = math.nan  # whole-window normalised MSE of the plain model
        self.last_recent_loss = math.nan  # the same over the `recent` newest transitions

    def reset(self) -> None:
        self.plain.reset()
        self.adaptive.reset()
        self.engaged, self.calm_cycles, self.switches = False, 0, 0

    def plain_errors(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Tensor:
        """Per-transition normalised MSE [M] of the plain model on the window (x [M, S+A], y [M, T] in units)."""
        x, y = self.plain._window(window_x, window_y)
        m = self.plain.model
        with torch.no_grad():
            return m.errors(predict_norm(m, self.plain.theta_star(), x), y)

    def adapt(self, window_x: Tensor | np.ndarray, window_y: Tensor | np.ndarray) -> Context:
        err = self.plain_errors(window_x, window_y)
        if err.numel():
            self.last_plain_loss = float(err.mean())
            self.last_recent_loss = float(err[-self.surprise.recent:].mean())
            n, s = err.numel(), self.surprise
            if n >= s.judge_from or (s.early and n >= s.recent and not self.engaged):
                self._update(self.last_plain_loss, self.last_recent_loss, n)
        if not self.engaged:  # the plain model's θ*; its window loss is the one just measured (no second forward)
            loss = self.last_plain_loss if err.numel() else math.nan
            self.last_loss_before = self.last_loss_after = loss
            self.last_fallback = bool(err.numel()) and not math.isfinite(loss)
            return self.plain.theta_star()
        ctx = dict(self.adaptive.adapt(window_x, window_y))
        self.last_loss_before, self.last_loss_after, self.last_fallback = (
            self.adaptive.last_loss_before, self.adaptive.last_loss_after, self.adaptive.last_fallback)
        ctx[ADAPTED_KEY] = torch.ones(())
        return ctx

    def _update(self, window_loss: float, recent_loss: float, n: int) -> None:
        """Engage or release from this cycle's plain-model errors on a window of ``n`` transitions. Engaging takes a
        surprise as much larger than ``threshold`` as the window is shorter than ``judge_from`` (evidence that scales
        with the transitions seen; only called that early with ``early`` set and never to release). A non-finite
        error (a window with a sensor fault in it) neither engages nor counts as calm: whichever model plans keeps
        planning, on its θ*."""
        s = self.surprise
        if not self.engaged:
            if recent_loss > s.threshold * s.judge_from / min(n, s.judge_from) and math.isfinite(recent_loss):
                self.engaged, self.calm_cycles, self.switches = True, 0, self.switches + 1
            return
        self.calm_cycles = self.calm_cycles + 1 if window_loss < s.release else 0
        if self.calm_cycles >= s.hold:
            self.engaged, self.calm_cycles, self.switches = False, 0, self.switches + 1

    @property
    def plans_plainly(self) -> bool:
        return not self.engaged

    @staticmethod
    def _split(ctx: Context) -> tuple[bool, Context]:
        if ADAPTED_KEY not in ctx:
            return False, ctx
        return True, {k: v for k, v in ctx.items() if k != ADAPTED_KEY}

    def predict(self, ctx: Context, states: Tensor, actions: Tensor) -> Tensor:
        adapted, inner = self._split(ctx)
        return (self.adaptive if adapted else self.plain).predict(inner, states, actions)

    def rollout_model(self, ctx: Context, dtype: torch.dtype = torch.float32,
                      batch: int = 500) -> Callable[[Tensor, Tensor], Tensor] | None:
        adapted, inner = self._split(ctx)
        return (self.adaptive if adapted else self.plain).rollout_model(inner, dtype, batch)

    def dynamics(self, ctx: Context) -> Callable[[Tensor, Tensor], Tensor]:
        adapted, inner = self._split(ctx)
        return (self.adaptive if adapted else self.plain).dynamics(inner)
