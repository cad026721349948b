"""Env-steps/s of rrm's iteration vs brax's own trainer, in one process.

  python -m benchmarks.throughput [--config=...inverted_pendulum.py] \
      [--iterations=30]
  # SAC against brax's sac.train:
  python -m benchmarks.throughput \
      --config=experiments/configs/inverted_pendulum.py:sac

With a SAC config (rl.algorithm = "sac") the baseline is brax's
`sac.train` with the same env, num_envs, batch size, gradient updates per
env step, replay sizes, learning rate, discount, tau and networks; rrm runs
SAC on the true reward, then on the learned reward with a label round (and
the replay's relabelling) in every iteration.

Both run the same env and backend, num_envs, unroll length, minibatches,
epochs and network sizes. brax trains on the true reward of the standard
task; rrm runs its full reward-modeling iteration (learned-reward relabelling,
segments, a label round with oracle and reward-model update in *every*
iteration: the most expensive schedule) on the fixed-horizon variant. Both
figures exclude compilation and evaluation: brax's `training/sps` of its
post-compile epochs, and rrm's timed iterations after a warm-up one
(including the host's per-iteration metric fetch).

brax 0.14.2's `ppo.train` calls `jax.device_put_replicated`, which jax 0.10
removed; on one device it is a stack along a new leading axis, which
`_ensure_device_put_replicated` supplies so that brax's trainer runs as is.
"""

from __future__ import annotations

import functools
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

import rrm  # noqa: F401  (quiet brax import)
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as brax_ppo
from brax.training.agents.sac import networks as sac_networks
from brax.training.agents.sac import train as brax_sac
from rrm import config_parse
from rrm import config as rrm_config
from rrm import envs as rrm_envs
from rrm import train as rrm_train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/inverted_pendulum.py", "Run config.",
    lock_config=True)
_ITERATIONS = flags.DEFINE_integer("iterations", 30,
                                   "Timed rrm iterations (after warm-up).")
_BRAX_EPOCHS = flags.DEFINE_integer(
    "brax_epochs", 4, "brax epochs (the first two compile); each as "
    "many env steps as --iterations rrm iterations / epochs.")


def _ensure_device_put_replicated() -> None:
  if hasattr(jax, "device_put_replicated"):
    return

  def device_put_replicated(x, devices):
    return jax.tree.map(lambda a: jax.device_put(jnp.stack([a] * len(devices))),
                        x)

  jax.device_put_replicated = device_put_replicated


def rrm_steps_per_second(config: rrm_config.TrainConfig,
                         iterations: int) -> dict[str, float]:
  train = rrm_train.make_train(config)
  key = jax.random.PRNGKey(config.seed)
  t0 = time.time()
  state = train.init(key)
  state, m = train.iteration(state)
  jax.device_get(m)
  compile_s = time.time() - t0
  t0 = time.time()
  for i in range(iterations):
    state, m = train.iteration(state)
    jax.device_get(m)
  dt = time.time() - t0
  return {"sps": iterations * config.env_steps_per_iteration / dt,
          "compile_s": compile_s, "seconds": dt}


def brax_steps_per_second(config: rrm_config.TrainConfig, iterations: int,
                          epochs: int) -> dict[str, float]:
  _ensure_device_put_replicated()
  env = rrm_envs.make_base_env(config.env, fixed_horizon=False)
  p = config.ppo
  sps = []

  def progress(unused_step, metrics):
    if "training/sps" in metrics:
      sps.append(float(metrics["training/sps"]))

  brax_ppo.train(
      environment=env,
      num_timesteps=(epochs + 1) * iterations * config.env_steps_per_iteration
      // epochs,
      num_evals=epochs + 2, episode_length=config.env.eval_episode_length,
      num_envs=config.env.num_envs, batch_size=p.batch_size,
      num_minibatches=p.num_minibatches, unroll_length=p.unroll_length,
      num_updates_per_batch=p.num_updates_per_batch,
      learning_rate=p.learning_rate, entropy_cost=p.entropy_cost,
      discounting=p.discounting, gae_lambda=p.gae_lambda,
      clipping_epsilon=p.clipping_epsilon, reward_scaling=p.reward_scaling,
      normalize_observations=p.normalize_observations,
      network_factory=functools.partial(
          ppo_networks.make_ppo_networks,
          policy_hidden_layer_sizes=p.policy_hidden_layer_sizes,
          value_hidden_layer_sizes=p.value_hidden_layer_sizes),
      num_eval_envs=config.env.num_eval_envs, seed=config.seed,
      progress_fn=progress)
  # brax's first two epochs include compilation (measured: ~5k vs ~13k
  # steps/s on 2 CPU cores): keep the later ones.
  steady = sps[2:] if len(sps) > 2 else sps[-1:]
  return {"sps": sum(steady) / len(steady), "epochs": len(steady)}


def brax_sac_steps_per_second(config: rrm_config.TrainConfig, iterations: int,
                              epochs: int) -> dict[str, float]:
  """brax's `sac.train` at the config's sizes: post-compile env-steps/s."""
  _ensure_device_put_replicated()
  env = rrm_envs.make_base_env(config.env, fixed_horizon=False)
  sc = config.sac
  sps = []

  def progress(unused_step, metrics):
    if "training/sps" in metrics:
      sps.append(float(metrics["training/sps"]))

  brax_sac.train(
      environment=env,
      num_timesteps=sc.min_replay_size + (epochs + 1) * iterations
      * config.env_steps_per_iteration // epochs,
      num_evals=epochs + 2, episode_length=config.env.eval_episode_length,
      num_envs=config.env.num_envs, batch_size=sc.batch_size,
      grad_updates_per_step=sc.grad_updates_per_step,
      min_replay_size=sc.min_replay_size, max_replay_size=sc.replay_capacity,
      learning_rate=sc.learning_rate, discounting=sc.discounting,
      reward_scaling=sc.reward_scaling, tau=sc.tau,
      normalize_observations=sc.normalize_observations,
      network_factory=functools.partial(
          sac_networks.make_sac_networks,
          hidden_layer_sizes=sc.hidden_layer_sizes,
          q_network_layer_norm=sc.q_network_layer_norm),
      num_eval_envs=config.env.num_eval_envs, seed=config.seed,
      progress_fn=progress)
  steady = sps[2:] if len(sps) > 2 else sps[-1:]
  return {"sps": sum(steady) / len(steady), "epochs": len(steady)}


def sac_main(config: rrm_config.TrainConfig, n: int) -> None:
  sc = config.sac
  print(f"SAC: env {config.env.name} ({config.env.backend}), num_envs "
        f"{config.env.num_envs}, batch {sc.batch_size}, "
        f"{sc.grad_updates_per_step} gradient updates per step, "
        f"{config.env_steps_per_iteration} env steps per iteration; "
        f"{jax.devices()[0].platform}")
  brax = brax_sac_steps_per_second(config, n, _BRAX_EPOCHS.value)
  print(f"brax sac.train (true reward):        {brax['sps']:>10,.0f} "
        f"env-steps/s (mean of {brax['epochs']} post-compile epochs)")
  true_cd = _CONFIG.value.copy_and_resolve_references()
  true_cd.reward.source = "true"
  true_cd.sac.pretrain_iterations = 0
  true = rrm_steps_per_second(config_parse.from_config_dict(true_cd), n)
  print(f"rrm SAC iteration (true reward):     {true['sps']:>10,.0f} "
        f"env-steps/s ({n} iterations, compile + init "
        f"{true['compile_s']:.0f}s)")
  labelled_cd = _CONFIG.value.copy_and_resolve_references()
  labelled_cd.sac.pretrain_iterations = 0
  labelled_cd.feedback.round_every = 1
  labelled = rrm_steps_per_second(config_parse.from_config_dict(labelled_cd),
                                  n)
  print(f"rrm SAC iteration (learned reward, labels and relabelling every "
        f"iteration): {labelled['sps']:>10,.0f} env-steps/s")
  quiet_cd = _CONFIG.value.copy_and_resolve_references()
  quiet_cd.sac.pretrain_iterations = 0
  quiet_cd.feedback.round_every = 10_000  # only the initial batch
  quiet = rrm_steps_per_second(config_parse.from_config_dict(quiet_cd), n)
  print(f"rrm SAC iteration (learned reward, no label round): "
        f"{quiet['sps']:>10,.0f} env-steps/s")
  print(f"ratio rrm-SAC(true reward) / brax:   "
        f"{true['sps'] / brax['sps']:.3f}")
  print(f"ratio rrm-SAC(learned, labels on) / brax: "
        f"{labelled['sps'] / brax['sps']:.3f}")
  print(f"ratio rrm-SAC(learned, no label round) / brax: "
        f"{quiet['sps'] / brax['sps']:.3f}")


def main(argv):
  del argv
  config = config_parse.from_config_dict(_CONFIG.value)
  n = _ITERATIONS.value
  if config.rl.algorithm == "sac":
    sac_main(config, n)
    return
  print(f"env {config.env.name} ({config.env.backend}), num_envs "
        f"{config.env.num_envs}, unroll {config.ppo.unroll_length}, "
        f"{config.ppo.num_minibatches} minibatches x "
        f"{config.ppo.num_updates_per_batch} epochs, "
        f"{config.env_steps_per_iteration} env steps per iteration; "
        f"{jax.devices()[0].platform}")
  brax = brax_steps_per_second(config, n, _BRAX_EPOCHS.value)
  print(f"brax ppo.train (true reward):        {brax['sps']:>10,.0f} "
        f"env-steps/s (mean of {brax['epochs']} post-compile epochs)")
  labelled = rrm_steps_per_second(config, n)
  print(f"rrm iteration (learned reward, labels every iteration): "
        f"{labelled['sps']:>10,.0f} env-steps/s ({n} iterations, compile + "
        f"init {labelled['compile_s']:.0f}s)")
  quiet_cd = _CONFIG.value.copy_and_resolve_references()
  quiet_cd.feedback.round_every = 10_000  # only the initial batch
  quiet = rrm_steps_per_second(config_parse.from_config_dict(quiet_cd), n)
  print(f"rrm iteration (learned reward, no label round): "
        f"{quiet['sps']:>10,.0f} env-steps/s")
  true_cd = _CONFIG.value.copy_and_resolve_references()
  true_cd.reward.source = "true"
  true = rrm_steps_per_second(config_parse.from_config_dict(true_cd), n)
  print(f"rrm iteration (true reward):         {true['sps']:>10,.0f} "
        "env-steps/s")
  print(f"ratio rrm(learned, labels on) / brax: "
        f"{labelled['sps'] / brax['sps']:.3f}")
  print(f"ratio rrm(learned, no label round) / brax: "
        f"{quiet['sps'] / brax['sps']:.3f}")
  print(f"ratio rrm(true reward) / brax:        "
        f"{true['sps'] / brax['sps']:.3f}")


if __name__ == "__main__":
  app.run(main)
