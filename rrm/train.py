"""The reward-modeling loop: `make_train(config)` and the host loop `run`.

One iteration (one jitted function of `(TrainState, key)`):

  1. rollout   B envs x T steps with the current policy (brax acting);
  2. relabel   every transition with the learned reward (normalised ensemble
               mean) -- or keep the true reward when `reward.source = "true"`,
               the baseline every comparison needs, through the same code;
  3. PPO       brax's PPO loss and update on the relabelled rollout;
  4. segments  cut the rollout into length-L segments, add some to the pool;
  5. queries   when the schedule says so, pick pairs from the pool;
  6. oracle    the synthetic teacher labels them from hidden true returns;
  7. reward    reward-model epochs on the label dataset (only when labels
               arrived), then refit the output normalisation;
  8. metrics   a flat dict of scalars.

Before the first iteration `init` fills the pool with random-policy segments,
asks for the initial batch of labels and fits the reward model to it, so RL
never starts from an untrained reward.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from typing import Any, Callable, NamedTuple, Sequence

from absl import logging
from brax import envs as brax_envs
from brax.training import acting
from brax.training import types as brax_types
from brax.training.agents.ppo import networks as ppo_networks
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import diagnostics
from rrm import envs as rrm_envs
from rrm import feedback as rrm_feedback
from rrm import logging as rrm_logging
from rrm import oracle as rrm_oracle
from rrm import ppo as rrm_ppo
from rrm import queries as rrm_queries
from rrm import recursive as rrm_recursive
from rrm import report as rrm_report
from rrm import reward as rrm_reward
from rrm import segments as rrm_segments


@flax.struct.dataclass
class EpisodeStats:
  """Per-env running and last completed episode returns, [B] each."""
  true_sum: jax.Array
  learned_sum: jax.Array
  last_true: jax.Array
  last_learned: jax.Array
  completed: jax.Array  # int32 episodes completed so far


@flax.struct.dataclass
class Hyper:
  """The run's array-valued hyperparameters (they change no shape).

  They live in the state, so one compiled program runs any values of them
  and `vmap` over stacked `Hyper`s runs a sweep (rrm.sweep). The teacher's
  parameters are the other such part of the state (`TrainState.teacher`).
  """
  ppo: rrm_ppo.PPOHyper
  reward_learning_rate: jax.Array
  reward_weight_decay: jax.Array
  uncertainty_penalty: jax.Array


def make_hyper(config: rrm_config.TrainConfig) -> Hyper:
  rc = config.reward
  f = lambda x: jnp.asarray(x, jnp.float32)
  return Hyper(ppo=rrm_ppo.hyper(config.ppo),
               reward_learning_rate=f(rc.learning_rate),
               reward_weight_decay=f(rc.weight_decay),
               uncertainty_penalty=f(rc.uncertainty_penalty))


def make_teacher(config: rrm_config.TrainConfig) -> rrm_oracle.TeacherParams:
  oc = config.oracle
  return rrm_oracle.make_teacher(
      beta=oc.beta, gamma=oc.gamma, mistake=oc.mistake, skip=oc.skip,
      equal=oc.equal, forward_discount=oc.forward_discount)


@flax.struct.dataclass
class HelperState:
  """Recursive reward modeling's helpers: one reward model per non-root node.

  Stacked over the helper axis [H] (rrm.recursive.Plan.helpers): ensemble
  parameters, optimiser states and each node's own label dataset (capacity:
  the largest node budget; each node stops at its own).
  """
  reward: rrm_reward.RewardState
  labels: rrm_feedback.LabelDataset


@flax.struct.dataclass
class TrainState:
  policy: rrm_ppo.PolicyState
  reward: rrm_reward.RewardState
  pool: rrm_segments.SegmentPool
  labels: rrm_feedback.LabelDataset
  teacher: rrm_oracle.TeacherParams
  hyper: Hyper
  env: brax_envs.State
  episodes: EpisodeStats
  key: jax.Array  # typed PRNG key of the run; iteration i uses fold_in(key, i)
  iteration: jax.Array  # int32 scalar, iterations completed
  helpers: HelperState | None = None  # assisted user's helpers (recursive)


class Train(NamedTuple):
  """What `make_train` builds.

  `init(seed_key, hyper=None, teacher=None)` (jitted) makes the state
  before the first iteration, with the config's hyperparameters and teacher
  unless others are given (same program either way);
  `iteration(state)` (jitted, donates `state`) is one iteration, its
  randomness drawn from the state's own key; `evaluate(state, key)` (jitted)
  is the true-reward evaluation. `run_keys(seed)` gives the keys `run` uses.
  """
  config: rrm_config.TrainConfig
  init: Callable[..., TrainState]
  iteration: Callable[[TrainState], tuple[TrainState, dict]]
  evaluate: Callable[[TrainState, jax.Array], dict[str, jax.Array]]
  envs: rrm_envs.Envs
  plan: rrm_recursive.Plan | None = None  # a recursive run's static plan


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(key for `init`, key whose fold_in(., iteration) seeds evaluations)."""
  seed_key = jax.random.key(seed)
  return seed_key, jax.random.split(seed_key, 3)[2]


def _as_typed_key(key: jax.Array) -> jax.Array:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return jax.random.wrap_key_data(key)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _update_episode_stats(stats: EpisodeStats, true_reward: jax.Array,
                          learned_reward: jax.Array,
                          episode_end: jax.Array) -> EpisodeStats:
  """Accumulates [T, B] rewards into per-env episode returns."""

  def step(s, x):
    rt, rl, end = x
    true_sum, learned_sum = s.true_sum + rt, s.learned_sum + rl
    done = end > 0
    return EpisodeStats(
        true_sum=jnp.where(done, 0.0, true_sum),
        learned_sum=jnp.where(done, 0.0, learned_sum),
        last_true=jnp.where(done, true_sum, s.last_true),
        last_learned=jnp.where(done, learned_sum, s.last_learned),
        completed=s.completed + done.astype(jnp.int32)), None

  stats, _ = jax.lax.scan(step, stats, (true_reward, learned_reward,
                                        episode_end))
  return stats


def _mean_over_completed(x: jax.Array, completed: jax.Array) -> jax.Array:
  has = completed > 0
  n = jnp.sum(has)
  return jnp.where(n > 0, jnp.sum(jnp.where(has, x, 0.0)) / jnp.maximum(n, 1),
                   jnp.nan)


# State extras recorded with every transition: brax's truncation flag (for
# GAE) and the step's outcome observation before any auto-reset (for segments
# and the reward model; see envs.OutcomeObservationWrapper); with a task tree
# also the step's reward components (envs.AspectsWrapper).
_EXTRA_FIELDS = ("truncation", "outcome_obs")
_RECURSIVE_EXTRA_FIELDS = _EXTRA_FIELDS + ("aspects",)


def _outcome(data: brax_types.Transition) -> jax.Array:
  """[T, B, obs]: what each step led to (next_observation before resets)."""
  return data.extras["state_extras"]["outcome_obs"]


def _aspects(data: brax_types.Transition) -> jax.Array | None:
  """[T, B, K]: each step's reward components, when the run has a tree."""
  return data.extras["state_extras"].get("aspects")


def _to_ppo_layout(data: brax_types.Transition, unroll_length: int):
  """[T, B, ...] time-major rollout -> brax PPO's [T/U * B, U, ...] layout."""

  def f(x):
    t, b = x.shape[:2]
    x = x.reshape((t // unroll_length, unroll_length, b) + x.shape[2:])
    x = jnp.swapaxes(x, 1, 2)
    return x.reshape((t // unroll_length * b, unroll_length) + x.shape[3:])

  return jax.tree.map(f, data)


def _strip_weak_types(tree):
  """Makes every leaf strongly typed.

  Leaves built from Python scalars (brax's running-statistics counts, zeros)
  are weakly typed in `init`'s output and strongly typed after one
  `iteration`; without this the second call of `iteration` would compile
  again (brax's trainer does the same).
  """

  def strong(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x.astype(
        x.dtype)

  return jax.tree.map(strong, tree)


def _load_warm_start(config: rrm_config.TrainConfig,
                     envs: rrm_envs.Envs) -> rrm_checkpoint.LabelFile | None:
  """Reads `feedback.warm_start_labels` and checks that it fits the run."""
  fb = config.feedback
  if not fb.warm_start_labels:
    return None
  lf = rrm_checkpoint.load_labels(fb.warm_start_labels)
  where = f"labels file {fb.warm_start_labels}"
  if lf.env and lf.env != config.env.name:
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds labels of env {lf.env!r}, this run trains "
        f"{config.env.name!r}")
  if lf.size and (lf.observation_size, lf.action_size) != (
      envs.observation_size, envs.action_size):
    raise rrm_checkpoint.LabelsFileError(
        f"{where} has observations of size {lf.observation_size} and actions "
        f"of size {lf.action_size}; env {config.env.name!r} has "
        f"{envs.observation_size} and {envs.action_size}")
  if lf.size and lf.segment_length != fb.segment_length:
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds segments of length {lf.segment_length}; "
        f"config.feedback.segment_length={fb.segment_length}")
  if not fb.warm_start_extra and lf.size > fb.budget:
    raise rrm_config.ConfigError(
        f"{where} holds {lf.size} labels, more than config.feedback.budget="
        f"{fb.budget} they are counted against; raise the budget or declare "
        "them extra (config.feedback.warm_start_extra=True, --labels_extra)")
  return lf


def make_plan(config: rrm_config.TrainConfig) -> rrm_recursive.Plan | None:
  """A recursive run's static plan (rrm.recursive.make_plan), else None."""
  rec, fb = config.recursive, config.feedback
  if not rec.enabled:
    return None
  return rrm_recursive.make_plan(
      rec.user, json.loads(rec.tree), rec.visible, rec.decay,
      rec.level_fractions, rec.helpers == "perfect", fb.budget,
      fb.initial_labels, fb.labels_per_round)


def _split_aspects(data: brax_types.Transition, length: int):
  """[S, L, K] reward components of the rollout's segments (None: no tree)."""
  a = _aspects(data)
  return None if a is None else rrm_segments.split_time(a, length)


class _Helpers(NamedTuple):
  """The assisted user's helpers, built by `_make_helpers` (pure functions)."""
  init: Callable[..., HelperState]
  assess: Callable[[HelperState, rrm_segments.SegmentPool],
                   tuple[jax.Array, jax.Array]]
  predict: Callable[[HelperState, rrm_segments.SegmentPool],
                    tuple[jax.Array, jax.Array]]
  iteration: Callable[..., tuple[HelperState, dict[str, jax.Array]]]
  reliability: Callable[[HelperState], jax.Array]


def _make_helpers(plan: rrm_recursive.Plan, config: rrm_config.TrainConfig,
                  model, reward_optimizer, reward_update,
                  initial_reward_update, ask_teacher, obs_size: int,
                  act_size: int) -> _Helpers:
  """One reward model per non-root node, trained by reward modeling.

  Each helper's labels come from the user judging its node: a leaf's aspect
  directly (accurately, with the run's teacher), an inner node assisted by
  its own children's helpers. Every helper is stacked on one axis [H] and
  updated in one vmapped step; a node's labels follow the run's schedule
  with its own share of the budget (`plan.helper_schedules`).
  """
  fb, rc = config.feedback, config.reward
  hn = plan.num_helpers
  schedules = plan.helper_schedules
  budgets = np.asarray([s.budget for s in schedules], np.int32)
  initials = np.asarray([s.initial for s in schedules], np.int32)
  capacity = max(int(budgets.max()), 1)
  quotas = [rrm_feedback.label_quotas(fb.schedule, s.budget, s.initial,
                                      max(s.per_round, 1), fb.round_every,
                                      fb.schedule_horizon) for s in schedules]
  horizon = max(len(q) for q in quotas)
  quotas = np.stack([np.pad(q, (0, horizon - len(q))) for q in quotas])
  queries_per_round = max(int(quotas.max()), 1)
  levels = np.asarray(plan.helper_levels)

  def optimizer_of(hyper: Hyper) -> optax.GradientTransformation:
    return optax.adamw(hyper.reward_learning_rate,
                       weight_decay=hyper.reward_weight_decay)

  def predict(state: HelperState, pool: rrm_segments.SegmentPool):
    """([H, P, L] ensemble-mean per-step predictions, [H, M, P] returns)."""
    segs = pool.segments
    member = jax.vmap(lambda p, n: rrm_reward.predict(
        model, p, n, segs.observation, segs.action, segs.next_observation))(
            state.reward.params, state.reward.input_normalizer)
    return jnp.mean(member, axis=1), jnp.sum(member, axis=-1)

  heldout = rrm_reward.heldout_mask(capacity, rc.heldout_every)

  def reliability(state: HelperState) -> jax.Array:
    """[H] each helper's reliability on its user's held-out labels."""

    def one(r, d):
      diff = jnp.mean(
          rrm_reward.member_returns(model, r.params, r.input_normalizer,
                                    d.second)
          - rrm_reward.member_returns(model, r.params, r.input_normalizer,
                                      d.first), axis=0)
      return rrm_recursive.reliability(diff, d.label, heldout & d.mask)

    return jax.vmap(one)(state.reward, state.labels)

  def assess(state: HelperState, pool: rrm_segments.SegmentPool,
             predictions: jax.Array | None = None):
    if predictions is None:  # [H, P, L], from `predict`
      predictions, _ = predict(state, pool)
    rho = reliability(state)
    return rrm_recursive.assessments(plan, predictions, pool.aspects,
                                     pool.valid, rho)

  def ask(state, pool, teacher, num_queries, active, iteration, key):
    predictions, returns = predict(state, pool)  # once for both uses
    _, perceived = assess(state, pool, predictions)
    ask_one = lambda r, lab, n, k, v: ask_teacher(
        pool, r, lab, teacher, num_queries, n, iteration, k, v)
    return jax.vmap(ask_one)(returns, state.labels, active,
                             jax.random.split(key, hn), perceived)

  def fit(reward, labels, key, hyper, update, mask):
    new, _ = jax.vmap(lambda r, d, k: update(r, d, k, optimizer_of(hyper)))(
        reward, labels, jax.random.split(key, hn))
    pick = lambda old, upd: jnp.where(
        mask.reshape(mask.shape + (1,) * (upd.ndim - 1)), upd, old)
    return jax.tree.map(pick, reward, new)

  def init(pool, input_normalizer, teacher, hyper, key) -> HelperState:
    key_init, key = jax.random.split(key)
    reward = jax.vmap(lambda k: rrm_reward.init_reward_state(
        model, reward_optimizer, k, rc.ensemble_size))(
            jax.random.split(key_init, hn))
    reward = reward.replace(input_normalizer=jax.tree.map(
        lambda x: jnp.broadcast_to(jnp.asarray(x), (hn,) + jnp.shape(x)),
        input_normalizer))
    labels = jax.vmap(lambda _: rrm_feedback.init_labels(
        capacity, fb.segment_length, obs_size, act_size))(jnp.arange(hn))
    state = HelperState(reward=reward, labels=labels)
    # Deepest level first: a level's helpers are trained before they
    # assist the user on the level above.
    for d in sorted(set(plan.helper_levels), reverse=True):
      at = levels == d
      n = int(np.max(np.where(at, initials, 0)))
      if not n:
        continue
      key, key_ask, key_fit = jax.random.split(key, 3)
      labels = ask(state, pool, teacher, n,
                   jnp.asarray(np.where(at, initials, 0)), jnp.int32(-1),
                   key_ask)
      state = HelperState(
          reward=fit(state.reward, labels, key_fit, hyper,
                     initial_reward_update, jnp.asarray(at)),
          labels=labels)
    return state

  def iteration(state, pool, teacher, hyper, it, key):
    key_ask, key_fit = jax.random.split(key)
    due = jax.vmap(rrm_feedback.labels_due, in_axes=(None, 0, 0, 0))(
        it, state.labels.spent, jnp.asarray(budgets), jnp.asarray(quotas))
    labels = ask(state, pool, teacher, queries_per_round, due, it, key_ask)
    reward = jax.lax.cond(
        jnp.any(due > 0),
        lambda r: fit(r, labels, key_fit, hyper, reward_update, due > 0),
        lambda r: r, state.reward)
    return HelperState(reward=reward, labels=labels), {
        "recursive/helper_labels_this_iteration": jnp.sum(due)}

  return _Helpers(init=init, assess=assess, predict=predict,
                  iteration=iteration, reliability=reliability)


def _recursive_metrics(plan: rrm_recursive.Plan,
                       pool: rrm_segments.SegmentPool, returns: jax.Array,
                       values: jax.Array, labels: rrm_feedback.LabelDataset,
                       helper_state: HelperState | None,
                       helpers: _Helpers | None, true_reward: jax.Array,
                       rollout_aspects: jax.Array) -> dict[str, jax.Array]:
  """Per level and node: labels spent, accuracy against the hidden truth.

  Accuracy is `rrm.recursive.pair_accuracy` on the pool: how often a node's
  reward model orders pool segments as their true node values do. Also the
  root user's agreement with a full-view oracle on the labels they gave,
  how well what they perceive orders outcomes, and the tree's fit to the
  env's reward on this rollout (`recursive/root_error`, relative).
  """
  valid = pool.valid
  pool_true = jnp.sum(pool.segments.true_reward, axis=-1)
  root_acc = rrm_recursive.pair_accuracy(jnp.mean(returns, axis=0),
                                         pool_true, valid)
  fit_error = jnp.max(jnp.abs(
      rollout_aspects @ jnp.asarray(plan.root_weights) - true_reward))
  m = {
      "recursive/root_error": fit_error / jnp.maximum(
          1.0, jnp.max(jnp.abs(true_reward))),
      "recursive/user_agreement": rrm_recursive.oracle_agreement(labels),
      "recursive/user_view_accuracy": rrm_recursive.pair_accuracy(
          jnp.sum(values, axis=-1), pool_true, valid),
      "recursive/level0/labels": labels.spent,
      "recursive/level0/accuracy": root_acc,
      f"recursive/node/{plan.tree.name}/labels": labels.spent,
      f"recursive/node/{plan.tree.name}/accuracy": root_acc,
  }
  total = labels.spent
  if helpers is not None:
    predictions, _ = helpers.predict(helper_state, pool)
    true_values = jnp.einsum("plk,hk->hp",
                             pool.aspects, plan.helper_weights)
    spent = helper_state.labels.spent
    rho = helpers.reliability(helper_state)
    acc = []
    for h, node in enumerate(plan.helpers):
      a = rrm_recursive.pair_accuracy(jnp.sum(predictions[h], axis=-1),
                                      true_values[h], valid)
      acc.append(a)
      m[f"recursive/node/{node.name}/labels"] = spent[h]
      m[f"recursive/node/{node.name}/accuracy"] = a
      m[f"recursive/node/{node.name}/reliability"] = rho[h]
    for d in sorted(set(plan.helper_levels)):
      idx = [h for h, lv in enumerate(plan.helper_levels) if lv == d]
      m[f"recursive/level{d}/labels"] = jnp.sum(spent[np.asarray(idx)])
      m[f"recursive/level{d}/accuracy"] = jnp.nanmean(
          jnp.stack([acc[h] for h in idx]))
    total = total + jnp.sum(spent)
  # One budget: the run's labels are every level's.
  m["oracle/labels"] = total
  return m


def make_train(config: rrm_config.TrainConfig) -> Train:
  """Builds the jitted `init` and `iteration` of a run (compiled lazily).

  Raises ConfigError / LabelsFileError (before anything compiles) when a
  warm-start labels file does not fit the config.
  """
  fb, rc = config.feedback, config.reward
  plan = make_plan(config)
  aspect_names = plan.aspects if plan else ()
  num_aspects = len(aspect_names)
  extra_fields = _RECURSIVE_EXTRA_FIELDS if plan else _EXTRA_FIELDS
  envs = rrm_envs.make_envs(config.env, aspect_names)
  obs_size, act_size = envs.observation_size, envs.action_size
  num_envs = config.env.num_envs
  steps = config.steps_per_env_per_iteration
  learned = config.learned_reward
  warm = _load_warm_start(config, envs) if learned else None
  num_warm = warm.size if warm else 0
  # The root's share of the budget (all of it without helpers).
  root_budget = plan.root.budget if plan else fb.budget
  root_initial = plan.root.initial if plan else fb.initial_labels
  root_per_round = plan.root.per_round if plan else fb.labels_per_round
  # Extra imported labels are stored on top of the budget.
  label_capacity = root_budget + (num_warm if fb.warm_start_extra else 0)
  # Counted imported labels replace as much of the initial batch.
  initial_to_ask = (root_initial if fb.warm_start_extra
                    else max(0, root_initial - num_warm))

  networks = rrm_ppo.make_networks(config.ppo, obs_size, act_size)
  policy_optimizer = rrm_ppo.make_optimizer(config.ppo)
  ppo_update = rrm_ppo.make_ppo_update(config.ppo, networks)
  make_policy = ppo_networks.make_inference_fn(networks)

  model = rrm_reward.make_reward_model(rc.input, rc.hidden_layer_sizes,
                                       obs_size, act_size)
  reward_optimizer = optax.adamw(rc.learning_rate, weight_decay=rc.weight_decay)

  def reward_optimizer_of(hyper: Hyper) -> optax.GradientTransformation:
    # Same state structure as `reward_optimizer`, the run's own values.
    return optax.adamw(hyper.reward_learning_rate,
                       weight_decay=hyper.reward_weight_decay)
  reward_update = rrm_reward.make_reward_update(
      model, reward_optimizer, rc.batch_size, rc.num_steps, rc.heldout_every)
  initial_reward_update = rrm_reward.make_reward_update(
      model, reward_optimizer, rc.batch_size, rc.initial_num_steps,
      rc.heldout_every)
  select = rrm_queries.make_selector(fb.query_selector, fb.oversample)
  # Labels due at each iteration (fixed; see feedback.label_quotas). A round
  # always queries the largest quota's number of pairs and keeps `due`.
  quotas = rrm_feedback.label_quotas(
      fb.schedule, root_budget, root_initial, max(root_per_round, 1),
      fb.round_every, fb.schedule_horizon)
  queries_per_round = max(int(quotas.max()), 1)
  heldout = rrm_reward.heldout_mask(label_capacity, rc.heldout_every)

  def ask_teacher(state_pool, returns, labels, teacher, num_queries,
                  num_active, iteration, key, values=None):
    """Queries `num_queries` pairs, keeps the first `num_active` labels.

    `returns` [M, P] are the ensemble's predicted returns of pool segments;
    `values` [P, L] the per-step values the user compares (default: the
    hidden true reward; rrm.recursive's users perceive other things).
    """
    if values is None:
      values = state_pool.segments.true_reward
    key_select, key_oracle = jax.random.split(key)
    q = select(state_pool, returns, num_queries, key_select)
    first = jax.tree.map(lambda x: x[q.first], state_pool.segments)
    second = jax.tree.map(lambda x: x[q.second], state_pool.segments)
    # Skip / equal thresholds are fractions of the mean return of the
    # recent segments in the pool (see rrm.oracle), as the user perceives it.
    pool_returns = jnp.sum(values, axis=-1)
    reference = jnp.sum(jnp.where(state_pool.valid, pool_returns, 0.0)) / (
        jnp.maximum(jnp.sum(state_pool.valid), 1))
    label, skipped = jax.vmap(rrm_oracle.label_pair,
                              in_axes=(None, 0, 0, 0, None))(
                                  teacher, values[q.first], values[q.second],
                                  jax.random.split(key_oracle, num_queries),
                                  reference)
    active = jnp.arange(num_queries) < num_active
    return rrm_feedback.add_labels(labels, first, second, label, active,
                                   iteration, stored=~skipped)

  helpers = _make_helpers(plan, config, model, reward_optimizer,
                          reward_update, initial_reward_update, ask_teacher,
                          obs_size, act_size) if (
                              plan and plan.num_helpers) else None

  def root_values(pool, helper_state, teacher):
    """What the root's user compares, and their teacher (rrm.recursive)."""
    if plan is None:
      return None, teacher
    assessed = None
    if helpers is not None:
      assessed, _ = helpers.assess(helper_state, pool)
    return rrm_recursive.root_perceived(plan, pool.aspects, assessed, teacher)

  def random_policy(obs, key):
    return jax.random.uniform(key, obs.shape[:-1] + (act_size,), minval=-1.0,
                              maxval=1.0), {}

  def init(seed_key: jax.Array, warm_labels, hyper: Hyper,
           teacher: rrm_oracle.TeacherParams) -> TrainState:
    key, key_run, _ = jax.random.split(_as_typed_key(seed_key), 3)
    # Brax's envs and acting take raw uint32 keys; the state keeps a typed one.
    key = jax.random.key_data(key)
    (key_env, key_policy, key_reward, key_rollout, key_pool, key_ask,
     key_fit) = jax.random.split(key, 7)
    env_state = envs.train.reset(jax.random.split(key_env, num_envs))
    pool = rrm_segments.init_pool(fb.pool_size, fb.segment_length, obs_size,
                                  act_size, num_aspects)
    labels = rrm_feedback.init_labels(label_capacity, fb.segment_length,
                                      obs_size, act_size)
    if warm_labels is not None:
      labels = rrm_feedback.import_labels(labels, *warm_labels,
                                          counted=not fb.warm_start_extra)
    reward = rrm_reward.init_reward_state(model, reward_optimizer, key_reward,
                                          rc.ensemble_size)
    helper_state = None
    if learned:
      # Random-policy segments: enough steps that the pool fills up.
      per_env = -(-fb.pool_size // num_envs)
      _, data = acting.generate_unroll(
          envs.train, env_state, random_policy, key_rollout,
          per_env * fb.segment_length, extra_fields=extra_fields)
      segments, valid = rrm_segments.cut(
          data.observation, data.action, _outcome(data), data.reward,
          1.0 - data.discount, fb.segment_length)
      pool = rrm_segments.add(pool, segments, valid, fb.pool_size, key_pool,
                              _split_aspects(data, fb.segment_length))
      reward = reward.replace(input_normalizer=rrm_reward.fit_input_normalizer(
          model, pool.segments, pool.valid))
      if helpers is not None:
        key_ask, key_helpers = jax.random.split(key_ask)
        # Bottom-up: each level's helpers learn before they assist the next.
        helper_state = helpers.init(pool, reward.input_normalizer, teacher,
                                    hyper, key_helpers)
      # No labels yet: the untrained ensemble's disagreement is its prior.
      returns = rrm_reward.member_returns(model, reward.params,
                                          reward.input_normalizer,
                                          pool.segments)
      values, root_teacher = root_values(pool, helper_state, teacher)
      if initial_to_ask:
        labels = ask_teacher(pool, returns, labels, root_teacher,
                             initial_to_ask, initial_to_ask, jnp.int32(-1),
                             key_ask, values)
      reward, _ = initial_reward_update(reward, labels, key_fit,
                                        reward_optimizer_of(hyper))
      reward = rrm_reward.refit_normalizer(model, reward, labels,
                                           hyper.uncertainty_penalty)
    zeros = jnp.zeros((num_envs,))
    return _strip_weak_types(TrainState(
        policy=rrm_ppo.init_policy(networks, policy_optimizer, obs_size,
                                   key_policy),
        reward=reward, pool=pool, labels=labels, teacher=teacher,
        hyper=hyper, env=env_state,
        episodes=EpisodeStats(zeros, zeros, zeros, zeros,
                              jnp.zeros((num_envs,), jnp.int32)),
        key=key_run, iteration=jnp.zeros((), jnp.int32),
        helpers=helper_state))

  def iteration(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
    key = jax.random.key_data(jax.random.fold_in(state.key, state.iteration))
    key_rollout, key_ppo, key_pool, key_ask, key_fit = jax.random.split(key, 5)
    policy = make_policy(rrm_ppo.inference_params(state.policy))
    env_state, data = acting.generate_unroll(
        envs.train, state.env, policy, key_rollout, steps,
        extra_fields=extra_fields)
    true_reward = data.reward  # [T, B]
    if learned:
      reward_for_rl = rrm_reward.learned_reward(
          model, state.reward, data.observation, data.action, _outcome(data),
          state.hyper.uncertainty_penalty)
    else:
      reward_for_rl = true_reward
    policy_state, metrics = ppo_update(
        state.policy,
        _to_ppo_layout(data._replace(reward=reward_for_rl),
                       config.ppo.unroll_length), key_ppo, state.hyper.ppo)
    episode_end = 1.0 - data.discount
    episodes = _update_episode_stats(state.episodes, true_reward,
                                     reward_for_rl, episode_end)
    metrics.update({
        "rollout/nonfinite_fraction": jnp.mean(jnp.logical_not(
            jnp.all(jnp.isfinite(_outcome(data)), axis=-1))),
        "rollout/true_reward": jnp.mean(true_reward),
        "rollout/true_episode_return": _mean_over_completed(
            episodes.last_true, episodes.completed),
    })
    reward_state, pool, labels = state.reward, state.pool, state.labels
    helper_state = state.helpers
    if learned:
      segments, valid = rrm_segments.cut(
          data.observation, data.action, _outcome(data), true_reward,
          episode_end, fb.segment_length)
      pool = rrm_segments.add(pool, segments, valid, fb.segments_per_iteration,
                              key_pool, _split_aspects(data, fb.segment_length))
      if helpers is not None:
        key_ask, key_helpers = jax.random.split(key_ask)
        helper_state, helper_metrics = helpers.iteration(
            helper_state, pool, state.teacher, state.hyper, state.iteration,
            key_helpers)
        metrics.update(helper_metrics)
      due = rrm_feedback.labels_due(state.iteration, labels.spent, root_budget,
                                    quotas)
      returns = rrm_reward.member_returns(model, reward_state.params,
                                          reward_state.input_normalizer,
                                          pool.segments)  # [M, P]
      values, root_teacher = root_values(pool, helper_state, state.teacher)
      labels = ask_teacher(pool, returns, labels, root_teacher,
                           queries_per_round, due, state.iteration, key_ask,
                           values)

      def fit(reward_state):
        reward_state, m = reward_update(reward_state, labels, key_fit,
                                        reward_optimizer_of(state.hyper))
        return rrm_reward.refit_normalizer(model, reward_state, labels,
                                           state.hyper.uncertainty_penalty), m

      def keep(reward_state):
        return reward_state, {"reward/loss": jnp.float32(jnp.nan),
                              "reward/train_accuracy": jnp.float32(jnp.nan)}

      reward_state, reward_metrics = jax.lax.cond(due > 0, fit, keep,
                                                  reward_state)
      # Of the model this iteration's queries were chosen with (one ensemble
      # pass over the pool per iteration, not two).
      pool_true = jnp.sum(pool.segments.true_reward, axis=-1)
      pool_learned = jnp.mean(returns, axis=0)
      metrics.update(reward_metrics)
      metrics.update({
          "rollout/learned_reward": jnp.mean(reward_for_rl),
          "rollout/learned_episode_return": _mean_over_completed(
              episodes.last_learned, episodes.completed),
          "reward/correlation": diagnostics.pearson(reward_for_rl,
                                                    true_reward),
          "reward/pool_correlation": diagnostics.pearson(
              pool_learned, pool_true, pool.valid),
          "reward/heldout_accuracy": rrm_reward.label_accuracy(
              model, reward_state, labels, heldout),
          "oracle/labels": labels.spent,
          "oracle/labels_stored": labels.count,
          "oracle/labels_this_iteration": due,
      })
      if plan is not None:
        metrics.update(_recursive_metrics(
            plan, pool, returns, values, labels, helper_state, helpers,
            true_reward, _aspects(data)))
    # Non-finite parameters, optimiser states or normalisers (1.0 = some).
    metrics["health/nonfinite_policy"] = 1.0 - _all_finite(
        policy_state).astype(jnp.float32)
    metrics["health/nonfinite_reward_model"] = 1.0 - _all_finite(
        reward_state).astype(jnp.float32)
    new_state = state.replace(
        policy=policy_state, reward=reward_state, pool=pool, labels=labels,
        env=env_state, episodes=episodes, iteration=state.iteration + 1,
        helpers=helper_state)
    return _strip_weak_types(new_state), metrics

  eval_env = brax_envs.training.EvalWrapper(envs.eval)

  def evaluate(state: TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Deterministic policy, standard task, true reward: one episode per env.

    A pure function of (state, key), so evaluations repeat exactly after a
    resume (brax's acting.Evaluator keeps its RNG inside the object).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)  # brax takes raw keys
    key_reset, key_unroll = jax.random.split(key)
    env_state = eval_env.reset(
        jax.random.split(key_reset, config.env.num_eval_envs))
    policy = make_policy(rrm_ppo.inference_params(state.policy),
                         deterministic=True)
    env_state, _ = acting.generate_unroll(
        eval_env, env_state, policy, key_unroll,
        config.env.eval_episode_length)
    m = env_state.info["eval_metrics"]
    returns = m.episode_metrics["reward"]
    # The true return's components (the env's `reward_*` metrics): which
    # aspects of the task the policy got right, e.g. a task tree's leaves.
    components = {f"eval/{k}": jnp.mean(v)
                  for k, v in m.episode_metrics.items()
                  if k.startswith("reward_")}
    return {"eval/true_return": jnp.mean(returns),
            "eval/true_return_std": jnp.std(returns),
            "eval/episode_length": jnp.mean(m.episode_steps), **components}

  init_jit = jax.jit(init)
  warm_arrays = None if warm is None else jax.tree.map(
      jnp.asarray, (warm.first, warm.second, warm.label))

  def init_with_labels(seed_key: jax.Array, hyper: Hyper | None = None,
                       teacher: rrm_oracle.TeacherParams | None = None
                       ) -> TrainState:
    # Imported labels and hyperparameters enter as arguments, not as
    # constants of the program. Typed keys only, so raw and typed callers
    # share one compiled program.
    return init_jit(_as_typed_key(seed_key), warm_arrays,
                    make_hyper(config) if hyper is None else hyper,
                    make_teacher(config) if teacher is None else teacher)

  init_with_labels._cache_size = init_jit._cache_size  # pylint: disable=protected-access
  return Train(config=config, init=init_with_labels,
               iteration=jax.jit(iteration, donate_argnums=0),
               evaluate=jax.jit(evaluate), envs=envs, plan=plan)


# Fields a resumed run may change; any other difference is refused.
RESUMABLE_CHANGES = ("num_iterations", "eval_every", "checkpoint_every",
                     "keep_checkpoints", "log", "report")


class WorkdirError(OSError):
  """The workdir cannot be written (permissions, a full disk, ...)."""


def config_differences(saved: dict[str, Any], now: dict[str, Any],
                       resumable: Sequence[str] = RESUMABLE_CHANGES,
                       prefix: str = "") -> list[str]:
  """'field: saved x, now y' for each differing field, except `resumable`."""
  diffs = []
  for k in sorted(set(saved) | set(now)):
    name = prefix + k
    if not prefix and k in resumable:
      continue
    a, b = saved.get(k), now.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, resumable, name + ".")
    elif a != b and not (isinstance(a, list) and tuple(a) == b):
      diffs.append(f"{name}: saved {a!r}, now {b!r}")
  return diffs


def truncate_metrics(path: str, last_iteration: int) -> None:
  """Drops metric lines after `last_iteration` (written after the checkpoint)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  with open(path + ".tmp", "w") as f:
    for line in lines:
      try:
        m = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      if m["iteration"] <= last_iteration:
        f.write(json.dumps(m, sort_keys=True) + "\n")
  os.replace(path + ".tmp", path)


def nonfinite_problem(metrics: dict[str, float],
                      config: rrm_config.TrainConfig) -> str | None:
  """Names what is not finite in one iteration's metrics, or None.

  Checked: the rollout's observations (a diverged simulation), PPO's losses
  and KL, the true and learned rewards of the rollout, the reward-model loss
  (in iterations with new labels; without, it is nan by design), and the
  health flags for non-finite parameters, optimiser states or normalisers.
  """
  if metrics.get("rollout/nonfinite_fraction", 0.0) > 0:
    return (f"{metrics['rollout/nonfinite_fraction']:.1%} of the rollout's "
            f"observations are not finite (rollout/nonfinite_fraction): the "
            f"physics of env {config.env.name!r} diverged on backend "
            f"{config.env.backend!r}. Choose a more stable backend "
            "(config.env.backend: positional or mjx); with fixed_horizon the "
            "env runs on in states the standard task never reaches")
  bad = []
  for k, v in metrics.items():
    if (k.startswith("ppo/") or k in ("rollout/true_reward",
                                      "rollout/learned_reward")):
      if not math.isfinite(v):
        bad.append(f"{k}={v}")
  if metrics.get("oracle/labels_this_iteration", 0) > 0:
    for k in ("reward/loss", "reward/train_accuracy"):
      if k in metrics and not math.isfinite(metrics[k]):
        bad.append(f"{k}={metrics[k]}")
  if metrics.get("health/nonfinite_policy", 0.0):
    bad.append("health/nonfinite_policy (policy parameters, optimiser state "
               "or observation normaliser)")
  if metrics.get("health/nonfinite_reward_model", 0.0):
    bad.append("health/nonfinite_reward_model (reward-model parameters, "
               "optimiser state or normalisers)")
  return ("non-finite " + ", ".join(bad)) if bad else None


# Largest relative error of the tree's root against the env's reward that is
# float rounding (sums of float32 components in another order).
TREE_TOLERANCE = 1e-4


def export_run_labels(state: TrainState, workdir: str,
                      config: rrm_config.TrainConfig) -> None:
  """Exports every label of a run: the root's to labels.npz, each helper's
  (recursive runs) to labels.<node>.npz."""
  rrm_checkpoint.export_labels(state.labels, state.teacher,
                               os.path.join(workdir, "labels.npz"),
                               config.env.name)
  if state.helpers is not None:
    for h, node in enumerate(make_plan(config).helpers):
      rrm_checkpoint.export_labels(
          jax.tree.map(lambda x, h=h: x[h], state.helpers.labels),
          state.teacher, os.path.join(workdir, f"labels.{node.name}.npz"),
          config.env.name)


def check_writable(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".rrm-write-probe-{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable: "
                       f"{e.strerror or e}") from e


def _holds_run(workdir: str) -> bool:
  return any(os.path.exists(os.path.join(workdir, name)) and (
      not os.path.isdir(os.path.join(workdir, name))
      or os.listdir(os.path.join(workdir, name)))
             for name in ("metrics.jsonl", "checkpoints", "labels.npz"))


def _stamp() -> str:
  return time.strftime("%Y%m%d_%H%M%S")


def _discard_run(workdir: str) -> str | None:
  """Removes a previous run's outputs; its labels are kept. Returns their path."""
  kept = None
  labels = os.path.join(workdir, "labels.npz")
  if os.path.exists(labels):
    kept = os.path.join(workdir, f"labels.discarded_{_stamp()}.npz")
    os.replace(labels, kept)
  for name in ("checkpoints", "checkpoints_damaged", "tensorboard"):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  for name in ("metrics.jsonl", "config.json"):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  return kept


def _keep_unsaved_labels(workdir: str, restored_count: int,
                         step: int) -> str | None:
  """Sets aside a labels.npz that holds labels the restored state lacks.

  That happens when a run stopped on non-finite values (its labels are
  exported even though its state is not saved) or lost its latest
  checkpoint. The next export would overwrite them; they are kept instead.
  """
  path = os.path.join(workdir, "labels.npz")
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as data:
      count = int(data["label"].shape[0])
  except Exception:  # pylint: disable=broad-except
    count = restored_count + 1  # unreadable: keep it to be safe
  if count <= restored_count:
    return None
  kept = os.path.join(workdir, f"labels.after_{step}_{_stamp()}.npz")
  os.replace(path, kept)
  logging.warning(
      "%s holds %d labels, the checkpoint restored (iteration %d) %d; they "
      "are kept as %s (warm-start a run from them with --labels)", path,
      count, step, restored_count, kept)
  return kept


def run(config: rrm_config.TrainConfig, workdir: str | None = None,
        progress: Callable[[str], None] | None = print,
        train: Train | None = None,
        stop: Callable[[], str | None] | None = None,
        fresh: bool = False, overwrite: bool = False) -> dict[str, Any]:
  """Trains for `config.num_iterations`, evaluating every `eval_every`.

  With a `workdir`: writes `config.json`, `metrics.jsonl` (and TensorBoard
  events if asked), and every `checkpoint_every` iterations, at the end and
  when `stop()` returns a reason, a checkpoint of the complete state
  (`checkpoints/`) with the labels exported to `labels.npz`.

  A workdir that holds a checkpoint is resumed from its latest valid one
  (bit-exactly on CPU; damaged ones are set aside, see rrm.checkpoint); its
  config must match the saved one except for `RESUMABLE_CHANGES`. With
  `fresh`, a workdir that holds a run is refused unless `overwrite` is also
  set, which removes that run's outputs but keeps its labels
  (`labels.discarded_<time>.npz`).

  `stop` (e.g. rrm.preemption.StopOnSignals) is polled after every
  iteration: when it returns a reason, the run saves a checkpoint, waits for
  it and returns early with `"stopped"` set to that reason.

  A non-finite observation, loss, reward, parameter or optimiser state stops
  the run with FloatingPointError naming the iteration and the metric; the
  failing state is not saved (the last good checkpoint stays the latest), but
  its labels are exported to labels.npz, so none is lost.

  At the end, `report.json` (rrm.report.feedback_efficiency over the whole
  run): labels to reach `report.threshold` of `report.baseline_return`,
  normalised final return, labels spent.

  `train`, if given, is a `make_train(config)` to reuse. Returns {"state",
  "metrics" (this call's list), "final", "train", "stopped", "iteration",
  "report",
  "checkpoint_seconds" (time the loop was blocked saving, incl. the final
  wait)}.
  """
  if train is None:
    train = make_train(config)
  elif config_differences(rrm_config.to_dict(train.config),
                           rrm_config.to_dict(config)):
    raise ValueError("`train` was built for another config")
  seed_key, key_eval = run_keys(config.seed)
  t_start = time.time()
  writer, checkpointer, state, start = None, None, None, 0
  metrics_path = labels_path = None
  last_saved = None  # iteration of the latest checkpoint on disk
  if workdir is not None:
    check_writable(workdir)
    config_path = os.path.join(workdir, "config.json")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    labels_path = os.path.join(workdir, "labels.npz")
    if fresh and _holds_run(workdir):
      if not overwrite:
        raise FileExistsError(
            f"{workdir} already holds a run; starting afresh would discard "
            "it. Add --overwrite to do so (its labels are kept), or drop "
            "--fresh to resume it.")
      kept = _discard_run(workdir)
      logging.warning("discarded the run in %s%s", workdir,
                      f"; its labels are kept as {kept}" if kept else "")
    if config.checkpoint_every:
      checkpointer = rrm_checkpoint.Checkpointer(
          os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
      step = checkpointer.latest_step()
      if step is not None:
        saved = None
        if os.path.exists(config_path):
          with open(config_path) as f:
            saved = json.load(f)
        else:
          saved = checkpointer.metadata(step).get("config", {})
        diffs = config_differences(saved, rrm_config.to_dict(config))
        if diffs:
          raise rrm_config.ConfigError(
              f"{workdir} holds a run with another config; a resumed run may "
              f"change only {', '.join(RESUMABLE_CHANGES)}. Differences:\n  "
              + "\n  ".join(diffs))
        restored = checkpointer.restore_latest(train.init)
        if restored is not None:
          start, state, _ = restored
          last_saved = start
          truncate_metrics(metrics_path, start)
          _keep_unsaved_labels(workdir, int(state.labels.count), start)
          if progress:
            progress(f"resumed from {checkpointer.directory} at iteration "
                     f"{start}")
    if state is None and os.path.exists(metrics_path):
      raise FileExistsError(
          f"{workdir} already holds a run (metrics.jsonl) without a "
          "checkpoint to resume from; choose a new workdir, or start afresh "
          "with --fresh --overwrite.")
    with open(config_path, "w") as f:
      json.dump(rrm_config.to_dict(config), f, indent=2, sort_keys=True)
    writer = rrm_logging.MetricWriter(workdir,
                                      tensorboard=config.log.tensorboard)

  checkpoint_seconds = 0.0  # blocking time spent saving, this call

  def save(it: int, state: TrainState) -> None:
    nonlocal last_saved, checkpoint_seconds
    t0 = time.perf_counter()
    host_state = jax.device_get(state)  # the next iteration donates state
    checkpointer.save(it, host_state, {
        "iteration": it, "labels_spent": int(host_state.labels.spent),
        "config": rrm_config.to_dict(config)})
    if config.learned_reward:
      export_run_labels(host_state, workdir, config)
    last_saved = it
    checkpoint_seconds += time.perf_counter() - t0

  history, stopped, it, completed = [], None, start, False
  try:
    if state is None:
      state = train.init(seed_key)
    t_loop = time.time()
    if progress and start == 0:
      initial = config.feedback.initial_labels if config.learned_reward else 0
      progress(f"init (compile + {initial} initial labels): "
               f"{t_loop - t_start:.1f}s")
    if stop and stop():
      stopped = stop()
      if checkpointer and last_saved != start:
        save(start, state)
    first = config.num_iterations if stopped else start
    for i in range(first, config.num_iterations):
      state, metrics = train.iteration(state)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      it = i + 1
      now = time.time()
      metrics.update({
          "iteration": it,
          "env_steps": it * config.env_steps_per_iteration,
          "time/elapsed_s": now - t_start,
          "time/steps_per_s": ((it - start) * config.env_steps_per_iteration
                               / (now - t_loop)),
          "time/checkpoint_s": checkpoint_seconds,
      })
      problem = nonfinite_problem(metrics, config)
      if problem:
        if writer:
          writer.write(metrics)  # for diagnosis; a resume truncates it
        kept = ""
        if labels_path and config.learned_reward:
          export_run_labels(state, workdir, config)
          kept = f" Its labels are exported to {labels_path}."
        where = (f"the last good checkpoint (iteration {last_saved}) in "
                 f"{checkpointer.directory} is intact" if last_saved is not None
                 else "no checkpoint was saved before it")
        raise FloatingPointError(
            f"iteration {it}: {problem}. The run stopped without saving this "
            f"state; {where}.{kept}")
      tree_error = metrics.get("recursive/root_error", 0.0)
      if tree_error > TREE_TOLERANCE:
        raise rrm_config.ConfigError(
            f"iteration {it}: the task tree's root does not reproduce the "
            f"env's reward (max |weighted aspects - reward| = "
            f"{tree_error:.3g} of the largest reward on the rollout): check "
            f"config.recursive.tree's aspects and weights against "
            f"{config.env.name!r}'s reward components")
      if it % config.eval_every == 0 or it == config.num_iterations:
        metrics.update({k: float(v) for k, v in jax.device_get(train.evaluate(
            state, jax.random.fold_in(key_eval, it))).items()})
      history.append(metrics)
      if writer:
        writer.write(metrics)
      requested = stop() if stop else None
      if checkpointer and (it % config.checkpoint_every == 0
                           or it == config.num_iterations or requested):
        save(it, state)
      if progress and (it % config.log.print_every == 0
                       or it == config.num_iterations):
        progress(rrm_logging.progress_line(metrics, config.num_iterations,
                                           t_loop, start))
      if requested:
        stopped = requested
        break
    completed = True
  except OSError as e:
    if isinstance(e, WorkdirError):
      raise
    raise WorkdirError(
        f"writing to {workdir} failed at iteration {it}: {e}. "
        + (f"The last complete checkpoint is iteration {last_saved}."
           if last_saved is not None else "No checkpoint was completed.")
    ) from e
  finally:
    if writer:
      writer.close()
    if checkpointer:
      t0 = time.perf_counter()
      try:
        checkpointer.close()
      except rrm_checkpoint.CheckpointError:
        if completed:
          raise
        logging.exception("while stopping on an error, a checkpoint save "
                          "failed too")
      checkpoint_seconds += time.perf_counter() - t0
  # Feedback efficiency over the whole run (all of metrics.jsonl on resume).
  all_metrics = (rrm_logging.read_metrics(metrics_path)
                 if metrics_path and os.path.exists(metrics_path) else history)
  report = rrm_report.feedback_efficiency(
      all_metrics, config.report.baseline_return, config.report.threshold)
  if workdir is not None:
    with open(os.path.join(workdir, "report.json"), "w") as f:
      json.dump(report, f, indent=2, sort_keys=True)
  if stopped and progress:
    progress(f"stopped ({stopped}) after iteration {it}: "
             + (f"checkpoint saved in {checkpointer.directory}; launch the same "
                "command again to resume" if checkpointer else
                "no checkpoint (checkpoint_every=0)"))
  return {"state": state, "metrics": history,
          "final": history[-1] if history else None, "train": train,
          "stopped": stopped, "iteration": it, "report": report,
          "checkpoint_seconds": checkpoint_seconds}
