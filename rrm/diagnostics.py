"""Diagnostics of the learned reward against the hidden truth, and health.

In the jitted iteration: the rollout's, the reward model's and the
parameters' health metrics (flat dicts of scalars). On the host:
`nonfinite_problem`, which names what went non-finite in an iteration.
"""

from __future__ import annotations

import math

from brax.training import types as brax_types
import jax
import jax.numpy as jnp

from rrm import config as rrm_config
from rrm import rollout
from rrm import state as rrm_state


def pearson(x: jax.Array, y: jax.Array,
            mask: jax.Array | None = None) -> jax.Array:
  """Pearson correlation of x and y over all elements (where `mask`).

  Returns nan when either side is constant: correlation is undefined there
  (e.g. a perfect policy whose true reward is 1 on every step).
  """
  shape = x.shape
  x = x.reshape(-1).astype(jnp.float32)
  y = y.reshape(-1).astype(jnp.float32)
  w = (jnp.ones_like(x) if mask is None else
       jnp.broadcast_to(mask, shape).reshape(-1).astype(jnp.float32))
  n = jnp.maximum(jnp.sum(w), 1.0)
  mx, my = jnp.sum(w * x) / n, jnp.sum(w * y) / n
  dx, dy = x - mx, y - my
  cov = jnp.sum(w * dx * dy)
  vx, vy = jnp.sum(w * dx * dx), jnp.sum(w * dy * dy)
  defined = (vx > 1e-12) & (vy > 1e-12)
  return jnp.where(defined, cov / jnp.sqrt(jnp.where(defined, vx * vy, 1.0)),
                   jnp.nan)


def all_finite(tree) -> jax.Array:
  """True iff every inexact leaf of `tree` is finite everywhere."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def rollout_metrics(data: brax_types.Transition,
                    episodes: rrm_state.EpisodeStats) -> dict[str, jax.Array]:
  """The training rollout's true reward and how much of it diverged."""
  return {
      "rollout/nonfinite_fraction": jnp.mean(jnp.logical_not(
          jnp.all(jnp.isfinite(rollout.outcome(data)), axis=-1))),
      "rollout/true_reward": jnp.mean(data.reward),
      "rollout/true_episode_return": rollout.mean_over_completed(
          episodes.last_true, episodes.completed),
  }


def reward_metrics(pool, labels, returns: jax.Array, learned: jax.Array,
                   true_reward: jax.Array, episodes: rrm_state.EpisodeStats,
                   heldout_accuracy: jax.Array) -> dict[str, jax.Array]:
  """The learned reward against the hidden truth, and the labels spent.

  Args:
    pool: the segment pool.
    labels: the root's LabelDataset.
    returns: [M, P] pool returns of the model this iteration's queries were
      chosen with (one ensemble pass over the pool per iteration, not two).
    learned: [T, B] the learned reward PPO maximised.
    true_reward: [T, B] the env's.
    episodes: the per-env episode returns.
    heldout_accuracy: [] the updated ensemble's accuracy on held-out labels
      (rrm.reward.label_accuracy).
  """
  return {
      "rollout/learned_reward": jnp.mean(learned),
      "rollout/learned_episode_return": rollout.mean_over_completed(
          episodes.last_learned, episodes.completed),
      "reward/correlation": pearson(learned, true_reward),
      "reward/pool_correlation": pearson(
          jnp.mean(returns, axis=0),
          jnp.sum(pool.segments.true_reward, axis=-1), pool.valid),
      "reward/heldout_accuracy": heldout_accuracy,
      "oracle/labels": labels.spent,
      "oracle/labels_stored": labels.count,
  }


def health_metrics(policy_state, reward_state) -> dict[str, jax.Array]:
  """1.0 where parameters, optimiser states or normalisers are non-finite."""
  return {
      "health/nonfinite_policy": 1.0 - all_finite(policy_state).astype(
          jnp.float32),
      "health/nonfinite_reward_model": 1.0 - all_finite(reward_state).astype(
          jnp.float32),
  }


def nonfinite_problem(metrics: dict[str, float],
                      config: rrm_config.TrainConfig) -> str | None:
  """Names what is not finite in one iteration's metrics, or None.

  Checked: the rollout's observations (a diverged simulation), PPO's losses
  and KL (SAC's losses and temperature), the true and learned rewards of the rollout, the reward-model loss
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
  bad = [f"{k}={v}" for k, v in metrics.items()
         if (k.startswith(("ppo/", "sac/")) or k in ("rollout/true_reward",
                                           "rollout/learned_reward"))
         and not math.isfinite(v)]
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
