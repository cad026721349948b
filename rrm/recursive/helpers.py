"""The assisted user's helpers: one reward model per non-root node.

Each helper is trained by reward modeling from the user's labels of its
node: a leaf's aspect judged directly (accurately, with the run's teacher),
an inner node assisted by its own children's helpers. Every helper is
stacked on one axis [H] and updated in one vmapped step; a node's labels
follow the run's schedule with its own share of the budget
(`Plan.helper_schedules`).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rrm import config as rrm_config
from rrm import feedback as rrm_feedback
from rrm import labeling
from rrm import reward as rrm_reward
from rrm import segments as rrm_segments
from rrm import state as rrm_state
from rrm.recursive import assessment
from rrm.recursive import plan as rrm_plan


class Helpers(NamedTuple):
  """What `make_helpers` builds (pure functions of a `HelperState`)."""
  init: Callable[..., rrm_state.HelperState]
  assess: Callable[..., tuple[jax.Array, jax.Array]]
  predict: Callable[[rrm_state.HelperState, rrm_segments.SegmentPool],
                    tuple[jax.Array, jax.Array]]
  iteration: Callable[..., tuple[rrm_state.HelperState, dict[str, jax.Array]]]
  reliability: Callable[[rrm_state.HelperState], jax.Array]


def _reliability_of_one(model, heldout, reward: rrm_reward.RewardState,
                        labels: rrm_feedback.LabelDataset) -> jax.Array:
  """One helper's reliability on its user's held-out labels."""
  diff = jnp.mean(
      rrm_reward.member_returns(model, reward.params, reward.input_normalizer,
                                labels.second)
      - rrm_reward.member_returns(model, reward.params,
                                  reward.input_normalizer, labels.first),
      axis=0)
  return assessment.reliability(diff, labels.label, heldout & labels.mask)


def _pick(mask: jax.Array, old: jax.Array, new: jax.Array) -> jax.Array:
  """`new` where the helper's [H] mask is set, else `old`."""
  return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)


class _Bound(NamedTuple):
  """The static pieces the helpers' functions are written in."""
  plan: rrm_plan.Plan
  config: rrm_config.TrainConfig
  model: rrm_reward.RewardModel
  reward_update: Callable
  initial_reward_update: Callable
  label_round: labeling.LabelRound
  obs_size: int
  act_size: int
  budgets: np.ndarray  # [H] each node's budget
  initials: np.ndarray  # [H] each node's initial batch
  quotas: np.ndarray  # [H, horizon] labels due per iteration
  queries_per_round: int
  capacity: int  # of every node's dataset: the largest budget
  heldout: jax.Array  # [capacity] the held-out labels' mask


def make_helpers(plan: rrm_plan.Plan, config: rrm_config.TrainConfig,
                 model: rrm_reward.RewardModel, reward_update,
                 initial_reward_update, label_round: labeling.LabelRound,
                 obs_size: int, act_size: int) -> Helpers:
  """Binds the plan's helpers (see the module docstring)."""
  fb = config.feedback
  schedules = plan.helper_schedules
  budgets = np.asarray([s.budget for s in schedules], np.int32)
  quotas = [rrm_feedback.label_quotas(fb.schedule, s.budget, s.initial,
                                      max(s.per_round, 1), fb.round_every,
                                      fb.schedule_horizon) for s in schedules]
  horizon = max(len(q) for q in quotas)
  quotas = np.stack([np.pad(q, (0, horizon - len(q))) for q in quotas])
  capacity = max(int(budgets.max()), 1)
  b = _Bound(
      plan=plan, config=config, model=model, reward_update=reward_update,
      initial_reward_update=initial_reward_update, label_round=label_round,
      obs_size=obs_size, act_size=act_size, budgets=budgets,
      initials=np.asarray([s.initial for s in schedules], np.int32),
      quotas=quotas, queries_per_round=max(int(quotas.max()), 1),
      capacity=capacity,
      heldout=rrm_reward.heldout_mask(capacity, config.reward.heldout_every))
  bind = lambda f: functools.partial(f, b)
  return Helpers(init=bind(_init), assess=bind(_assess),
                 predict=bind(_predict), iteration=bind(_iteration),
                 reliability=bind(_reliability))


def _predict(b: _Bound, state: rrm_state.HelperState,
             pool: rrm_segments.SegmentPool):
  """([H, P, L] ensemble-mean per-step predictions, [H, M, P] returns)."""
  segs = pool.segments
  member = jax.vmap(lambda p, n: rrm_reward.predict(
      b.model, p, n, segs.observation, segs.action, segs.next_observation))(
          state.reward.params, state.reward.input_normalizer)
  return jnp.mean(member, axis=1), jnp.sum(member, axis=-1)


def _reliability(b: _Bound, state: rrm_state.HelperState) -> jax.Array:
  """[H] each helper's reliability on its user's held-out labels."""
  return jax.vmap(functools.partial(_reliability_of_one, b.model, b.heldout))(
      state.reward, state.labels)


def _assess(b: _Bound, state, pool, predictions=None):
  """(assessed, perceived) [H, P, L] (rrm.recursive.assessments)."""
  if predictions is None:  # [H, P, L], from `_predict`
    predictions, _ = _predict(b, state, pool)
  return assessment.assessments(b.plan, predictions, pool.aspects, pool.valid,
                                _reliability(b, state))


def _ask(b: _Bound, state, pool, teacher, num_queries, active, iteration,
         key) -> rrm_feedback.LabelDataset:
  """Every node's label round, [H] stacked, on what its user perceives."""
  predictions, returns = _predict(b, state, pool)  # once for both uses
  _, perceived = _assess(b, state, pool, predictions)
  ask_one = lambda r, lab, n, k, v: b.label_round(
      pool, r, lab, teacher, num_queries, n, iteration, k, v)
  return jax.vmap(ask_one)(returns, state.labels, active,
                           jax.random.split(key, b.plan.num_helpers),
                           perceived)


def _fit(b: _Bound, reward, labels, key, hyper: rrm_state.Hyper, update,
         mask):
  """The helpers' reward update, kept where `mask` [H] is set."""
  new, _ = jax.vmap(lambda r, d, k: update(r, d, k,
                                           hyper.reward_optimizer()))(
                                               reward, labels,
                                               jax.random.split(
                                                   key, b.plan.num_helpers))
  return jax.tree.map(functools.partial(_pick, mask), reward, new)


def _init(b: _Bound, pool, input_normalizer, teacher, hyper,
          key) -> rrm_state.HelperState:
  """Fresh helpers, each level's initial labels asked and fitted in turn."""
  rc, hn = b.config.reward, b.plan.num_helpers
  key_init, key = jax.random.split(key)
  optimizer = rrm_reward.make_optimizer(rc.learning_rate, rc.weight_decay)
  reward = jax.vmap(lambda k: rrm_reward.init_reward_state(
      b.model, optimizer, k, rc.ensemble_size))(jax.random.split(key_init, hn))
  reward = reward.replace(input_normalizer=jax.tree.map(
      lambda x: jnp.broadcast_to(jnp.asarray(x), (hn,) + jnp.shape(x)),
      input_normalizer))
  labels = jax.vmap(lambda _: rrm_feedback.init_labels(
      b.capacity, b.config.feedback.segment_length, b.obs_size,
      b.act_size))(jnp.arange(hn))
  state = rrm_state.HelperState(reward=reward, labels=labels)
  levels = np.asarray(b.plan.helper_levels)
  # Deepest level first: a level's helpers are trained before they assist
  # the user on the level above.
  for d in sorted(set(b.plan.helper_levels), reverse=True):
    at = levels == d
    n = int(np.max(np.where(at, b.initials, 0)))
    if not n:
      continue
    key, key_ask, key_fit = jax.random.split(key, 3)
    labels = _ask(b, state, pool, teacher, n,
                  jnp.asarray(np.where(at, b.initials, 0)), jnp.int32(-1),
                  key_ask)
    state = rrm_state.HelperState(
        reward=_fit(b, state.reward, labels, key_fit, hyper,
                    b.initial_reward_update, jnp.asarray(at)),
        labels=labels)
  return state


def _iteration(b: _Bound, state, pool, teacher, hyper, it, key):
  """This iteration's due labels of every node, and the helpers' refit."""
  key_ask, key_fit = jax.random.split(key)
  due = jax.vmap(rrm_feedback.labels_due, in_axes=(None, 0, 0, 0))(
      it, state.labels.spent, jnp.asarray(b.budgets), jnp.asarray(b.quotas))
  labels = _ask(b, state, pool, teacher, b.queries_per_round, due, it,
                key_ask)
  reward = jax.lax.cond(
      jnp.any(due > 0),
      lambda r: _fit(b, r, labels, key_fit, hyper, b.reward_update, due > 0),
      lambda r: r, state.reward)
  return rrm_state.HelperState(reward=reward, labels=labels), {
      "recursive/helper_labels_this_iteration": jnp.sum(due)}
