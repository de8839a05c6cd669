"""Sections of the three jobs: collection, training, and the controller daemon."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from legadapt.config.base import SEED_MAX, PathName, StateSourceName, _Section
from legadapt.config.perturbations import Perturbation
from legadapt.config.vary import Draw, check_vary


class ConditionSpec(_Section):
    """One condition of the collection distribution: a named set of perturbations, some fields drawn per episode."""

    name: str = Field(min_length=1, description="Label of the condition (used in logs and reports).")
    weight: float = Field(1.0, gt=0, le=1e6, description="Relative probability of drawing this condition for an episode.")
    perturbations: list[Perturbation] = Field(default_factory=list, description="Perturbations, each with its start time.")
    vary: dict[str, Draw] = Field(default_factory=dict, description=(
        "Fields drawn per episode: '<perturbation index>.<field>[.<component>]' (comma-separated keys share one draw) "
        "-> {uniform: [lo, hi]} or {choice: [values]}; see legadapt/config/vary.py."))

    @model_validator(mode="after")
    def _vary_fields_exist(self) -> "ConditionSpec":
        check_vary(self.perturbations, self.vary)
        return self


class RandomPolicyConfig(_Section):
    """Random gait actions for the first round of data collection."""

    change_prob: float = Field(0.3, ge=0, le=1, description="Probability per control period of drawing a new target action.")
    smoothing: float = Field(0.5, ge=0, lt=1, description="Low-pass factor towards the target action per control period.")


class CollectConfig(_Section):
    """``legadapt collect``: simulated experience across a distribution of conditions."""

    @model_validator(mode="after")
    def _mpc_needs_a_model(self) -> "CollectConfig":
        if self.policy == "mpc" and not self.model:
            raise ValueError("policy 'mpc' plans with a model: set collect.model to a checkpoint")
        return self

    episodes: int = Field(64, ge=1, le=100000, description="Episodes in the whole collection (all shards together).")
    episode_duration: float = Field(15.0, gt=1, le=600, description="Length of one episode, s (cut short by a fall).")
    workers: int = Field(2, ge=1, le=256, description="Parallel worker processes per shard.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the episode list; episode i is reproducible on any shard layout.")
    state_source: StateSourceName = Field(
        "privileged", description="Model state from the simulator's true state or from onboard-sensor estimation.")
    policy: Literal["random", "mpc"] = Field(
        "random", description="random gait actions (first round), or the adaptive MPC on a model (data aggregation).")
    model: str | None = Field(None, description="Checkpoint the mpc policy plans with (required for policy: mpc).")
    paths: list[PathName] = Field(
        default_factory=lambda: ["straight", "left_turn", "right_turn", "zigzag", "figure8"], min_length=1,
        description="Paths the mpc policy follows, one drawn per episode.")
    random_policy: RandomPolicyConfig = Field(default_factory=RandomPolicyConfig, description="Random action policy.")
    conditions: list[ConditionSpec] = Field(
        default_factory=lambda: [ConditionSpec(name="intact")], min_length=1, description="Conditions drawn per episode.")


class GroupWeights(_Section):
    """Loss weight of each group of prediction targets (legadapt.features.target_groups)."""

    body: float = Field(1.0, ge=0, le=100, description="Attitude, body velocities and displacement (dx, dy, dyaw).")
    phase: float = Field(1.0, ge=0, le=100, description="Gait phase (sin, cos).")
    joints: float = Field(1.0, ge=0, le=100, description="Joint angles.")

    @model_validator(mode="after")
    def _not_all_zero(self) -> "GroupWeights":
        if self.body + self.phase + self.joints <= 0:
            raise ValueError("at least one target group needs a positive weight")
        return self


class TrainConfig(_Section):
    """``legadapt train``: offline (meta-)training of the dynamics model from logs."""

    method: Literal["grbal", "mb", "rebal", "pearl", "attention"] = Field(
        "grbal", description=("grbal = MAML meta-training; mb = plain supervised (also the MB+DE model); rebal = recurrent "
                              "context; pearl = probabilistic permutation-invariant context; attention = attention over the window."))
    hidden: list[Annotated[int, Field(ge=4, le=4096)]] = Field(
        default_factory=lambda: [512, 512, 512], min_length=1, max_length=8, description="Hidden layer widths of the MLP.")
    M: int = Field(16, ge=1, le=512, description="Past transitions adapted on (the online window).")
    K: int = Field(16, ge=1, le=512, description="Future transitions the adapted model is scored on.")
    inner_lr: float = Field(0.01, gt=0, le=1, description="Inner (online) gradient step size on the normalised loss.")
    inner_steps: int = Field(1, ge=1, le=10, description="Inner gradient steps.")
    first_order: bool = Field(False, description="First-order MAML (drop second-order terms).")
    learn_inner_lr: bool = Field(False, description="Learn a per-parameter inner learning rate (Meta-SGD).")
    adapt_layers: int = Field(0, ge=0, le=8, description="The online step moves only the last N layers of the MLP (meta-trained so); 0 = every layer.")
    meta_batch: int = Field(10, ge=1, le=1024, description="Tasks per meta-step (per process under torchrun).")
    batch_size: int = Field(256, ge=1, le=65536, description="Transitions per step for mb training.")
    lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate.")
    max_steps: int = Field(3000, ge=1, le=10_000_000, description="Upper bound on optimiser steps.")
    eval_every: int = Field(100, ge=1, description="Steps between validation evaluations (and resume checkpoints).")
    patience: int = Field(8, ge=1, description="Evaluations without validation improvement before early stopping.")
    val_fraction: float = Field(0.15, gt=0, lt=0.9, description="Share of trajectories held out for validation.")
    val_tasks: int = Field(200, ge=10, le=100000, description="Fixed validation tasks drawn once.")
    grad_clip: float = Field(10.0, gt=0, le=1e6, description="Gradient-norm clip of every update.")
    rebal_hidden: int = Field(128, ge=4, le=4096, description="Context size of the context methods (ReBAL's GRU, PEARL's latent, attention's width).")
    target_weights: GroupWeights = Field(default_factory=lambda: GroupWeights(), description=(
        "Loss weight per target group (mean-normalised over the targets): what the inner step and the "
        "outer loss care about. body = attitude, velocities and displacement (what the planner integrates)."))
    pre_adaptation_weight: float = Field(0.0, ge=0, le=10, description=(
        "grbal: weight of θ*'s own (pre-adaptation) loss beside the post-adaptation loss, so that θ* is a good model "
        "where nothing needs adapting."))
    kl_weight: float = Field(0.001, ge=0, le=10, description=(
        "pearl: weight of the KL term (posterior vs the unit Gaussian prior); 0.1 collapsed the posterior onto the prior."))
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of initialisation and task draws.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train: auto = cuda if available.")


#: Upper bound on samples × horizon × iterations (model evaluations per control period): 40× design.md's
#: anchor, 500 × 10 = 5,000. Measured on the 2-core reference machine, 200,000 already take ~8 s per cycle (100,000 samples: 0.7 GB);
#: far beyond it the lockstep pre-flight seemed to hang, at 3+ GB.
MAX_MODEL_EVALUATIONS = 200_000


class PlannerConfig(_Section):
    """The sampling MPC planner over the adapted model."""

    kind: Literal["mppi", "cem", "icem", "random_shooting"] = Field("mppi", description="Planner.")
    samples: int = Field(256, ge=4, le=100000, description=(
        "Candidate action sequences per iteration. 256 with coloured noise planned as well as 500 in closed loop "
        "(README, 'Fewer samples') at about 0.6× the cycle time."))
    horizon: int = Field(10, ge=1, le=200, description="Planning horizon, control periods.")
    iterations: int = Field(1, ge=1, le=50, description="Optimiser iterations per cycle (CEM refits, MPPI updates).")
    temperature: float = Field(0.3, gt=0, le=1e6, description="MPPI temperature, in cost units.")
    noise: float = Field(0.4, gt=0, le=2, description="MPPI noise standard deviation, action units.")
    smoothing_window: int = Field(3, ge=1, le=50, description="MPPI update smoothing over the horizon, steps.")
    update: Literal["clamped", "noise"] = Field(
        "clamped", description="MPPI: what moves the nominal sequence, the weighted offsets of the samples clamped to the "
                               "action bounds (clamped: a nominal at a bound is pulled back inside) or the weighted noise as "
                               "drawn (noise: a nominal near a bound leans on it, striding in full where the speed target asks "
                               "for less; README, 'The planner at its bounds').")
    fine_share: float = Field(0.5, ge=0, lt=1, description=(
        "MPPI: share of the samples drawn with fine_scale times the noise, so that the update settles on the cost's "
        "floor rather than on the floor of the cost smoothed by the noise (README, 'The planner's own bias')."))
    fine_scale: float = Field(0.25, gt=0, le=1, description="MPPI: the fine samples' noise relative to planner.noise.")
    elites: int = Field(50, ge=1, description="CEM elites per iteration.")
    alpha: float = Field(0.1, ge=0, lt=1, description="CEM / iCEM weight kept on the previous mean/std.")
    noise_beta: float | None = Field(None, ge=0, le=4, description="Colour of the sampling noise along the horizon, "
                                     "PSD 1/f^beta (0 white, 2 smooth): MPPI and iCEM; unset: 2.")
    keep_elites: float = Field(0.3, ge=0, le=1, description="iCEM: fraction of the elites kept for the next iteration and plan.")
    population_decay: float = Field(1.25, ge=1, le=10, description="iCEM: each iteration samples this factor fewer sequences.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Planner noise seed (deterministic runs).")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Matrix precision of the planner's model rollouts: bf16 multiplies on the CPU's matrix units "
                            "(AMX, AVX-512 BF16), costs and poses stay fp32; auto = bf16 where the CPU has them, else fp32.")

    @model_validator(mode="after")
    def _fits_a_control_cycle(self) -> "PlannerConfig":
        work = self.samples * self.horizon * self.iterations
        if work > MAX_MODEL_EVALUATIONS:
            raise ValueError(
                f"samples × horizon × iterations = {self.samples} × {self.horizon} × {self.iterations} = {work:,} model "
                f"evaluations per control period, more than the {MAX_MODEL_EVALUATIONS:,} that fit in memory and time "
                f"(500 × 10 × 1 = 5,000 takes 12-45 ms on one core of the 2-core reference machine): lower samples, horizon or iterations")
        if self.kind in ("cem", "icem") and not 2 <= self.elites <= self.samples:
            raise ValueError(f"CEM refits to 2 <= elites <= samples; got elites {self.elites}, samples {self.samples}")
        return self


class CostConfig(_Section):
    """Path-following cost: weighted squared residuals summed over the horizon."""

    cross_track: float = Field(100.0, ge=0, le=1e6, description="Weight per m² of cross-track error.")
    heading: float = Field(20.0, ge=0, le=1e6, description="Weight per rad² of heading error to the path tangent.")
    course: float = Field(30.0, ge=0, le=1e6, description=(
        "Weight of the course residual: the sideways part of each predicted step over the ground, relative to the "
        "guidance direction, per nominal step (1 ≈ 1 rad of course error at the target speed). Unlike heading, it lets "
        "the body yaw into a crab angle where it must (a cross-slope, a leg that drags it sideways); 0 = off. "
        "The default was measured against 0 and 60 (README, 'The path cost's course term')."))
    speed: float = Field(100.0, ge=0, le=1e6, description="Weight per (m/s)² of speed error along the path.")
    smoothness: float = Field(1.0, ge=0, le=1e6, description="Weight per unit² of action change between steps.")
    terminal: float = Field(5.0, ge=0, le=1e6, description="Extra factor on the last step's residuals.")
    crab_compensation: float = Field(1.0, ge=0, le=1, description=(
        "Share of the measured crab angle (the body's motion over the adaptation window, left of where it points) taken "
        "off the heading target, so that a robot pushed sideways may yaw into the angle that holds its line; 0 = off. "
        "The default was measured against 0 and 0.5 (README, 'The plain model's offset and the crab angle, measured')."))
    approach_gain: float = Field(6.0, ge=0, le=50, description=(
        "Heading target turned towards the path by atan(approach_gain · cross-track), 1/m (a line-of-sight guidance "
        "with a lookahead of 1/approach_gain m); 0 = the path tangent. The default was measured against 3 (README, "
        "'The guidance's approach gain')."))


class SafetyConfig(_Section):
    """Safety filter and safe stop."""

    max_tilt_deg: float = Field(45.0, gt=5, le=90, description="|roll| or |pitch| beyond this -> safe stop, deg.")
    stale_plan: float = Field(0.5, gt=0, le=10, description="Plan age beyond which the robot safe-stops, s.")
    joint_margin: float = Field(0.02, ge=0, le=0.3, description="Joint targets stay this far inside the limits, rad.")
    max_joint_speed: float = Field(6.0, gt=0, le=50, description="Joint target rate limit, rad/s.")
    ramp_time: float = Field(1.0, ge=0.1, le=10, description="Start-up ramp from the measured pose to standing, s.")
    stop_time: float = Field(0.4, ge=0.05, le=5, description="Safe stop: time to lower the body before torque off, s.")
    crouch_height: float = Field(0.06, ge=0.03, le=0.15, description="Foot depth below the hips in the safe low pose, m.")


class AdaptationConfig(_Section):
    """How the online step is taken at run time (GrBAL and MB+DE)."""

    gate_holdout: int = Field(0, ge=0, le=64, description=(
        "Gate: fit the step on the window without its last N transitions and take it only if it lowers the error on "
        "those N (transitions the step has not seen); 0 = always take the step."))
    gate_min_gain: float = Field(0.0, ge=0, lt=1, description="Gate: the held-back error must fall by at least this share.")
    lr_scale: float | None = Field(None, gt=0, le=10, description=(
        "Factor on the checkpoint's inner learning rate(s); unset = the checkpoint's own run-time setting (the shipped "
        "GrBAL: 0.3), else 1."))
    plain_model: str | None = Field(None, description=(
        "A plainly trained model (MB) that plans until it stops predicting the robot; the adaptive model takes over "
        "while it is surprised (dynamics/switching.py). Unset = the checkpoint's own pairing (the shipped GrBAL: "
        "models/mb.pt); 'none' = always the adaptive model."))
    surprise: float = Field(1.0, gt=0, le=100, description=(
        "Engage the adaptive model when the plain model's error on the 4 newest transitions exceeds this (normalised "
        "MSE: 1.0 = no better than predicting its training mean); released after surprise_hold s below half of it."))
    surprise_hold: float = Field(2.0, gt=0, le=60, description="Seconds the plain model must predict the window well again before it takes back over.")
    surprise_early: bool = Field(True, description=(
        "Before the window is full, engage the adaptive model on a surprise as much above the threshold as the window is "
        "short (4× on 4 transitions); false = judge only full windows."))
    offset_gain: float = Field(1.0, ge=0, le=1, description=(
        "Offset-free MPC: while the plain model plans (MB, or GrBAL's plain model before a surprise), add this share of "
        "its mean one-step error on the window to every prediction (controller/model_offset.py); 0 = off. The default "
        "was measured against 0 and 0.5 (README, 'The plain model's offset')."))
    offset_targets: Literal["displacement", "body"] = Field("displacement", description=(
        "What the plain model's offset corrects: the body displacement per period (dx, dy, dyaw), or every body target "
        "(attitude, velocities and the displacement)."))
    ensemble: list[str] = Field(default_factory=list, max_length=7, description=(
        "More checkpoints of the model's own kind (other trainings of its recipe), adapted on the same window; the planner "
        "integrates the mean of all their predictions (dynamics/ensemble.py). Empty = the model alone."))
    adaptive_offset: Literal["off", "forward", "displacement"] = Field("off", description=(
        "While a model that adapts plans (GrBAL engaged, MB+DE, the context models), what of its own remaining miss on "
        "the window the offset corrects: nothing, the forward displacement (dx), or the whole displacement. 'forward' "
        "halves GrBAL's cross-track on a limp leg for about 5 % of its distance and slows the context models "
        "(README, 'The adapted model's forward miss')."))


class LiveViewConfig(_Section):
    """The live view: the log's channels served over Foxglove's WebSocket protocol while the daemon runs."""

    enabled: bool = Field(False, description="Serve the live view (also: legadapt run --live).")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on; 0.0.0.0 to let other machines watch (no authentication: a trusted network only).")
    port: int = Field(8765, ge=0, le=65535, description="TCP port (Foxglove's default 8765); 0 = any free port, printed at start.")


class ControllerConfig(_Section):
    """``legadapt run``: the adaptive controller daemon."""

    model: str = Field("models/default.pt", description="Checkpoint of the dynamics model (relative to the repo or absolute).")
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig, description="The online step at run time.")
    adapter: Literal["auto", "grbal", "mb", "mbde", "rebal", "pearl", "attention"] = Field(
        "auto", description="Online adaptation: auto = the checkpoint's own kind; mbde = MB model + online step.")
    state_source: StateSourceName = Field(
        "estimated", description="Model state from onboard sensors (always on hardware) or the simulator's truth.")
    mode: Literal["lockstep", "realtime"] = Field("lockstep", description="Simulated time as fast as the CPU allows, or wall-clock deadlines.")
    planner: PlannerConfig = Field(default_factory=PlannerConfig, description="MPC planner.")
    cost: CostConfig = Field(default_factory=CostConfig, description="Path cost weights.")
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="Safety filter and stop.")
    log_dir: str = Field("runs/logs", description="Where the MCAP run logs go.")
    live: LiveViewConfig = Field(default_factory=LiveViewConfig, description="Live view in Foxglove (foxglove.websocket.v1).")
    foxglove_scene: bool = Field(True, description="Log the Foxglove channels (transforms, joint states, the 3D scene) beside the JSON ones; they are derived on the log's writer thread.")
    status_interval: float = Field(1.0, gt=0, le=60, description="Seconds between live status lines.")
    threads: int = Field(0, ge=0, le=256, description="torch CPU threads for adapt+plan; 0 = automatic: half the CPUs the daemon may use, 1 to 4 (on a busy or shared computer 1 is often fastest).")
    slip_threshold: float = Field(0.075, gt=0, le=10, description="Estimated state: a slip_suspected event is logged when the stance feet's yaw rate differs from the gyro's by more than this (rad/s, RMS of the per-stance means over 2 s) for 0.5 s. A fast turn's scuff (the stance feet lag a yaw above 0.3 rad/s by up to 30 % of the excess) is allowed for. Measured: <= 0.059 walking intact, median >= 0.075 with a limp leg (a foot slides or a leg no longer carries: the pose estimate drifts).")
    preflight_margin: float = Field(0.8, gt=0, le=5, description="Realtime pre-flight: refuse to start when the median adapt+plan takes more than this share of the control period. Above 1 the robot runs on late plans: for tests on a busy machine, not for robots.")
    reconnect_attempts: int = Field(5, ge=0, le=100, description="After a robot fault (port gone, bus errors): reconnection attempts.")
    reconnect_backoff: float = Field(0.5, gt=0, le=10, description="First wait before reconnecting, s; doubles per attempt (at most 8 s).")
