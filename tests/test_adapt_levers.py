"""The levers that make adaptation pay and stay out of the way: loss weights by target group,
θ*'s own loss in the meta-objective, the step gate, and the multi-step measure of what the planner needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from legadapt.dynamics.adaptation import Gate, GrBALAdapter, make_adapter
from legadapt.dynamics.checkpoint import load_checkpoint, save_checkpoint
from legadapt.dynamics.datasets import Trajectory
from legadapt.dynamics.evaluate import rollout_pose_error
from legadapt.dynamics.maml import MamlConfig, TaskBatch
from legadapt.dynamics.mlp import DeltaMLP, loss_weights
from legadapt.dynamics.objectives import make_objective
from legadapt.dynamics.train import target_weights
from legadapt import config as C
from legadapt.features import make_spec, target_groups
from conftest import HEXAPOD, STATE_DIM, TARGET_DIM

SPEC = make_spec("per_side", 0.1, HEXAPOD)
A = 2


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_target_groups_cover_every_target_once():
    g = target_groups(SPEC)
    idx = sorted(i for v in g.values() for i in v)
    assert idx == list(range(SPEC.target_dim))
    names = [SPEC.target_names[i] for i in g["body"]]
    assert {"dx", "dy", "dyaw", "d_vx", "d_wz", "d_roll"} <= set(names) and not any(n.startswith("d_q_") for n in names)


def test_weighted_loss_and_checkpoint_round_trip(tmp_path):
    tc = C.parse_config({"train": {"target_weights": {"joints": 0.25}}}).train
    w = target_weights(SPEC, tc)
    torch.manual_seed(0)
    m = DeltaMLP.from_spec(SPEC, (32,), target_weights=w)
    assert np.mean(m.target_weights) == pytest.approx(1.0)
    joints = target_groups(SPEC)["joints"]
    assert m.target_weights[joints[0]] == pytest.approx(0.25 * m.target_weights[0])
    x, y = torch.randn(64, STATE_DIM + A), torch.randn(64, TARGET_DIM)
    m.fit_normalizers(x, y)
    pred = m(x).detach()
    manual = torch.mean((pred - m.out_norm.normalize(y)) ** 2 * torch.tensor(m.target_weights))
    assert float(m.loss(pred, y)) == pytest.approx(float(manual), rel=1e-6)
    save_checkpoint(tmp_path / "w.pt", m, {"feature_spec": SPEC})
    back = load_checkpoint(tmp_path / "w.pt", SPEC).model
    assert back.target_weights == pytest.approx(m.target_weights)
    with torch.no_grad():
        assert float(back.loss(back(x), y)) == pytest.approx(float(m.loss(pred, y)), rel=1e-6)
    assert loss_weights([1.0] * TARGET_DIM, TARGET_DIM) is None, "equal weights: the plain mean"
    with pytest.raises(ValueError):
        loss_weights([0.0] * TARGET_DIM, TARGET_DIM)


def test_pre_adaptation_term_is_added_to_the_meta_loss_and_trains_theta_star():
    """The objective is the post-step loss plus w × θ*'s own loss on the same future transitions,
    and its gradient reaches θ* through both terms."""
    from legadapt.dynamics.maml import meta_loss, pre_adaptation_loss
    from legadapt.dynamics.mlp import params

    S, T = 4, 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 32, S + 1, generator=g)
    y = x[..., :T] * 0.5 + torch.randn(8, 1, T, generator=g)
    b = TaskBatch(x[:, :16], y[:, :16], x[:, 16:], y[:, 16:])
    torch.manual_seed(0)
    m = DeltaMLP(S, 1, T, (16,))
    m.fit_normalizers(x.reshape(-1, S + 1), y.reshape(-1, T))
    cfg = MamlConfig(inner_lr=0.05)
    plain = float(make_objective("grbal", m, cfg)(*b).detach())
    both = make_objective("grbal", m, cfg, pre_weight=0.7)(*b)
    expected = float(meta_loss(m, params(m), cfg.inner_lr, b, cfg).detach()) + 0.7 * float(pre_adaptation_loss(m, params(m), b))
    assert plain == pytest.approx(float(meta_loss(m, params(m), cfg.inner_lr, b, cfg).detach()), rel=1e-6)
    assert float(both.detach()) == pytest.approx(expected, rel=1e-5)
    both.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


W = torch.randn(STATE_DIM + A, TARGET_DIM, generator=torch.Generator().manual_seed(9)) / (STATE_DIM + A) ** 0.5


def true_fn(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ W) * 0.1


def _gate_model() -> DeltaMLP:
    torch.manual_seed(0)
    m = DeltaMLP(STATE_DIM, A, TARGET_DIM, (64, 64))
    x = torch.randn(2000, STATE_DIM + A)
    y = true_fn(x)
    m.fit_normalizers(x, y)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(400):
        loss = m.loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m


def test_the_gate_takes_a_step_that_generalises_and_refuses_one_that_does_not():
    m = _gate_model()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, STATE_DIM + A, generator=g)
    truth = true_fn(x)
    gate = Gate(holdout=4, min_gain=0.05)
    # a real change (every target shifted by 1 sigma): a step on 12 transitions helps on the other 4
    shifted = GrBALAdapter(m, 0.05, gate=gate)
    shifted.adapt(x, truth + m.out_norm.std)
    assert not shifted.last_gated and shifted.last_loss_after < shifted.last_loss_before
    # nothing changed, only noise: the step fits the noise and does not help on unseen transitions
    noisy = GrBALAdapter(m, 0.05, gate=gate)
    ctx = noisy.adapt(x, truth + 0.3 * m.out_norm.std * torch.randn(16, TARGET_DIM, generator=g))
    assert noisy.last_gated
    assert all(torch.equal(ctx[k], v.detach()) for k, v in m.named_parameters()), "gated: θ* itself"
    ungated = GrBALAdapter(m, 0.05)
    ungated.adapt(x, truth + 0.3 * m.out_norm.std * torch.randn(16, TARGET_DIM, generator=g))
    assert not ungated.last_gated


class ReplayAdapter(make_adapter("mb", DeltaMLP(STATE_DIM, A, TARGET_DIM, (4,))).__class__):
    """An adapter that predicts the logged targets of a trajectory (plus a bias): a known answer for the measure."""

    def __init__(self, traj: Trajectory, bias: np.ndarray) -> None:
        super().__init__(DeltaMLP(STATE_DIM, A, TARGET_DIM, (4,)))
        self.traj, self.bias, self.k = traj, torch.as_tensor(bias, dtype=torch.float32), 0

    def predict(self, ctx, states, actions):
        out = torch.as_tensor(self.traj.targets[self.t0 + self.k:self.t0 + self.k + 1]) + self.bias
        self.k += 1
        return out


def test_rollout_pose_error_integrates_the_predicted_motion():
    n = 30
    rng = np.random.default_rng(0)
    states = rng.normal(size=(n + 1, STATE_DIM)).astype(np.float32)
    disp = np.tile([0.02, 0.0, 0.05], (n, 1))
    traj = Trajectory(states[:-1], rng.uniform(-1, 1, (n, A)), states[1:], disp, "c", "test")
    exact = ReplayAdapter(traj, np.zeros(TARGET_DIM))
    exact.t0 = 5
    pos, yaw = rollout_pose_error(exact, {}, traj, 5, 10, STATE_DIM)
    assert pos == pytest.approx(0.0, abs=1e-6) and yaw == pytest.approx(0.0, abs=1e-4)
    bias = np.zeros(TARGET_DIM)
    bias[STATE_DIM] = 0.01  # 1 cm too far forward every step
    biased = ReplayAdapter(traj, bias)
    biased.t0 = 5
    pos, _ = rollout_pose_error(biased, {}, traj, 5, 10, STATE_DIM)
    assert pos == pytest.approx(0.10, abs=0.01), "10 steps of 1 cm"


def test_adapt_layers_moves_only_the_last_layers_in_training_and_online(tmp_path):
    from legadapt.dynamics.maml import inner_adapt, restrict_rates
    from legadapt.dynamics.mlp import params
    from legadapt.dynamics.train import train

    torch.manual_seed(0)
    m = DeltaMLP(STATE_DIM, A, TARGET_DIM, (32, 32))
    m.fit_normalizers(torch.randn(100, STATE_DIM + A), torch.randn(100, TARGET_DIM))
    p = params(m)
    rates = restrict_rates(p, 0.05, 1)
    adapted = inner_adapt(m, p, rates, torch.randn(16, STATE_DIM + A), torch.randn(16, TARGET_DIM))
    moved = [k for k in p if not torch.equal(adapted[k], p[k])]
    assert moved == ["net.4.weight", "net.4.bias"]
    assert restrict_rates(p, 0.05, 0) == 0.05
    # meta-trained that way, the checkpoint carries it and the run-time adapter obeys it
    from tests.test_train import _tc

    logs = tmp_path / "logs"
    from legadapt.controller.collect import collect
    from legadapt.config import parse_config

    collect(parse_config({"collect": {"episodes": 2, "episode_duration": 3.0, "workers": 1, "seed": 5}}), logs, progress=False)
    out = tmp_path / "g.pt"
    train([logs], SPEC, _tc(method="grbal", adapt_layers=1, max_steps=5, eval_every=5), out, progress=False, log=lambda *a: None)
    ck = load_checkpoint(out, SPEC)
    assert ck.maml.adapt_layers == 1
    from legadapt.controller.mpc import make_adapter_from

    ad = make_adapter_from(ck, "auto")
    ctx = ad.adapt(torch.randn(16, STATE_DIM + A), torch.randn(16, TARGET_DIM))
    theta = params(ck.model)
    assert [k for k in theta if not torch.equal(ctx[k], theta[k].detach())] == ["net.4.weight", "net.4.bias"]
