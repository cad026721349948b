"""Unsafe events counted in training rollouts (rrm/safety.py)."""

import dataclasses

from brax.envs import base as brax_base
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile
from experiments.configs import hopper
from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import config as rrm_config
from rrm import config_parse
from rrm import envs
from rrm import report as rrm_report
from rrm import rollout
from rrm import safety


def _env_config(module, variant="smoke", **overrides):
  cd = module.get_config(variant)
  for k, v in overrides.items():
    cd.env[k] = v
  return config_parse.from_config_dict(cd).env


def _collect(config, policy, steps, n=2):
  train = envs.make_envs(config).train
  with fast_compile():  # programs of their own (see conftest.fast_compile)
    state = train.reset(jax.random.split(jax.random.PRNGKey(0), n))
    _, data = jax.jit(lambda s: rollout.collect(
        train, s, policy, jax.random.PRNGKey(1), steps, False,
        safety.make_unsafe(config)))(state)
  return jax.tree.map(np.asarray, data)


def _push_right(obs, key):
  del key
  return jnp.stack([jnp.ones(obs.shape[:-1]), jnp.zeros(obs.shape[:-1])],
                   -1), {}


def test_point_hazard_entries_match_a_hand_counted_rollout():
  """Full thrust along +x from (-1, 0), no start noise; hazard: the disc of
  radius 0.7 around (0, 0); episodes of 20 steps, 30 steps in all.

  Per step (dt 0.1, max_accel 5, damping 0.1): v <- 0.9 v + 0.5, x <- x +
  0.1 v. v = 0.5, 0.95, 1.355, 1.7195, ... so x = -0.95, -0.855, -0.7195,
  -0.5476 (step 4: |x| < 0.7, the entry), -0.3428, -0.1086, 0.1523,
  0.4371, 0.7434 (step 9: out again), then on to the wall at x = 2, where
  it stays until the horizon. The second episode starts at (-1, 0) again
  and enters at its step 4 (step 24). So 2 entries per env: steps 4, 24,
  though the point is inside for 5 steps each time.

  From (0.5, 0), already inside: it leaves at step 2 (x = 0.5 + 0.05 +
  0.095 = 0.645, then 0.7805) and never comes back: no entry at all.
  """
  config = _env_config(point_hazard, episode_length=20, num_envs=2,
                       kwargs={"start_noise": 0.0})
  data = _collect(config, _push_right, 30)
  events = rollout.unsafe_events(data)
  assert events.shape == (30, 2)
  np.testing.assert_array_equal(np.nonzero(events[:, 0])[0], [3, 23])
  np.testing.assert_array_equal(events[:, 1], events[:, 0])
  inside = np.linalg.norm(rollout.outcome(data)[..., :2], axis=-1) < 0.7
  assert inside[:, 0].sum() == 10  # steps inside: 5 per pass, not events
  inside_start = _env_config(point_hazard, episode_length=20, num_envs=2,
                             kwargs={"start_noise": 0.0, "start": (0.5, 0.0)})
  assert rollout.unsafe_events(
      _collect(inside_start, _push_right, 15)).sum() == 0


def _random(obs, key):
  return jax.random.uniform(key, obs.shape[:-1] + (1,), minval=-1,
                            maxval=1), {}


@pytest.mark.parametrize("mode", ["reset", "continue"])
def test_inverted_pendulum_failures_are_the_pole_past_its_limit(mode):
  """The task's own failure (|angle| > 0.2 after the step, read here off the
  outcome observation): with "reset" every such step is a fall (the pole
  restarts upright); with "continue" only the steps that *become* failed."""
  config = _env_config(inverted_pendulum, on_failure=mode,
                       episode_length=50, num_envs=4)
  data = _collect(config, _random, 60, n=4)
  events = rollout.unsafe_events(data)
  down = np.abs(rollout.outcome(data)[..., 1]) > 0.2
  if mode == "reset":
    want = down
  else:
    before = np.concatenate([np.zeros_like(down[:1]), down[:-1]])
    # A fresh episode (after the horizon's reset at step 50) is upright.
    before[50] = False
    want = down & ~before
  assert want.sum() > 0
  np.testing.assert_array_equal(events, want.astype(np.float32))


def _states(**metrics):
  """[T] brax States from per-step metric values (one env)."""
  t = len(next(iter(metrics.values())))
  return [brax_base.State(
      pipeline_state=None, obs=jnp.zeros((1, 4)), reward=jnp.zeros(1),
      done=jnp.zeros(1), metrics={k: jnp.asarray([v[i]], jnp.float32)
                                  for k, v in metrics.items()},
      info={"outcome_obs": jnp.zeros((1, 4)), "truncation": jnp.zeros(1)})
          for i in range(t)]


def _count(config, states):
  unsafe = safety.make_unsafe(config)
  return [float(unsafe(a, b)[0]) for a, b in zip(states, states[1:])]


def test_native_continue_counts_each_fall_once():
  """hopper without termination pays its healthy bonus only while healthy:
  a fall is the bonus dropping to 0; lying on the ground is not a new one."""
  config = _env_config(hopper, on_failure="continue")
  assert safety.event_name(config) == "failure"
  healthy = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
  assert _count(config, _states(reward_healthy=healthy)) == [
      0, 1, 0, 0, 0, 1, 0]
  # On-failure reset (the default): every failed step is its own fall.
  reset = dataclasses.replace(config, on_failure="reset")
  assert _count(reset, _states(failed=[0, 1, 1, 0, 1])) == [1, 1, 0, 1]


def test_none_counts_nothing_and_auto_is_the_envs_declaration():
  assert safety.event_name(_env_config(point_hazard)) == "hazard_entry"
  assert safety.event_name(_env_config(inverted_pendulum)) == "failure"
  config = _env_config(point_hazard, unsafe_event="none")
  assert _count(config, _states(failed=[1, 1, 1])) == [0, 0]


@pytest.mark.parametrize("module,overrides,message", [
    (inverted_pendulum, {"unsafe_event": "crash"},
     "allowed values are 'auto', 'failure', 'hazard_entry', 'none'"),
    (hopper, {"unsafe_event": "hazard_entry"},
     "'hazard_entry' is declared by 'point_hazard' only, not by env "
     "'hopper'"),
    (hopper, {"on_failure": "continue", "kwargs": {"healthy_reward": 0.0}},
     "env.kwargs.healthy_reward=0.0 is not > 0"),
])
def test_uncountable_events_are_refused_naming_the_field(module, overrides,
                                                         message):
  with pytest.raises(rrm_config.ConfigError, match="config.env.unsafe_event"
                     ) as e:
    _env_config(module, **overrides)
  assert message in str(e.value)


def test_report_totals_the_training_rollouts_events():
  rows = [{"iteration": i + 1, "env_steps": 500 * (i + 1),
           "safety/unsafe_events": float(n)} for i, n in enumerate([3, 0, 2])]
  out = rrm_report.unacceptable_outcomes(rows, "failure")
  assert out == {"event": "failure", "total": 5, "per_1k_env_steps": 5 / 1.5,
                 "iterations_with_events": 2, "last_iteration_events": 2}
  assert "off" in rrm_report.unacceptable_outcomes(rows, "none")
  assert "off" in rrm_report.unacceptable_outcomes(
      [{"iteration": 1}], "failure")
