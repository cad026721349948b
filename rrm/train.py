"""The reward-modeling program: `make_train(config)` -> jitted init, iteration.

One iteration (one jitted function of the state; its key is the state's):

  1. rollout   B envs x T steps with the current policy (rrm.rollout);
  2. relabel   every transition with the learned reward (normalised ensemble
               mean; less `safety.penalty` x the safety classifier's P(unsafe)
               when the user gives unacceptable flags, rrm.flags) -- or keep
               the true reward when `reward.source = "true"`, the baseline
               every comparison needs, through the same code;
  3. RL        brax's PPO update on the relabelled rollout -- or SAC, whose
               actor steps and SGD steps interleave over steps 1-3 with the
               replay in the state (config.rl.algorithm; rrm.agent);
  4. segments  cut the rollout into length-L segments, add some to the pool;
  5. queries   when the schedule says so, pick pairs from the pool;
  6. oracle    the (synthetic) user labels them (rrm.labeling) -- with a
               task tree, the user of rrm.recursive, after the helpers' own
               label round; with `safety.flags`, the user's unacceptable
               flags on the rollout's segments and the classifier's fit;
  7. reward    reward-model epochs on the label dataset (only when labels
               arrived), then refit the output normalisation (SAC: and
               relabel the whole replay with the new model, PEBBLE);
  8. metrics   a flat dict of scalars (rrm.diagnostics).

Before the first iteration `init` fills the pool with random-policy segments,
asks for the initial batch of labels and fits the reward model to it, so RL
never starts from an untrained reward. The host loop that runs the program
and writes the workdir is rrm.loop.

Why ~520 lines: `_init` and `_iteration` bind every optional part (helpers,
flags, ratings, SAC pre-training, EPIC) in one place, so that a reader sees
the whole iteration and each part stays a pure step in its own module;
each of them adds its few lines of wiring here.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rrm import agent as rrm_agent
from rrm import config as rrm_config
from rrm import diagnostics
from rrm import envs as rrm_envs
from rrm import feedback as rrm_feedback
from rrm import flags as rrm_flags
from rrm import labeling
from rrm import oracle as rrm_oracle
from rrm import queries as rrm_queries
from rrm import ratings as rrm_ratings
from rrm import recursive as rrm_recursive
from rrm import reward as rrm_reward
from rrm import rollout
from rrm import segments as rrm_segments
from rrm import state as rrm_state
from rrm import video as rrm_video
from rrm import workdir as rrm_workdir
from rrm.recursive import helpers as rrm_helpers

# EPIC's action samples: a key folded from the iteration's pool key, so no
# other draw of the iteration changes (rrm.state's key schedule).
_EPIC_STREAM = 0x45504943
# The safety classifier's keys, folded from init's reward key and from each
# iteration's ask key for the same reason.
_SAFETY_STREAM = 0x53414645
# The ratings' rounds, likewise (rrm.ratings).
_RATING_STREAM = 0x52415445


class Train(NamedTuple):
  """What `make_train` builds.

  `init(seed_key, hyper=None, teacher=None)` (jitted) makes the state
  before the first iteration, with the config's hyperparameters and teacher
  unless others are given (same program either way);
  `iteration(state)` (jitted, donates `state`) is one iteration, its
  randomness drawn from the state's own key; `evaluate(state, key)` (jitted)
  is the true-reward evaluation. `plan` is the run's static plan (a plain
  run's is one node, rrm.recursive.plain_plan).
  """
  config: rrm_config.TrainConfig
  init: Callable[..., rrm_state.TrainState]
  iteration: Callable[[rrm_state.TrainState],
                      tuple[rrm_state.TrainState, dict]]
  evaluate: Callable[[rrm_state.TrainState, jax.Array], dict[str, jax.Array]]
  envs: rrm_envs.Envs
  plan: rrm_recursive.Plan
  # (state, key) -> rrm.video.Episode (jitted): one evaluation episode with
  # its positions, for videos.
  record_episode: Callable[[rrm_state.TrainState, jax.Array], Any] | None = (
      None)


def make_plan(config: rrm_config.TrainConfig) -> rrm_recursive.Plan:
  """The run's static plan: its tree, users and budget per node."""
  rec, fb = config.recursive, config.feedback
  if not rec.enabled:
    return rrm_recursive.plain_plan(config.preference_budget,
                                    fb.initial_labels,
                                    fb.labels_per_round)
  return rrm_recursive.make_plan(
      rec.user, json.loads(rec.tree), rec.visible, rec.decay,
      rec.level_fractions, rec.helpers == "perfect", config.preference_budget,
      fb.initial_labels, fb.labels_per_round)


def pretrain_iterations(config: rrm_config.TrainConfig) -> int:
  """Iterations of PEBBLE's unsupervised pre-training (SAC only; else 0)."""
  return config.sac.pretrain_iterations if config.sac is not None else 0


def _reward_fn(p: "_Parts", reward_state, hyper: rrm_state.Hyper):
  """The reward RL maximises: the learned one (None: the env's)."""
  if not p.config.learned_reward:
    return None
  return functools.partial(rrm_reward.learned_reward, p.model, reward_state,
                           uncertainty_penalty=hyper.uncertainty_penalty)


class _Parts(NamedTuple):
  """The bound pieces `init` and `iteration` are written in."""
  config: rrm_config.TrainConfig
  plan: rrm_recursive.Plan
  envs: rrm_envs.Envs
  agent: rrm_agent.Agent
  model: rrm_reward.RewardModel
  reward_update: Callable
  initial_reward_update: Callable
  label_round: labeling.LabelRound
  helpers: rrm_helpers.Helpers | None
  quotas: object  # [horizon] the root's labels due per iteration
  queries_per_round: int
  label_capacity: int
  initial_to_ask: int
  heldout: jax.Array
  epic: Callable | None  # (learned reward, data, key) -> metrics; None: off
  safety: rrm_flags.Safety | None  # the unacceptable flags (None: off)
  ratings: rrm_ratings.Ratings | None  # scalar ratings (None: off)


def _make_epic(config: rrm_config.TrainConfig) -> Callable | None:
  """`reward/epic` of each iteration's rollout, where the env declares its
  true reward of transitions (rrm.envs.transition_reward) and the report
  asks for it."""
  true_reward = rrm_envs.transition_reward(config.env)
  rp = config.report
  if (true_reward is None or not rp.epic_transitions
      or not config.learned_reward):
    return None
  discount = (config.sac.discounting if config.rl.algorithm == "sac"
              else config.ppo.discounting)
  return lambda learned, data, key: diagnostics.epic_metrics(
      true_reward, learned, data, key, rp.epic_transitions, rp.epic_states,
      rp.epic_actions, discount)


def _bind(config: rrm_config.TrainConfig, plan: rrm_recursive.Plan,
          envs: rrm_envs.Envs, num_warm: int) -> _Parts:
  fb, rc = config.feedback, config.reward
  obs_size, act_size = envs.observation_size, envs.action_size
  root = plan.root
  # Extra imported labels are stored on top of the budget; counted ones
  # replace as much of the initial batch.
  # At least one row: a ratings-only run budgets no preference label.
  label_capacity = max(
      root.budget + (num_warm if fb.warm_start_extra else 0), 1)
  initial_to_ask = (root.initial if fb.warm_start_extra
                    else max(0, root.initial - num_warm))
  model = rrm_reward.make_reward_model(rc.input, rc.hidden_layer_sizes,
                                       obs_size, act_size)
  optimizer = rrm_reward.make_optimizer(rc.learning_rate, rc.weight_decay)
  reward_update = rrm_reward.make_reward_update(
      model, optimizer, rc.batch_size, rc.num_steps, rc.heldout_every)
  initial_reward_update = rrm_reward.make_reward_update(
      model, optimizer, rc.batch_size, rc.initial_num_steps, rc.heldout_every)
  label_round = labeling.make_label_round(rrm_queries.make_selector(
      fb.query_selector, fb.oversample,
      fb.recent_segments or fb.segments_per_iteration))
  # Labels due at each iteration (fixed; see feedback.label_quotas). A round
  # always queries the largest quota's number of pairs and keeps `due`.
  pretrain = pretrain_iterations(config)
  quotas = rrm_feedback.label_quotas(
      fb.schedule, root.budget, root.initial, max(root.per_round, 1),
      fb.round_every, max(fb.schedule_horizon - pretrain, 0)
      if fb.schedule_horizon else 0)
  if pretrain:
    # PEBBLE: nothing is asked while pre-training; its last iteration asks
    # the initial batch (from the pre-training's diverse segments).
    quotas = np.concatenate([np.zeros((pretrain - 1,), np.int32),
                             np.asarray([initial_to_ask], np.int32), quotas])
    initial_to_ask = 0
  helpers = rrm_helpers.make_helpers(
      plan, config, model, reward_update, initial_reward_update, label_round,
      obs_size, act_size) if plan.num_helpers else None
  return _Parts(
      config=config, plan=plan, envs=envs,
      agent=rrm_agent.make_agent(config, envs, plan.recursive), model=model,
      reward_update=reward_update,
      initial_reward_update=initial_reward_update, label_round=label_round,
      helpers=helpers, quotas=quotas,
      queries_per_round=max(int(quotas.max()), 1),
      label_capacity=label_capacity, initial_to_ask=initial_to_ask,
      heldout=rrm_reward.heldout_mask(label_capacity, rc.heldout_every),
      epic=_make_epic(config),
      safety=None if config.safety is None else rrm_flags.make_safety(
          config.safety, obs_size, act_size, fb.segment_length,
          fb.round_every),
      ratings=None if config.ratings is None else rrm_ratings.make_ratings(
          config.ratings, model, optimizer, rc))


def _rl_reward_fn(p: _Parts, state: rrm_state.TrainState):
  """The reward RL maximises this iteration: `_reward_fn`'s, less the
  safety penalty when the run has flags (rrm.flags.penalised)."""
  reward_fn = _reward_fn(p, state.reward, state.hyper)
  if p.safety is None:
    return reward_fn
  return rrm_flags.penalised(reward_fn, p.safety.classifier, state.safety,
                             p.safety.config.penalty)


def _user_values(p: _Parts, pool, helper_state, teacher):
  """What the root's user compares ([P, L], None: the true reward), and the
  teacher they answer with (rrm.recursive.root_perceived)."""
  if not p.plan.recursive:
    return None, teacher
  assessed = None
  if p.helpers is not None:
    assessed, _ = p.helpers.assess(helper_state, pool)
  return rrm_recursive.root_perceived(p.plan, pool.aspects, assessed, teacher)


def _fill_pool(p: _Parts, pool, env_state, keys: rrm_state.InitKeys):
  """The pool's first segments, from a random policy: enough that it fills."""
  fb = p.config.feedback
  per_env = -(-fb.pool_size // p.config.env.num_envs)
  _, data = rollout.collect(p.envs.train, env_state,
                            rollout.random_policy(p.envs.action_size),
                            keys.rollout, per_env * fb.segment_length,
                            p.plan.recursive)
  segments, valid = rollout.cut_segments(data, fb.segment_length)
  return rrm_segments.add(pool, segments, valid, fb.pool_size, keys.pool,
                          rollout.split_aspects(data, fb.segment_length))


def _init(p: _Parts, seed_key, warm, hyper: rrm_state.Hyper,
          teacher: rrm_oracle.TeacherParams) -> rrm_state.TrainState:
  """The state before the first iteration (see the module docstring).

  `warm`: None, or the imported (first, second, label), the imported
  flags' (segments, flag, truth) or None and the imported ratings'
  (segments, rating) or None."""
  warm_labels, warm_flags, warm_ratings = (None,) * 3 if warm is None else warm
  fb, rc = p.config.feedback, p.config.reward
  run = rrm_state.split_seed(seed_key)
  keys = rrm_state.init_keys(run.init)
  env_state = p.envs.train.reset(jax.random.split(keys.env,
                                                  p.config.env.num_envs))
  pool = rrm_segments.init_pool(fb.pool_size, fb.segment_length,
                                p.envs.observation_size, p.envs.action_size,
                                len(p.plan.aspects))
  labels = rrm_feedback.init_labels(p.label_capacity, fb.segment_length,
                                    p.envs.observation_size,
                                    p.envs.action_size)
  if warm_labels is not None:
    labels = rrm_feedback.import_labels(labels, *warm_labels,
                                        counted=not fb.warm_start_extra)
  reward = rrm_reward.init_reward_state(
      p.model, rrm_reward.make_optimizer(rc.learning_rate, rc.weight_decay),
      keys.reward, rc.ensemble_size)
  helper_state, safety_state, rating_state, key_ask = None, None, None, keys.ask
  if p.config.learned_reward:
    pool = _fill_pool(p, pool, env_state, keys)
    reward = reward.replace(input_normalizer=rrm_reward.fit_input_normalizer(
        p.model, pool.segments, pool.valid))
    if p.helpers is not None:
      key_ask, key_helpers = jax.random.split(key_ask)
      # Bottom-up: each level's helpers learn before they assist the next.
      helper_state = p.helpers.init(pool, reward.input_normalizer, teacher,
                                    hyper, key_helpers)
    # No labels yet: the untrained ensemble's disagreement is its prior.
    returns = rrm_reward.member_returns(p.model, reward.params,
                                        reward.input_normalizer,
                                        pool.segments)
    values, user_teacher = _user_values(p, pool, helper_state, teacher)
    if p.initial_to_ask:
      labels = p.label_round(pool, returns, labels, user_teacher,
                             p.initial_to_ask, p.initial_to_ask,
                             jnp.int32(-1), key_ask, values)
    if p.safety is not None:
      safety_state = rrm_flags.init_safety_state(
          p.safety.classifier, p.safety.optimizer,
          jax.random.fold_in(keys.reward, _SAFETY_STREAM),
          p.safety.config.flags, pool)
      if warm_flags is not None:  # imported flags train it from the start
        safety_state, _ = p.safety.update(safety_state.replace(
            flags=rrm_flags.import_flags(safety_state.flags, *warm_flags)),
                                          jax.random.fold_in(
                                              keys.fit, _SAFETY_STREAM))
    if p.ratings is not None:
      rating_state = rrm_ratings.init_rating_state(
          p.ratings, pool, returns,
          jax.random.fold_in(keys.ask, _RATING_STREAM), warm_ratings)
    if not pretrain_iterations(p.config):  # else: after pre-training
      reward, rating_state, _ = _fit(p, p.initial_reward_update, reward,
                                     labels, rating_state, hyper, keys.fit)
  policy, env_state = p.agent.prefill(
      p.agent.init(keys.policy), env_state,
      jax.random.fold_in(keys.rollout, 1), _reward_fn(p, reward, hyper))
  return rollout.strip_weak_types(rrm_state.TrainState(
      policy=policy,
      reward=reward, pool=pool, labels=labels, teacher=teacher, hyper=hyper,
      env=env_state,
      episodes=rrm_state.init_episode_stats(p.config.env.num_envs),
      key=run.run, iteration=jnp.zeros((), jnp.int32),
      helpers=helper_state, safety=safety_state, ratings=rating_state))


def _fit(p: _Parts, update, reward_state, labels, rating_state, hyper, key):
  """One reward-model update on the preferences (and ratings, jointly),
  then the output normalisation refitted. `update` is one of `_Parts`'
  preference updates; with ratings, its `rrm.ratings` counterpart runs.
  Returns (reward state, rating state, metrics)."""
  if rating_state is None:
    reward_state, m = update(reward_state, labels, key,
                             hyper.reward_optimizer())
    extra = None
  else:
    joint = (p.ratings.initial_update if update is p.initial_reward_update
             else p.ratings.update)
    reward_state, rating_state, m = joint(reward_state, labels, rating_state,
                                          key, hyper.reward_optimizer())
    extra = rrm_ratings.normalizer_reference(rating_state)
  reward_state = rrm_reward.refit_normalizer(
      p.model, reward_state, labels, hyper.uncertainty_penalty, extra)
  return reward_state, rating_state, m


def _fit_or_keep(p: _Parts, state: rrm_state.TrainState, reward_state, labels,
                 rating_state, due, key):
  """The reward-model update when feedback arrived; else the model as it
  was (its loss metrics nan by design). Returns (reward state, rating
  state, metrics)."""

  def fit_with(update):
    def fit(carry):
      reward, ratings = carry
      reward, ratings, m = _fit(p, update, reward, labels, ratings,
                                state.hyper, key)
      return (reward, ratings), m
    return fit

  fit = fit_with(p.reward_update)
  pretrain = pretrain_iterations(p.config)
  if pretrain:  # the initial batch, asked at pre-training's last iteration
    regular = fit
    fit = lambda c: jax.lax.cond(state.iteration == pretrain - 1,
                                 fit_with(p.initial_reward_update), regular, c)

  def keep(carry):
    nan = jnp.float32(jnp.nan)
    m = {"reward/loss": nan, "reward/train_accuracy": nan}
    if rating_state is not None:
      m["ratings/loss"] = nan
    return carry, m

  (reward_state, rating_state), m = jax.lax.cond(
      due > 0, fit, keep, (reward_state, rating_state))
  return reward_state, rating_state, m


def _budget_spent(p: _Parts, state: rrm_state.TrainState) -> jax.Array:
  """Budget units paid so far: preferences (1 each), flags, ratings."""
  spent = state.labels.spent.astype(jnp.float32)
  if p.safety is not None:
    spent += p.safety.config.flag_cost * state.safety.flags.count
  if p.ratings is not None:
    spent += p.ratings.config.rating_cost * state.ratings.ratings.count
  return spent


def _feedback_step(p: _Parts, state, data, keys: rrm_state.IterationKeys):
  """Steps 4-7: segments into the pool, the label rounds, the refit.

  Returns (reward state, pool, labels, helper state, metrics, [M, P] the
  queries' ensemble returns, [P, L] what the root user compared).
  """
  fb = p.config.feedback
  segments, valid = rollout.cut_segments(data, fb.segment_length)
  pool = rrm_segments.add(state.pool, segments, valid,
                          fb.segments_per_iteration, keys.pool,
                          rollout.split_aspects(data, fb.segment_length))
  metrics, helper_state, key_ask = {}, state.helpers, keys.ask
  if p.helpers is not None:
    key_ask, key_helpers = jax.random.split(key_ask)
    helper_state, metrics = p.helpers.iteration(
        helper_state, pool, state.teacher, state.hyper, state.iteration,
        key_helpers)
  due = rrm_feedback.labels_due(state.iteration, state.labels.spent,
                                p.plan.root.budget, p.quotas)
  returns = rrm_reward.member_returns(p.model, state.reward.params,
                                      state.reward.input_normalizer,
                                      pool.segments)  # [M, P]
  values, user_teacher = _user_values(p, pool, helper_state, state.teacher)
  labels = p.label_round(pool, returns, state.labels, user_teacher,
                         p.queries_per_round, due, state.iteration, key_ask,
                         values)
  rating_state, rating_due = state.ratings, 0
  if p.ratings is not None and p.ratings.config.per_round:
    c = p.ratings.config
    rating_due = rrm_ratings.ratings_due(state.iteration, rating_state.ratings,
                                         c.per_round, fb.round_every)
    rating_state = p.ratings.round(
        rating_state, pool, c.per_round, rating_due, state.iteration,
        jax.random.fold_in(keys.ask, _RATING_STREAM), returns)
  reward_state, rating_state, reward_metrics = _fit_or_keep(
      p, state, state.reward, labels, rating_state,
      due if p.ratings is None else due + rating_due, keys.fit)
  metrics.update(reward_metrics)
  metrics["oracle/labels_this_iteration"] = due
  if rating_state is not None:
    metrics.update(rrm_ratings.metrics(
        rating_state, rating_due, rrm_reward.member_returns(
            p.model, reward_state.params, reward_state.input_normalizer,
            rating_state.ratings.segments)))
  return (reward_state, pool, labels, helper_state, metrics, returns, values,
          rating_state)


def _iteration(p: _Parts, state: rrm_state.TrainState):
  """One iteration: the eight steps of the module docstring."""
  keys = rrm_state.iteration_keys(state.key, state.iteration)
  # 1-3. rollout, relabel (the learned reward; None keeps the env's), RL
  policy_state, env_state, data, reward_for_rl, metrics = p.agent.learn(
      state.policy, state.env, keys, state.hyper, _rl_reward_fn(p, state),
      state.iteration)
  true_reward = data.reward  # [T, B]
  episodes = rollout.update_episode_stats(state.episodes, true_reward,
                                          reward_for_rl, 1.0 - data.discount)
  metrics.update(diagnostics.rollout_metrics(data, episodes))
  new = state.replace(env=env_state, episodes=episodes,
                      iteration=state.iteration + 1)
  if p.config.learned_reward:  # 4-7. segments, queries, oracle, reward
    (reward_state, pool, labels, helper_state, m, returns, values,
     rating_state) = _feedback_step(p, state, data, keys)
    metrics.update(m)
    # SAC: the replay relabelled by the updated model (PEBBLE).
    policy_state = p.agent.relabel(
        policy_state, _reward_fn(p, reward_state, state.hyper),
        m["oracle/labels_this_iteration"] > 0)
    metrics.update(diagnostics.reward_metrics(  # 8. metrics
        pool, labels, returns, reward_for_rl, true_reward, episodes,
        rrm_reward.label_accuracy(p.model, reward_state, labels, p.heldout)))
    metrics.update(diagnostics.agreement_metrics(pool, labels, returns, tuple(
        rrm_reward.member_returns(p.model, state.reward.params,
                                  state.reward.input_normalizer, side)
        for side in (labels.first, labels.second))))
    if p.epic is not None:  # the reward RL just maximised, where it went
      metrics.update(p.epic(_reward_fn(p, state.reward, state.hyper), data,
                            jax.random.fold_in(keys.pool, _EPIC_STREAM)))
    if p.plan.recursive:
      metrics.update(rrm_recursive.recursive_metrics(
          p.plan, pool, returns, values, labels, helper_state, p.helpers,
          true_reward, rollout.aspects(data)))
    new = new.replace(reward=reward_state, pool=pool, labels=labels,
                      helpers=helper_state, ratings=rating_state)
    if p.safety is not None:
      safety_state, m = p.safety.step(  # the unacceptable flags' round
          state.safety, state.iteration, data.observation, data.action,
          rollout.outcome(data), data.reward, rollout.unsafe_events(data),
          labels.spent, jax.random.fold_in(keys.ask, _SAFETY_STREAM))
      metrics.update(m)
      new = new.replace(safety=safety_state)
    if p.ratings is not None:  # the user's effort: every kind, in units
      metrics["feedback/budget_spent"] = _budget_spent(p, new)
  new = new.replace(policy=policy_state)
  metrics.update(diagnostics.health_metrics(policy_state, new.reward))
  return rollout.strip_weak_types(new), metrics


def make_train(config: rrm_config.TrainConfig) -> Train:
  """Builds the jitted `init` and `iteration` of a run (compiled lazily).

  Raises ConfigError / LabelsFileError (before anything compiles) when a
  warm-start labels file does not fit the config.
  """
  plan = make_plan(config)
  envs = rrm_envs.make_envs(config.env, plan.aspects)
  warm = rrm_workdir.load_warm_start(
      config, envs.observation_size,
      envs.action_size) if config.learned_reward else None
  parts = _bind(config, plan, envs, warm.size if warm else 0)
  init_jit = jax.jit(functools.partial(_init, parts))
  warm_flags, warm_ratings = None, None
  if warm is not None and warm.flags is not None and config.safety:
    warm_flags = (warm.flags.segments, warm.flags.flag, warm.flags.truth)
  if warm is not None and warm.ratings is not None and config.ratings:
    warm_ratings = (warm.ratings.segments, warm.ratings.rating)
  warm_arrays = None if warm is None else jax.tree.map(
      jnp.asarray, ((warm.first, warm.second, warm.label), warm_flags,
                    warm_ratings))

  def init(seed_key: jax.Array, hyper: rrm_state.Hyper | None = None,
           teacher: rrm_oracle.TeacherParams | None = None
           ) -> rrm_state.TrainState:
    # Imported labels and hyperparameters enter as arguments, not as
    # constants of the program. Typed keys only, so raw and typed callers
    # share one compiled program.
    return init_jit(rrm_state.as_typed_key(seed_key), warm_arrays,
                    rrm_state.make_hyper(config) if hyper is None else hyper,
                    rrm_state.make_teacher(config) if teacher is None
                    else teacher)

  init._cache_size = init_jit._cache_size  # pylint: disable=protected-access
  evaluate = rollout.make_evaluate(envs.eval, parts.agent.make_policy,
                                   parts.agent.inference_params,
                                   config.env.num_eval_envs,
                                   config.env.eval_episode_length)
  return Train(config=config, init=init,
               iteration=jax.jit(functools.partial(_iteration, parts),
                                 donate_argnums=0),
               evaluate=jax.jit(evaluate), envs=envs, plan=plan,
               record_episode=jax.jit(rrm_video.make_record_episode(
                   envs.eval, parts.agent.make_policy,
                   parts.agent.inference_params,
                   config.env.eval_episode_length)))
