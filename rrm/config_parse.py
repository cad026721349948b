"""ConfigDict -> TrainConfig: every field checked before anything compiles.

`from_config_dict` is the boundary between the launchers' ml_collections
ConfigDicts and the typed configuration (rrm.config): it raises ConfigError
naming the field, the bad value and what is allowed. The lists of choices
are the domain modules' own (the algorithms' here: rrm.agent, which builds
them, imports the RL modules and brax's agents, too much for a parser).

Why one module of ~760 lines: it is the one boundary where a config is
checked, one function per section (env, ppo, sac, reward, feedback, oracle,
recursive, safety) and the cross-field checks after them; splitting the sections
into modules would scatter the messages a user reads without making any of
them shorter.
"""

from __future__ import annotations

import importlib.util
import json
import math
from typing import Any, Mapping, Sequence

import ml_collections

import rrm
from rrm import envs as rrm_envs
from rrm import feedback as rrm_feedback
from rrm import logging as rrm_logging
from rrm import oracle as rrm_oracle
from rrm import queries as rrm_queries
from rrm import ratings as rrm_ratings
from rrm import recursive as rrm_recursive
from rrm import report as rrm_report
from rrm import reward as rrm_reward
from rrm import safety as rrm_safety
from rrm import video as rrm_video
from rrm.config import ConfigError
from rrm.config import EnvConfig
from rrm.config import FeedbackConfig
from rrm.config import LogConfig
from rrm.config import OracleConfig
from rrm.config import PPOConfig
from rrm.config import RecursiveConfig
from rrm.config import ReportConfig
from rrm.config import RewardConfig
from rrm.config import RatingsConfig
from rrm.config import RLConfig
from rrm.config import SACConfig
from rrm.config import SafetyConfig
from rrm.config import TrainConfig

ALGORITHMS = ("ppo", "sac")  # rrm.agent.make_agent builds them


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


def _bool(field: str, value: Any) -> bool:
  if not isinstance(value, bool):
    _fail(field, value, "must be True or False")
  return value


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

  Sections are checked in order (env, ppo, reward, feedback, oracle, log,
  report, recursive, then the run's own fields and their consistency).

  Raises:
    ConfigError: on the first invalid or inconsistent field, naming it.
  """
  env = _env_config(cd)
  ppo = _ppo_config(cd, env)
  reward = _reward_config(cd)
  feedback = _feedback_config(cd)
  oracle = _oracle_config(cd)
  log = _log_config(cd)
  report = _report_config(cd, env)
  recursive = _recursive_config(cd, env)
  rl = RLConfig(algorithm=_choice(
      "rl.algorithm", (cd.get("rl") or {}).get("algorithm", "ppo"),
      ALGORITHMS))
  sac = _sac_config(cd, env) if rl.algorithm == "sac" else None
  safety = _safety_config(cd)
  ratings = _ratings_config(cd)
  config = TrainConfig(
      seed=_nonneg_int("seed", cd.seed),
      num_iterations=_positive_int("num_iterations", cd.num_iterations),
      eval_every=_positive_int("eval_every", cd.eval_every),
      checkpoint_every=_nonneg_int("checkpoint_every", cd.checkpoint_every),
      keep_checkpoints=_positive_int("keep_checkpoints", cd.keep_checkpoints),
      env=env, ppo=ppo, reward=reward, feedback=feedback, oracle=oracle,
      log=log, report=report, recursive=recursive, rl=rl, sac=sac,
      safety=safety, ratings=ratings)
  _check_consistency(config)
  return config


def _env_config(cd: ml_collections.ConfigDict) -> EnvConfig:
  """The env section."""
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
      on_failure=_choice("env.on_failure", e.on_failure,
                         rrm_envs.ON_FAILURE),
      failure_reward=float(e.failure_reward),
      num_envs=_positive_int("env.num_envs", e.num_envs),
      num_eval_envs=_positive_int("env.num_eval_envs", e.num_eval_envs),
      kwargs=dict(e.get("kwargs", {}) or {}),
      unsafe_event=e.get("unsafe_event", "auto"),
  )
  if env.kwargs.get("impl") == "warp" and not rrm.mjx_warp_enabled():
    _fail("env.kwargs.impl", "warp",
          "MJX's Warp backend is opt-in (it costs every process ~2.4 s of "
          f"imports): set the environment variable {rrm.MJX_WARP_ENV}=1, or "
          "use 'jax'")
  if not math.isfinite(env.failure_reward):
    _fail("env.failure_reward", env.failure_reward, "must be finite")
  problem = rrm_safety.check(env)
  if problem:
    _fail("env.unsafe_event", env.unsafe_event, problem)
  return env


def _ppo_config(cd: ml_collections.ConfigDict, env: EnvConfig) -> PPOConfig:
  """The ppo section (its rollout must split evenly over the envs)."""
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
  return ppo


def _reward_config(cd: ml_collections.ConfigDict) -> RewardConfig:
  """The reward section."""
  r = _section(cd, "reward")
  reward = RewardConfig(
      source=_choice("reward.source", r.source, rrm_reward.SOURCES),
      input=_choice("reward.input", r.input, rrm_reward.INPUTS),
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
  return reward


def _sac_config(cd: ml_collections.ConfigDict, env: EnvConfig) -> SACConfig:
  """The sac section (with rl.algorithm = "sac")."""
  a = _section(cd, "sac")
  sac = SACConfig(
      steps_per_iteration=_positive_int("sac.steps_per_iteration",
                                        a.steps_per_iteration),
      batch_size=_positive_int("sac.batch_size", a.batch_size),
      grad_updates_per_step=_positive_int("sac.grad_updates_per_step",
                                          a.grad_updates_per_step),
      replay_capacity=_positive_int("sac.replay_capacity", a.replay_capacity),
      min_replay_size=_positive_int("sac.min_replay_size", a.min_replay_size),
      learning_rate=_positive_float("sac.learning_rate", a.learning_rate),
      alpha_learning_rate=_positive_float("sac.alpha_learning_rate",
                                          a.alpha_learning_rate),
      discounting=_unit_interval("sac.discounting", a.discounting),
      reward_scaling=_positive_float("sac.reward_scaling", a.reward_scaling),
      tau=_unit_interval("sac.tau", a.tau),
      normalize_observations=bool(a.normalize_observations),
      hidden_layer_sizes=_layer_sizes("sac.hidden_layer_sizes",
                                      a.hidden_layer_sizes),
      q_network_layer_norm=bool(a.q_network_layer_norm),
      pretrain_iterations=_nonneg_int("sac.pretrain_iterations",
                                      a.pretrain_iterations),
      entropy_k=_positive_int("sac.entropy_k", a.entropy_k),
  )
  if sac.replay_capacity < sac.batch_size:
    _fail("sac.replay_capacity", sac.replay_capacity,
          f"the replay must hold at least one batch "
          f"(sac.batch_size={sac.batch_size})")
  if sac.min_replay_size < sac.batch_size:
    _fail("sac.min_replay_size", sac.min_replay_size,
          f"SGD samples batches of sac.batch_size={sac.batch_size} from the "
          "replay: fill at least that many transitions first")
  if sac.min_replay_size > sac.replay_capacity:
    _fail("sac.min_replay_size", sac.min_replay_size,
          f"more than the replay holds (sac.replay_capacity="
          f"{sac.replay_capacity})")
  if sac.replay_capacity < env.num_envs:
    _fail("sac.replay_capacity", sac.replay_capacity,
          f"each actor step inserts env.num_envs={env.num_envs} transitions")
  if sac.entropy_k >= sac.batch_size:
    _fail("sac.entropy_k", sac.entropy_k,
          f"the k-NN entropy looks for the k-th neighbour within a batch of "
          f"sac.batch_size={sac.batch_size}: k must be smaller")
  return sac


def _feedback_config(cd: ml_collections.ConfigDict) -> FeedbackConfig:
  """The feedback section."""
  f = _section(cd, "feedback")
  feedback = FeedbackConfig(
      segment_length=_positive_int("feedback.segment_length", f.segment_length),
      pool_size=_positive_int("feedback.pool_size", f.pool_size),
      segments_per_iteration=_positive_int("feedback.segments_per_iteration",
                                           f.segments_per_iteration),
      budget=_positive_int("feedback.budget", f.budget),
      # 0 only in a run whose ratings train the model first (_check_ratings).
      initial_labels=_nonneg_int("feedback.initial_labels", f.initial_labels),
      labels_per_round=_positive_int("feedback.labels_per_round",
                                     f.labels_per_round),
      round_every=_positive_int("feedback.round_every", f.round_every),
      query_selector=_choice("feedback.query_selector", f.query_selector,
                             rrm_queries.SELECTORS),
      oversample=_positive_int("feedback.oversample", f.oversample),
      schedule=_choice("feedback.schedule", f.get("schedule", "constant"),
                       rrm_feedback.SCHEDULES),
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
      recent_segments=_nonneg_int("feedback.recent_segments",
                                  f.get("recent_segments", 0) or 0),
  )
  return feedback


def _oracle_config(cd: ml_collections.ConfigDict) -> OracleConfig:
  """The oracle section: a B-Pref preset, then any field overridden."""
  o = _section(cd, "oracle")
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
  return oracle


def _log_config(cd: ml_collections.ConfigDict) -> LogConfig:
  """The log section (optional)."""
  lg = cd.get("log", ml_collections.ConfigDict(
      {"tensorboard": False, "print_every": 1}))
  mode = _choice("log.wandb", lg.get("wandb", "off"), rrm_logging.WANDB_MODES)
  if mode != "off" and importlib.util.find_spec("wandb") is None:
    _fail("log.wandb", mode, "needs the wandb package: pip install -e "
          "'.[wandb]'")
  project = lg.get("wandb_project", "rrm")
  if not isinstance(project, str) or not project.strip():
    _fail("log.wandb_project", project, "must be a non-empty string")
  log = LogConfig(tensorboard=bool(lg.tensorboard),
                  print_every=_positive_int("log.print_every", lg.print_every),
                  wandb=mode, wandb_project=project,
                  videos_every=_nonneg_int("log.videos_every",
                                           lg.get("videos_every", 0)),
                  video_format=lg.get("video_format", "gif"))
  problem = rrm_video.format_problem(log.video_format)
  if problem:
    _fail("log.video_format", log.video_format, problem)
  return log


# The detector's window when config.report.hacking_window is None (an
# explicit window longer than the run is refused; this one is not).
DEFAULT_HACKING_WINDOW = 10


def _report_config(cd: ml_collections.ConfigDict, env: EnvConfig
                   ) -> ReportConfig:
  """The report section (optional)."""
  rp = cd.get("report", ml_collections.ConfigDict(
      {"baseline_return": None, "threshold": 0.9}))
  baseline = rp.get("baseline_return")
  if baseline is not None and (isinstance(baseline, bool) or not isinstance(
      baseline, (int, float)) or not math.isfinite(baseline)):
    _fail("report.baseline_return", baseline, "must be a finite number or None")
  threshold = _unit_interval("report.threshold", rp.get("threshold", 0.9))
  if threshold == 0.0:
    _fail("report.threshold", threshold, "must be in (0, 1]")
  iterations = cd.get("num_iterations")
  window = rp.get("hacking_window")
  if window is None:
    # Not num_iterations-dependent: a resume may change num_iterations, and
    # the detector must decide as before (in a shorter run it never fills).
    window = DEFAULT_HACKING_WINDOW
  elif isinstance(window, bool) or not isinstance(window, int) or (
      window != 0 and window < 3):
    _fail("report.hacking_window", window,
          "must be 0 (off) or an integer >= 3 (iterations per window)")
  elif isinstance(iterations, int) and window > iterations:
    _fail("report.hacking_window", window,
          f"must be at most the run's num_iterations={iterations} (a window "
          "longer than the run never fills), or 0 (off)")
  hacking_threshold = _unit_interval("report.hacking_threshold",
                                     rp.get("hacking_threshold", 0.6))
  if hacking_threshold == 0.0:
    _fail("report.hacking_threshold", hacking_threshold, "must be in (0, 1]")
  report = ReportConfig(
      baseline_return=None if baseline is None else float(baseline),
      threshold=threshold, hacking_window=int(window),
      hacking_threshold=hacking_threshold,
      hacking_signal=_choice("report.hacking_signal",
                             rp.get("hacking_signal", "episode"),
                             tuple(rrm_report.SIGNALS)),
      baseline_aspects=_baseline_aspects(env, rp.get("baseline_aspects")),
      certificate=_bool("report.certificate", rp.get("certificate", True)),
      epic_transitions=_nonneg_int("report.epic_transitions",
                                   rp.get("epic_transitions", 256)),
      epic_states=_positive_int("report.epic_states",
                                rp.get("epic_states", 16)),
      epic_actions=_positive_int("report.epic_actions",
                                 rp.get("epic_actions", 8)))
  return report


def _baseline_aspects(env: EnvConfig, spec: Any
                      ) -> tuple[tuple[str, float], ...]:
  """config.report.baseline_aspects: {component: return}, or JSON of it."""
  field = "report.baseline_aspects"
  if spec is None or spec == "" or spec == {}:
    return ()
  if isinstance(spec, str):
    try:
      spec = json.loads(spec)
    except json.JSONDecodeError as e:
      _fail(field, spec, f"not valid JSON ({e})")
  spec = _plain(spec, field)
  if not isinstance(spec, dict):
    _fail(field, spec, "must map reward components to the true-reward "
          'baseline\'s final eval return, e.g. {"reward_forward": 950.0}')
  for k, v in spec.items():
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
        math.isfinite(v)) or v == 0:
      _fail(field, spec, f"{k!r}: {v!r} must be a finite, non-zero number")
  known = rrm_envs.reward_components(env, fixed_horizon=False)
  unknown = sorted(set(spec) - set(known))
  if unknown:
    _fail(field, spec, f"{', '.join(map(repr, unknown))} not among env "
          f"{env.name!r}'s reward components {list(known)}")
  return tuple(sorted((k, float(v)) for k, v in spec.items()))


def _plain(x: Any, field: str = "", _inside: tuple[int, ...] = ()) -> Any:
  """ConfigDicts, dicts, lists and tuples as plain JSON-able values.

  A value that contains itself (a tree node among its own children) is
  refused naming `field`, instead of recursing until Python gives up.
  """
  if isinstance(x, (ml_collections.ConfigDict, Mapping, list, tuple)):
    if id(x) in _inside:
      raise ConfigError(
          f"config.{field} contains itself (a node among its own "
          "descendants); a task tree must be finite")
    _inside += (id(x),)
  if isinstance(x, ml_collections.ConfigDict):
    x = {k: x[k] for k in x.keys()}  # to_dict() would recurse forever
  if isinstance(x, Mapping):
    return {str(k): _plain(v, field, _inside) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v, field, _inside) for v in x]
  return x


def _recursive_config(cd: ml_collections.ConfigDict,
                      env: EnvConfig) -> RecursiveConfig:
  """The recursive section, its tree checked against the env's components."""
  rc = cd.get("recursive")
  if rc is None:
    return RecursiveConfig(user="none", tree="", visible=(), decay=0.0,
                           level_fractions=(), helpers="learned")
  user = _choice("recursive.user", rc.get("user", "none"), rrm_recursive.USERS)
  decay = _nonneg_float("recursive.decay", rc.get("decay", 0.0))
  helpers = _choice("recursive.helpers", rc.get("helpers", "learned"),
                    rrm_recursive.HELPER_KINDS)
  visible = rc.get("visible") or ()
  if isinstance(visible, str):
    visible = (visible,)
  visible = tuple(visible)
  fractions = rc.get("level_fractions") or ()
  if isinstance(fractions, (int, float)):
    fractions = (fractions,)
  if isinstance(fractions, str):  # from the command line
    fractions = tuple(x for x in fractions.strip("()[] ").split(",") if x)
  try:
    fractions = tuple(float(f) for f in fractions)
  except (TypeError, ValueError):
    _fail("recursive.level_fractions", rc.get("level_fractions"),
          "one number per level of the tree, e.g. (0.4, 0.3, 0.3)")
  if fractions and (any(f < 0 for f in fractions)
                    or abs(sum(fractions) - 1.0) > 1e-6):
    _fail("recursive.level_fractions", fractions,
          f"the shares of the label budget per level, >= 0 and summing to 1 "
          f"(they sum to {sum(fractions):g})")
  spec = rc.get("tree")
  if user == "none":
    return RecursiveConfig(user=user, tree="", visible=visible, decay=decay,
                           level_fractions=fractions, helpers=helpers)
  if not spec:
    _fail("recursive.tree", spec, f"recursive.user={user!r} needs a task tree "
          "(nested dicts: name, weight, aspect | children)")
  if isinstance(spec, str):
    try:
      spec = json.loads(spec)
    except json.JSONDecodeError as e:
      _fail("recursive.tree", spec, f"not valid JSON ({e})")
  spec = _plain(spec, "recursive.tree")
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


def _check_sac(config: TrainConfig) -> None:
  """SAC's cross-field checks."""
  sac = config.sac
  if sac.pretrain_iterations >= config.num_iterations:
    _fail("sac.pretrain_iterations", sac.pretrain_iterations,
          f"pre-training must end before the run does "
          f"(num_iterations={config.num_iterations})")
  if sac.pretrain_iterations and not config.learned_reward:
    _fail("sac.pretrain_iterations", sac.pretrain_iterations,
          "unsupervised pre-training comes before the first label; a "
          "true-reward run (reward.source='true') has none: set 0")
  if sac.pretrain_iterations and config.feedback.warm_start_labels:
    _fail("sac.pretrain_iterations", sac.pretrain_iterations,
          "a run warm-started from labels has its labels before RL starts: "
          "pre-training would only delay them; set 0")
  if sac.pretrain_iterations and config.recursive.enabled:
    _fail("sac.pretrain_iterations", sac.pretrain_iterations,
          "not supported with a task tree (recursive.user="
          f"{config.recursive.user!r}): the helpers ask their labels at init")


def _safety_config(cd: ml_collections.ConfigDict) -> SafetyConfig | None:
  """The safety section (rrm.flags); None when absent or safety.flags = 0."""
  a = cd.get("safety")
  if a is None:
    return None
  flags = _nonneg_int("safety.flags", a.get("flags", 0))
  penalty = _nonneg_float("safety.penalty", a.get("penalty", 0.0))
  if not flags:
    if penalty:
      _fail("safety.penalty", penalty,
            "a penalty needs a learned safety classifier, and safety.flags=0 "
            "budgets no flags to learn it from: set safety.flags > 0 (and "
            "safety.flags_per_round), or safety.penalty=0")
    return None
  return SafetyConfig(
      flags=flags,
      flag_cost=_positive_float("safety.flag_cost", a.get("flag_cost", 0.5)),
      flags_per_round=_positive_int("safety.flags_per_round",
                                    a.get("flags_per_round", 16)),
      mistake=_unit_interval("safety.mistake", a.get("mistake", 0.0)),
      penalty=penalty,
      hidden_layer_sizes=_layer_sizes("safety.hidden_layer_sizes",
                                      a.get("hidden_layer_sizes", (64, 64))),
      learning_rate=_positive_float("safety.learning_rate",
                                    a.get("learning_rate", 1e-3)),
      batch_size=_positive_int("safety.batch_size", a.get("batch_size", 64)),
      num_steps=_positive_int("safety.num_steps", a.get("num_steps", 50)))


def _check_safety(config: TrainConfig) -> None:
  """The flags fit the run: a learned reward, PPO, events to flag, budget."""
  sc, fb = config.safety, config.feedback
  if not config.learned_reward:
    _fail("safety.flags", sc.flags,
          "flags train a classifier beside the learned reward; with "
          "reward.source='true' there is none (set safety.flags=0)")
  if config.rl.algorithm != "ppo":
    _fail("safety.flags", sc.flags,
          f"the safety penalty is implemented for rl.algorithm='ppo' only, "
          f"not {config.rl.algorithm!r} (SAC's replay would need relabelling "
          "with it too); set safety.flags=0")
  if rrm_safety.event_name(config.env) == "none":
    _fail("safety.flags", sc.flags,
          "env.unsafe_event='none' declares nothing unsafe, so there is "
          "nothing to flag; use 'auto' or the env's event")
  if sc.flags_per_round > sc.flags:
    _fail("safety.flags_per_round", sc.flags_per_round,
          f"more than the run's safety.flags={sc.flags}")
  t = config.steps_per_env_per_iteration
  segments = (t // fb.segment_length) * config.env.num_envs
  if sc.flags_per_round > segments:
    _fail("safety.flags_per_round", sc.flags_per_round,
          f"more than the {segments} segments one iteration's rollout holds "
          "(the flags' candidates)")
  spare = fb.budget - fb.initial_labels
  if sc.budget_units > spare:
    _fail("safety.flags", sc.flags,
          f"{sc.flags} flags at safety.flag_cost={sc.flag_cost} cost "
          f"{sc.budget_units} units of feedback.budget={fb.budget}, more than "
          f"the {spare} the initial preference batch (feedback.initial_labels"
          f"={fb.initial_labels}) leaves; raise the budget or ask fewer flags")


def _ratings_config(cd: ml_collections.ConfigDict) -> RatingsConfig | None:
  """The ratings section (rrm.ratings); None when absent or ratings=0."""
  a = cd.get("ratings")
  if a is None or not _nonneg_int("ratings.ratings", a.get("ratings", 0)):
    return None
  levels = _positive_int("ratings.levels", a.get("levels", 10))
  if levels < 2:
    _fail("ratings.levels", levels, "a scale needs at least 2 levels")
  return RatingsConfig(
      ratings=_positive_int("ratings.ratings", a.get("ratings")),
      rating_cost=_positive_float("ratings.rating_cost",
                                  a.get("rating_cost", 0.5)),
      initial=_nonneg_int("ratings.initial", a.get("initial", 0)),
      per_round=_nonneg_int("ratings.per_round", a.get("per_round", 16)),
      levels=levels,
      noise=_nonneg_float("ratings.noise", a.get("noise", 0.5)),
      headroom=_positive_float("ratings.headroom", a.get("headroom", 2.0)),
      weight=_positive_float("ratings.weight", a.get("weight", 1.0)),
      learning_rate=_positive_float("ratings.learning_rate",
                                    a.get("learning_rate", 1e-2)),
      batch_size=_positive_int("ratings.batch_size",
                               a.get("batch_size", 64)),
      selector=_choice("ratings.selector", a.get("selector", "uniform"),
                       rrm_ratings.SELECTORS))


def _check_ratings(config: TrainConfig) -> None:
  """The ratings fit the run: a learned reward, a plain PPO run, budget."""
  rt, fb = config.ratings, config.feedback
  if not config.learned_reward:
    _fail("ratings.ratings", rt.ratings,
          "ratings train the learned reward; with reward.source='true' "
          "there is none (set ratings.ratings=0)")
  if config.rl.algorithm != "ppo":
    _fail("ratings.ratings", rt.ratings,
          f"ratings are implemented for rl.algorithm='ppo' only, not "
          f"{config.rl.algorithm!r}; set ratings.ratings=0")
  if config.recursive.enabled:
    _fail("ratings.ratings", rt.ratings,
          "ratings are given by a plain run's user (recursive.user='none'); "
          f"recursive.user={config.recursive.user!r} asks comparisons only")
  if rt.initial > rt.ratings:
    _fail("ratings.initial", rt.initial,
          f"more than the run's ratings.ratings={rt.ratings}")
  if rt.initial > fb.pool_size or rt.per_round > fb.pool_size:
    _fail("ratings.per_round" if rt.per_round > fb.pool_size
          else "ratings.initial", max(rt.initial, rt.per_round),
          f"more than the feedback.pool_size={fb.pool_size} segments a round "
          "draws from")
  if not fb.initial_labels and not rt.initial:
    _fail("feedback.initial_labels", 0,
          "with ratings.initial=0 too the reward model would start "
          "untrained; ask initial preference labels or initial ratings")
  spare = fb.budget - fb.initial_labels
  if config.safety is not None:
    spare -= config.safety.budget_units
  if rt.budget_units > spare:
    _fail("ratings.ratings", rt.ratings,
          f"{rt.ratings} ratings at ratings.rating_cost={rt.rating_cost} cost "
          f"{rt.budget_units} units of feedback.budget={fb.budget}, more than "
          f"the {spare} the initial preference batch (feedback.initial_labels"
          f"={fb.initial_labels}) and any flags leave; raise the budget or "
          "ask fewer ratings")


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
        f"the {t} steps each env takes per iteration ("
        + ("sac.steps_per_iteration" if config.rl.algorithm == "sac" else
           "ppo.batch_size * ppo.num_minibatches / env.num_envs * "
           "ppo.unroll_length")
        + "): segments are cut from one iteration's rollout.")
  if config.sac is not None:
    _check_sac(config)
  if config.safety is not None:
    _check_safety(config)
  if config.ratings is not None:
    _check_ratings(config)
  elif config.learned_reward and not fb.initial_labels:
    raise ConfigError(
        "config.feedback.initial_labels=0: the reward model would start "
        "untrained; ask at least 1 (or give ratings.initial > 0 ratings)")
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
  if fb.query_selector == "recent":
    recent = fb.recent_segments or fb.segments_per_iteration
    if not 2 <= recent <= fb.pool_size:
      _fail("feedback.recent_segments", fb.recent_segments,
            f"query_selector='recent' draws pairs from the most recently "
            f"added segments: between 2 and feedback.pool_size="
            f"{fb.pool_size} (0: feedback.segments_per_iteration="
            f"{fb.segments_per_iteration})")
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
  if heldout and fb.initial_labels and fb.initial_labels < heldout:
    raise ConfigError(
        f"config.feedback.initial_labels={fb.initial_labels} is smaller than "
        f"config.reward.heldout_every={heldout}: the initial batch would "
        "leave no held-out label to measure accuracy on.")
