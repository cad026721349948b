"""Query selection: which segment pairs of the pool to show the teacher.

A selector returns Q pairs of pool indices with fixed shapes, given the pool
and the ensemble's predicted returns of every pool segment ([M, P]):

* uniform: Q random pairs of distinct valid segments;
* disagreement: K * Q uniform candidate pairs, keep the Q on which the
  ensemble members disagree most, scored by the variance across members of
  P(second preferred) = sigmoid(R̂_2 - R̂_1) (Christiano et al. 2017; B-Pref's
  "disagreement" sampling). K is the oversampling factor.
* entropy: the same candidates, keep the Q whose ensemble-mean preference
  p̄ = mean_m sigmoid(R̂_2 - R̂_1) has the largest binary entropy, i.e. the
  pairs the model as a whole is least sure about, p̄ nearest 0.5 (B-Pref's
  "entropy" sampling; it scores the mean prediction where B-Pref's code
  averages member softmaxes, the same quantity).
* recent: uniform pairs among the N segments most recently added to the
  pool (QPA, Hu et al. 2024, "Query-Policy Misalignment in Preference-Based
  RL": queries about what the current policy does, not what older policies
  did; N = `feedback.recent_segments`, the policy-aligned buffer).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from rrm import segments as rrm_segments


class Queries(NamedTuple):
  first: jax.Array  # [Q] int32 pool indices
  second: jax.Array  # [Q] int32 pool indices, != first


# (pool, ensemble returns of pool segments [M, P], num_queries, key) -> Queries
Selector = Callable[[rrm_segments.SegmentPool, jax.Array, int, jax.Array],
                    Queries]


def select_uniform(pool: rrm_segments.SegmentPool, unused_returns: jax.Array,
                   num_queries: int, key: jax.Array,
                   allowed: jax.Array | None = None) -> Queries:
  """Q pairs of distinct valid pool segments, uniformly at random.

  `allowed` ([P] bool) restricts the choice further. Requires at least two
  valid (allowed) segments in the pool (always true after the trainer's
  initial random-policy fill).
  """
  del unused_returns
  weights = pool.valid.astype(jnp.float32)
  if allowed is not None:
    weights = weights * allowed.astype(jnp.float32)
  key_first, key_second = jax.random.split(key)
  first = jax.random.choice(key_first, pool.size, (num_queries,),
                            p=weights / jnp.sum(weights))

  def pick_second(i, k):
    w = weights.at[i].set(0.0)
    return jax.random.choice(k, pool.size, p=w / jnp.sum(w))

  second = jax.vmap(pick_second)(first,
                                 jax.random.split(key_second, num_queries))
  return Queries(first.astype(jnp.int32), second.astype(jnp.int32))


def disagreement(returns: jax.Array, queries: Queries) -> jax.Array:
  """[Q] variance over members of P(second preferred); returns is [M, P]."""
  p = jax.nn.sigmoid(returns[:, queries.second] - returns[:, queries.first])
  return jnp.var(p, axis=0)


def _select_top(score: Callable[[jax.Array, Queries], jax.Array],
                pool: rrm_segments.SegmentPool, returns: jax.Array,
                num_queries: int, key: jax.Array, oversample: int) -> Queries:
  """The Q of K * Q uniform candidate pairs with the highest `score`."""
  candidates = select_uniform(pool, returns, num_queries * oversample, key)
  _, top = jax.lax.top_k(score(returns, candidates), num_queries)
  return Queries(candidates.first[top], candidates.second[top])


def entropy(returns: jax.Array, queries: Queries) -> jax.Array:
  """[Q] binary entropy (nats) of the ensemble-mean P(second preferred)."""
  p = jnp.mean(jax.nn.sigmoid(returns[:, queries.second]
                              - returns[:, queries.first]), axis=0)
  p = jnp.clip(p, 1e-7, 1.0 - 1e-7)
  return -(p * jnp.log(p) + (1.0 - p) * jnp.log1p(-p))


def most_recent(pool: rrm_segments.SegmentPool, num: int) -> jax.Array:
  """[P] bool: the `num` slots the pool wrote last (its ring cursor's)."""
  age = (pool.cursor - 1 - jnp.arange(pool.size)) % pool.size
  return age < num


def select_recent(pool: rrm_segments.SegmentPool, returns: jax.Array,
                  num_queries: int, key: jax.Array, recent: int) -> Queries:
  """Uniform pairs among the `recent` most recently added segments (QPA)."""
  return select_uniform(pool, returns, num_queries, key,
                        most_recent(pool, recent))


SELECTORS = ("uniform", "disagreement", "entropy", "recent")


def make_selector(name: str, oversample: int = 1,
                  recent: int = 0) -> Selector:
  """`recent`: the policy-aligned buffer's size for "recent" (>= 2)."""
  if name == "recent":
    if recent < 2:
      raise ValueError(f"query selector 'recent' needs recent >= 2, got "
                       f"{recent}")
    return functools.partial(select_recent, recent=recent)
  if name == "uniform":
    return select_uniform
  if name == "disagreement":
    return functools.partial(_select_top, disagreement, oversample=oversample)
  if name == "entropy":
    return functools.partial(_select_top, entropy, oversample=oversample)
  raise ValueError(f"unknown query selector {name!r}; known: "
                   f"{', '.join(SELECTORS)}")
