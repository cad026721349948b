"""DM Control tasks from MuJoCo Playground behind brax's env interface.

CI installs Playground (`pip install -e '.[test]'`); the importorskip below
only spares a checkout without it.
"""

import time

import jax
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")

from brax.envs.wrappers import training as brax_training
from conftest import assert_trees_equal
from experiments.configs import cheetah_run
from experiments.configs import walker_walk
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import envs

# pytest-xdist: the tests of this module's compiled fixture share a worker.
pytestmark = pytest.mark.xdist_group("playground_walker")

T = 25  # steps rolled out: past the smoke config's 20-step horizon
# Unoptimised XLA code: compiling MJX's physics dominates these tiny runs on
# CPU, and takes about half as long (what JAX_DISABLE_MOST_OPTIMIZATIONS sets).
_FAST_COMPILE = {"xla_backend_optimization_level": 0,
                 "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="session")  # kept: xdist interleaves modules
def walker():
  """walker_walk smoke envs and one random-action rollout of train and eval."""
  cfg = config_parse.from_config_dict(walker_walk.get_config("smoke"))
  made = envs.make_envs(cfg.env)
  eval_env = brax_training.EvalWrapper(made.eval)
  n, n_eval = cfg.env.num_envs, cfg.env.num_eval_envs

  def rollout(key):
    key_reset, key_eval, key_steps = jax.random.split(key, 3)
    state = made.train.reset(jax.random.split(key_reset, n))
    eval_state = eval_env.reset(jax.random.split(key_eval, n_eval))

    def body(carry, k):
      state, eval_state = carry
      a = jax.random.uniform(k, (n, made.action_size), minval=-1, maxval=1)
      state = made.train.step(state, a)
      eval_state = eval_env.step(eval_state, a[:n_eval])
      return (state, eval_state), (state.reward, state.done, state.obs,
                                   state.metrics, eval_state.reward)

    (state, eval_state), out = jax.lax.scan(body, (state, eval_state),
                                            jax.random.split(key_steps, T))
    return out, eval_state.info["eval_metrics"], state

  t0 = time.time()
  out = jax.block_until_ready(jax.jit(rollout, compiler_options=_FAST_COMPILE)(
      jax.random.PRNGKey(0)))
  print(f"walker rollout compile + run {time.time() - t0:.1f}s")
  *out, final = out
  return cfg, made, jax.tree.map(np.asarray, tuple(out)), final


def test_walker_sizes_and_backend(walker):
  _, made, _, _ = walker
  assert made.observation_size == 24 and made.action_size == 6
  assert made.train.backend == "mjx" and made.eval.backend == "mjx"
  assert isinstance(made.train.unwrapped, envs.PlaygroundEnv)


def test_walker_steps_batched_flat_finite_rewards_in_unit_interval(walker):
  cfg, made, ((reward, _, obs, metrics, _), _), _ = walker
  n = cfg.env.num_envs
  assert obs.shape == (T, n, made.observation_size)
  assert np.all(np.isfinite(obs))
  assert reward.shape == (T, n)
  assert np.all((reward >= 0) & (reward <= 1)) and reward.max() > 0
  # The task's reward components ride along, as brax envs' do; walk reward is
  # stand * (5 * move + 1) / 6 (Playground's walker.py).
  for k in ("reward/standing", "reward/upright", "reward/stand",
            "reward/move"):
    assert metrics[k].shape == (T, n)
  np.testing.assert_allclose(
      reward, metrics["reward/stand"] * (5 * metrics["reward/move"] + 1) / 6,
      rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(metrics["failed"], 0.0)  # nothing diverged


def test_walker_episodes_end_only_at_the_horizon(walker):
  cfg, _, ((_, done, _, _, _), _), _ = walker
  horizon = cfg.env.episode_length  # 20 in the smoke config
  np.testing.assert_array_equal(done[horizon - 1], 1.0)
  assert done.sum() == done.shape[1]  # once per env in 25 steps


def test_walker_eval_env_counts_one_standard_episode(walker):
  cfg, _, ((_, _, _, _, eval_reward), eval_metrics), _ = walker
  horizon = cfg.env.eval_episode_length
  np.testing.assert_array_equal(eval_metrics.active_episodes, 0.0)
  np.testing.assert_array_equal(eval_metrics.episode_steps, horizon)
  np.testing.assert_allclose(eval_metrics.episode_metrics["reward"],
                             eval_reward[:horizon].sum(0), rtol=1e-5)
  assert "reward/upright" in eval_metrics.episode_metrics


def test_cheetah_run_makes(tmp_path, monkeypatch):
  # MuJoCo writes a deprecation warning about cheetah.xml to ./MUJOCO_LOG.TXT.
  monkeypatch.chdir(tmp_path)
  cfg = config_parse.from_config_dict(cheetah_run.get_config("smoke"))
  made = envs.make_envs(cfg.env)
  assert (made.observation_size, made.action_size) == (17, 6)


@pytest.mark.parametrize("module", [walker_walk, cheetah_run])
@pytest.mark.parametrize("variant", ["", "smoke"])
def test_shipped_dmc_configs_are_valid(module, variant):
  cfg = config_parse.from_config_dict(module.get_config(variant))
  assert cfg.env.name == module.__name__.rsplit(".", 1)[-1]
  assert cfg.env.name in envs.available_envs()


def test_playground_names_refused_clearly():
  def refused(**env):
    cd = walker_walk.get_config("smoke")
    for k, v in env.items():
      cd.env[k] = v
    with pytest.raises(rrm_config.ConfigError) as e:
      config_parse.from_config_dict(cd)
    return str(e.value)

  msg = refused(backend="positional")
  assert "config.env.backend='positional'" in msg and "'mjx'" in msg
  msg = refused(name="quadruped_walk")
  assert "no Quadruped" in msg and "'walker_walk'" in msg
  assert "known envs are" in refused(name="walker_wlak")


def test_missing_playground_names_the_fix(monkeypatch):
  monkeypatch.setattr(envs, "playground_envs", lambda: {})
  cd = walker_walk.get_config("smoke")
  with pytest.raises(rrm_config.ConfigError,
                     match=r"pip install -e '\.\[playground\]'"):
    config_parse.from_config_dict(cd)
  with pytest.raises(ValueError, match=r"pip install -e '\.\[playground\]'"):
    envs.make_playground_env("walker_walk")


def test_mjx_state_round_trips_through_a_checkpoint(walker, tmp_path):
  """An MJX physics state (many zero-size leaves, which Orbax refuses to
  save; rrm.checkpoint drops and rebuilds them) restores bit for bit in a
  fresh Checkpointer, as a resumed walker_walk run's does."""
  _, _, _, final = walker
  tree = {"env_state": final, "key": jax.random.key(3)}
  assert any(x.size == 0 for x in jax.tree.leaves(final))
  ckpt = rrm_checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, jax.device_get(tree), {})
  ckpt.close()
  ckpt = rrm_checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  restored, _ = ckpt.restore(1, lambda _: tree)
  ckpt.close()
  assert_trees_equal(restored, tree)
