"""Reward-hacking telemetry: EPIC distance and a learned-up/true-down detector.

Leike et al. 2018 (section 4, "reward hacking"): a policy trained on a
learned reward may find states where the reward model is wrong and exploit
them; the learned return then rises while the true return falls. Two
measurements of that, both pure:

* `epic_distance` (Gleave et al. 2021, "Quantifying Differences in Reward
  Functions", ICLR): how far apart two reward functions are, invariant to
  potential shaping and positive affine transformations, i.e. to the changes
  that leave every optimal policy unchanged. Rewards are functions of
  transitions `(s, a, s')`; both are canonicalised over a distribution of
  states D_S and actions D_A, then compared by Pearson distance over a
  coverage distribution D of transitions.
* `trend` / `hacking_flags`: over a sliding window of evaluations, whether
  the learned return keeps rising while the true return keeps falling
  (Mann-Kendall trend statistics, scale-free, so one threshold fits every
  env's return scale).

Both are pure primitives. In runs: `rrm.diagnostics.epic_metrics` gives
each iteration's `reward/epic` (envs that declare their true reward of
transitions), and `rrm.report.HackingWatch` runs the detector on the host.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# reward(obs [..., O], action [..., A], next_obs [..., O]) -> [...]
RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def canonicalize(reward: RewardFn, obs: jax.Array, action: jax.Array,
                 next_obs: jax.Array, canon_obs: jax.Array,
                 canon_action: jax.Array, discount: float) -> jax.Array:
  """EPIC's canonically shaped reward of the transitions `(obs, action,
  next_obs)`.

    C(R)(s, a, s') = R(s, a, s')
                     + E[ gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S') ]

  with S, S' ~ D_S and A ~ D_A independent (Gleave et al. 2021, Def. 4.1).
  D_S is the empirical distribution of `canon_obs` and D_A that of
  `canon_action`; the expectations are exact over them (every (A, S') pair
  of the two sample sets, every S), so a potential-shaped or positively
  scaled reward canonicalises to the same values up to a constant and a
  factor.

  Args:
    reward: R, batched over leading dimensions.
    obs, action, next_obs: the transitions, [N, O], [N, A], [N, O].
    canon_obs: samples of D_S, [M, O] (e.g. the states the policy visited).
    canon_action: samples of D_A, [K, A] (e.g. uniform over the action box).
    discount: gamma.

  Returns:
    [N] canonical rewards. Costs (2N + M) * K * M reward evaluations.
  """
  m, k = canon_obs.shape[0], canon_action.shape[0]
  # Every (A, S') pair: [K * M, A] and [K * M, O].
  pair_action = jnp.repeat(canon_action, m, axis=0)
  pair_next = jnp.tile(canon_obs, (k, 1))

  def mean_from(s):  # E_{A, S'} R(s, A, S'), s: [O]
    here = jnp.broadcast_to(s, pair_next.shape)
    return jnp.mean(reward(here, pair_action, pair_next))

  from_next = jax.vmap(mean_from)(next_obs)  # [N]
  from_here = jax.vmap(mean_from)(obs)  # [N]
  from_any = jnp.mean(jax.vmap(mean_from)(canon_obs))  # scalar
  return (reward(obs, action, next_obs) + discount * from_next - from_here
          - discount * from_any)


def pearson_distance(x: jax.Array, y: jax.Array,
                     weights: jax.Array | None = None) -> jax.Array:
  """D_rho(X, Y) = sqrt((1 - rho(X, Y)) / 2), in [0, 1]; rho is Pearson's
  correlation under `weights` (uniform when None). A constant X or Y has
  no correlation; it is taken as rho = 0 (distance sqrt(1/2)): such a reward
  says nothing about the other."""
  w = jnp.ones_like(x) if weights is None else weights
  w = w / jnp.sum(w)
  xc = x - jnp.sum(w * x)
  yc = y - jnp.sum(w * y)
  cov = jnp.sum(w * xc * yc)
  var = jnp.sum(w * xc * xc) * jnp.sum(w * yc * yc)
  rho = jnp.where(var > 0, cov / jnp.sqrt(jnp.where(var > 0, var, 1.0)), 0.0)
  return jnp.sqrt(jnp.clip((1.0 - rho) / 2.0, 0.0, 1.0))


def epic_distance(reward_a: RewardFn, reward_b: RewardFn, obs: jax.Array,
                  action: jax.Array, next_obs: jax.Array,
                  canon_obs: jax.Array, canon_action: jax.Array,
                  discount: float,
                  weights: jax.Array | None = None) -> jax.Array:
  """EPIC distance between two rewards (Gleave et al. 2021, Def. 4.2):

    D_EPIC(R_A, R_B) = D_rho( C(R_A)(S, A, S'), C(R_B)(S, A, S') ),
    (S, A, S') ~ D, the coverage distribution: the transitions given
    (`weights` per transition, uniform when None).

  0 exactly when R_B is R_A up to potential shaping and a positive affine
  map (so they induce the same optimal policies under every transition
  dynamics), 1 for R_B = -R_A. See `canonicalize` for the arguments.
  """
  ca = canonicalize(reward_a, obs, action, next_obs, canon_obs,
                    canon_action, discount)
  cb = canonicalize(reward_b, obs, action, next_obs, canon_obs,
                    canon_action, discount)
  return pearson_distance(ca, cb, weights)


def trend(series: np.ndarray) -> float:
  """Mann-Kendall trend of a series, in [-1, 1]: the share of later-minus-
  earlier pairs that rise, minus the share that fall (Kendall's tau against
  time). +1: strictly rising; -1: strictly falling; ~0: no trend. Invariant
  to the series' scale and to any increasing transformation of it; nan
  values are left out."""
  x = np.asarray(series, np.float64)
  x = x[np.isfinite(x)]
  if x.size < 2:
    return 0.0
  diff = x[None, :] - x[:, None]  # [i, j]: x_j - x_i
  upper = np.triu(np.ones_like(diff, dtype=bool), k=1)
  signs = np.sign(diff[upper])
  return float(np.mean(signs))


def hacking_flags(learned_return: np.ndarray, true_return: np.ndarray,
                  window: int, threshold: float) -> np.ndarray:
  """Which evaluations end a window in which the learned return kept rising
  while the true return kept falling: reward hacking's signature.

  Args:
    learned_return, true_return: [T] the current policy's returns under the
      learned and the true reward, one per evaluation, in order.
    window: evaluations per window (>= 3: two points always "trend").
    threshold: in (0, 1]: flag when trend(learned) >= threshold and
      trend(true) <= -threshold over the window ending there.

  Returns:
    [T] bool; False for the first `window - 1` evaluations.
  """
  learned = np.asarray(learned_return, np.float64)
  true = np.asarray(true_return, np.float64)
  if learned.shape != true.shape or learned.ndim != 1:
    raise ValueError(f"learned_return {learned.shape} and true_return "
                     f"{true.shape} must be [T] series of one length")
  if window < 3:
    raise ValueError(f"window={window} must be >= 3")
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold={threshold} must be in (0, 1]")
  flags = np.zeros(learned.shape, bool)
  for t in range(window - 1, learned.shape[0]):
    span = slice(t - window + 1, t + 1)
    flags[t] = (trend(learned[span]) >= threshold
                and trend(true[span]) <= -threshold)
  return flags


def hacking_score(learned_trend: float, true_trend: float) -> float:
  """How strongly one window shows the signature, in [-1, 1]:
  min(trend(learned), -trend(true)). `hacking_flags` flags exactly the
  windows whose score is >= its threshold, so a run's highest score is the
  threshold at which the detector would first have flagged it."""
  return float(min(learned_trend, -true_trend))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
  """Area under the ROC curve of scores that should be higher for the
  positives: P(score of a random positive > that of a random negative),
  ties counting one half (the Mann-Whitney U statistic over n_pos x n_neg).
  1: every positive above every negative; 0.5: no better than chance; nan
  without both classes."""
  pos = np.asarray(positive, np.float64)[:, None]
  neg = np.asarray(negative, np.float64)[None, :]
  if pos.size == 0 or neg.size == 0:
    return float("nan")
  return float(np.mean((pos > neg) + 0.5 * (pos == neg)))

