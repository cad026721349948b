"""EPIC distance in runs: `reward/epic` (rrm.diagnostics.epic_metrics)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import hopper
from experiments.configs import point_hazard
from rrm import config_parse
from rrm import diagnostics
from rrm import envs
from rrm import rollout
from rrm import safety
from rrm import train as rrm_train


def _config(module=point_hazard, **report):
  cd = module.get_config("smoke")
  cd.env.num_envs = 4
  for k, v in report.items():
    cd.report[k] = v
  return config_parse.from_config_dict(cd)


@pytest.fixture(scope="module")
def data():
  """A random-action point_hazard rollout: [40, 4] transitions."""
  config = _config()
  train = envs.make_envs(config.env).train
  state = train.reset(jax.random.split(jax.random.PRNGKey(0), 4))
  _, out = jax.jit(lambda s: rollout.collect(
      train, s, rollout.random_policy(2), jax.random.PRNGKey(1), 40, False,
      safety.make_unsafe(config.env)))(state)
  return out


def test_point_hazard_declares_the_reward_its_steps_pay(data):
  reward = envs.transition_reward(_config().env)
  np.testing.assert_allclose(
      reward(data.observation, data.action, rollout.outcome(data)),
      data.reward, rtol=1e-6, atol=1e-6)
  assert envs.transition_reward(_config(hopper).env) is None


def _epic(learned, data, **kw):
  true = envs.transition_reward(_config().env)
  args = {"transitions": 64, "states": 16, "actions": 8, "discount": 0.9,
          **kw}
  return float(diagnostics.epic_metrics(true, learned, data,
                                        jax.random.PRNGKey(2), **args)
               ["reward/epic"])


def test_shaped_and_scaled_truth_is_at_distance_zero_an_unrelated_reward_not(
    data):
  """3 R + 1 + 0.9 phi(s') - phi(s) canonicalises to 3 C(R) + const on the
  samples (the expectations are exact over them): distance 0 up to float32
  rounding. A reward of the velocity alone is unrelated to the goal/hazard
  reward: far (> 0.5); the negated truth is at 1."""
  true = envs.transition_reward(_config().env)
  phi = lambda o: jnp.sin(3.0 * o[..., 0]) + o[..., 1] ** 2
  shaped = lambda o, a, n: 3.0 * true(o, a, n) + 1.0 + 0.9 * phi(n) - phi(o)
  assert _epic(shaped, data) < 1e-3
  unrelated = lambda o, a, n: jnp.cos(5.0 * n[..., 2]) * n[..., 3]
  assert _epic(unrelated, data) > 0.5
  assert _epic(lambda o, a, n: -true(o, a, n), data) > 0.999
  # Fewer transitions than asked: all of them, no error.
  assert _epic(shaped, data, transitions=10_000, states=10_000) < 1e-3


def test_runs_report_epic_only_where_the_env_declares_its_reward():
  assert rrm_train._make_epic(_config()) is not None  # pylint: disable=protected-access
  assert rrm_train._make_epic(_config(epic_transitions=0)) is None  # pylint: disable=protected-access
  assert rrm_train._make_epic(_config(hopper)) is None  # pylint: disable=protected-access


def test_report_summarises_epic_over_the_run():
  from rrm import report as rrm_report  # pylint: disable=g-import-not-at-top
  rows = [{"iteration": i + 1, "reward/epic": e}
          for i, e in enumerate([0.6, float("nan"), 0.3, 0.4])]
  assert rrm_report.reward_epic(rows) == {"first": 0.6, "final": 0.4,
                                          "min": 0.3, "max": 0.6}
  assert "off" in rrm_report.reward_epic([{"iteration": 1}])
