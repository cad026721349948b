"""Reward-hacking telemetry: EPIC distance and the learned-up/true-down
detector (rrm/hacking.py), on hand-built tabular rewards and series."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import hacking

GAMMA = 0.9


def _tabular(table):
  """R(s, a, s') of one-hot observations and actions from a [S, A, S'] table."""
  table = jnp.asarray(table, jnp.float32)

  def reward(obs, action, next_obs):
    return jnp.einsum("...s,...a,...t,sat->...", obs, action, next_obs, table)

  return reward


def _one_hot_transitions(triples, num_states, num_actions):
  s, a, t = (np.array(x) for x in zip(*triples))
  eye_s, eye_a = np.eye(num_states, dtype=np.float32), np.eye(
      num_actions, dtype=np.float32)
  return eye_s[s], eye_a[a], eye_s[t]


def _all_triples(num_states, num_actions):
  return list(itertools.product(range(num_states), range(num_actions),
                                range(num_states)))


def test_epic_of_an_action_reward_and_a_next_state_reward_by_hand():
  """2 states, 2 actions; D_S, D_A uniform over both; D all 8 transitions.

  R_A(s, a, s') = [a = 1]: E_{A,S'} R_A(x, A, S') = 1/2 for every x, so
    C(R_A) = [a = 1] + g/2 - 1/2 - g/2 = [a = 1] - 1/2.
  R_B(s, a, s') = [s' = 1]: E_{A,S'} R_B(x, A, S') = 1/2 for every x, so
    C(R_B) = [s' = 1] + g/2 - 1/2 - g/2 = [s' = 1] - 1/2.
  Over the 8 transitions a and s' are independent and balanced: covariance
  0, rho = 0, D_EPIC = sqrt((1 - 0) / 2) = 0.7071.
  """
  table_a = np.zeros((2, 2, 2))
  table_a[:, 1, :] = 1.0
  table_b = np.zeros((2, 2, 2))
  table_b[:, :, 1] = 1.0
  triples = _all_triples(2, 2)
  obs, action, next_obs = _one_hot_transitions(triples, 2, 2)
  canon_obs, canon_action = np.eye(2, dtype=np.float32), np.eye(
      2, dtype=np.float32)
  ca = hacking.canonicalize(_tabular(table_a), obs, action, next_obs,
                            canon_obs, canon_action, GAMMA)
  cb = hacking.canonicalize(_tabular(table_b), obs, action, next_obs,
                            canon_obs, canon_action, GAMMA)
  np.testing.assert_allclose(ca, [a - 0.5 for _, a, _ in triples], atol=1e-6)
  np.testing.assert_allclose(cb, [t - 0.5 for _, _, t in triples], atol=1e-6)
  d = hacking.epic_distance(_tabular(table_a), _tabular(table_b), obs, action,
                            next_obs, canon_obs, canon_action, GAMMA)
  np.testing.assert_allclose(d, np.sqrt(0.5), atol=1e-6)


def _random_case(seed, num_states=5, num_actions=3, n=60):
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(num_states, num_actions, num_states))
  triples = [tuple(x) for x in np.stack([
      rng.integers(num_states, size=n), rng.integers(num_actions, size=n),
      rng.integers(num_states, size=n)], axis=1)]
  return rng, table, _one_hot_transitions(triples, num_states, num_actions)


@pytest.mark.parametrize("exact_canon", [True, False])
def test_epic_ignores_potential_shaping_and_positive_affine_maps(exact_canon):
  """R_B = 2.5 R_A + 1.7 + g Phi(s') - Phi(s): the same optimal policies, so
  EPIC is 0; with D_S a sample (states repeated, others missing) as well,
  since shaping then leaves only a constant g (E Phi(S) - E Phi(S')) = 0
  here, S and S' sharing D_S."""
  rng, table, (obs, action, next_obs) = _random_case(0)
  phi = rng.normal(size=5)
  shaped = (2.5 * table + 1.7 + GAMMA * phi[None, None, :]
            - phi[:, None, None])
  if exact_canon:
    canon_obs = np.eye(5, dtype=np.float32)
  else:
    canon_obs = np.eye(5, dtype=np.float32)[rng.integers(5, size=7)]
  canon_action = np.eye(3, dtype=np.float32)
  d = hacking.epic_distance(_tabular(table), _tabular(shaped), obs, action,
                            next_obs, canon_obs, canon_action, GAMMA)
  assert float(d) < 1e-3, float(d)
  # Without canonicalising, shaping moves the rewards far apart.
  raw = hacking.pearson_distance(_tabular(table)(obs, action, next_obs),
                                 _tabular(shaped)(obs, action, next_obs))
  assert float(raw) > 0.1


def test_epic_of_unrelated_and_opposite_rewards():
  _, table, (obs, action, next_obs) = _random_case(1)
  other = np.random.default_rng(99).normal(size=table.shape)
  canon_obs, canon_action = np.eye(5, dtype=np.float32), np.eye(
      3, dtype=np.float32)
  args = (obs, action, next_obs, canon_obs, canon_action, GAMMA)
  unrelated = hacking.epic_distance(_tabular(table), _tabular(other), *args)
  assert 0.5 < float(unrelated) < 0.9, float(unrelated)
  opposite = hacking.epic_distance(_tabular(table), _tabular(-table), *args)
  np.testing.assert_allclose(opposite, 1.0, atol=1e-5)
  # jit and no jit agree.
  jitted = jax.jit(lambda *a: hacking.epic_distance(
      _tabular(table), _tabular(other), *a, GAMMA))(*args[:-1])
  np.testing.assert_allclose(jitted, unrelated, rtol=1e-5)


def test_detector_fires_on_learned_up_true_down_only():
  t = np.arange(30, dtype=np.float64)
  rng = np.random.default_rng(0)
  # Rising on both, with noise: a healthy run.
  healthy_learned = t + rng.normal(scale=2.0, size=30)
  healthy_true = 0.8 * t + rng.normal(scale=2.0, size=30)
  assert not hacking.hacking_flags(healthy_learned, healthy_true, 10,
                                   0.6).any()
  # Noise around flat returns: no trend either way.
  noise = hacking.hacking_flags(rng.normal(size=30), rng.normal(size=30), 10,
                                0.6)
  assert not noise.any()
  # Healthy for 15 evaluations, then the policy exploits the model: learned
  # keeps rising, true falls.
  learned = np.concatenate([t[:15], 15 + 2 * t[:15]])
  true = np.concatenate([t[:15], 15 - 1.5 * t[:15]])
  learned = learned + rng.normal(scale=0.5, size=30)
  true = true + rng.normal(scale=0.5, size=30)
  flags = hacking.hacking_flags(learned, true, 10, 0.6)
  assert not flags[:19].any() and flags[-6:].all(), np.nonzero(flags)
  # Scale-free: the same series in other units flag the same evaluations.
  np.testing.assert_array_equal(
      hacking.hacking_flags(1000 * learned, 0.01 * true - 5, 10, 0.6), flags)


def test_detector_false_alarms_on_a_flat_noisy_true_return_are_rare():
  """Learned return rising, true return iid noise (no trend): a window
  flags only when the noise happens to fall with tau <= -0.6; under no
  trend that has probability ~0.9 % for 10 points (Kendall's null
  distribution; 1.9 % for 8 points, which is why 10 is the example
  window)."""
  rng = np.random.default_rng(1)
  rising = np.arange(10, dtype=np.float64)
  flagged = [hacking.hacking_flags(rising, rng.normal(size=10), 10, 0.6)[-1]
             for _ in range(2000)]
  assert np.mean(flagged) < 0.02, np.mean(flagged)


def test_trend_is_kendalls_tau_against_time():
  assert hacking.trend([1, 2, 3, 4]) == 1.0
  assert hacking.trend([4, 3, 2, 1]) == -1.0
  # Pairs (i<j) of [1, 3, 2]: 3-1 up, 2-1 up, 2-3 down: (2 - 1) / 3.
  assert hacking.trend([1, 3, 2]) == pytest.approx(1 / 3)
  assert hacking.trend([1, np.nan, 2]) == 1.0
  assert hacking.trend([5]) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    ({"window": 2}, "window=2 must be >= 3"),
    ({"threshold": 0.0}, r"threshold=0.0 must be in \(0, 1\]"),
    ({"threshold": 1.5}, r"threshold=1.5 must be in \(0, 1\]"),
])
def test_detector_refuses_bad_settings(kwargs, match):
  args = {"window": 5, "threshold": 0.5, **kwargs}
  with pytest.raises(ValueError, match=match):
    hacking.hacking_flags(np.zeros(10), np.zeros(10), **args)
  with pytest.raises(ValueError, match="one length"):
    hacking.hacking_flags(np.zeros(10), np.zeros(9), 5, 0.5)


def test_auroc_is_the_share_of_positive_negative_pairs_ranked_right():
  """Positives 0.9, 0.4 against negatives 0.5, 0.1: of the 4 pairs 3 are
  ranked right (0.9 > 0.5, 0.9 > 0.1, 0.4 > 0.1), so 0.75; a tie counts
  one half."""
  assert hacking.auroc([0.9, 0.4], [0.5, 0.1]) == 0.75
  assert hacking.auroc([0.5], [0.5]) == 0.5
  assert hacking.auroc([1.0, 2.0], [0.0]) == 1.0
  assert np.isnan(hacking.auroc([], [0.1]))


def test_the_score_is_the_margin_the_flag_tests():
  """The detector flags a window iff its score >= the threshold."""
  rng = np.random.default_rng(0)
  learned, true = rng.normal(size=40).cumsum(), rng.normal(size=40).cumsum()
  for t in range(9, 40):
    span = slice(t - 9, t + 1)
    score = hacking.hacking_score(hacking.trend(learned[span]),
                                  hacking.trend(true[span]))
    flag = hacking.hacking_flags(learned[span], true[span], 10, 0.4)[-1]
    assert flag == (score >= 0.4)
