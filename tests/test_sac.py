"""SAC (rrm.sac, rrm.agent): the pure pieces on hand-built inputs, PEBBLE's
pre-training and relabelling in the real iteration, learning on the true
reward, exact resume, and members of a vmapped sweep equal their solo runs.

The compiled programs are the `sac_smoke` config's (inverted_pendulum, 32
envs, 32x32 networks, 2 pre-training iterations) and its true-reward twin,
each compiled once for the session.
"""

import dataclasses
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_equal
from experiments.configs import inverted_pendulum
from rrm import checkpoint as rrm_checkpoint
from rrm import loop as rrm_loop
from rrm import config_parse
from rrm import reward as rrm_reward
from rrm import sac as rrm_sac
from rrm import state as rrm_state
from rrm import sweep as rrm_sweep
from rrm import train as rrm_train
import relaunch

pytestmark = pytest.mark.xdist_group("sac")
ITERATIONS = 4  # 2 of pre-training, then 2 on the learned reward


def _config(**changes):
  cd = inverted_pendulum.get_config("sac_smoke")
  return config_parse.from_config_dict(rrm_sweep.apply_overrides(cd, changes))


@pytest.fixture(scope="session")
def sac_smoke():
  return rrm_train.make_train(_config())


@pytest.fixture(scope="session")
def sac_run(sac_smoke):
  """`ITERATIONS` iterations of the sac_smoke program: states and metrics."""
  seed_key, _ = rrm_state.run_keys(0)
  state = sac_smoke.init(seed_key)
  states, history = [jax.device_get(state)], []
  for _ in range(ITERATIONS):
    state, metrics = sac_smoke.iteration(state)
    states.append(jax.device_get(state))
    history.append(jax.device_get(metrics))
  return states, history


# -- pure pieces ------------------------------------------------------------


def test_entropy_reward_is_larger_for_a_spread_out_batch():
  key = jax.random.key(0)
  spread = 3.0 * jax.random.normal(key, (64, 4))
  collapsed = 0.01 * jax.random.normal(key, (64, 4)) + 1.0
  r_spread = rrm_sac.state_entropy_reward(spread, 5)
  r_collapsed = rrm_sac.state_entropy_reward(collapsed, 5)
  assert r_spread.shape == (64,)
  assert float(jnp.min(r_spread)) > float(jnp.max(r_collapsed))
  # An isolated state is rewarded more than one in a crowd.
  batch = jnp.concatenate([jnp.zeros((10, 2)), jnp.asarray([[5.0, 5.0]])])
  r = rrm_sac.state_entropy_reward(batch + 1e-3 * jnp.arange(11)[:, None], 3)
  assert int(jnp.argmax(r)) == 10
  # The k-th neighbour, not the state itself: a pair of equal states has a
  # positive reward with k = 1 only if a third state is around.
  pair = jnp.asarray([[0.0], [0.0], [2.0]])
  np.testing.assert_allclose(rrm_sac.state_entropy_reward(pair, 1),
                             [0.0, 0.0, np.log1p(2.0)], atol=1e-6)


def _inserted(replay, n, obs_size, act_size, key):
  keys = jax.random.split(key, 3)
  data = rrm_sac.dummy_transition(obs_size, act_size)
  batch = jax.tree.map(lambda x: jnp.zeros((n,) + x.shape), data)
  batch = batch._replace(
      observation=jax.random.normal(keys[0], (n, obs_size)),
      action=jax.random.uniform(keys[1], (n, act_size), minval=-1, maxval=1),
      next_observation=jax.random.normal(keys[2], (n, obs_size)),
      reward=jnp.full((n,), 7.0), discount=jnp.ones((n,)))
  return batch


def test_relabel_sets_every_stored_reward_to_the_current_models_value():
  obs_size, act_size, capacity = 3, 2, 50
  config = _config().sac
  replay = rrm_sac.make_replay(
      dataclasses.replace(config, replay_capacity=capacity, batch_size=4,
                          grad_updates_per_step=1), obs_size, act_size)
  buffer = replay.init(jax.random.key_data(jax.random.key(1)))
  first = _inserted(replay, 30, obs_size, act_size, jax.random.key(2))
  second = _inserted(replay, 30, obs_size, act_size, jax.random.key(3))
  # 60 into a buffer of 50: the oldest 10 are dropped (FIFO).
  buffer = replay.insert(replay.insert(buffer, first), second)
  model = rrm_reward.make_reward_model("obs_action", (8,), obs_size, act_size)
  reward_state = rrm_reward.init_reward_state(
      model, rrm_reward.make_optimizer(1e-3, 0.0), jax.random.key(4), 2)
  reward_fn = lambda o, a, n: rrm_reward.learned_reward(
      model, reward_state, o, a, n, 0.5)
  kept = jax.tree.map(lambda a, b: jnp.concatenate([a[10:], b]), first,
                      second)
  direct = reward_fn(kept.observation, kept.action, kept.next_observation)
  assert not np.allclose(direct, 7.0)
  before, _ = rrm_sac.stored_transitions(replay, buffer)
  for chunk in (16384, 16, 7):  # one chunk; several, the last overlapping
    relabelled = rrm_sac.relabel(replay, buffer, reward_fn, chunk=chunk)
    data, valid = rrm_sac.stored_transitions(replay, relabelled)
    assert int(valid.sum()) == capacity
    np.testing.assert_allclose(data.reward[valid], direct, rtol=1e-6)
    for name in ("observation", "action", "next_observation", "discount"):
      np.testing.assert_array_equal(getattr(data, name), getattr(before, name))
  # A young replay: only what it holds is relabelled, the rest is untouched.
  young = replay.insert(replay.init(jax.random.key_data(jax.random.key(5))),
                        first)
  relabelled = rrm_sac.relabel(replay, young, reward_fn, chunk=8)
  data, valid = rrm_sac.stored_transitions(replay, relabelled)
  assert int(valid.sum()) == 30
  np.testing.assert_allclose(
      data.reward[:30], reward_fn(first.observation, first.action,
                                  first.next_observation), rtol=1e-6)
  np.testing.assert_array_equal(data.reward[32:], 0.0)  # rows never written


# -- the real iteration -----------------------------------------------------


def test_pretraining_asks_nothing_then_the_initial_batch_and_resets_the_critic_once(
    sac_smoke, sac_run):
  states, history = sac_run
  config = sac_smoke.config
  fb, sc = config.feedback, config.sac
  steps = sc.steps_per_iteration * sc.grad_updates_per_step
  assert int(states[0].labels.spent) == 0  # init asks nothing
  assert [float(m["sac/pretraining"]) for m in history] == [1, 1, 0, 0]
  assert [float(m["sac/critic_reset"]) for m in history] == [0, 0, 1, 0]
  # The initial batch at pre-training's last iteration, then the rounds.
  assert [int(s.labels.spent) for s in states] == [
      0, 0, fb.initial_labels, fb.initial_labels + fb.labels_per_round,
      fb.initial_labels + 2 * fb.labels_per_round]
  # The critic's optimiser restarts once, the actor's never.
  q_counts = [int(s.policy.q_opt_state[0].count) for s in states[1:]]
  policy_counts = [int(s.policy.policy_opt_state[0].count)
                   for s in states[1:]]
  assert q_counts == [steps, 2 * steps, steps, 2 * steps]
  assert policy_counts == [steps * i for i in range(1, ITERATIONS + 1)]
  # Pre-training's reward is the entropy bonus (positive, normalised), not
  # the untrained model's.
  assert all(m["sac/rl_reward"] > 0 for m in history[:2])


def test_every_reward_model_update_relabels_the_whole_replay(sac_smoke,
                                                             sac_run):
  states, _ = sac_run
  model = rrm_reward.make_reward_model(
      sac_smoke.config.reward.input, sac_smoke.config.reward.hidden_layer_sizes,
      sac_smoke.envs.observation_size, sac_smoke.envs.action_size)
  replay = rrm_sac.make_replay(sac_smoke.config.sac,
                               sac_smoke.envs.observation_size,
                               sac_smoke.envs.action_size)
  for i in (2, 3):  # after the initial batch's fit, after a round's
    s = states[i]
    data, valid = rrm_sac.stored_transitions(replay, s.policy.replay)
    direct = rrm_reward.learned_reward(
        model, s.reward, data.observation, data.action,
        data.next_observation, s.hyper.uncertainty_penalty)
    np.testing.assert_allclose(np.asarray(data.reward)[valid],
                               np.asarray(direct)[valid], rtol=1e-5,
                               atol=1e-5, err_msg=f"iteration {i}")
    assert int(valid.sum()) > 0


def test_true_reward_sac_learns_inverted_pendulum():
  """The true-reward baseline through the same path learns the task."""
  config = _config(**{"reward.source": "true", "sac.pretrain_iterations": 0,
                      "sac.grad_updates_per_step": 8})
  train = rrm_train.make_train(config)
  seed_key, key_eval = rrm_state.run_keys(0)
  state = train.init(seed_key)
  before = float(train.evaluate(state, key_eval)["eval/true_return"])
  for _ in range(12):
    state, _ = train.iteration(state)
  after = float(train.evaluate(state, key_eval)["eval/true_return"])
  # Episodes of 100 steps, reward 1 per step upright: the untrained policy
  # drops the pole within a few dozen steps.
  print(f"true-reward SAC: eval return {before:.1f} -> {after:.1f}")
  assert after >= 90.0 and after > before + 30.0, (before, after)
  assert int(state.labels.spent) == 0


def test_replay_and_labels_resume_bit_exactly_from_a_checkpoint(sac_smoke,
                                                               tmp_path):
  seed_key, _ = rrm_state.run_keys(3)
  state = sac_smoke.init(seed_key)
  for _ in range(2):
    state, _ = sac_smoke.iteration(state)
  ckpt = rrm_checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(2, state, {})
  ckpt.wait()
  for _ in range(2):
    state, _ = sac_smoke.iteration(state)
  uninterrupted = jax.device_get(state)
  step, restored, _ = ckpt.restore_latest(sac_smoke.init)
  ckpt.close()
  assert step == 2
  for _ in range(2):
    restored, _ = sac_smoke.iteration(restored)
  assert_trees_equal(jax.device_get(restored), uninterrupted)


def test_killed_anywhere_the_replay_and_labels_resume_bit_exactly(sac_smoke,
                                                                  tmp_path):
  """The durability harness on SAC: kill -9 during init, at a random time
  and after an iteration (pre-training, its label round, later); the state
  (replay buffer and its sampling key included), labels and metrics equal
  an uninterrupted run's."""
  overrides = {"num_iterations": 10, "checkpoint_every": 1, "eval_every": 4}
  cfg = dataclasses.replace(sac_smoke.config, **overrides)
  reference = str(tmp_path / "reference")
  rrm_loop.run(cfg, reference, progress=None, train=sac_smoke)
  program = rrm_loop.program_of_run(sac_smoke)  # evaluate as the loop does
  jax.block_until_ready(program.evaluate(program.init(), 1))
  workdir = str(tmp_path / "interrupted")
  runs = relaunch.Relauncher(
      "experiments/configs/inverted_pendulum.py:sac_smoke", workdir,
      overrides, str(tmp_path))
  kills, done = runs.interrupt(
      ["during init", "at a random time", "after an iteration"],
      random.Random(7))
  assert kills == 3 and not done, (kills, done)
  proc = runs.launch()
  assert proc.wait(timeout=600) == 0, relaunch.read(runs.logs[-1])[-3000:]
  relaunch.assert_equal_runs(workdir, reference, sac_smoke, 10)


def test_sweep_members_equal_their_solo_runs(sac_smoke, sac_run):
  """Seeds x SAC learning rates x teachers in one vmapped program."""
  members = ({"seed": 0},
             {"seed": 1, "sac.learning_rate": 1e-3, "oracle.teacher": "mistake"})
  base = inverted_pendulum.get_config("sac_smoke")
  configs = [config_parse.from_config_dict(rrm_sweep.apply_overrides(base, m))
             for m in members]
  sweep = rrm_sweep.make_sweep(configs)
  states = sweep.init()
  history = []
  for _ in range(ITERATIONS):
    states, metrics = sweep.iteration(states)
    history.append(jax.device_get(metrics))
  solo = [sac_run[1]]
  state = sac_smoke.init(rrm_state.run_keys(1)[0],
                         rrm_state.make_hyper(configs[1]),
                         rrm_state.make_teacher(configs[1]))
  h = []
  for _ in range(ITERATIONS):
    state, m = sac_smoke.iteration(state)
    h.append(jax.device_get(m))
  solo.append(h)
  for j in range(2):
    for i in range(ITERATIONS):
      for k in ("sac/critic_loss", "sac/actor_loss", "sac/alpha",
                "rollout/true_reward", "oracle/labels"):
        np.testing.assert_allclose(
            history[i][k][j], solo[j][i][k], rtol=1e-4, atol=1e-5,
            err_msg=f"member {j}, iteration {i + 1}, {k}")
  # The members differ: their hyperparameters and teachers took effect.
  assert history[-1]["sac/critic_loss"][0] != history[-1]["sac/critic_loss"][1]
