"""Pearson correlation of the learned reward against the true reward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import diagnostics


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
