"""Label dataset, schedule, segments and pool."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import feedback
from rrm import segments


def _segs(n, length=3, value=0.0):
  s = segments.zeros(n, length, 2, 1)
  return jax.tree.map(lambda x: x + value, s)


def test_add_labels_appends_prefix_and_respects_capacity():
  ds = feedback.init_labels(capacity=5, length=3, obs_size=2, action_size=1)
  active = jnp.array([True, True, True, False])
  ds = feedback.add_labels(ds, _segs(4, value=1.0), _segs(4, value=2.0),
                           jnp.array([1.0, 0.0, 0.5, 1.0]), active,
                           jnp.int32(7))
  assert int(ds.count) == 3 and int(ds.spent) == 3
  np.testing.assert_array_equal(ds.label[:3], [1.0, 0.0, 0.5])
  np.testing.assert_array_equal(ds.iteration, [7, 7, 7, -1, -1])
  # 4 more active rows but only 2 free slots: the rest is dropped, never
  # overwriting stored labels.
  ds = feedback.add_labels(ds, _segs(4, value=3.0), _segs(4, value=4.0),
                           jnp.array([0.0, 0.0, 1.0, 1.0]),
                           jnp.ones(4, bool), jnp.int32(8))
  assert int(ds.count) == 5
  np.testing.assert_array_equal(ds.label, [1.0, 0.0, 0.5, 0.0, 0.0])
  np.testing.assert_array_equal(ds.first.observation[:, 0, 0],
                                [1, 1, 1, 3, 3])


def _simulate(quotas, budget, initial, iterations):
  spent, asked = initial, []
  for it in range(iterations):
    n = int(feedback.labels_due(jnp.int32(it), jnp.int32(spent), budget,
                                quotas))
    asked.append(n)
    spent += n
  return spent, asked


def test_constant_schedule_spends_exactly_the_budget():
  budget, initial, per_round, every = 47, 10, 4, 3
  quotas = feedback.label_quotas("constant", budget, initial, per_round,
                                 every, 100)
  spent, asked = _simulate(quotas, budget, initial, 120)
  assert spent == budget
  assert all(n == 0 for it, n in enumerate(asked) if it % every)
  assert asked[:3] == [4, 0, 0] and max(asked) == per_round
  # Without a horizon, rounds go on until the budget is spent.
  unbounded = feedback.label_quotas("constant", budget, initial, per_round,
                                    every, 0)
  assert _simulate(unbounded, budget, initial, 200)[0] == budget


@pytest.mark.parametrize("schedule", feedback.SCHEDULES)
@pytest.mark.parametrize("horizon, every", [(40, 1), (37, 3), (5, 2)])
def test_every_schedule_spends_exactly_the_budget(schedule, horizon, every):
  budget, initial = 200, 50
  quotas = feedback.label_quotas(schedule, budget, initial, 10, every,
                                 horizon)
  assert quotas.shape == (horizon,) and np.all(quotas >= 0)
  spent, asked = _simulate(quotas, budget, initial, horizon + 10)
  if schedule == "constant" and horizon * 10 // every < budget - initial:
    assert spent == initial + 10 * len(range(0, horizon, every))
  else:
    assert spent == budget
  assert all(n == 0 for it, n in enumerate(asked) if it % every)
  assert all(n == 0 for n in asked[horizon:])


def test_decaying_schedules_front_load_in_the_stated_ratios():
  q = {s: feedback.label_quotas(s, 10_050, 50, 10, 1, 100).astype(float)
       for s in ("annealed", "hyperbolic", "inverse_quadratic")}
  for s, quotas in q.items():
    assert np.all(np.diff(quotas[::10]) <= 0), s  # non-increasing rate
  # Rate at the end over the rate at the start: 0.01 (annealed), 1/2
  # (hyperbolic), 1/2 (inverse quadratic), within rounding of 100 rounds.
  ratio = lambda x: x[-5:].mean() / x[:5].mean()
  assert ratio(q["annealed"]) == pytest.approx(0.01 * 1.1, rel=0.35)
  assert ratio(q["hyperbolic"]) == pytest.approx(0.5, rel=0.05)
  assert ratio(q["inverse_quadratic"]) == pytest.approx(0.5, rel=0.05)
  # Inverse quadratic decays more slowly than hyperbolic early on (zero
  # slope at t = 0): 1/(1 + 0.01) vs 1/(1 + 0.1) at t = 0.1.
  early = lambda x: x[10] / x[0]
  assert early(q["inverse_quadratic"]) == pytest.approx(1 / 1.01, rel=0.02)
  assert early(q["hyperbolic"]) == pytest.approx(1 / 1.1, rel=0.02)


def test_cut_marks_segments_straddling_episode_ends():
  t, b, length = 6, 2, 3
  obs = jnp.arange(t * b * 2, dtype=jnp.float32).reshape(t, b, 2)
  act = jnp.zeros((t, b, 1))
  rew = jnp.arange(t * b, dtype=jnp.float32).reshape(t, b)
  end = jnp.zeros((t, b)).at[1, 0].set(1.0).at[2, 1].set(1.0)
  segs, valid = segments.cut(obs, act, obs, rew, end, length)
  # Segment k * B + b holds steps [3k, 3k + 3) of env b.
  np.testing.assert_array_equal(segs.true_reward[1], rew[0:3, 1])
  np.testing.assert_array_equal(segs.true_reward[2], rew[3:6, 0])
  # env 0 ends at step 1 (inside segment 0); env 1 ends at step 2 (the last
  # step of its segment 0: allowed).
  np.testing.assert_array_equal(valid, [False, True, True, True])


def test_pool_is_a_ring_and_prefers_valid_candidates():
  pool = segments.init_pool(size=4, length=3, obs_size=2, action_size=1)
  cands = jax.tree.map(lambda x: x + jnp.arange(6.0).reshape(
      (6,) + (1,) * (x.ndim - 1)), _segs(6))
  valid = jnp.array([False, True, False, True, True, False])
  pool = segments.add(pool, cands, valid, 3, jax.random.PRNGKey(0))
  assert bool(jnp.all(pool.valid[:3])) and not bool(pool.valid[3])
  assert sorted(np.asarray(pool.segments.true_reward[:3, 0]).tolist()) == [
      1.0, 3.0, 4.0]
  pool = segments.add(pool, cands, valid, 3, jax.random.PRNGKey(1))
  assert int(pool.cursor) == 2  # wrapped around: slots 3, 0, 1 rewritten
  assert bool(jnp.all(pool.valid))
