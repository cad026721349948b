"""The RL side of an iteration, one interface for PPO and SAC.

`make_agent(config, envs, recursive)` -> `Agent`, whose `learn` is steps 1-3
of the iteration (rollout, relabel, RL update) for the configured algorithm
(`config.rl.algorithm`):

* ppo: T steps of the B envs with the current policy (brax's
  `generate_unroll`), every transition relabelled with the reward RL
  maximises, then brax's PPO update on the rollout (rrm.ppo);
* sac: T actor steps, each inserted into the replay with that reward and
  followed by `sac.grad_updates_per_step` SGD steps on a sample of it
  (rrm.sac); during PEBBLE's pre-training on the state-entropy reward, and
  the critic reset once when it ends.

`reward_fn(obs, action, outcome)` is the reward RL maximises: the learned
reward of the iteration's reward model, or None for the env's true reward.
Everything else of the iteration (segments, queries, labels, the reward
model) does not depend on the algorithm.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.sac import networks as sac_networks
import jax
import jax.numpy as jnp

from rrm import config as rrm_config
from rrm import envs as rrm_envs
from rrm import ppo as rrm_ppo
from rrm import rollout
from rrm import sac as rrm_sac
from rrm import safety as rrm_safety
from rrm import state as rrm_state


class Agent(NamedTuple):
  """One RL algorithm, bound to a config and its envs.

  init(key) -> policy state (the state's `policy` field);
  prefill(policy, env_state, key, reward_fn) -> (policy, env_state): what
    `init` collects before the first iteration (SAC: the replay's first
    `min_replay_size` transitions; PPO: nothing);
  learn(policy, env_state, keys, hyper, reward_fn, iteration) ->
    (policy, env_state, [T, B] Transition, [T, B] reward RL maximised,
    metrics);
  relabel(policy, reward_fn, changed) -> policy: after a reward-model update
    (`changed`, a bool array), what the algorithm stored is recomputed with
    the new model (SAC: the whole replay, PEBBLE; PPO: nothing to do);
  make_policy(params, deterministic=False) and inference_params(policy):
    brax's inference function and its parameters, for evaluation.
  """
  init: Callable[[jax.Array], Any]
  prefill: Callable[..., tuple[Any, Any]]
  learn: Callable[..., tuple[Any, Any, Any, jax.Array, dict]]
  relabel: Callable[[Any, Callable, jax.Array], Any]
  make_policy: Callable
  inference_params: Callable[[Any], Any]


def _no_prefill(policy, env_state, key, reward_fn):
  del key, reward_fn
  return policy, env_state


def _no_relabel(policy, reward_fn, changed):
  del reward_fn, changed
  return policy


def make_ppo_agent(config: rrm_config.TrainConfig, envs: rrm_envs.Envs,
                   recursive: bool) -> Agent:
  networks = rrm_ppo.make_networks(config.ppo, envs.observation_size,
                                   envs.action_size)
  optimizer = rrm_ppo.make_optimizer(config.ppo)
  update = rrm_ppo.make_ppo_update(config.ppo, networks)
  make_policy = ppo_networks.make_inference_fn(networks)
  steps = config.steps_per_env_per_iteration
  unsafe = rrm_safety.make_unsafe(config.env)

  def init(key):
    return rrm_ppo.init_policy(networks, optimizer, envs.observation_size, key)

  def learn(policy_state, env_state, keys: rrm_state.IterationKeys,
            hyper: rrm_state.Hyper, reward_fn, iteration):
    del iteration
    policy = make_policy(rrm_ppo.inference_params(policy_state))
    env_state, data = rollout.collect(envs.train, env_state, policy,
                                      keys.rollout, steps, recursive, unsafe)
    reward = data.reward if reward_fn is None else reward_fn(
        data.observation, data.action, rollout.outcome(data))
    policy_state, metrics = update(
        policy_state, rollout.to_ppo_layout(data._replace(reward=reward),
                                            config.ppo.unroll_length),
        keys.ppo, hyper.rl)
    return policy_state, env_state, data, reward, metrics

  return Agent(init=init, prefill=_no_prefill, learn=learn,
               relabel=_no_relabel, make_policy=make_policy,
               inference_params=rrm_ppo.inference_params)


def make_sac_agent(config: rrm_config.TrainConfig, envs: rrm_envs.Envs,
                   recursive: bool) -> Agent:
  sc = config.sac
  obs_size, act_size = envs.observation_size, envs.action_size
  networks = rrm_sac.make_networks(sc, obs_size, act_size)
  replay = rrm_sac.make_replay(sc, obs_size, act_size)
  fields = (rollout.RECURSIVE_EXTRA_FIELDS if recursive
            else rollout.EXTRA_FIELDS)
  sac_learn = rrm_sac.make_learn(sc, networks, replay, envs.train, act_size,
                                 config.steps_per_env_per_iteration, fields,
                                 rrm_safety.make_unsafe(config.env))
  prefill = rrm_sac.make_prefill(
      replay, networks, envs.train,
      -(-sc.min_replay_size // config.env.num_envs), fields)
  pretrain = sc.pretrain_iterations

  def init(key):
    return rrm_sac.init_sac(networks, replay, obs_size, key)

  def learn(policy_state, env_state, keys: rrm_state.IterationKeys,
            hyper: rrm_state.Hyper, reward_fn, iteration):
    metrics = {}
    if pretrain:
      # PEBBLE: the critic fitted to the entropy reward is thrown away once,
      # at the start of the first iteration on the learned reward.
      reset = iteration == pretrain
      policy_state = jax.lax.cond(
          reset, lambda s: rrm_sac.reset_critic(networks, s, keys.ppo),
          lambda s: s, policy_state)
      metrics["sac/critic_reset"] = reset.astype(jnp.float32)
      metrics["sac/pretraining"] = (iteration < pretrain).astype(jnp.float32)
    # Without pre-training the flag is a Python False: no entropy branch is
    # traced (under a sweep's vmap a traced flag would turn the branch into
    # a select that computes the k-NN distances in every SGD step).
    policy_state, env_state, data, reward, m = sac_learn(
        policy_state, env_state, keys.rollout, hyper.rl, reward_fn,
        iteration < pretrain if pretrain else False)
    metrics.update(m)
    return policy_state, env_state, data, reward, metrics

  def relabel(policy_state, reward_fn, changed):
    if reward_fn is None:
      return policy_state
    return jax.lax.cond(
        changed, lambda s: s.replace(replay=rrm_sac.relabel(
            replay, s.replay, reward_fn)), lambda s: s, policy_state)

  return Agent(init=init, prefill=prefill, learn=learn, relabel=relabel,
               make_policy=sac_networks.make_inference_fn(networks),
               inference_params=rrm_sac.inference_params)


def make_agent(config: rrm_config.TrainConfig, envs: rrm_envs.Envs,
               recursive: bool) -> Agent:
  if config.rl.algorithm == "sac":
    return make_sac_agent(config, envs, recursive)
  return make_ppo_agent(config, envs, recursive)
