"""Recursive runs' metrics: accuracy against the hidden truth, per node."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def pair_accuracy(predicted: jax.Array, truth: jax.Array,
                  valid: jax.Array) -> jax.Array:
  """How often predicted segment returns order pool pairs as the truth does.

  Pairs are (i, i + P/2) of the pool; only pairs of valid segments whose
  true returns differ count. nan when there are none.

  Args:
    predicted: [P] predicted segment returns.
    truth: [P] true segment returns.
    valid: [P] bool.
  """
  half = predicted.shape[0] // 2
  a, b = slice(0, half), slice(half, 2 * half)
  decided = valid[a] & valid[b] & (truth[a] != truth[b])
  correct = ((predicted[b] > predicted[a]) == (truth[b] > truth[a])) & decided
  n = jnp.sum(decided)
  return jnp.where(n > 0, jnp.sum(correct) / jnp.maximum(n, 1), jnp.nan)


def oracle_agreement(labels: Any) -> jax.Array:
  """Share of stored labels a full-view perfect oracle would have given.

  The stored segments' `true_reward` is the env's reward (the root's true
  value), so this measures any root user -- limited, assisted, full view --
  against the truth. Ties count as 0.5 for the oracle. nan when empty.
  """
  r1 = jnp.sum(labels.first.true_reward, axis=-1)
  r2 = jnp.sum(labels.second.true_reward, axis=-1)
  oracle = jnp.where(r2 > r1, 1.0, jnp.where(r2 < r1, 0.0, 0.5))
  agree = (oracle == labels.label) & labels.mask
  n = jnp.sum(labels.mask)
  return jnp.where(n > 0, jnp.sum(agree) / jnp.maximum(n, 1), jnp.nan)


def recursive_metrics(plan, pool, returns: jax.Array, values: jax.Array,
                      labels, helper_state, helpers,
                      true_reward: jax.Array,
                      rollout_aspects: jax.Array) -> dict[str, jax.Array]:
  """Per level and node: labels spent, accuracy against the hidden truth.

  Accuracy is `pair_accuracy` on the pool: how often a node's reward model
  orders pool segments as their true node values do. Also the root user's
  agreement with a full-view oracle on the labels they gave, how well what
  they perceive orders outcomes, and the tree's fit to the env's reward on
  this rollout (`recursive/root_error`, relative).

  Args:
    plan: the run's rrm.recursive.Plan.
    pool: the segment pool.
    returns: [M, P] the root ensemble's predicted returns of the pool.
    values: [P, L] what the root user compares.
    labels: the root user's LabelDataset.
    helper_state: rrm.state.HelperState, or None without helpers.
    helpers: rrm.recursive.helpers.Helpers, or None.
    true_reward: [T, B] the rollout's env reward.
    rollout_aspects: [T, B, K] its leaf aspects.
  """
  valid = pool.valid
  pool_true = jnp.sum(pool.segments.true_reward, axis=-1)
  root_acc = pair_accuracy(jnp.mean(returns, axis=0), pool_true, valid)
  fit_error = jnp.max(jnp.abs(
      rollout_aspects @ jnp.asarray(plan.root_weights) - true_reward))
  m = {
      "recursive/root_error": fit_error / jnp.maximum(
          1.0, jnp.max(jnp.abs(true_reward))),
      "recursive/user_agreement": oracle_agreement(labels),
      "recursive/user_view_accuracy": pair_accuracy(
          jnp.sum(values, axis=-1), pool_true, valid),
      "recursive/level0/labels": labels.spent,
      "recursive/level0/accuracy": root_acc,
      f"recursive/node/{plan.tree.name}/labels": labels.spent,
      f"recursive/node/{plan.tree.name}/accuracy": root_acc,
  }
  total = labels.spent
  if helpers is not None:
    m_helpers, spent = _helper_metrics(plan, pool, helper_state, helpers)
    m.update(m_helpers)
    total = total + jnp.sum(spent)
  # One budget: the run's labels are every level's.
  m["oracle/labels"] = total
  return m


def _helper_metrics(plan, pool, helper_state, helpers):
  """Each helper node's labels, accuracy and reliability, and per level."""
  m = {}
  predictions, _ = helpers.predict(helper_state, pool)
  true_values = jnp.einsum("plk,hk->hp", pool.aspects, plan.helper_weights)
  spent = helper_state.labels.spent
  rho = helpers.reliability(helper_state)
  acc = []
  for h, node in enumerate(plan.helpers):
    a = pair_accuracy(jnp.sum(predictions[h], axis=-1), true_values[h],
                      pool.valid)
    acc.append(a)
    m[f"recursive/node/{node.name}/labels"] = spent[h]
    m[f"recursive/node/{node.name}/accuracy"] = a
    m[f"recursive/node/{node.name}/reliability"] = rho[h]
  for d in sorted(set(plan.helper_levels)):
    idx = [h for h, lv in enumerate(plan.helper_levels) if lv == d]
    m[f"recursive/level{d}/labels"] = jnp.sum(spent[np.asarray(idx)])
    m[f"recursive/level{d}/accuracy"] = jnp.nanmean(
        jnp.stack([acc[h] for h in idx]))
  return m, spent
