"""Typed run configuration, built from an ml_collections ConfigDict and validated.

Launchers and experiment files speak `ml_collections.ConfigDict` (so that
`--config.x=y` overrides work); everything below the trainer's entry takes the
frozen dataclasses defined here. `from_config_dict` is the boundary: it checks
every field and raises `ConfigError` naming the field, the bad value and what
is allowed, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Sequence

import ml_collections


class ConfigError(ValueError):
  """A configuration value is invalid or inconsistent with another one."""


REWARD_SOURCES = ("learned", "true")
REWARD_INPUTS = ("obs", "obs_action", "next_obs")
QUERY_SELECTORS = ("uniform", "disagreement", "entropy")
SCHEDULES = ("constant", "annealed", "hyperbolic", "inverse_quadratic")
ON_FAILURE = ("reset", "continue")

# Fields that change no shape and no Python-level choice of the compiled
# program: runs that differ only in these share one program, and a sweep
# vmaps over them (rrm.sweep). The seed becomes the run's PRNG key, the
# others array leaves of the state (train.Hyper, oracle.TeacherParams).
SWEEPABLE = (
    "seed",
    "ppo.learning_rate", "ppo.entropy_cost", "ppo.discounting",
    "ppo.gae_lambda", "ppo.clipping_epsilon", "ppo.reward_scaling",
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


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """Feedback efficiency: labels spent until eval return >= threshold * baseline."""
  baseline_return: float | None  # true-reward baseline's eval return
  threshold: float  # fraction of the baseline (default 0.9)


RECURSIVE_USERS = ("none", "limited", "assisted", "full_view")
HELPER_KINDS = ("learned", "perfect")


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

  @property
  def steps_per_env_per_iteration(self) -> int:
    """Env steps each of the `num_envs` envs takes in one iteration: T."""
    return (self.ppo.batch_size * self.ppo.num_minibatches
            // self.env.num_envs) * self.ppo.unroll_length

  @property
  def env_steps_per_iteration(self) -> int:
    return self.steps_per_env_per_iteration * self.env.num_envs

  @property
  def learned_reward(self) -> bool:
    return self.reward.source == "learned"


def _fail(field: str, value: Any, allowed: str) -> None:
  raise ConfigError(f"config.{field}={value!r} is invalid: {allowed}.")


def _positive_int(field: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    _fail(field, value, "must be a positive integer")
  return value


def _nonneg_int(field: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    _fail(field, value, "must be a non-negative integer")
  return value


def _positive_float(field: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    _fail(field, value, "must be a positive number")
  if not math.isfinite(value) or value <= 0:
    _fail(field, value, "must be a positive finite number")
  return float(value)


def _nonneg_float(field: str, value: Any, allow_inf: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    _fail(field, value, "must be a non-negative number")
  if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
    _fail(field, value, "must be a non-negative "
          + ("number (inf allowed)" if allow_inf else "finite number"))
  return float(value)


def _unit_interval(field: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      0.0 <= value <= 1.0):
    _fail(field, value, "must be a number in [0, 1]")
  return float(value)


def _choice(field: str, value: Any, allowed: Sequence[str]) -> str:
  if value not in allowed:
    _fail(field, value, f"allowed values are {', '.join(map(repr, allowed))}")
  return value


def _layer_sizes(field: str, value: Any) -> tuple[int, ...]:
  if isinstance(value, int) or not isinstance(value, (list, tuple)) or not value:
    _fail(field, value, "must be a non-empty sequence of positive integers")
  for v in value:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
      _fail(field, value, "must be a non-empty sequence of positive integers")
  return tuple(value)


def _section(cd: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  if name not in cd:
    raise ConfigError(f"config.{name} is missing: every run config needs it "
                      "(see experiments/configs/inverted_pendulum.py).")
  return cd[name]


def from_config_dict(cd: ml_collections.ConfigDict) -> TrainConfig:
  """Validates `cd` and returns the typed configuration.

  Raises:
    ConfigError: on the first invalid or inconsistent field, naming it.
  """
  # Imported here so that validating a config does not pull in brax's envs
  # before it is needed (and so that envs can import this module).
  from rrm import envs as rrm_envs  # pylint: disable=g-import-not-at-top

  e = _section(cd, "env")
  name = e.name
  if name not in rrm_envs.available_envs():
    _fail("env.name", name, rrm_envs.unknown_env_message(name))
  backend = _choice("env.backend", e.backend, rrm_envs.BACKENDS)
  if name in rrm_envs.playground_envs() and backend != "mjx":
    _fail("env.backend", backend,
          f"env {name!r} is a MuJoCo Playground task, which runs on MJX only: "
          "set 'mjx'")
  env = EnvConfig(
      name=name,
      backend=backend,
      episode_length=_positive_int("env.episode_length", e.episode_length),
      eval_episode_length=_positive_int("env.eval_episode_length",
                                        e.eval_episode_length),
      fixed_horizon=bool(e.fixed_horizon),
      on_failure=_choice("env.on_failure", e.on_failure, ON_FAILURE),
      failure_reward=float(e.failure_reward),
      num_envs=_positive_int("env.num_envs", e.num_envs),
      num_eval_envs=_positive_int("env.num_eval_envs", e.num_eval_envs),
      kwargs=dict(e.get("kwargs", {}) or {}),
  )
  if not math.isfinite(env.failure_reward):
    _fail("env.failure_reward", env.failure_reward, "must be finite")

  p = _section(cd, "ppo")
  ppo = PPOConfig(
      unroll_length=_positive_int("ppo.unroll_length", p.unroll_length),
      batch_size=_positive_int("ppo.batch_size", p.batch_size),
      num_minibatches=_positive_int("ppo.num_minibatches", p.num_minibatches),
      num_updates_per_batch=_positive_int("ppo.num_updates_per_batch",
                                          p.num_updates_per_batch),
      learning_rate=_positive_float("ppo.learning_rate", p.learning_rate),
      entropy_cost=_nonneg_float("ppo.entropy_cost", p.entropy_cost),
      discounting=_unit_interval("ppo.discounting", p.discounting),
      gae_lambda=_unit_interval("ppo.gae_lambda", p.gae_lambda),
      clipping_epsilon=_positive_float("ppo.clipping_epsilon",
                                       p.clipping_epsilon),
      reward_scaling=_positive_float("ppo.reward_scaling", p.reward_scaling),
      normalize_observations=bool(p.normalize_observations),
      max_grad_norm=(None if p.max_grad_norm is None else _positive_float(
          "ppo.max_grad_norm", p.max_grad_norm)),
      policy_hidden_layer_sizes=_layer_sizes("ppo.policy_hidden_layer_sizes",
                                             p.policy_hidden_layer_sizes),
      value_hidden_layer_sizes=_layer_sizes("ppo.value_hidden_layer_sizes",
                                            p.value_hidden_layer_sizes),
  )
  rollout = ppo.batch_size * ppo.num_minibatches
  if rollout % env.num_envs:
    raise ConfigError(
        f"config.ppo.batch_size * config.ppo.num_minibatches = {ppo.batch_size}"
        f" * {ppo.num_minibatches} = {rollout} must be a multiple of "
        f"config.env.num_envs={env.num_envs}: each iteration collects "
        "batch_size * num_minibatches unrolls, the same number from every env "
        "(brax's PPO layout).")

  r = _section(cd, "reward")
  reward = RewardConfig(
      source=_choice("reward.source", r.source, REWARD_SOURCES),
      input=_choice("reward.input", r.input, REWARD_INPUTS),
      ensemble_size=_positive_int("reward.ensemble_size", r.ensemble_size),
      hidden_layer_sizes=_layer_sizes("reward.hidden_layer_sizes",
                                      r.hidden_layer_sizes),
      learning_rate=_positive_float("reward.learning_rate", r.learning_rate),
      weight_decay=_nonneg_float("reward.weight_decay", r.weight_decay),
      batch_size=_positive_int("reward.batch_size", r.batch_size),
      num_steps=_positive_int("reward.num_steps", r.num_steps),
      initial_num_steps=_positive_int("reward.initial_num_steps",
                                      r.initial_num_steps),
      heldout_every=_nonneg_int("reward.heldout_every", r.heldout_every),
      uncertainty_penalty=_nonneg_float("reward.uncertainty_penalty",
                                        r.uncertainty_penalty),
  )
  if reward.heldout_every == 1:
    _fail("reward.heldout_every", 1, "0 (no held-out labels) or >= 2 (every "
          "k-th label is held out; 1 would hold out every label)")

  f = _section(cd, "feedback")
  feedback = FeedbackConfig(
      segment_length=_positive_int("feedback.segment_length", f.segment_length),
      pool_size=_positive_int("feedback.pool_size", f.pool_size),
      segments_per_iteration=_positive_int("feedback.segments_per_iteration",
                                           f.segments_per_iteration),
      budget=_positive_int("feedback.budget", f.budget),
      initial_labels=_positive_int("feedback.initial_labels", f.initial_labels),
      labels_per_round=_positive_int("feedback.labels_per_round",
                                     f.labels_per_round),
      round_every=_positive_int("feedback.round_every", f.round_every),
      query_selector=_choice("feedback.query_selector", f.query_selector,
                             QUERY_SELECTORS),
      oversample=_positive_int("feedback.oversample", f.oversample),
      schedule=_choice("feedback.schedule", f.get("schedule", "constant"),
                       SCHEDULES),
      # None resolves to num_iterations for the spreading schedules, and to
      # 0 (no horizon: rounds until the budget is spent) for constant, so
      # that a constant-rate run can be resumed with more iterations.
      schedule_horizon=(
          _positive_int("feedback.schedule_horizon", f.schedule_horizon)
          if f.get("schedule_horizon") is not None else
          0 if f.get("schedule", "constant") == "constant" else
          _positive_int("num_iterations", cd.num_iterations)),
      warm_start_labels=str(f.get("warm_start_labels", "") or ""),
      warm_start_extra=bool(f.get("warm_start_extra", False)),
  )
  o = _section(cd, "oracle")
  from rrm import oracle as rrm_oracle  # pylint: disable=g-import-not-at-top
  teacher = _choice("oracle.teacher", o.get("teacher", "oracle"),
                    tuple(rrm_oracle.PRESETS))
  fields = {"beta": float("inf"), "gamma": 1.0, "mistake": 0.0, "skip": 0.0,
            "equal": 0.0, **rrm_oracle.PRESETS[teacher]}
  for k in fields:
    if o.get(k) is not None:
      fields[k] = o.get(k)
  oracle = OracleConfig(
      teacher=teacher,
      beta=_nonneg_float("oracle.beta", fields["beta"], allow_inf=True),
      gamma=_unit_interval("oracle.gamma", fields["gamma"]),
      mistake=_unit_interval("oracle.mistake", fields["mistake"]),
      skip=_nonneg_float("oracle.skip", fields["skip"]),
      equal=_nonneg_float("oracle.equal", fields["equal"]),
      forward_discount=bool(o.get("forward_discount", False)),
  )
  lg = cd.get("log", ml_collections.ConfigDict(
      {"tensorboard": False, "print_every": 1}))
  log = LogConfig(tensorboard=bool(lg.tensorboard),
                  print_every=_positive_int("log.print_every", lg.print_every))
  rp = cd.get("report", ml_collections.ConfigDict(
      {"baseline_return": None, "threshold": 0.9}))
  baseline = rp.get("baseline_return")
  if baseline is not None and (isinstance(baseline, bool) or not isinstance(
      baseline, (int, float)) or not math.isfinite(baseline)):
    _fail("report.baseline_return", baseline, "must be a finite number or None")
  threshold = _unit_interval("report.threshold", rp.get("threshold", 0.9))
  if threshold == 0.0:
    _fail("report.threshold", threshold, "must be in (0, 1]")
  report = ReportConfig(
      baseline_return=None if baseline is None else float(baseline),
      threshold=threshold)

  recursive = _recursive_config(cd, env)

  config = TrainConfig(
      seed=_nonneg_int("seed", cd.seed),
      num_iterations=_positive_int("num_iterations", cd.num_iterations),
      eval_every=_positive_int("eval_every", cd.eval_every),
      checkpoint_every=_nonneg_int("checkpoint_every", cd.checkpoint_every),
      keep_checkpoints=_positive_int("keep_checkpoints", cd.keep_checkpoints),
      env=env, ppo=ppo, reward=reward, feedback=feedback, oracle=oracle,
      log=log, report=report, recursive=recursive)
  _check_consistency(config)
  return config


def _plain(x: Any) -> Any:
  """ConfigDicts, dicts, lists and tuples as plain JSON-able values."""
  if isinstance(x, ml_collections.ConfigDict):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {str(k): _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


def _recursive_config(cd: ml_collections.ConfigDict,
                      env: EnvConfig) -> RecursiveConfig:
  """The recursive section, its tree checked against the env's components."""
  rc = cd.get("recursive")
  if rc is None:
    return RecursiveConfig(user="none", tree="", visible=(), decay=0.0,
                           level_fractions=(), helpers="learned")
  user = _choice("recursive.user", rc.get("user", "none"), RECURSIVE_USERS)
  decay = _nonneg_float("recursive.decay", rc.get("decay", 0.0))
  helpers = _choice("recursive.helpers", rc.get("helpers", "learned"),
                    HELPER_KINDS)
  visible = rc.get("visible") or ()
  if isinstance(visible, str):
    visible = (visible,)
  visible = tuple(visible)
  fractions = rc.get("level_fractions") or ()
  if isinstance(fractions, (int, float)):
    fractions = (fractions,)
  fractions = tuple(float(f) for f in fractions)
  spec = rc.get("tree")
  if user == "none":
    return RecursiveConfig(user=user, tree="", visible=visible, decay=decay,
                           level_fractions=fractions, helpers=helpers)
  from rrm import envs as rrm_envs  # pylint: disable=g-import-not-at-top
  from rrm import recursive as rrm_recursive  # pylint: disable=g-import-not-at-top
  if not spec:
    _fail("recursive.tree", spec, f"recursive.user={user!r} needs a task tree "
          "(nested dicts: name, weight, aspect | children)")
  if isinstance(spec, str):
    try:
      spec = json.loads(spec)
    except json.JSONDecodeError as e:
      _fail("recursive.tree", spec, f"not valid JSON ({e})")
  spec = _plain(spec)
  try:
    tree = rrm_recursive.parse_tree(spec, "config.recursive.tree")
    rrm_recursive.validate(tree, rrm_envs.reward_components(env))
    if user == "limited":
      rrm_recursive.make_limited_user(rrm_recursive.aspect_names(tree),
                                      visible, decay)
    if user == "assisted":
      rrm_recursive.node_budgets(tree, 1, fractions)  # one per level, valid
  except rrm_recursive.TreeError as e:
    raise ConfigError(f"config.recursive: {e}") from e
  if (env.fixed_horizon and env.on_failure == "reset"
      and env.name in rrm_envs.NO_TERMINATION_ENVS):
    _fail("env.on_failure", "reset",
          f"a task tree needs the env's reward to be the sum of its "
          f"components; with on_failure='reset' the failure steps of "
          f"{env.name!r} pay env.failure_reward instead. Set 'continue' "
          "(the env then pays its healthy bonus only while healthy)")
  return RecursiveConfig(
      user=user, tree=json.dumps(spec, sort_keys=True), visible=visible,
      decay=decay, level_fractions=fractions, helpers=helpers)


def _check_consistency(config: TrainConfig) -> None:
  """Cross-field checks: the ones no single field can make."""
  fb, env = config.feedback, config.env
  t = config.steps_per_env_per_iteration
  if fb.segment_length > env.episode_length:
    raise ConfigError(
        f"config.feedback.segment_length={fb.segment_length} is longer than "
        f"config.env.episode_length={env.episode_length}: segments never "
        "straddle an episode boundary, so they must fit in one episode.")
  if fb.segment_length > t:
    raise ConfigError(
        f"config.feedback.segment_length={fb.segment_length} is longer than "
        f"the {t} steps each env takes per iteration (batch_size * "
        "num_minibatches / num_envs * unroll_length): segments are cut from "
        "one iteration's rollout.")
  segments = (t // fb.segment_length) * env.num_envs
  if fb.segments_per_iteration > segments:
    raise ConfigError(
        f"config.feedback.segments_per_iteration={fb.segments_per_iteration} "
        f"exceeds the {segments} segments one iteration's rollout holds "
        f"({t // fb.segment_length} per env x {env.num_envs} envs).")
  if fb.segments_per_iteration > fb.pool_size:
    raise ConfigError(
        f"config.feedback.segments_per_iteration={fb.segments_per_iteration} "
        f"exceeds config.feedback.pool_size={fb.pool_size}.")
  if fb.pool_size < 2:
    _fail("feedback.pool_size", fb.pool_size,
          "must be >= 2: a query compares two segments")
  if not config.learned_reward and config.recursive.enabled:
    raise ConfigError(
        f"config.recursive.user={config.recursive.user!r} with "
        "config.reward.source='true': recursive reward modeling trains the "
        "root's reward model from labels; use reward.source='learned' (or "
        "recursive.user='none' for the true-reward baseline)")
  if not config.learned_reward:
    if fb.warm_start_labels:
      raise ConfigError(
          f"config.feedback.warm_start_labels={fb.warm_start_labels!r} with "
          "config.reward.source='true': a true-reward run has no reward model "
          "to warm-start.")
    return
  if fb.initial_labels > fb.budget:
    raise ConfigError(
        f"config.feedback.budget={fb.budget} is smaller than "
        f"config.feedback.initial_labels={fb.initial_labels}: the initial "
        "batch is paid from the budget.")
  heldout = config.reward.heldout_every
  if heldout and fb.initial_labels < heldout:
    raise ConfigError(
        f"config.feedback.initial_labels={fb.initial_labels} is smaller than "
        f"config.reward.heldout_every={heldout}: the initial batch would "
        "leave no held-out label to measure accuracy on.")


def program_key(config: TrainConfig) -> str:
  """Equal for configs that one compiled (vmapped) program can run together.

  The config without its SWEEPABLE fields, as canonical JSON.
  """
  d = to_dict(config)
  for field in SWEEPABLE:
    *path, last = field.split(".")
    section = d
    for p in path:
      section = section[p]
    section.pop(last)
  return json.dumps(d, sort_keys=True, default=str)


def to_dict(config: TrainConfig) -> dict[str, Any]:
  """A JSON-serialisable dict of the typed config (for config.json)."""
  d = dataclasses.asdict(config)
  d["oracle"]["beta"] = (
      "inf" if math.isinf(config.oracle.beta) else config.oracle.beta)
  return d
