"""PPO update (rrm.ppo) on a hand-built tiny batch.

One fixture compiles everything once per module: the policy's init, a
rollout of the policy on random observations (its extras come from brax's
own inference function, as brax.training.acting records them), and the
update. Observation size 3, action size 2, (8, 8) networks, T = 8 steps of
B = 4 envs cut into unrolls of U = 4: N = T / U * B = 8 unrolls, two
minibatches of four.
"""

import dataclasses

from brax.training import types as brax_types
from brax.training.agents.ppo import networks as ppo_networks
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_equal
from conftest import fast_compile
from rrm import config as rrm_config
from rrm import ppo
from rrm import rollout

# pytest-xdist: the tests of this module's compiled fixture share a worker.
pytestmark = pytest.mark.xdist_group("ppo_setup")

OBS, ACT, T, B, U = 3, 2, 8, 4, 4
METRICS = {"ppo/total_loss", "ppo/policy_loss", "ppo/value_loss",
           "ppo/entropy_loss", "ppo/kl"}

CONFIG = rrm_config.PPOConfig(
    unroll_length=U, batch_size=4, num_minibatches=2, num_updates_per_batch=2,
    learning_rate=3e-3, entropy_cost=1e-3, discounting=0.9, gae_lambda=0.95,
    clipping_epsilon=0.3, reward_scaling=1.0, normalize_observations=True,
    max_grad_norm=1.0, policy_hidden_layer_sizes=(8, 8),
    value_hidden_layer_sizes=(8, 8))


def _rollout(make_policy, state, key):
  """A [T, B] Transition of the policy acting on random observations.

  The reward is the first action component: PPO should push the policy's
  mean of action 0 up and leave action 1 alone. Env 1 terminates at step 5;
  env 3 is truncated at step 2 (a time limit: bootstrapped, not terminal).
  """
  key_obs, key_act = jax.random.split(key)
  obs = jax.random.normal(key_obs, (T + 1, B, OBS))
  policy = make_policy(ppo.inference_params(state))
  # Brax's policy acts on a batch [B, obs] with one key; one key per step.
  action, policy_extras = jax.vmap(policy)(obs[:-1],
                                           jax.random.split(key_act, T))
  done = jnp.zeros((T, B)).at[5, 1].set(1.0)
  truncation = jnp.zeros((T, B)).at[2, 3].set(1.0)
  return brax_types.Transition(
      observation=obs[:-1], action=action, reward=action[..., 0],
      discount=1.0 - jnp.maximum(done, truncation),
      next_observation=obs[1:],
      extras={"state_extras": {"truncation": truncation},
              "policy_extras": policy_extras})


@pytest.fixture(scope="session")  # kept: xdist interleaves modules
def setup():
  networks = ppo.make_networks(CONFIG, OBS, ACT)
  optimizer = ppo.make_optimizer(CONFIG)
  make_policy = ppo_networks.make_inference_fn(networks)
  update = jax.jit(ppo.make_ppo_update(CONFIG, networks))

  @jax.jit
  def init_and_rollout(key):
    key_init, key_rollout = jax.random.split(key)
    state = ppo.init_policy(networks, optimizer, OBS, key_init)
    data = _rollout(make_policy, state, key_rollout)
    return state, data, rollout.to_ppo_layout(data, U)

  @jax.jit
  def policy_mean(state, observation):
    """Mean action (the tanh-normal's mode) at each observation."""
    act, _ = make_policy(ppo.inference_params(state), deterministic=True)(
        observation, None)
    return act

  hyper = ppo.hyper(CONFIG)
  with fast_compile():
    state, data, batch = init_and_rollout(jax.random.PRNGKey(0))
    first = update(state, batch, jax.random.PRNGKey(1), hyper)
    policy_mean(state, data.observation[0])
  return dict(state=state, data=data, batch=batch, update=update,
              hyper=hyper, first=first, policy_mean=policy_mean)


def test_batch_is_in_the_layout_the_update_expects(setup):
  batch = setup["batch"]
  n = T // U * B
  assert batch.observation.shape == (n, U, OBS)
  assert batch.action.shape == (n, U, ACT)
  assert batch.reward.shape == batch.discount.shape == (n, U)
  assert batch.extras["state_extras"]["truncation"].shape == (n, U)
  extras = batch.extras["policy_extras"]
  assert extras["raw_action"].shape == (n, U, ACT)
  assert extras["log_prob"].shape == (n, U)
  # Unroll j * B + b holds steps [jU, (j + 1)U) of env b: unroll 1 * B + 3
  # is env 3's steps 4-7.
  np.testing.assert_array_equal(batch.observation[B + 3],
                                setup["data"].observation[4:8, 3])
  # The tanh-normal's actions lie in (-1, 1).
  assert bool(jnp.all(jnp.abs(batch.action) < 1.0))


def test_update_keeps_the_state_structure_shapes_and_dtypes(setup):
  state = setup["state"]
  new_state, _ = setup["first"]
  assert isinstance(new_state, ppo.PolicyState)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  spec = lambda x: (jnp.shape(x), jnp.result_type(x))
  assert jax.tree.map(spec, new_state) == jax.tree.map(spec, state)
  # The parameters moved (every layer of both networks).
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         new_state.params, state.params)
  assert all(jax.tree.leaves(changed)), changed
  # The normaliser saw the batch once: N * U = 32 observations, their mean.
  assert int(new_state.normalizer.count.lo) == T * B
  np.testing.assert_allclose(
      new_state.normalizer.mean,
      jnp.mean(setup["data"].observation.reshape(-1, OBS), axis=0),
      rtol=1e-5, atol=1e-6)
  # Adam's step count: num_updates_per_batch epochs x num_minibatches.
  adam_counts = [x for p, x in jax.tree_util.tree_flatten_with_path(
      new_state.opt_state)[0] if "count" in jax.tree_util.keystr(p)]
  assert [int(c) for c in adam_counts] == [2 * 2]


def test_update_metrics_are_finite_scalars(setup):
  _, metrics = setup["first"]
  assert set(metrics) == METRICS
  for name, value in metrics.items():
    assert value.shape == (), name
    assert np.isfinite(float(value)), name
  # brax's total is the sum of its parts (minibatch means of sums = sums of
  # means).
  assert float(metrics["ppo/total_loss"]) == pytest.approx(
      float(metrics["ppo/policy_loss"] + metrics["ppo/value_loss"]
            + metrics["ppo/entropy_loss"]), rel=1e-5, abs=1e-7)
  assert float(metrics["ppo/value_loss"]) > 0.0
  assert float(metrics["ppo/kl"]) >= 0.0
  # entropy_loss = -entropy_cost * entropy, and a fresh policy's entropy is
  # positive.
  assert float(metrics["ppo/entropy_loss"]) < 0.0


def test_same_key_same_result_other_key_differs(setup):
  state, batch, update, hyper = (setup[k] for k in ("state", "batch",
                                                    "update", "hyper"))
  again = update(state, batch, jax.random.PRNGKey(1), hyper)
  assert_trees_equal(again, setup["first"])
  other_state, other_metrics = update(state, batch, jax.random.PRNGKey(2),
                                      hyper)
  assert not np.array_equal(
      np.asarray(other_state.params.policy["params"]["hidden_0"]["kernel"]),
      np.asarray(setup["first"][0].params.policy["params"]["hidden_0"][
          "kernel"]))
  assert float(other_metrics["ppo/total_loss"]) != float(
      setup["first"][1]["ppo/total_loss"])
  assert update._cache_size() == 1  # same shapes and dtypes: no recompile


def test_repeated_updates_learn_the_favoured_action(setup):
  state, batch, update, hyper = (setup[k] for k in ("state", "batch",
                                                    "update", "hyper"))
  obs = setup["data"].observation.reshape(-1, OBS)
  mean_before = np.asarray(setup["policy_mean"](state, obs)).mean(axis=0)
  losses, value_losses = [], []
  for i in range(20):
    state, metrics = update(state, batch, jax.random.PRNGKey(100 + i), hyper)
    losses.append(float(metrics["ppo/total_loss"]))
    value_losses.append(float(metrics["ppo/value_loss"]))
  mean_after = np.asarray(setup["policy_mean"](state, obs)).mean(axis=0)
  # Reward = action 0: its mean goes up (about 0.09 -> 0.28 here); action 1,
  # which the reward ignores, moves much less. A wrong gradient sign or a
  # gradient that never reached the policy fails this.
  gain = mean_after - mean_before
  assert gain[0] > 0.1, (mean_before, mean_after)
  assert gain[0] > 3 * abs(gain[1]), (mean_before, mean_after)
  # The loss (measured before each step) falls: about 0.13 -> -0.07.
  assert np.mean(losses[-3:]) < losses[0] - 0.05, losses
  assert value_losses[-1] < value_losses[0], value_losses
  assert update._cache_size() == 1


def test_learning_rate_comes_from_the_hyper_arrays(setup):
  state, batch, update, hyper = (setup[k] for k in ("state", "batch",
                                                    "update", "hyper"))
  # A learning rate of zero (an array leaf: same program) leaves the
  # parameters exactly where they were; the normaliser still updates.
  frozen, metrics = update(state, batch, jax.random.PRNGKey(1),
                           hyper.replace(learning_rate=jnp.float32(0.0)))
  assert_trees_equal(frozen.params, state.params)
  assert int(frozen.normalizer.count.lo) == T * B
  assert all(np.isfinite(float(v)) for v in metrics.values())
  # A different learning rate is a different result from the same program.
  fast, _ = update(state, batch, jax.random.PRNGKey(1),
                   hyper.replace(learning_rate=jnp.float32(3e-2)))
  kernel = lambda s: np.asarray(s.params.policy["params"]["hidden_0"][
      "kernel"])
  step = lambda s: np.abs(kernel(s) - kernel(state)).max()
  assert step(fast) > 2 * step(setup["first"][0]) > 0
  assert update._cache_size() == 1


def test_hyper_reads_the_config_as_float32_arrays():
  h = ppo.hyper(dataclasses.replace(CONFIG, learning_rate=1e-4,
                                    discounting=0.97))
  leaves = {f.name: getattr(h, f.name) for f in dataclasses.fields(h)}
  assert set(leaves) == {"learning_rate", "entropy_cost", "discounting",
                         "gae_lambda", "clipping_epsilon", "reward_scaling"}
  assert all(x.dtype == jnp.float32 and x.shape == () for x in
             leaves.values())
  assert float(h.learning_rate) == pytest.approx(1e-4)
  assert float(h.discounting) == pytest.approx(0.97)
  assert float(h.entropy_cost) == pytest.approx(CONFIG.entropy_cost)


def test_inference_params_order_matches_brax():
  # brax's make_inference_fn reads (normaliser, policy, value) by position.
  state = ppo.PolicyState(
      params=ppo.ppo_losses.PPONetworkParams(policy="p", value="v"),
      opt_state=None, normalizer="n")
  assert ppo.inference_params(state) == ("n", "p", "v")
