"""Synthetic teacher: perfect, Boltzmann-rational, ties."""

import jax
import jax.numpy as jnp
import numpy as np

from rrm import oracle


def _label_many(teacher, r1, r2, n, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), n)
  return jax.jit(jax.vmap(oracle.label_pair, in_axes=(None, None, None, 0)))(
      teacher, r1, r2, keys)


def test_perfect_teacher_prefers_higher_return_deterministically():
  teacher = oracle.make_teacher(beta=float("inf"))
  r1 = jnp.array([1.0, 0.0, 0.0])  # return 1
  r2 = jnp.array([0.5, 0.5, 0.5])  # return 1.5
  labels = _label_many(teacher, r1, r2, 1000)
  np.testing.assert_array_equal(labels, 1.0)  # segment 2 always
  labels = _label_many(teacher, r2, r1, 1000, seed=1)
  np.testing.assert_array_equal(labels, 0.0)  # segment 1 always


def test_ties_and_equal_threshold_give_half():
  perfect = oracle.make_teacher(beta=float("inf"))
  r = jnp.array([1.0, 2.0])
  np.testing.assert_array_equal(_label_many(perfect, r, r, 10), 0.5)
  # |1.5 - 1.0| = 0.5 <= threshold 0.5 -> equal; the Boltzmann teacher too.
  for beta in (float("inf"), 1.0):
    teacher = oracle.make_teacher(beta=beta, equal_threshold=0.5)
    labels = _label_many(teacher, jnp.array([1.0]), jnp.array([1.5]), 10)
    np.testing.assert_array_equal(labels, 0.5)


def test_boltzmann_frequencies_match_sigmoid():
  n = 100_000
  for beta, delta in [(1.0, 0.5), (1.0, -2.0), (0.3, 3.0), (2.0, 0.25)]:
    teacher = oracle.make_teacher(beta=beta)
    labels = _label_many(teacher, jnp.array([0.0, 1.0]),
                         jnp.array([0.0, 1.0 + delta]), n, seed=7)
    p = 1.0 / (1.0 + np.exp(-beta * delta))
    freq = float(jnp.mean(labels))
    tol = 5 * np.sqrt(p * (1 - p) / n)  # 5 standard errors
    assert abs(freq - p) < tol, (beta, delta, freq, p)


def test_same_key_same_labels_other_key_differs():
  teacher = oracle.make_teacher(beta=1.0)
  a = _label_many(teacher, jnp.zeros(2), jnp.ones(2) * 0.2, 256, seed=3)
  b = _label_many(teacher, jnp.zeros(2), jnp.ones(2) * 0.2, 256, seed=3)
  c = _label_many(teacher, jnp.zeros(2), jnp.ones(2) * 0.2, 256, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
