"""Query selection: which segment pairs of the pool to show the teacher.

A selector returns Q pairs of pool indices with fixed shapes. Only uniform
selection exists yet; active selectors (ensemble disagreement, entropy) plug in
through `make_selector` with the same signature, receiving the ensemble's
per-segment returns so they can score candidate pairs.
"""

from __future__ import annotations

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
                   num_queries: int, key: jax.Array) -> Queries:
  """Q pairs of distinct valid pool segments, uniformly at random.

  Requires at least two valid segments in the pool (always true after the
  trainer's initial random-policy fill).
  """
  del unused_returns
  weights = pool.valid.astype(jnp.float32)
  key_first, key_second = jax.random.split(key)
  first = jax.random.choice(key_first, pool.size, (num_queries,),
                            p=weights / jnp.sum(weights))

  def pick_second(i, k):
    w = weights.at[i].set(0.0)
    return jax.random.choice(k, pool.size, p=w / jnp.sum(w))

  second = jax.vmap(pick_second)(first,
                                 jax.random.split(key_second, num_queries))
  return Queries(first.astype(jnp.int32), second.astype(jnp.int32))


_SELECTORS = {"uniform": select_uniform}


def make_selector(name: str) -> Selector:
  if name not in _SELECTORS:
    raise ValueError(f"unknown query selector {name!r}; known: "
                     f"{', '.join(sorted(_SELECTORS))}")
  return _SELECTORS[name]
