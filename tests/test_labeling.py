"""The label round (rrm.labeling) on a hand-built pool: no env, no compile of
a training program.

Pool: 4 segments of 2 steps, obs size 1, action size 1; slot 3 is invalid.
True per-step rewards (returns in brackets):
  0: [0, 1] (1)   1: [2, 2] (4)   2: [1, 1] (2)   3: [9, 9] (18, invalid)
Reference return = mean over the valid ones = (1 + 4 + 2) / 3 = 7/3.
A fixed selector asks (0, 1), (2, 0), (1, 2): a perfect teacher answers
1 (second better), 0, 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import feedback
from rrm import labeling
from rrm import oracle
from rrm import queries
from rrm import segments

FIRST = jnp.array([0, 2, 1], jnp.int32)
SECOND = jnp.array([1, 0, 2], jnp.int32)
PERFECT_LABELS = [1.0, 0.0, 0.0]


def _pool():
  reward = jnp.array([[0.0, 1.0], [2.0, 2.0], [1.0, 1.0], [9.0, 9.0]])
  obs = jnp.arange(8.0).reshape(4, 2, 1)  # segment i's steps: 2i, 2i + 1
  segs = segments.Segments(observation=obs, action=-obs,
                           next_observation=obs + 0.5, true_reward=reward)
  return segments.SegmentPool(segments=segs,
                              valid=jnp.array([True, True, True, False]),
                              cursor=jnp.zeros((), jnp.int32),
                              aspects=jnp.zeros((4, 2, 0)))


def _fixed_selector(pool, returns, num_queries, key):
  del pool, returns, key
  return queries.Queries(FIRST[:num_queries], SECOND[:num_queries])


ROUND = labeling.make_label_round(_fixed_selector)
RETURNS = jnp.zeros((2, 4))  # [M, P]; the fixed selector ignores them


def _empty(capacity=5):
  return feedback.init_labels(capacity, 2, 1, 1)


def test_reference_return_is_the_mean_over_valid_segments():
  pool = _pool()
  ref = labeling.reference_return(pool, pool.segments.true_reward)
  assert float(ref) == pytest.approx(7.0 / 3.0)


def test_perfect_teacher_labels_the_asked_pairs_and_copies_the_segments():
  pool = _pool()
  labels = ROUND(pool, RETURNS, _empty(), oracle.make_teacher(), 3, 3,
                 jnp.int32(4), jax.random.key(0))
  assert int(labels.count) == 3 and int(labels.spent) == 3
  np.testing.assert_array_equal(labels.label[:3], PERFECT_LABELS)
  np.testing.assert_array_equal(labels.iteration[:3], [4, 4, 4])
  # The stored segments are the pool's, whole (every field).
  for k in range(3):
    for field in segments.Segments._fields:
      np.testing.assert_array_equal(
          getattr(labels.first, field)[k],
          getattr(pool.segments, field)[int(FIRST[k])])
      np.testing.assert_array_equal(
          getattr(labels.second, field)[k],
          getattr(pool.segments, field)[int(SECOND[k])])


def test_only_the_due_labels_are_paid_for_and_kept():
  labels = ROUND(_pool(), RETURNS, _empty(), oracle.make_teacher(), 3, 1,
                 jnp.int32(0), jax.random.key(0))
  assert int(labels.count) == 1 and int(labels.spent) == 1
  assert float(labels.label[0]) == 1.0
  none = ROUND(_pool(), RETURNS, _empty(), oracle.make_teacher(), 3, 0,
               jnp.int32(0), jax.random.key(0))
  assert int(none.count) == 0 and int(none.spent) == 0


def test_labels_are_appended_after_the_stored_ones_and_stop_at_capacity():
  teacher = oracle.make_teacher()
  labels = ROUND(_pool(), RETURNS, _empty(capacity=4), teacher, 3, 3,
                 jnp.int32(0), jax.random.key(0))
  labels = ROUND(_pool(), RETURNS, labels, teacher, 3, 3, jnp.int32(1),
                 jax.random.key(1))
  # 6 paid for, 4 fit: the second round's first label lands in row 3.
  assert int(labels.spent) == 6 and int(labels.count) == 4
  np.testing.assert_array_equal(labels.label, PERFECT_LABELS + [1.0])
  np.testing.assert_array_equal(labels.iteration, [0, 0, 0, 1])


def test_a_skipping_teacher_pays_without_storing():
  # skip = 1: a pair is skipped when its better return is below 1 x 7/3:
  # (0, 1) has 4 -> answered; (2, 0) has 2 -> skipped; (1, 2) has 4.
  labels = ROUND(_pool(), RETURNS, _empty(), oracle.make_teacher(skip=1.0),
                 3, 3, jnp.int32(0), jax.random.key(0))
  assert int(labels.spent) == 3 and int(labels.count) == 2
  np.testing.assert_array_equal(labels.label[:2], [1.0, 0.0])
  np.testing.assert_array_equal(labels.first.observation[1],
                                _pool().segments.observation[1])


def test_the_user_compares_the_values_they_perceive():
  # A user who perceives the negated reward prefers the other segment of
  # every pair; what is stored is still the pool's segments.
  pool = _pool()
  values = -pool.segments.true_reward
  labels = ROUND(pool, RETURNS, _empty(), oracle.make_teacher(), 3, 3,
                 jnp.int32(0), jax.random.key(0), values)
  np.testing.assert_array_equal(labels.label[:3],
                                1.0 - np.asarray(PERFECT_LABELS))
  np.testing.assert_array_equal(labels.first.true_reward[0],
                                pool.segments.true_reward[0])


def test_same_key_same_labels_other_key_differs():
  teacher = oracle.make_teacher(beta=1.0)  # Boltzmann: the key matters
  pool = _pool()
  f = jax.jit(ROUND, static_argnums=(4,))
  runs = [f(pool, RETURNS, _empty(8), teacher, 3, 3, jnp.int32(0),
            jax.random.key(k)).label for k in (0, 0)]
  np.testing.assert_array_equal(runs[0], runs[1])
  keys = range(1, 9)
  others = [np.asarray(f(pool, RETURNS, _empty(8), teacher, 3, 3,
                         jnp.int32(0), jax.random.key(k)).label)
            for k in keys]
  assert any((o != np.asarray(runs[0])).any() for o in others)


def test_with_the_real_selector_every_pair_is_of_valid_distinct_segments():
  round_ = labeling.make_label_round(queries.make_selector("uniform"))
  labels = round_(_pool(), RETURNS, _empty(8), oracle.make_teacher(), 8, 8,
                  jnp.int32(0), jax.random.key(3))
  first = np.asarray(labels.first.observation[:, 0, 0]) // 2
  second = np.asarray(labels.second.observation[:, 0, 0]) // 2
  assert set(first) | set(second) <= {0, 1, 2}  # never the invalid slot 3
  assert (first != second).all()
