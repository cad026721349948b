"""Helpers' assessments: calibrated to their node's units, shrunk by reliability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rrm.recursive import plan as rrm_plan


def _stats(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and std of [P, L] per-step values over the valid segments' steps."""
  w = jnp.broadcast_to(valid[:, None], x.shape).astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(w * x) / n
  var = jnp.sum(w * jnp.square(x - mean)) / n
  return mean, jnp.sqrt(var)


# Held-out labels of a node below which its helper's reliability is not
# estimated (see `reliability`).
MIN_RELIABILITY_LABELS = 5


def reliability(predicted_diff: jax.Array, label: jax.Array,
                mask: jax.Array) -> jax.Array:
  """A helper's reliability in [0, 1], from the user's held-out labels.

  An estimate of rho = corr(dp, dt) over the node's labelled pairs, between
  the helper's predicted return difference dp (second - first) and the
  node's true difference dt, from what the user said of them: which
  segment was better, or that they were equal. Since dt = 0 on equal
  pairs, E[dp dt] comes from the decided pairs alone and

    rho = rho_decided * sqrt(1 - q),  q = sum_equal dp^2 / sum_all dp^2,

  where q is the share of the helper's spread that falls on pairs the user
  saw as equal (pure noise: a hazard helper that varies on the many
  segments that never touch the hazard), and rho_decided, the correlation
  on the decided pairs, follows from the helper's sign agreement there,
  acc, by the bivariate-normal identity acc = 1/2 + arcsin(rho) / pi
  (Greiner's relation), i.e. rho_decided = sin(pi (acc - 1/2)): 1 for a
  helper that orders every pair right, 0 at chance (clipped there). A
  perfect helper scores 1. (A Pearson correlation with the answers coded
  -1 / 0 / +1, tried first, gives a perfect helper about 0.7-0.8: signs
  are not magnitudes.) With fewer than `MIN_RELIABILITY_LABELS` held-out
  labels the user has no evidence either way and takes the helper at its
  word: 1 (shrinking an untested helper would make every assessment a
  constant, and every label a tie).

  Args:
    predicted_diff: [N] the helper's predicted return differences.
    label: [N] the user's labels (0, 0.5, 1).
    mask: [N] bool, the held-out labels to use.
  """
  w = mask.astype(jnp.float32)
  n = jnp.sum(w)
  decided = w * (label != 0.5)
  n_decided = jnp.sum(decided)
  agree = (predicted_diff > 0) == (label > 0.5)
  acc = jnp.sum(decided * agree) / jnp.maximum(n_decided, 1.0)
  rho_decided = jnp.where(
      n_decided > 0, jnp.sin(jnp.pi * (jnp.clip(acc, 0.5, 1.0) - 0.5)), 0.0)
  spread = jnp.sum(w * jnp.square(predicted_diff))
  on_equal = jnp.sum((w - decided) * jnp.square(predicted_diff))
  q = jnp.where(spread > 0, on_equal / jnp.maximum(spread, 1e-30), 1.0)
  rho = rho_decided * jnp.sqrt(jnp.clip(1.0 - q, 0.0, 1.0))
  return jnp.where(n >= MIN_RELIABILITY_LABELS, rho, 1.0)


def calibrate(prediction: jax.Array, target: jax.Array, valid: jax.Array,
              rho: jax.Array | float = 1.0) -> jax.Array:
  """A helper's assessment, [P, L]: its prediction in its node's units.

  Comparisons fix a learned reward only up to a monotone transformation
  (a Bradley-Terry model trained on argmax labels, up to an offset and a
  scale at least), and the user must add several helpers' assessments with
  their weights. The user supplies the units from what they know of the
  node: how its value is distributed over the pool's segments as they
  perceive it when labelling it (a leaf: the aspect itself, which they judge
  accurately; an inner node: the combination of its children's
  assessments). The assessment of a segment is the value of that
  distribution at the segment's rank among the helper's predicted returns
  (quantile matching, at the level the user compares: segment returns),
  shrunk towards the mean by the helper's reliability rho (`reliability`):
  mean + rho * (quantile - mean). A helper that orders the segments right
  gives exactly their true returns, whatever its scale, and a rare aspect
  keeps its shape: a hazard helper's many near-equal predictions for
  segments that never touch the hazard all map to the hazard-free value.
  (Matching the mean and spread instead, tried first, let that helper's
  noise on those segments grow as large as the goal's real signal: the
  assisted user's view then ordered pool pairs right only 56-77 % of the
  time while each helper alone scored 80-100 %.)

  The assessment is spread evenly over the segment's steps: teachers that
  weigh steps (myopic) see assessments as flat.

  Args:
    prediction: [P, L] the helper's (ensemble-mean) per-step predictions.
    target: [P, L] the values the user perceives for this node.
    valid: [P] bool, the pool's real segments.
    rho: [] the helper's reliability in [0, 1].

  Returns:
    [P, L]; invalid segments get the mean.
  """
  p, length = prediction.shape
  predicted = jnp.where(valid, jnp.sum(prediction, axis=-1), jnp.inf)
  true = jnp.sum(target, axis=-1)
  # Rank of each segment's prediction among the valid ones (invalid last),
  # and the perceived returns in order: rank r gets the r-th smallest.
  rank = jnp.zeros((p,), jnp.int32).at[jnp.argsort(predicted)].set(
      jnp.arange(p, dtype=jnp.int32))
  quantile = jnp.sort(jnp.where(valid, true, jnp.inf))[rank]
  n = jnp.maximum(jnp.sum(valid), 1)
  mean = jnp.sum(jnp.where(valid, true, 0.0)) / n
  assessed = jnp.where(valid, mean + rho * (quantile - mean), mean)
  return jnp.broadcast_to(assessed[:, None] / length, (p, length))


def assessments(plan: rrm_plan.Plan, predictions: jax.Array, aspects: jax.Array,
                valid: jax.Array, rho: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """Every helper's assessment of the pool, and what the user judges it by.

  Bottom-up over the tree's levels: a leaf helper is calibrated to its
  aspect; an inner helper to the combination of its children's assessments,
  which is also what the user perceives when labelling that node.

  Args:
    plan: the run's plan (assisted user).
    predictions: [H, P, L] helpers' per-step predictions (ignored with
      perfect helpers).
    aspects: [P, L, K] the pool's true aspects.
    valid: [P] bool.
    rho: [H] the helpers' reliabilities (`reliability`; default 1).

  Returns:
    (assessed, perceived), each [H, P, L]: the helpers' assessments, and the
    per-step values the user compares when labelling each helper's node.
  """
  hn = plan.num_helpers
  true_values = jnp.einsum("plk,hk->hpl", aspects, plan.helper_weights)
  if plan.perfect_helpers:
    return true_values, true_values
  if rho is None:
    rho = jnp.ones((hn,))
  assessed = jnp.zeros_like(true_values)
  perceived = true_values
  for d in sorted(set(plan.helper_levels), reverse=True):
    idx = np.asarray([h for h in range(hn) if plan.helper_levels[h] == d])
    leaf = np.asarray([plan.helpers[h].is_leaf for h in idx])
    combined = jnp.einsum("ih,hpl->ipl", plan.combine[idx], assessed)
    target = jnp.where(leaf[:, None, None], true_values[idx], combined)
    perceived = perceived.at[idx].set(target)
    assessed = assessed.at[idx].set(jax.vmap(
        calibrate, in_axes=(0, 0, None, 0))(predictions[idx], target, valid,
                                            rho[idx]))
  return assessed, perceived
