"""Pearson correlation of the learned reward against the true reward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import diagnostics
from rrm import feedback
from rrm import segments


def test_pearson_hand_computed():
  # x = [1, 2, 3, 4], y = [2, 4, 5, 9]: means 2.5 and 5,
  # dx = [-1.5, -.5, .5, 1.5], dy = [-3, -1, 0, 4];
  # cov = 4.5 + .5 + 0 + 6 = 11, vx = 2.25 + .25 + .25 + 2.25 = 5,
  # vy = 9 + 1 + 0 + 16 = 26: r = 11 / sqrt(5 * 26) = 11 / sqrt(130).
  x = jnp.array([1.0, 2.0, 3.0, 4.0])
  y = jnp.array([2.0, 4.0, 5.0, 9.0])
  r = diagnostics.pearson(x, y)
  assert r.shape == ()
  assert float(r) == pytest.approx(11 / np.sqrt(130), rel=1e-6)
  assert float(diagnostics.pearson(y, x)) == pytest.approx(float(r), rel=1e-6)
  # Correlation is invariant to affine maps with a positive scale and flips
  # sign with a negative one.
  assert float(diagnostics.pearson(3 * x - 7, y)) == pytest.approx(
      float(r), rel=1e-5)
  assert float(diagnostics.pearson(-x, y)) == pytest.approx(-float(r),
                                                            rel=1e-6)
  assert float(diagnostics.pearson(x, 2 * x + 1)) == pytest.approx(1.0,
                                                                   rel=1e-6)


def test_pearson_flattens_all_elements():
  # Over all elements: a [2, 2] x against y is the same as the flat one.
  x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  y = jnp.array([[2.0, 4.0], [5.0, 9.0]])
  assert float(diagnostics.pearson(x, y)) == pytest.approx(
      11 / np.sqrt(130), rel=1e-6)


def test_pearson_ignores_masked_out_elements():
  # Masked: x = [1, 2, 3], y = [1, 3, 2]: means 2 and 2, dx = [-1, 0, 1],
  # dy = [-1, 1, 0]; cov = 1, vx = 2, vy = 2: r = 1 / sqrt(4) = .5.
  # The masked-out pair (100, -50) would make r strongly negative.
  x = jnp.array([1.0, 2.0, 3.0, 100.0])
  y = jnp.array([1.0, 3.0, 2.0, -50.0])
  mask = jnp.array([True, True, True, False])
  assert float(diagnostics.pearson(x, y, mask)) == pytest.approx(0.5,
                                                                 rel=1e-6)
  assert float(diagnostics.pearson(x, y)) < -0.9
  # A float mask of 0/1 is the same as the bool one; an all-true mask is no
  # mask.
  assert float(diagnostics.pearson(x, y, mask.astype(jnp.float32))) == (
      pytest.approx(0.5, rel=1e-6))
  assert float(diagnostics.pearson(x, y, jnp.ones(4, bool))) == pytest.approx(
      float(diagnostics.pearson(x, y)), rel=1e-6)


def test_pearson_is_nan_when_a_side_is_constant():
  x = jnp.array([1.0, 2.0, 3.0, 4.0])
  assert np.isnan(float(diagnostics.pearson(x, jnp.ones(4))))
  assert np.isnan(float(diagnostics.pearson(jnp.full(4, 5.0), x)))
  # Constant only where the mask keeps it (the varying 9 is masked out).
  y = jnp.array([2.0, 2.0, 2.0, 9.0])
  mask = jnp.array([True, True, True, False])
  assert np.isnan(float(diagnostics.pearson(x, y, mask)))
  assert np.isfinite(float(diagnostics.pearson(x, y)))
  # Everything masked out: undefined too (and no division by zero).
  assert np.isnan(float(diagnostics.pearson(x, x, jnp.zeros(4, bool))))


def test_pearson_jit_matches_eager():
  # Jitted (how the trainer calls it) gives the same values as eager.
  x = jnp.array([1.0, 2.0, 3.0, 100.0])
  y = jnp.array([1.0, 3.0, 2.0, -50.0])
  mask = jnp.array([True, True, True, False])
  f = jax.jit(diagnostics.pearson)
  assert float(f(x, y, mask)) == pytest.approx(0.5, rel=1e-6)
  assert np.isnan(float(f(x, jnp.ones(4), mask)))


def test_pearson_takes_a_mask_shaped_like_x():
  # Same numbers as the masked flat case, laid out [2, 2]: r = .5.
  x = jnp.array([[1.0, 2.0], [3.0, 100.0]])
  y = jnp.array([[1.0, 3.0], [2.0, -50.0]])
  mask = jnp.array([[True, True], [True, False]])
  assert float(diagnostics.pearson(x, y, mask)) == pytest.approx(0.5,
                                                                 rel=1e-6)


def test_rank_correlation_and_pair_accuracy_by_hand():
  # Ranks of x = [3, 1, 2] are [2, 0, 1]; of y = [30, 10, 20] the same:
  # rho = 1. y' = [10, 30, 20] ranks [0, 2, 1]: with dx = [1, -1, 0] and
  # dy = [-1, 1, 0], rho = -2 / 2 = -1. The 4th entry is masked out.
  x = jnp.array([3.0, 1.0, 2.0, 100.0])
  mask = jnp.array([True, True, True, False])
  assert float(diagnostics.rank_correlation(
      x, jnp.array([30.0, 10.0, 20.0, -5.0]), mask)) == pytest.approx(1.0)
  assert float(diagnostics.rank_correlation(
      x, jnp.array([10.0, 30.0, 20.0, 0.0]), mask)) == pytest.approx(-1.0)
  # Invariant to any increasing map, unlike Pearson.
  assert float(diagnostics.rank_correlation(
      jnp.exp(3 * x), jnp.array([30.0, 10.0, 20.0, 0.0]), mask)) == (
          pytest.approx(1.0))
  # Pairs (learned a, b; true a, b): agree, disagree, a true tie (left
  # out), masked: 1 of 2 decided.
  acc = diagnostics.pair_accuracy(
      jnp.array([2.0, 2.0, 1.0, 5.0]), jnp.array([1.0, 1.0, 0.0, 0.0]),
      jnp.array([5.0, 5.0, 3.0, 1.0]), jnp.array([4.0, 6.0, 3.0, 0.0]),
      jnp.array([True, True, True, False]))
  assert float(acc) == pytest.approx(0.5)
  assert np.isnan(float(diagnostics.pair_accuracy(
      x, x, x, x, jnp.ones(4, bool))))  # every true pair tied


def _segments(true_returns, length=2):
  """Segments of [N] given true returns (spread evenly over the steps)."""
  r = jnp.asarray(true_returns, jnp.float32)
  n = r.shape[0]
  return segments.Segments(
      observation=jnp.zeros((n, length, 1)), action=jnp.zeros((n, length, 1)),
      next_observation=jnp.zeros((n, length, 1)),
      true_reward=jnp.repeat(r[:, None] / length, length, axis=1))


def test_agreement_on_labelled_segments_but_not_on_the_policys():
  """A reward model right about the labelled pairs, wrong about the pool
  the policy now visits: the shift the paper warns about."""
  pool_true = jnp.array([1.0, 2.0, 3.0, 4.0])
  pool = segments.init_pool(4, 2, 1, 1).replace(
      segments=_segments(pool_true), valid=jnp.ones(4, bool))
  labels = feedback.init_labels(3, 2, 1, 1)
  labels = feedback.add_labels(
      labels, _segments([1.0, 5.0, 2.0]), _segments([2.0, 3.0, 6.0]),
      jnp.ones(3), jnp.ones(3, bool), jnp.int32(0))
  # Two members; their mean is what counts. Pool: reversed order.
  pool_returns = jnp.stack([-pool_true, -pool_true + 0.5])
  first = jnp.array([[0.0, 9.0, 1.0], [0.0, 9.0, 1.0]])
  second = jnp.array([[1.0, 7.0, 10.0], [1.0, 7.0, 10.0]])
  m = diagnostics.agreement_metrics(pool, labels, pool_returns,
                                    (first, second))
  assert float(m["reward/policy_rank_correlation"]) == pytest.approx(-1.0)
  assert float(m["reward/policy_pair_accuracy"]) == 0.0
  assert float(m["reward/labelled_pair_accuracy"]) == 1.0
  # Labelled segments' true returns [1, 5, 2, 2, 3, 6] vs learned
  # [0, 9, 1, 1, 7, 10]: the same order but for the tie 2 = 2 (broken by
  # index on both sides, so ranks agree): rho = 1.
  assert float(m["reward/labelled_rank_correlation"]) == pytest.approx(1.0)
  # Unfilled label slots are left out.
  small = feedback.init_labels(3, 2, 1, 1)
  small = feedback.add_labels(small, _segments([1.0]), _segments([2.0]),
                              jnp.ones(1), jnp.ones(1, bool), jnp.int32(0))
  m = diagnostics.agreement_metrics(pool, small, pool_returns,
                                    (first, second))
  assert float(m["reward/labelled_pair_accuracy"]) == 1.0
