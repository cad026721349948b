"""Fixed-horizon variants and the non-finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import inverted_pendulum
from rrm import config_parse
from rrm import envs

# pytest-xdist: the tests of this module's compiled fixture share a worker.
pytestmark = pytest.mark.xdist_group("envs_rollout")


def _env_config(**overrides):
  cd = inverted_pendulum.get_config("smoke")
  for k, v in overrides.items():
    cd.env[k] = v
  return config_parse.from_config_dict(cd).env


@pytest.fixture(scope="session")  # kept: xdist interleaves modules
def rollout():
  """Random actions for 60 steps in both failure modes and the standard task."""
  out = {}
  for mode in ("reset", "continue"):
    cfg = _env_config(on_failure=mode, episode_length=50)
    env = envs.make_envs(cfg).train
    out[mode] = _roll(env, 60)
  out["standard"] = _roll(envs.make_envs(_env_config()).eval, 60)
  return out


def _roll(env, steps, n=8):
  state = env.reset(jax.random.split(jax.random.PRNGKey(0), n))

  def body(s, k):
    a = jax.random.uniform(k, (n, 1), minval=-1, maxval=1)
    s = env.step(s, a)
    return s, (s.reward, s.done, s.obs, s.metrics["failed"] if "failed" in
               s.metrics else s.done, s.info["outcome_obs"])

  _, out = jax.jit(lambda s, k: jax.lax.scan(
      body, s, jax.random.split(k, steps)))(state, jax.random.PRNGKey(1))
  return jax.tree.map(np.asarray, out)


def test_fixed_horizon_never_ends_early_and_prices_failure(rollout):
  for mode in ("reset", "continue"):
    reward, done, _, failed, _ = rollout[mode]
    # Episodes end only at the 50-step horizon.
    np.testing.assert_array_equal(done[49], 1.0)
    assert done[:49].sum() == 0 and done[50:].sum() == 0
    # Random actions topple the pole; failed steps pay failure_reward (-10).
    assert failed.sum() > 0
    np.testing.assert_array_equal(reward[failed > 0], -10.0)
    np.testing.assert_array_equal(reward[failed == 0], 1.0)


def test_reset_mode_restarts_upright_continue_mode_stays_fallen(rollout):
  _, done_reset, obs_reset, failed_reset, outcome = rollout["reset"]
  _, _, obs_cont, failed_cont, _ = rollout["continue"]
  # After a failure, "reset" is back near upright; "continue" is not.
  t, b = np.nonzero(failed_reset[:48])
  assert np.all(np.abs(obs_reset[t, b, 1]) < 0.05)
  assert failed_cont[:49].mean() > 2 * failed_reset[:49].mean()
  # The outcome observation keeps what the failing step did: the pole fell.
  assert np.all(np.abs(outcome[t, b, 1]) > 0.2)
  # Elsewhere obs is the outcome, except at the horizon (brax's AutoReset).
  ok = (failed_reset == 0) & (done_reset == 0)
  np.testing.assert_array_equal(outcome[ok], obs_reset[ok])


def test_standard_task_terminates(rollout):
  _, done, _, _, _ = rollout["standard"]
  assert done[:49].sum() > 0


def test_nonfinite_observations_are_failures_not_rewards():
  class Diverging:
    observation_size = 2
    action_size = 1
    backend = "none"

    def reset(self, rng):
      from brax.envs.base import State
      return State(pipeline_state=None, obs=jnp.zeros(2), reward=jnp.zeros(()),
                   done=jnp.zeros(()), metrics={}, info={})

    def step(self, state, action):
      return state.replace(obs=jnp.array([jnp.nan, 0.0]),
                           reward=jnp.ones(()))

  env = envs.NonFiniteGuardWrapper(Diverging())
  s = env.step(env.reset(jax.random.PRNGKey(0)), jnp.zeros(1))
  assert float(s.reward) == 0.0 and float(s.done) == 1.0
