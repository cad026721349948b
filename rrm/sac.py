"""SAC on a learned reward, built from brax.training's pieces (PEBBLE-class).

Networks, losses, the gradient step, the replay buffer and the observation
normaliser are brax.training's own (`agents.sac.networks`, `agents.sac.losses`,
`gradients`, `replay_buffers.UniformSamplingQueue`, `acme.running_statistics`);
this module arranges them into pure functions of a `SACState` that lives in
the training state, so SAC runs inside rrm's one jitted iteration:

* `make_learn`: T actor steps of the B envs, each followed (as one step of
  brax's `sac.train`) by inserting the B transitions, with the reward RL
  maximises, into the replay and `grad_updates_per_step` SGD steps on a
  uniform sample of it;
* `relabel`: every stored reward recomputed with the current reward model
  (PEBBLE relabels the whole buffer after each reward-model update), one
  vmapped pass over the buffer;
* unsupervised pre-training (PEBBLE): during the first
  `sac.pretrain_iterations` iterations the SGD steps maximise a k-NN
  state-entropy reward (`state_entropy_reward`) instead of the stored one,
  and the critic (Q networks, targets, optimiser) is reset once when it ends
  (`reset_critic`).

Differences from brax's `sac.train`, all deliberate: the transition's
`next_observation` is the step's outcome before any auto-reset (the reward
model needs it, and it is the right bootstrap target), the learning rates,
discount, reward scale and tau are array leaves (`SACHyper`, sweepable
without recompiling), and the replay's sampling key is part of the state
(exact resume).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from brax import envs as brax_envs
from brax.training import gradients
from brax.training import replay_buffers
from brax.training import types as brax_types
from brax.training.acme import running_statistics
from brax.training.agents.sac import losses as sac_losses
from brax.training.agents.sac import networks as sac_networks
import flax
import jax
import jax.numpy as jnp
import optax

from rrm import config as rrm_config
from rrm import safety as rrm_safety

RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@flax.struct.dataclass
class SACHyper:
  """SAC's array-valued hyperparameters: sweepable without recompiling."""
  learning_rate: jax.Array  # actor and critic (brax uses one for both)
  alpha_learning_rate: jax.Array
  discounting: jax.Array
  reward_scaling: jax.Array
  tau: jax.Array  # target-network Polyak rate


def hyper(config: rrm_config.SACConfig) -> SACHyper:
  f = lambda x: jnp.asarray(x, jnp.float32)
  return SACHyper(learning_rate=f(config.learning_rate),
                  alpha_learning_rate=f(config.alpha_learning_rate),
                  discounting=f(config.discounting),
                  reward_scaling=f(config.reward_scaling), tau=f(config.tau))


@flax.struct.dataclass
class SACState:
  """Actor, twin critic, temperature, normaliser and the replay buffer."""
  policy_params: Any
  policy_opt_state: Any
  q_params: Any
  target_q_params: Any
  q_opt_state: Any
  log_alpha: jax.Array
  alpha_opt_state: Any
  normalizer: running_statistics.RunningStatisticsState  # observations
  replay: replay_buffers.ReplayBufferState  # flat [capacity, D] + key
  # Running statistics of the k-NN entropy reward (pre-training divides it
  # by their std, as PEBBLE does).
  entropy_stats: running_statistics.RunningStatisticsState
  gradient_steps: jax.Array  # int32


def make_networks(config: rrm_config.SACConfig, observation_size: int,
                  action_size: int) -> sac_networks.SACNetworks:
  preprocess = (running_statistics.normalize if config.normalize_observations
                else brax_types.identity_observation_preprocessor)
  return sac_networks.make_sac_networks(
      observation_size, action_size, preprocess_observations_fn=preprocess,
      hidden_layer_sizes=config.hidden_layer_sizes,
      q_network_layer_norm=config.q_network_layer_norm)


def dummy_transition(observation_size: int,
                     action_size: int) -> brax_types.Transition:
  """One stored transition's structure (the replay's row layout)."""
  obs = jnp.zeros((observation_size,))
  return brax_types.Transition(
      observation=obs, action=jnp.zeros((action_size,)), reward=jnp.zeros(()),
      discount=jnp.zeros(()), next_observation=obs,
      extras={"state_extras": {"truncation": jnp.zeros(())},
              "policy_extras": {}})


def make_replay(config: rrm_config.SACConfig, observation_size: int,
                action_size: int) -> replay_buffers.UniformSamplingQueue:
  """brax's FIFO replay; each actor step samples batch x UTD transitions."""
  return replay_buffers.UniformSamplingQueue(
      max_replay_size=config.replay_capacity,
      dummy_data_sample=dummy_transition(observation_size, action_size),
      sample_batch_size=config.batch_size * config.grad_updates_per_step)


def init_sac(networks: sac_networks.SACNetworks,
             replay: replay_buffers.UniformSamplingQueue,
             observation_size: int, key: jax.Array) -> SACState:
  key_policy, key_q, key_replay = jax.random.split(key, 3)
  policy_params = networks.policy_network.init(key_policy)
  q_params = networks.q_network.init(key_q)
  log_alpha = jnp.asarray(0.0, jnp.float32)
  # Adam's state does not depend on the learning rate: adam(1.0).init is
  # the state the updates' adam(hyper.learning_rate) continue.
  return SACState(
      policy_params=policy_params,
      policy_opt_state=optax.adam(1.0).init(policy_params),
      q_params=q_params, target_q_params=q_params,
      q_opt_state=optax.adam(1.0).init(q_params), log_alpha=log_alpha,
      alpha_opt_state=optax.adam(1.0).init(log_alpha),
      normalizer=running_statistics.init_state(
          jnp.zeros((observation_size,), jnp.float32)),
      replay=replay.init(key_replay),
      entropy_stats=running_statistics.init_state(jnp.zeros((), jnp.float32)),
      gradient_steps=jnp.zeros((), jnp.int32))


def reset_critic(networks: sac_networks.SACNetworks, state: SACState,
                 key: jax.Array) -> SACState:
  """Fresh Q networks, targets and critic optimiser (PEBBLE, after
  pre-training: the critic fitted to the entropy reward is thrown away)."""
  q_params = networks.q_network.init(key)
  return state.replace(q_params=q_params, target_q_params=q_params,
                       q_opt_state=optax.adam(1.0).init(q_params))


def inference_params(state: SACState) -> tuple[Any, Any]:
  """(normaliser, policy) as brax's SAC `make_inference_fn` expects."""
  return (state.normalizer, state.policy_params)


def state_entropy_reward(observation: jax.Array, k: int) -> jax.Array:
  """[N] log(1 + distance to the k-th nearest other state of the batch).

  The particle estimate of state entropy PEBBLE maximises before any label
  (Liu & Abbeel 2021, APT): a state far from its neighbours in the batch is
  rewarded. The batch is its own reference set; each state's distance to
  itself (0) is skipped by taking the (k+1)-th smallest distance.
  """
  d = jnp.linalg.norm(observation[:, None, :] - observation[None, :, :],
                      axis=-1)  # [N, N]
  kth = -jax.lax.top_k(-d, k + 1)[0][:, k]
  return jnp.log1p(kth)


def relabel(replay: replay_buffers.UniformSamplingQueue,
            buffer: replay_buffers.ReplayBufferState, reward_fn: RewardFn,
            chunk: int = 16384) -> replay_buffers.ReplayBufferState:
  """Every stored transition's reward recomputed by `reward_fn` (PEBBLE).

  The rows written so far, [0, insert_position), in chunks of `chunk` rows
  (a loop whose trip count is the fill level: a young replay costs what it
  holds, not its capacity); brax's row (un)flattening is vmapped over each
  chunk. The buffer's private `_flatten_fn` / `_unflatten_fn` are brax's own
  layout, used rather than re-derived.
  """
  capacity = buffer.data.shape[0]
  chunk = min(chunk, capacity)

  def body(i, data):
    start = jnp.minimum(i * chunk, capacity - chunk)  # the last overlaps
    rows = replay._unflatten_fn(  # pylint: disable=protected-access
        jax.lax.dynamic_slice_in_dim(data, start, chunk))
    rows = rows._replace(reward=reward_fn(rows.observation, rows.action,
                                          rows.next_observation))
    flat = replay._flatten_fn(rows)  # pylint: disable=protected-access
    return jax.lax.dynamic_update_slice_in_dim(
        data, flat.astype(data.dtype), start, 0)

  chunks = (buffer.insert_position + chunk - 1) // chunk
  return buffer.replace(data=jax.lax.fori_loop(0, chunks, body, buffer.data))


def stored_transitions(replay: replay_buffers.UniformSamplingQueue,
                       buffer: replay_buffers.ReplayBufferState
                       ) -> tuple[brax_types.Transition, jax.Array]:
  """The buffer as a [capacity] Transition and its [capacity] valid mask."""
  data = replay._unflatten_fn(buffer.data)  # pylint: disable=protected-access
  rows = jnp.arange(buffer.data.shape[0])
  valid = (rows >= buffer.sample_position) & (rows < buffer.insert_position)
  return data, valid


def _sgd_step(networks, action_size: int, hyper: SACHyper, entropy_k: int,
              pretraining: jax.Array, carry, transitions):
  """One of brax's SAC SGD steps (alpha, critic, actor, Polyak); during
  pre-training on the normalised state-entropy reward of the batch."""
  state, key = carry
  key, key_alpha, key_critic, key_actor = jax.random.split(key, 4)

  def entropy_reward(stats):
    r = state_entropy_reward(transitions.next_observation, entropy_k)
    stats = running_statistics.update(stats, r)
    return r / stats.std, stats

  def stored_reward(stats):
    return transitions.reward, stats

  if pretraining is False:  # no pre-training in this run: nothing to trace
    reward, entropy_stats = stored_reward(state.entropy_stats)
  else:
    reward, entropy_stats = jax.lax.cond(pretraining, entropy_reward,
                                         stored_reward, state.entropy_stats)
  transitions = transitions._replace(reward=reward)
  alpha_loss, critic_loss, actor_loss = sac_losses.make_losses(
      networks, reward_scaling=hyper.reward_scaling,
      discounting=hyper.discounting, action_size=action_size)
  alpha_update = gradients.gradient_update_fn(
      alpha_loss, optax.adam(hyper.alpha_learning_rate), pmap_axis_name=None)
  critic_update = gradients.gradient_update_fn(
      critic_loss, optax.adam(hyper.learning_rate), pmap_axis_name=None)
  actor_update = gradients.gradient_update_fn(
      actor_loss, optax.adam(hyper.learning_rate), pmap_axis_name=None)
  a_loss, log_alpha, alpha_opt_state = alpha_update(
      state.log_alpha, state.policy_params, state.normalizer, transitions,
      key_alpha, optimizer_state=state.alpha_opt_state)
  alpha = jnp.exp(state.log_alpha)
  c_loss, q_params, q_opt_state = critic_update(
      state.q_params, state.policy_params, state.normalizer,
      state.target_q_params, alpha, transitions, key_critic,
      optimizer_state=state.q_opt_state)
  p_loss, policy_params, policy_opt_state = actor_update(
      state.policy_params, state.normalizer, state.q_params, alpha,
      transitions, key_actor, optimizer_state=state.policy_opt_state)
  target_q_params = jax.tree.map(
      lambda t, q: t * (1.0 - hyper.tau) + q * hyper.tau,
      state.target_q_params, q_params)
  state = state.replace(
      policy_params=policy_params, policy_opt_state=policy_opt_state,
      q_params=q_params, target_q_params=target_q_params,
      q_opt_state=q_opt_state, log_alpha=log_alpha,
      alpha_opt_state=alpha_opt_state, entropy_stats=entropy_stats,
      gradient_steps=state.gradient_steps + 1)
  return (state, key), {"sac/critic_loss": c_loss, "sac/actor_loss": p_loss,
                        "sac/alpha_loss": a_loss,
                        "sac/alpha": jnp.exp(log_alpha),
                        "sac/rl_reward": jnp.mean(reward)}


def _make_act(replay: replay_buffers.UniformSamplingQueue,
              networks: sac_networks.SACNetworks, env: brax_envs.Env,
              extra_fields: tuple[str, ...], unsafe=None):
  """`act(state, env_state, key, reward_fn)`: one step of the B envs with the
  current policy, its transitions (reward: `reward_fn`'s, or the env's when
  None) into the replay and its observations into the normaliser (brax's
  `get_experience`). Returns (state, env_state, [B] Transition, [B] reward)."""
  make_policy = sac_networks.make_inference_fn(networks)

  def act(state: SACState, env_state, key, reward_fn: RewardFn | None):
    env_state, data = rrm_safety.actor_step(
        env, env_state, make_policy(inference_params(state)), key,
        extra_fields, unsafe)
    outcome = data.extras["state_extras"]["outcome_obs"]
    reward = data.reward if reward_fn is None else reward_fn(
        data.observation, data.action, outcome)
    stored = brax_types.Transition(
        observation=data.observation, action=data.action, reward=reward,
        discount=data.discount, next_observation=outcome,
        extras={"state_extras": {
            "truncation": data.extras["state_extras"]["truncation"]},
                "policy_extras": {}})
    state = state.replace(
        normalizer=running_statistics.update(state.normalizer,
                                             data.observation),
        replay=replay.insert(state.replay, stored))
    return state, env_state, data, reward

  return act


def make_learn(config: rrm_config.SACConfig,
               networks: sac_networks.SACNetworks,
               replay: replay_buffers.UniformSamplingQueue,
               env: brax_envs.Env, action_size: int, steps: int,
               extra_fields: tuple[str, ...], unsafe=None):
  """Builds `learn(state, env_state, key, hyper, reward_fn, pretraining)`.

  T = `steps` actor steps, each followed by `grad_updates_per_step` SGD
  steps on one sample of batch x UTD transitions (brax's `training_step`).
  Returns (state, env_state, [T, B] Transition of the env steps taken,
  [T, B] the reward stored for RL, metrics). `reward_fn(obs, action,
  outcome)` gives the reward RL maximises (None: the env's true reward);
  `pretraining` (a bool array, or False for a run without pre-training)
  makes the SGD steps maximise state entropy.
  """
  act = _make_act(replay, networks, env, extra_fields, unsafe)
  utd = config.grad_updates_per_step

  def actor_step(carry, key, hyper, reward_fn, pretraining):
    state, env_state = carry
    key_act, key_sgd = jax.random.split(key)
    state, env_state, data, reward = act(state, env_state, key_act, reward_fn)
    buffer, batch = replay.sample(state.replay)
    batch = jax.tree.map(lambda x: x.reshape((utd, -1) + x.shape[1:]), batch)
    (state, _), metrics = jax.lax.scan(
        functools.partial(_sgd_step, networks, action_size, hyper,
                          config.entropy_k, pretraining),
        (state.replace(replay=buffer), key_sgd), batch)
    return (state, env_state), (data, reward, metrics)

  def learn(state: SACState, env_state: brax_envs.State, key: jax.Array,
            hyper: SACHyper, reward_fn: RewardFn | None,
            pretraining: jax.Array):
    (state, env_state), (data, reward, metrics) = jax.lax.scan(
        functools.partial(actor_step, hyper=hyper, reward_fn=reward_fn,
                          pretraining=pretraining),
        (state, env_state), jax.random.split(key, steps))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["sac/replay_size"] = replay.size(state.replay)
    return state, env_state, data, reward, metrics

  return learn


def make_prefill(replay: replay_buffers.UniformSamplingQueue,
                 networks: sac_networks.SACNetworks, env: brax_envs.Env,
                 steps: int, extra_fields: tuple[str, ...]):
  """Builds `prefill(state, env_state, key, reward_fn)`: `steps` actor steps
  of the initial policy into the replay, no SGD (brax's
  `prefill_replay_buffer`, up to `sac.min_replay_size`)."""
  act = _make_act(replay, networks, env, extra_fields)

  def step(carry, key, reward_fn):
    state, env_state, _, _ = act(*carry, key, reward_fn)
    return (state, env_state), None

  def prefill(state, env_state, key, reward_fn):
    (state, env_state), _ = jax.lax.scan(
        functools.partial(step, reward_fn=reward_fn), (state, env_state),
        jax.random.split(key, steps))
    return state, env_state

  return prefill
