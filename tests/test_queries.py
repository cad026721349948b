"""Query selectors on hand-built pools and ensembles."""

import jax
import jax.numpy as jnp
import numpy as np

from rrm import queries
from rrm import segments


def _pool(valid):
  pool = segments.init_pool(len(valid), 2, 1, 1)
  return pool.replace(valid=jnp.asarray(valid))


def test_uniform_pairs_are_distinct_valid_segments():
  pool = _pool([True, False, True, True, False, True])
  q = queries.select_uniform(pool, jnp.zeros(()), 500, jax.random.PRNGKey(0))
  first, second = np.asarray(q.first), np.asarray(q.second)
  assert np.all(first != second)
  for idx in (first, second):
    assert set(idx.tolist()) == {0, 2, 3, 5}  # every valid one, no invalid


def test_disagreement_scores_hand_computed():
  # Two members, three segments. Member returns:
  #   m0: [0, 0, 0]   m1: [0, 0, 4]
  # pair (0, 1): both members p = s(0) = .5      -> variance 0
  # pair (0, 2): p = s(0) = .5 and s(4) = .982   -> variance ((.982-.5)/2)^2
  returns = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
  q = queries.Queries(jnp.array([0, 0]), jnp.array([1, 2]))
  score = np.asarray(queries.disagreement(returns, q))
  expected = ((1 / (1 + np.exp(-4.0)) - 0.5) / 2) ** 2
  np.testing.assert_allclose(score, [0.0, expected], rtol=1e-5)


def test_disagreement_selector_picks_the_most_disputed_pairs():
  pool = _pool([True] * 4)
  # Members agree on everything except comparisons involving segment 3.
  returns = jnp.array([[1.0, 2.0, 3.0, 0.0], [1.0, 2.0, 3.0, 9.0]])
  select = queries.make_selector("disagreement", oversample=30)
  q = select(pool, returns, 3, jax.random.PRNGKey(0))
  for a, b in zip(np.asarray(q.first), np.asarray(q.second)):
    assert 3 in (a, b) and a != b


def test_entropy_scores_hand_computed():
  # Two members, three segments: m0 [0, 0, 0], m1 [0, 4, -4].
  # pair (0, 1): p = (.5 + s(4)) / 2; pair (1, 2): p = (.5 + s(-8)) / 2;
  # pair (0, 0)-like agreement: members both .5 -> maximal entropy log 2.
  returns = jnp.array([[0.0, 0.0, 0.0], [0.0, 4.0, -4.0]])
  q = queries.Queries(jnp.array([0, 1, 0]), jnp.array([1, 2, 0]))
  s = lambda x: 1 / (1 + np.exp(-x))
  h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))
  expected = [h((0.5 + s(4.0)) / 2), h((0.5 + s(-8.0)) / 2), np.log(2)]
  np.testing.assert_allclose(np.asarray(queries.entropy(returns, q)),
                             expected, rtol=1e-5)


def test_entropy_selector_picks_the_pairs_nearest_a_coin_flip():
  pool = _pool([True] * 5)
  # Members agree: segments 0, 1 are tied (p = .5 for the pair 0-1); every
  # other pair differs by >= 3 in return. Disagreement would be zero
  # everywhere; entropy is maximal on {0, 1}.
  returns = jnp.array([[0.0, 0.0, 3.0, 6.0, 9.0]] * 3)
  select = queries.make_selector("entropy", oversample=40)
  q = select(pool, returns, 2, jax.random.PRNGKey(1))
  for a, b in zip(np.asarray(q.first), np.asarray(q.second)):
    assert {int(a), int(b)} == {0, 1}
  # Disagreement of identical members is 0 for every pair.
  assert float(jnp.max(queries.disagreement(returns, q))) == 0.0


def test_recent_selector_draws_pairs_only_from_the_latest_segments():
  """QPA's policy-aligned buffer: the pool's last writes, across the wrap."""
  pool = segments.init_pool(8, 2, 1, 1)
  cand = segments.Segments(*[jnp.zeros((3, 2) + s.shape[2:])
                             for s in pool.segments])
  key = jax.random.PRNGKey(0)
  for _ in range(3):  # 9 writes into 8 slots: the cursor wrapped to 1
    pool = segments.add(pool, cand, jnp.ones((3,), bool), 3, key)
  assert int(pool.cursor) == 1
  recent = np.asarray(queries.most_recent(pool, 4))
  assert recent.tolist() == [True, False, False, False, False, True, True,
                             True]  # slots 0, 7, 6, 5: the last four writes
  q = queries.make_selector("recent", recent=4)(pool, jnp.zeros(()), 400,
                                                jax.random.PRNGKey(1))
  first, second = np.asarray(q.first), np.asarray(q.second)
  assert np.all(first != second)
  for idx in (first, second):
    assert set(idx.tolist()) == {0, 5, 6, 7}
