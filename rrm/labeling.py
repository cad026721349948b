"""One label round: select -> gather -> reference -> teacher -> add.

imitation's vocabulary: the query selector picks pairs from the pool, the
gatherer (here the synthetic teacher, rrm.oracle) labels them, and the
labels join the fixed-capacity dataset (rrm.feedback). Pure and jittable:
the round is a function of the pool, the ensemble's predicted returns, the
dataset, the teacher and a key, so it can be tested on a hand-built pool.
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from rrm import feedback as rrm_feedback
from rrm import oracle as rrm_oracle
from rrm import queries as rrm_queries
from rrm import segments as rrm_segments


class LabelRound(Protocol):

  def __call__(self, pool: rrm_segments.SegmentPool, returns: jax.Array,
               labels: rrm_feedback.LabelDataset,
               teacher: rrm_oracle.TeacherParams, num_queries: int,
               num_active: jax.Array | int, iteration: jax.Array,
               key: jax.Array, values: jax.Array | None = None
               ) -> rrm_feedback.LabelDataset:
    ...


def reference_return(pool: rrm_segments.SegmentPool,
                     values: jax.Array) -> jax.Array:
  """Mean return of the pool's valid segments under `values` [P, L].

  B-Pref's skip and equal thresholds are fractions of it (rrm.oracle), as
  the user perceives the segments.
  """
  pool_returns = jnp.sum(values, axis=-1)
  return jnp.sum(jnp.where(pool.valid, pool_returns, 0.0)) / (
      jnp.maximum(jnp.sum(pool.valid), 1))


def make_label_round(select: rrm_queries.Selector) -> LabelRound:
  """Binds a query selector (rrm.queries.make_selector) into a label round."""

  def label_round(pool, returns, labels, teacher, num_queries, num_active,
                  iteration, key, values=None):
    """Queries `num_queries` pairs, keeps the first `num_active` labels.

    Args:
      pool: the segment pool.
      returns: [M, P] the ensemble's predicted returns of pool segments.
      labels: the dataset the labels join.
      teacher: the (synthetic) user's B-Pref parameters.
      num_queries: static number of pairs asked (the round's shape).
      num_active: how many of them are due and paid for (<= num_queries).
      iteration: recorded with each label (-1: before the first).
      key: PRNG key.
      values: [P, L] the per-step values the user compares (default: the
        hidden true reward; rrm.recursive's users perceive other things).
    """
    if values is None:
      values = pool.segments.true_reward
    key_select, key_oracle = jax.random.split(key)
    q = select(pool, returns, num_queries, key_select)
    first = jax.tree.map(lambda x: x[q.first], pool.segments)
    second = jax.tree.map(lambda x: x[q.second], pool.segments)
    label, skipped = jax.vmap(rrm_oracle.label_pair,
                              in_axes=(None, 0, 0, 0, None))(
                                  teacher, values[q.first], values[q.second],
                                  jax.random.split(key_oracle, num_queries),
                                  reference_return(pool, values))
    active = jnp.arange(num_queries) < num_active
    return rrm_feedback.add_labels(labels, first, second, label, active,
                                   iteration, stored=~skipped)

  return label_round

