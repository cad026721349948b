"""The B-Pref teacher suite: label frequencies against the formulas.

Each teacher labels hand-built segment pairs 10^5 times with independent
keys; frequencies must match the stated probabilities within 5 standard
errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import feedback
from rrm import oracle
from rrm import segments

N = 100_000


@jax.jit
def _label_many(teacher, r1, r2, key, reference):
  keys = jax.random.split(key, N)
  return jax.vmap(oracle.label_pair, in_axes=(None, None, None, 0, None))(
      teacher, r1, r2, keys, reference)


def _freq(teacher, r1, r2, seed=0, reference=1.0):
  labels, skipped = _label_many(teacher, jnp.asarray(r1, jnp.float32),
                                jnp.asarray(r2, jnp.float32),
                                jax.random.PRNGKey(seed), reference)
  return np.asarray(labels), np.asarray(skipped)


def _close(freq, p):
  tol = 5 * np.sqrt(max(p * (1 - p), 1e-12) / N) + 1e-12
  assert abs(freq - p) <= tol, (freq, p, tol)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


# Segment 2 is better by 1.5 in return; its reward comes late.
R1 = [1.0, 0.0, 0.0, 0.0]  # return 1.0
R2 = [0.0, 0.0, 0.5, 2.0]  # return 2.5


def test_presets_have_b_prefs_values():
  assert float(oracle.preset("oracle").beta) == float("inf")
  assert float(oracle.preset("stoch").beta) == 1.0
  assert float(oracle.preset("mistake").mistake) == pytest.approx(0.1)
  assert float(oracle.preset("skip").skip) == pytest.approx(0.1)
  assert float(oracle.preset("equal").equal) == pytest.approx(0.1)
  assert float(oracle.preset("myopic").gamma) == pytest.approx(0.9)
  with pytest.raises(ValueError, match="unknown teacher"):
    oracle.preset("human")


def test_oracle_is_argmax_and_ties_are_half():
  labels, skipped = _freq(oracle.preset("oracle"), R1, R2)
  assert np.all(labels == 1.0) and not skipped.any()
  labels, _ = _freq(oracle.preset("oracle"), R2, R1)
  assert np.all(labels == 0.0)
  labels, _ = _freq(oracle.preset("oracle"), R1, R1)
  assert np.all(labels == 0.5)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.0])
def test_stochastic_teacher_frequencies_match_sigmoid(beta):
  teacher = oracle.preset("stoch", beta=beta)
  labels, _ = _freq(teacher, R1, R2, seed=1)
  _close(labels.mean(), _sigmoid(beta * 1.5))
  labels, _ = _freq(teacher, R2, R1, seed=2)
  _close(labels.mean(), _sigmoid(-beta * 1.5))


def test_mistake_teacher_flips_with_probability_eps():
  labels, _ = _freq(oracle.preset("mistake"), R1, R2, seed=3)
  _close((labels == 0.0).mean(), 0.1)  # flipped from 1
  # Mistakes compose with Boltzmann noise: P = (1 - e) p + e (1 - p).
  teacher = oracle.preset("mistake", beta=1.0, mistake=0.2)
  labels, _ = _freq(teacher, R1, R2, seed=4)
  p = _sigmoid(1.5)
  _close(labels.mean(), 0.8 * p + 0.2 * (1 - p))
  # Equal labels are not flipped.
  labels, _ = _freq(oracle.preset("mistake"), R1, R1, seed=5)
  assert np.all(labels == 0.5)


def test_skip_teacher_skips_when_both_returns_are_below_threshold():
  teacher = oracle.preset("skip")  # skip = 0.1 of the reference return
  # Reference 30: threshold 3 > max(1, 2.5) -> always skipped.
  _, skipped = _freq(teacher, R1, R2, reference=30.0)
  assert skipped.all()
  # Reference 20: threshold 2 < 2.5 -> never skipped, labelled as oracle.
  labels, skipped = _freq(teacher, R1, R2, reference=20.0)
  assert not skipped.any() and np.all(labels == 1.0)
  # The reference's magnitude counts (negative mean returns).
  _, skipped = _freq(teacher, R1, R2, reference=-30.0)
  assert skipped.all()


def test_no_skip_threshold_never_skips_even_negative_returns():
  _, skipped = _freq(oracle.preset("oracle"), [-5.0, -1.0], [-3.0, -4.0],
                     reference=-10.0)
  assert not skipped.any()


def test_equal_teacher_gives_half_below_threshold():
  teacher = oracle.preset("equal")  # equal = 0.1 of the reference return
  labels, _ = _freq(teacher, R1, R2, reference=20.0)  # 1.5 < 2
  assert np.all(labels == 0.5)
  labels, _ = _freq(teacher, R1, R2, reference=10.0)  # 1.5 >= 1
  assert np.all(labels == 1.0)


def test_myopic_weights_and_preference():
  teacher = oracle.preset("myopic")
  np.testing.assert_allclose(oracle.step_weights(teacher, 4),
                             [0.9 ** 3, 0.9 ** 2, 0.9, 1.0], rtol=1e-6)
  # Early reward is discounted: R^g = (0.729, 0) vs (0, 0) -> but a late
  # smaller reward beats an early larger one.
  early = [1.0, 0.0, 0.0, 0.0]  # myopic 0.729
  late = [0.0, 0.0, 0.0, 0.8]  # myopic 0.8, return 0.8 < 1
  labels, _ = _freq(teacher, early, late)
  assert np.all(labels == 1.0)
  labels, _ = _freq(oracle.preset("oracle"), early, late)
  assert np.all(labels == 0.0)
  # Boltzmann on the myopic returns.
  stoch_myopic = oracle.preset("myopic", beta=1.0)
  labels, _ = _freq(stoch_myopic, R1, R2, seed=6)
  w = np.asarray(oracle.step_weights(stoch_myopic, 4))
  _close(labels.mean(), _sigmoid(np.dot(w, R2) - np.dot(w, R1)))
  # imitation's forward discount weights the earliest step 1.
  fwd = oracle.make_teacher(gamma=0.9, forward_discount=True)
  np.testing.assert_allclose(oracle.step_weights(fwd, 4),
                             [1.0, 0.9, 0.81, 0.729], rtol=1e-6)


def test_teachers_vmap_in_one_program():
  names = list(oracle.PRESETS)
  teachers = jax.tree.map(lambda *x: jnp.stack(x),
                          *[oracle.preset(n) for n in names])
  keys = jax.random.split(jax.random.PRNGKey(0), len(names))
  labels, skipped = jax.vmap(oracle.label_pair,
                             in_axes=(0, None, None, 0, None))(
                                 teachers, jnp.asarray(R1), jnp.asarray(R2),
                                 keys, 20.0)
  assert labels.shape == (len(names),) and skipped.shape == (len(names),)
  assert float(labels[names.index("oracle")]) == 1.0


def test_skipped_queries_cost_budget_and_add_no_label():
  ds = feedback.init_labels(capacity=10, length=2, obs_size=1, action_size=1)
  q = 4
  segs = segments.Segments(
      observation=jnp.arange(q, dtype=jnp.float32)[:, None, None]
      * jnp.ones((q, 2, 1)),
      action=jnp.zeros((q, 2, 1)), next_observation=jnp.zeros((q, 2, 1)),
      true_reward=jnp.zeros((q, 2)))
  active = jnp.array([True, True, True, False])
  answered = jnp.array([True, False, True, True])  # row 1 skipped
  ds = feedback.add_labels(ds, segs, segs, jnp.array([1.0, 0.0, 0.5, 1.0]),
                           active, jnp.int32(3), stored=answered)
  assert int(ds.spent) == 3  # three asked
  assert int(ds.count) == 2  # two answered
  # Stored in query order, the skipped row left out.
  np.testing.assert_array_equal(ds.first.observation[:2, 0, 0], [0.0, 2.0])
  np.testing.assert_array_equal(ds.label[:2], [1.0, 0.5])
  assert np.all(np.asarray(ds.label[2:]) == 0.0)
