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
from rrm import hacking
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


def _ranks(x: jax.Array, mask: jax.Array) -> jax.Array:
  """0-based ranks of x among the entries where `mask` (ties by index;
  masked entries rank after them all)."""
  order = jnp.argsort(jnp.where(mask, x, jnp.inf))
  return jnp.zeros(x.shape, jnp.float32).at[order].set(
      jnp.arange(x.shape[0], dtype=jnp.float32))


def rank_correlation(x: jax.Array, y: jax.Array,
                     mask: jax.Array) -> jax.Array:
  """Spearman's rho of [N] x and y where `mask`: Pearson's on their ranks
  (ties broken by index); nan when fewer than 2 entries or a side constant."""
  return pearson(_ranks(x, mask), _ranks(y, mask), mask)


def pair_accuracy(learned_a: jax.Array, learned_b: jax.Array,
                  true_a: jax.Array, true_b: jax.Array,
                  mask: jax.Array) -> jax.Array:
  """Share of pairs (where `mask` and the true returns differ) that the
  learned returns order as the true ones do; nan when there is none."""
  decided = mask & (true_a != true_b)
  agree = ((learned_a > learned_b) == (true_a > true_b)) & decided
  n = jnp.sum(decided)
  return jnp.where(n > 0, jnp.sum(agree) / jnp.maximum(n, 1), jnp.nan)


def agreement_metrics(pool, labels, pool_returns: jax.Array,
                      labelled_returns: tuple[jax.Array, jax.Array]
                      ) -> dict[str, jax.Array]:
  """How well the learned reward orders the segments the policy now visits
  against those the user labelled: the feedback-distribution shift of
  Leike et al. 2018 (section 4). One reward model for both (the one this
  iteration's queries were chosen with).

  Args:
    pool: the segment pool (recent rollouts' segments: the current policy's
      distribution).
    labels: the root's LabelDataset.
    pool_returns: [M, P] member returns of the pool segments.
    labelled_returns: ([M, N], [M, N]) member returns of the labelled pairs'
      first and second segments.

  Returns:
    reward/{policy,labelled}_rank_correlation (Spearman, learned vs true
    segment return) and reward/{policy,labelled}_pair_accuracy (pairs
    ordered as the true returns order them: the pool's segments i and
    i + P/2; the labelled pairs themselves, against their true returns, not
    the teacher's possibly noisy labels).
  """
  learned = jnp.mean(pool_returns, axis=0)  # [P]
  true = jnp.sum(pool.segments.true_reward, axis=-1)
  half = pool.size // 2
  other = lambda x: jnp.roll(x, -half)
  first, second = (jnp.mean(r, axis=0) for r in labelled_returns)  # [N]
  true_first = jnp.sum(labels.first.true_reward, axis=-1)
  true_second = jnp.sum(labels.second.true_reward, axis=-1)
  both = jnp.concatenate([labels.mask, labels.mask])
  return {
      "reward/policy_rank_correlation": rank_correlation(learned, true,
                                                         pool.valid),
      "reward/policy_pair_accuracy": pair_accuracy(
          learned, other(learned), true, other(true),
          pool.valid & other(pool.valid)),
      "reward/labelled_rank_correlation": rank_correlation(
          jnp.concatenate([first, second]),
          jnp.concatenate([true_first, true_second]), both),
      "reward/labelled_pair_accuracy": pair_accuracy(
          first, second, true_first, true_second, labels.mask),
  }


def epic_metrics(true_reward, learned_reward, data: brax_types.Transition,
                 key: jax.Array, transitions: int, states: int, actions: int,
                 discount: float) -> dict[str, jax.Array]:
  """`reward/epic`: EPIC distance (rrm.hacking.epic_distance; Gleave et al.
  2021) of the learned and the true reward on the rollout's transitions.

  The coverage distribution D: `transitions` of the rollout's [T, B]
  (observation, action, outcome) transitions, evenly strided over its
  T * B (all of them if fewer). The canonicalisation's D_S: `states` of
  the rollout's outcome observations, strided from an offset so they are
  not D's own; D_A: `actions` uniform draws from the action box [-1, 1]^A
  (`key`). The expectations are exact over those samples, so shaping and
  positive affine maps of a reward give distance 0 on them. Both rewards
  are functions (obs, action, next_obs) -> [...] batched over leading dims.
  """
  obs = data.observation.reshape((-1,) + data.observation.shape[2:])
  act = data.action.reshape((-1,) + data.action.shape[2:])
  nxt = rollout.outcome(data).reshape(obs.shape)
  n = obs.shape[0]
  pick = lambda k, offset: (offset + jnp.arange(min(k, n)) * (n // min(k, n))
                            ) % n
  rows = pick(transitions, 0)
  canon_obs = nxt[pick(states, max(n // (2 * min(states, n)), 1))]
  canon_action = jax.random.uniform(key, (actions, act.shape[-1]),
                                    minval=-1.0, maxval=1.0)
  return {"reward/epic": hacking.epic_distance(
      learned_reward, true_reward, obs[rows], act[rows], nxt[rows],
      canon_obs, canon_action, discount)}


def all_finite(tree) -> jax.Array:
  """True iff every inexact leaf of `tree` is finite everywhere."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def rollout_metrics(data: brax_types.Transition,
                    episodes: rrm_state.EpisodeStats) -> dict[str, jax.Array]:
  """The training rollout's true reward, how much of it diverged and its
  unsafe events (rrm.safety: `safety/unsafe_events`, the count)."""
  unsafe = rollout.unsafe_events(data)
  counted = {} if unsafe is None else {
      "safety/unsafe_events": jnp.sum(unsafe)}
  return {**counted,
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
