"""Recursive reward modeling's pure core: trees, limited and assisted users."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import envs as rrm_envs
from rrm import oracle
from rrm import recursive as rec
from brax import envs as brax_envs

HOPPER = {"name": "hop", "children": [
    {"name": "progress", "aspect": "reward_forward"},
    {"name": "upkeep", "children": [
        {"name": "healthy", "aspect": "reward_healthy"},
        {"name": "energy", "aspect": "reward_ctrl", "weight": 1.0}]}]}

DEEP = {"name": "root", "children": [
    {"name": "a", "weight": 2.0, "children": [
        {"name": "a1", "aspect": "x1", "weight": 0.5},
        {"name": "a2", "aspect": "x2", "weight": -1.0}]},
    {"name": "b", "weight": 0.5, "children": [
        {"name": "b1", "aspect": "x3"},
        {"name": "b2", "weight": 3.0, "children": [
            {"name": "b21", "aspect": "x4"}]}]}]}


def test_parse_validate_and_refuse_malformed_trees():
  tree = rec.parse_tree(DEEP)
  rec.validate(tree, ["x1", "x2", "x3", "x4"])
  assert rec.depth(tree) == 4
  assert rec.aspect_names(tree) == ("x1", "x2", "x3", "x4")
  assert [[n.name for n in level] for level in rec.levels(tree)] == [
      ["root"], ["a", "b"], ["a1", "a2", "b1", "b2"], ["b21"]]
  bad = [
      ({"name": "r", "aspect": "x1", "children": [{"name": "c",
                                                   "aspect": "x2"}]},
       "not both"),
      ({"name": "r"}, "not both and not neither"),
      ({"name": "r", "children": [{"name": "c", "aspect": "x1",
                                   "weight": "1"}]}, "finite number"),
      ({"name": "r", "children": [{"name": "c", "aspect": "x1", "wieght": 1}]},
       "unknown keys"),
  ]
  for spec, msg in bad:
    with pytest.raises(rec.TreeError, match=msg):
      rec.parse_tree(spec)
  with pytest.raises(rec.TreeError, match="depth >= 2"):
    rec.validate(rec.TaskNode("r", aspect="x1"), ["x1"])
  with pytest.raises(rec.TreeError, match=r"x9.*not reward components"):
    rec.validate(rec.parse_tree({"name": "r", "children": [
        {"name": "c", "aspect": "x9"}]}), ["x1"])
  with pytest.raises(rec.TreeError, match="unique"):
    rec.validate(rec.parse_tree({"name": "r", "children": [
        {"name": "r", "aspect": "x1"}]}), ["x1"])


def test_node_weights_are_products_along_paths():
  w = rec.node_weights(rec.parse_tree(DEEP))
  np.testing.assert_allclose(w["a"], [0.5, -1.0, 0, 0])
  np.testing.assert_allclose(w["b"], [0, 0, 1.0, 3.0])
  np.testing.assert_allclose(w["root"], [1.0, -2.0, 0.5, 1.5])
  np.testing.assert_allclose(w["b21"], [0, 0, 0, 1.0])


def test_hopper_tree_root_reproduces_the_env_reward():
  """Brax hopper's reward is the sum of its components (no termination)."""
  tree = rec.parse_tree(HOPPER)
  env = brax_envs.get_environment("hopper", backend="positional",
                                  terminate_when_unhealthy=False)
  names = rec.aspect_names(tree)

  @jax.jit
  def roll(key):
    state = jax.vmap(env.reset)(jax.random.split(key, 4))

    def body(s, k):
      a = jax.random.uniform(k, (4, env.action_size), minval=-1, maxval=1)
      s = jax.vmap(env.step)(s, a)
      return s, (jnp.stack([s.metrics[n] for n in names], -1), s.reward)

    return jax.lax.scan(body, state, jax.random.split(key, 40))[1]

  aspects, reward = roll(jax.random.PRNGKey(0))
  rec.validate(tree, list(jax.eval_shape(env.reset,
                                         jax.random.PRNGKey(0)).metrics))
  rec.check_root_matches_reward(tree, np.asarray(aspects), np.asarray(reward))
  assert np.ptp(np.asarray(aspects)[..., 0]) > 0  # progress varies
  wrong = rec.parse_tree({**HOPPER, "children": [
      {"name": "progress", "aspect": "reward_forward", "weight": 2.0},
      HOPPER["children"][1]]})
  with pytest.raises(rec.TreeError, match="does not reproduce"):
    rec.check_root_matches_reward(wrong, np.asarray(aspects),
                                  np.asarray(reward))
  assert "hopper" in rrm_envs.available_envs()


def _pairs(n=4096, length=10, k=4, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return (jax.random.normal(k1, (n, length, k)),
          jax.random.normal(k2, (n, length, k)))


@pytest.mark.parametrize("teacher", list(oracle.PRESETS))
def test_perfect_helpers_make_the_assisted_user_the_full_view_oracle(teacher):
  """Depth 3: perfect helpers of the root's children assess each child's
  value exactly; the assisted user's labels then equal the full view's."""
  tree = rec.parse_tree(DEEP)
  w = {k: jnp.asarray(v) for k, v in rec.node_weights(tree).items()}
  child_w = jnp.asarray([c.weight for c in tree.children])
  s1, s2 = _pairs()
  # Perfect helpers: child c's per-step value W[c] @ aspects.
  h1 = jnp.stack([s1 @ w[c.name] for c in tree.children], -1)
  h2 = jnp.stack([s2 @ w[c.name] for c in tree.children], -1)
  params = oracle.preset(teacher)
  keys = jax.random.split(jax.random.PRNGKey(1), s1.shape[0])
  ref = 3.0
  full = jax.vmap(rec.full_view_label, in_axes=(None, None, 0, 0, 0, None))(
      params, w["root"], s1, s2, keys, ref)
  assisted = jax.vmap(rec.assisted_label,
                      in_axes=(None, None, 0, 0, 0, None))(
                          params, child_w, h1, h2, keys, ref)
  decided = ~full[1]
  agree = np.mean(np.asarray(full[0] == assisted[0])[np.asarray(decided)])
  # Float sums in another order can move a pair across an equal/skip
  # threshold or a Bernoulli draw only at measure-zero boundaries.
  assert agree >= 0.999, agree
  np.testing.assert_array_equal(full[1], assisted[1])


def test_limited_user_misses_aspects_and_loses_rationality():
  tree = rec.parse_tree(DEEP)
  names = rec.aspect_names(tree)
  w = jnp.asarray(rec.node_weights(tree)["root"])
  s1, s2 = _pairs(n=20000)
  keys = jax.random.split(jax.random.PRNGKey(2), s1.shape[0])
  label = jax.vmap(rec.limited_label,
                   in_axes=(None, None, None, 0, 0, 0, None))
  perfect = oracle.preset("oracle")
  full = jax.vmap(rec.full_view_label, in_axes=(None, None, 0, 0, 0, None))(
      perfect, w, s1, s2, keys, 1.0)[0]
  everything = rec.make_limited_user(names, names)
  np.testing.assert_array_equal(label(perfect, everything, w, s1, s2, keys,
                                      1.0)[0], full)
  # Perceiving only the most salient aspect (x2, weight -2): agreement with
  # the full view drops well below 1 but stays above chance.
  salient = rec.make_limited_user(names, ["x2"])
  part = label(perfect, salient, w, s1, s2, keys, 1.0)[0]
  agreement = float(np.mean(np.asarray(part == full)))
  assert 0.6 < agreement < 0.9, agreement
  # Boltzmann: beta / n^decay with n = 4 perceived aspects.
  stoch = oracle.preset("stoch", beta=2.0)
  tired = rec.make_limited_user(names, names, decay=1.0)
  got = label(stoch, tired, w, s1, s2, keys, 1.0)[0]
  r1, r2 = np.asarray(s1 @ w).sum(-1), np.asarray(s2 @ w).sum(-1)
  p = 1 / (1 + np.exp(-(2.0 / 4.0) * (r2 - r1)))
  # Mean label vs mean probability over 20000 independent draws.
  assert abs(float(np.mean(np.asarray(got))) - p.mean()) < 4 * np.sqrt(
      0.25 / len(p))
  with pytest.raises(rec.TreeError, match="not in the tree"):
    rec.make_limited_user(names, ["x7"])


def test_budget_split_is_exact_on_a_depth_3_tree():
  tree = rec.parse_tree(DEEP)
  for budget in (0, 1, 7, 100, 999, 1000):
    for fractions in ([0.5, 0.25, 0.2, 0.05], [1, 1, 1, 1], [0, 0, 1, 0]):
      parts = rec.node_budgets(tree, budget, fractions)
      assert sum(parts.values()) == budget
      assert set(parts) == {n.name for n in rec.nodes(tree)}
      levels = rec.levels(tree)
      share = np.asarray(fractions, float) / np.sum(fractions) * budget
      for level, target in zip(levels, share):
        got = sum(parts[n.name] for n in level)
        assert abs(got - target) < 1, (budget, fractions)
        counts = [parts[n.name] for n in level]
        assert max(counts) - min(counts) <= 1
  with pytest.raises(rec.TreeError, match="4 levels"):
    rec.node_budgets(tree, 10, [0.5, 0.5])
  with pytest.raises(rec.TreeError, match="non-negative"):
    rec.split_budget(10, [-1, 2])


def test_reliability_of_a_helper_from_held_out_labels():
  # Helper's predicted differences (second - first) and the user's labels.
  diff = jnp.array([2.0, -1.0, 0.5, -3.0, 1.0, 0.0])
  agree = jnp.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.5])
  every = jnp.ones((6,), bool)
  # Orders every decided pair as the user does, and says 0 where the user
  # saw no difference: a perfect helper, 1.
  assert float(rec.reliability(diff, agree, every)) == 1.0
  # Orders every pair the other way: sign agreement 0, clipped to 0.
  assert float(rec.reliability(diff, 1.0 - agree, every)) == 0.0
  # The user saw no difference anywhere: all of its spread is noise.
  assert float(rec.reliability(diff, jnp.full((6,), 0.5), every)) == 0.0
  # Right on the 5 decided pairs, but 1.5 where the user saw a tie: the
  # share of its spread on ties is q = 1.5^2 / (4 + 1 + .25 + 9 + 1 + 2.25)
  # = 2.25 / 17.5, so rho = 1 * sqrt(1 - q).
  noisy = diff.at[5].set(1.5)
  np.testing.assert_allclose(float(rec.reliability(noisy, agree, every)),
                             np.sqrt(1 - 2.25 / 17.5), rtol=1e-6)
  # 4 of 5 decided pairs right: rho_decided = sin(pi (0.8 - 0.5)).
  one_wrong = agree.at[4].set(0.0)
  np.testing.assert_allclose(float(rec.reliability(diff, one_wrong, every)),
                             np.sin(np.pi * 0.3), rtol=1e-6)
  # Fewer than MIN_RELIABILITY_LABELS held out: no evidence, taken at its
  # word (even where the few labels disagree with it).
  few = jnp.arange(6) < rec.MIN_RELIABILITY_LABELS - 1
  assert float(rec.reliability(diff, 1.0 - agree, few)) == 1.0


def test_a_perfect_helpers_assessment_is_the_true_value():
  truth = jax.random.normal(jax.random.PRNGKey(3), (8, 5))
  valid = jnp.arange(8) < 7  # the last slot holds no segment
  returns = jnp.sum(truth, axis=-1)
  # Any increasing function of the helper's returns: the true returns
  # exactly, spread evenly over the steps.
  prediction = jnp.exp(truth) - 2.0
  prediction = prediction.at[:7].set(
      jnp.broadcast_to(jnp.exp(returns[:7, None] / 3.0), (7, 5)))
  assessed = rec.calibrate(prediction, truth, valid)
  np.testing.assert_allclose(jnp.sum(assessed, -1)[:7], returns[:7],
                             rtol=1e-5)
  np.testing.assert_allclose(assessed[:, 0], assessed[:, 4])
  # An unreliable helper's assessment shrinks towards the mean; an empty
  # slot gets the mean.
  mean = float(jnp.mean(returns[:7]))
  shrunk = jnp.sum(rec.calibrate(prediction, truth, valid, 0.5), -1)
  np.testing.assert_allclose(shrunk[:7] - mean, 0.5 * (returns[:7] - mean),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(shrunk[7], mean, rtol=1e-5)
  # A rare aspect keeps its shape: 2 of 7 segments pay a penalty, the
  # helper is noisy on the others but ranks the 2 lowest.
  penalty = jnp.zeros((8, 5)).at[1, 2].set(-3.0).at[4, 0].set(-3.0)
  noisy = 0.1 * truth.at[1].set(-10.0).at[4].set(-12.0)
  mapped = jnp.sum(rec.calibrate(noisy, penalty, valid), -1)
  np.testing.assert_allclose(mapped[:7], [0, -3, 0, 0, -3, 0, 0], atol=1e-6)
