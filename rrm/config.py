"""Typed run configuration: the frozen dataclasses every module below the
launchers takes, and their identity (`to_dict`, `program_key`).

Launchers and experiment files speak `ml_collections.ConfigDict` (so that
`--config.x=y` overrides work); rrm.config_parse is the boundary that checks
every field and builds these types. This module imports nothing of rrm, so
every domain module can use its types; each domain module owns its own list
of choices (envs.BACKENDS, queries.SELECTORS, feedback.SCHEDULES, ...), which
the parser reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping



class ConfigError(ValueError):
  """A configuration value is invalid or inconsistent with another one."""



# Fields that change no shape and no Python-level choice of the compiled
# program: runs that differ only in these share one program, and a sweep
# vmaps over them (rrm.sweep). The seed becomes the run's PRNG key, the
# others array leaves of the state (state.Hyper, oracle.TeacherParams).
SWEEPABLE = (
    "seed",
    "ppo.learning_rate", "ppo.entropy_cost", "ppo.discounting",
    "ppo.gae_lambda", "ppo.clipping_epsilon", "ppo.reward_scaling",
    "sac.learning_rate", "sac.alpha_learning_rate", "sac.discounting",
    "sac.reward_scaling", "sac.tau",
    "reward.learning_rate", "reward.weight_decay",
    "reward.uncertainty_penalty",
    "oracle.teacher", "oracle.beta", "oracle.gamma", "oracle.mistake",
    "oracle.skip", "oracle.equal", "oracle.forward_discount",
)


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  name: str
  backend: str
  episode_length: int
  eval_episode_length: int
  fixed_horizon: bool
  on_failure: str
  failure_reward: float
  num_envs: int
  num_eval_envs: int
  kwargs: Mapping[str, Any]
  unsafe_event: str = "auto"  # rrm.safety.EVENTS


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  unroll_length: int
  batch_size: int
  num_minibatches: int
  num_updates_per_batch: int
  learning_rate: float
  entropy_cost: float
  discounting: float
  gae_lambda: float
  clipping_epsilon: float
  reward_scaling: float
  normalize_observations: bool
  max_grad_norm: float | None
  policy_hidden_layer_sizes: tuple[int, ...]
  value_hidden_layer_sizes: tuple[int, ...]

  @property
  def unrolls_per_iteration(self) -> int:
    """Unrolls of `unroll_length` steps per env per iteration (brax's formula)."""
    return self.batch_size * self.num_minibatches


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """Which RL algorithm learns the policy (rrm.agent.ALGORITHMS)."""
  algorithm: str


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """SAC (rrm.sac); names and meaning as brax's sac.train where it has them."""
  steps_per_iteration: int  # actor steps of every env per iteration (T)
  batch_size: int  # transitions per SGD step
  grad_updates_per_step: int  # SGD steps per actor step (update-to-data)
  replay_capacity: int  # transitions the FIFO replay holds
  min_replay_size: int  # transitions of the initial policy before any SGD
  learning_rate: float  # actor and critic Adam step size
  alpha_learning_rate: float  # temperature Adam step size
  discounting: float
  reward_scaling: float
  tau: float  # target-network Polyak rate
  normalize_observations: bool
  hidden_layer_sizes: tuple[int, ...]  # actor and critic MLPs
  q_network_layer_norm: bool  # layer norm in the critics (Playground's SAC)
  # PEBBLE's unsupervised pre-training: iterations on the k-NN state-entropy
  # reward before the first label (0: none); the initial batch is asked and
  # the critic reset at the end of the last one.
  pretrain_iterations: int
  entropy_k: int  # the k of the k-NN entropy estimate


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  source: str
  input: str
  ensemble_size: int
  hidden_layer_sizes: tuple[int, ...]
  learning_rate: float
  weight_decay: float
  batch_size: int
  num_steps: int
  initial_num_steps: int
  heldout_every: int
  uncertainty_penalty: float


@dataclasses.dataclass(frozen=True)
class FeedbackConfig:
  segment_length: int
  pool_size: int
  segments_per_iteration: int
  budget: int
  initial_labels: int
  labels_per_round: int
  round_every: int
  query_selector: str
  oversample: int
  # Label schedule (see feedback.label_quotas) over `schedule_horizon`
  # iterations (resolved: num_iterations when the config leaves it None).
  schedule: str
  schedule_horizon: int
  # Labels imported from an earlier run's labels.npz ('' for none): they fill
  # the front of the label dataset before the initial batch is asked for.
  warm_start_labels: str
  # False: the imported labels count against `budget` (and replace as much
  # of the initial batch); True: they are extra, on top of the budget.
  warm_start_extra: bool
  # query_selector "recent" (QPA): candidates come from this many most
  # recently added pool segments.
  recent_segments: int = 0


@dataclasses.dataclass(frozen=True)
class OracleConfig:
  """The synthetic teacher: a B-Pref preset with its fields resolved."""
  teacher: str
  beta: float
  gamma: float
  mistake: float
  skip: float
  equal: float
  forward_discount: bool


@dataclasses.dataclass(frozen=True)
class LogConfig:
  tensorboard: bool
  print_every: int
  wandb: str = "off"  # "off" | "offline" | "online" (rrm.logging)
  wandb_project: str = "rrm"
  # Every this many iterations (and at the last), an evaluation episode of
  # each member is rendered to videos/eval_<iteration>.<video_format>
  # (rrm.video); 0: off.
  videos_every: int = 0
  video_format: str = "gif"  # "gif" | "mp4" | "webm" (rrm.video.FORMATS)


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """Feedback efficiency: labels spent until eval return >= threshold * baseline;
  the reward-hacking detector (rrm.report.reward_hacking)."""
  baseline_return: float | None  # true-reward baseline's eval return
  threshold: float  # fraction of the baseline (default 0.9)
  # Iterations per detector window (0: off), and the Mann-Kendall trend
  # the learned return must reach (and the true return fall below minus).
  hacking_window: int = 0
  hacking_threshold: float = 0.6
  # What the detector reads: "episode" returns or "step" rewards of the
  # training rollouts (rrm.report.SIGNALS).
  hacking_signal: str = "episode"
  # The true-reward baseline's final eval return per reward component
  # (("reward_forward", 950.0), ...), for the reward-result gap per aspect.
  baseline_aspects: tuple[tuple[str, float], ...] = ()
  # report.md and its PNG figures beside report.json (rrm.certificate).
  certificate: bool = True
  # EPIC distance of learned and true reward on each iteration's rollout
  # (rrm.diagnostics.epic_metrics; envs that declare their true reward as a
  # function of transitions): transitions compared (0: off), samples of the
  # canonicalisation's state and action distributions.
  epic_transitions: int = 256
  epic_states: int = 16
  epic_actions: int = 8




@dataclasses.dataclass(frozen=True)
class RecursiveConfig:
  """Recursive reward modeling (rrm.recursive): who labels the root task.

  user: "none" (the plain loop), or with a task tree over the env's reward
  components: "limited" (the unassisted user, perceiving only `visible`,
  rationality beta / n^decay), "assisted" (helpers' assessments, each
  helper a reward model learned from labels on its node), "full_view" (a
  teacher that perceives every aspect: the upper bound).
  """
  user: str
  tree: str  # the task tree as canonical JSON ('' without one)
  visible: tuple[str, ...]  # aspects the limited user perceives
  decay: float  # limited user: beta_eff = beta / n^decay
  # assisted: share of the label budget of each level of the tree, root
  # first (fixed split; rrm.recursive.node_budgets).
  level_fractions: tuple[float, ...]
  # assisted: "learned" helpers (reward models) or "perfect" ones (the true
  # node values: an ablation that isolates the user's combination).
  helpers: str

  @property
  def enabled(self) -> bool:
    return self.user != "none"


@dataclasses.dataclass(frozen=True)
class SafetyConfig:
  """The user's unacceptable flag on segments, the safety classifier it
  trains and the penalty RL pays for predicted unsafe steps (rrm.flags)."""
  flags: int  # flags the user gives over the run (0: none, the section off)
  flag_cost: float  # units of feedback.budget one flag costs
  flags_per_round: int  # flags asked at each label round
  mistake: float  # probability the synthetic teacher's flag is wrong
  penalty: float  # lambda: RL maximises r - lambda * P(step unsafe)
  hidden_layer_sizes: tuple[int, ...]  # the classifier's MLP
  learning_rate: float
  batch_size: int  # flagged segments per SGD step
  num_steps: int  # SGD steps after each round of flags

  @property
  def budget_units(self) -> int:
    """Units of feedback.budget the flags take (rounded up)."""
    return math.ceil(self.flags * self.flag_cost - 1e-9)


@dataclasses.dataclass(frozen=True)
class RatingsConfig:
  """The user's scalar ratings of single segments (rrm.ratings)."""
  ratings: int  # ratings the user gives over the run (0: the section off)
  rating_cost: float  # units of feedback.budget one rating costs
  initial: int  # ratings asked before the first iteration
  per_round: int  # ratings asked at each label round after that
  levels: int  # K: the scale is 1..K
  noise: float  # the synthetic teacher's noise, in rating units (std)
  headroom: float  # the teacher's scale spans headroom x the initial spread
  weight: float  # the ordinal loss's weight beside the Bradley-Terry loss
  learning_rate: float  # Adam on the learner's thresholds and slope
  batch_size: int  # ratings per member per reward-model step
  selector: str = "uniform"  # rrm.ratings.SELECTORS: which segments are rated

  @property
  def budget_units(self) -> int:
    """Units of feedback.budget the ratings take (rounded up)."""
    return math.ceil(self.ratings * self.rating_cost - 1e-9)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one run needs; derived sizes are properties."""

  seed: int
  num_iterations: int
  eval_every: int
  checkpoint_every: int
  keep_checkpoints: int
  env: EnvConfig
  ppo: PPOConfig
  reward: RewardConfig
  feedback: FeedbackConfig
  oracle: OracleConfig
  log: LogConfig
  report: ReportConfig
  recursive: RecursiveConfig
  rl: RLConfig = RLConfig(algorithm="ppo")
  sac: SACConfig | None = None  # with rl.algorithm = "sac" only
  safety: SafetyConfig | None = None  # with safety.flags > 0 only
  ratings: RatingsConfig | None = None  # with ratings.ratings > 0 only

  @property
  def steps_per_env_per_iteration(self) -> int:
    """Env steps each of the `num_envs` envs takes in one iteration: T."""
    if self.rl.algorithm == "sac":
      return self.sac.steps_per_iteration
    return (self.ppo.batch_size * self.ppo.num_minibatches
            // self.env.num_envs) * self.ppo.unroll_length

  @property
  def env_steps_per_iteration(self) -> int:
    return self.steps_per_env_per_iteration * self.env.num_envs

  @property
  def learned_reward(self) -> bool:
    return self.reward.source == "learned"

  @property
  def preference_budget(self) -> int:
    """What feedback.budget leaves for preference labels once the other
    kinds are paid: unacceptable flags (safety.flags x safety.flag_cost)
    and ratings (ratings.ratings x ratings.rating_cost)."""
    units = self.safety.budget_units if self.safety is not None else 0
    if self.ratings is not None:
      units += self.ratings.budget_units
    return self.feedback.budget - units


def program_key(config: TrainConfig) -> str:
  """Equal for configs that one compiled (vmapped) program can run together.

  The config without its SWEEPABLE fields, as canonical JSON.
  """
  d = to_dict(config)
  for field in SWEEPABLE:
    *path, last = field.split(".")
    section = d
    for p in path:
      section = section.get(p) or {}
    section.pop(last, None)
  return json.dumps(d, sort_keys=True, default=str)


def to_dict(config: TrainConfig) -> dict[str, Any]:
  """A JSON-serialisable dict of the typed config (for config.json)."""
  d = dataclasses.asdict(config)
  d["oracle"]["beta"] = (
      "inf" if math.isinf(config.oracle.beta) else config.oracle.beta)
  return d
