"""PPO on a relabelled rollout, built from brax.training's pieces.

Networks, the loss (GAE, clipped surrogate, value loss, entropy bonus), the
gradient step and the observation normaliser are brax.training's own; this
module only arranges them into a pure update function `update(state, data,
key)` that does what one `training_step` of `brax.training.agents.ppo.train`
does after its rollout, so that rrm's policy learning is brax's PPO.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from brax.training import gradients
from brax.training import types as brax_types
from brax.training.acme import running_statistics
from brax.training.agents.ppo import losses as ppo_losses
from brax.training.agents.ppo import networks as ppo_networks
import flax
import jax
import jax.numpy as jnp
import optax

from rrm import config as rrm_config


@flax.struct.dataclass
class PPOHyper:
  """PPO's array-valued hyperparameters: sweepable without recompiling."""
  learning_rate: jax.Array
  entropy_cost: jax.Array
  discounting: jax.Array
  gae_lambda: jax.Array
  clipping_epsilon: jax.Array
  reward_scaling: jax.Array


def hyper(config: rrm_config.PPOConfig) -> PPOHyper:
  f = lambda x: jnp.asarray(x, jnp.float32)
  return PPOHyper(learning_rate=f(config.learning_rate),
                  entropy_cost=f(config.entropy_cost),
                  discounting=f(config.discounting),
                  gae_lambda=f(config.gae_lambda),
                  clipping_epsilon=f(config.clipping_epsilon),
                  reward_scaling=f(config.reward_scaling))


@flax.struct.dataclass
class PolicyState:
  params: ppo_losses.PPONetworkParams
  opt_state: Any
  normalizer: running_statistics.RunningStatisticsState  # observations


def make_networks(config: rrm_config.PPOConfig, observation_size: int,
                  action_size: int) -> ppo_networks.PPONetworks:
  preprocess = (running_statistics.normalize if config.normalize_observations
                else brax_types.identity_observation_preprocessor)
  return ppo_networks.make_ppo_networks(
      observation_size, action_size, preprocess_observations_fn=preprocess,
      policy_hidden_layer_sizes=config.policy_hidden_layer_sizes,
      value_hidden_layer_sizes=config.value_hidden_layer_sizes)


def make_optimizer(config: rrm_config.PPOConfig,
                   learning_rate: float | jax.Array | None = None
                   ) -> optax.GradientTransformation:
  """Adam (after an optional global-norm clip).

  `learning_rate` (default: the config's) may be a traced array: the
  optimiser state does not depend on it, so a state made with one learning
  rate is updated with another (how sweeps vmap over it).
  """
  opt = optax.adam(config.learning_rate if learning_rate is None
                   else learning_rate)
  if config.max_grad_norm is not None:
    opt = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt)
  return opt


def init_policy(networks: ppo_networks.PPONetworks,
                optimizer: optax.GradientTransformation, observation_size: int,
                key: jax.Array) -> PolicyState:
  key_policy, key_value = jax.random.split(key)
  params = ppo_losses.PPONetworkParams(
      policy=networks.policy_network.init(key_policy),
      value=networks.value_network.init(key_value))
  return PolicyState(
      params=params, opt_state=optimizer.init(params),
      normalizer=running_statistics.init_state(
          jnp.zeros((observation_size,), jnp.float32)))


def inference_params(state: PolicyState) -> tuple[Any, Any, Any]:
  """(normaliser, policy, value) as brax's `make_inference_fn` expects."""
  return (state.normalizer, state.params.policy, state.params.value)


def make_ppo_update(
    config: rrm_config.PPOConfig, networks: ppo_networks.PPONetworks
) -> Callable[[PolicyState, brax_types.Transition, jax.Array, PPOHyper],
              tuple[PolicyState, dict[str, jax.Array]]]:
  """Builds `update(state, data, key, hyper) -> (state, metrics)`.

  The shapes come from `config`; the loss coefficients, discounts and the
  learning rate from `hyper` (arrays, so a sweep can vmap over them).

  `data` is a `Transition` with leading dims [N, unroll_length] (N =
  batch_size * num_minibatches), `data.reward` already the reward PPO should
  maximise, and extras `state_extras.truncation` and brax's policy extras.
  As in brax's PPO: the observation normaliser is updated on the batch first,
  then `num_updates_per_batch` epochs, each a fresh shuffle into
  `num_minibatches` minibatches with one Adam step each.
  """
  num_minibatches = config.num_minibatches

  def minibatch_step(carry, minibatch, normalizer, gradient_step):
    opt_state, params, key = carry
    key, key_loss = jax.random.split(key)
    (_, metrics), params, opt_state = gradient_step(
        params, normalizer, minibatch, key_loss, optimizer_state=opt_state)
    return (opt_state, params, key), metrics

  def epoch(carry, unused, data, normalizer, gradient_step):
    opt_state, params, key = carry
    key, key_perm, key_grad = jax.random.split(key, 3)

    def shuffle(x):
      x = jax.random.permutation(key_perm, x)
      return x.reshape((num_minibatches, -1) + x.shape[1:])

    (opt_state, params, _), metrics = jax.lax.scan(
        functools.partial(minibatch_step, normalizer=normalizer,
                          gradient_step=gradient_step),
        (opt_state, params, key_grad), jax.tree.map(shuffle, data))
    return (opt_state, params, key), metrics

  def update(state: PolicyState, data: brax_types.Transition, key: jax.Array,
             hyper: PPOHyper) -> tuple[PolicyState, dict[str, jax.Array]]:
    loss_fn = functools.partial(
        ppo_losses.compute_ppo_loss, ppo_network=networks,
        entropy_cost=hyper.entropy_cost, discounting=hyper.discounting,
        reward_scaling=hyper.reward_scaling, gae_lambda=hyper.gae_lambda,
        clipping_epsilon=hyper.clipping_epsilon, normalize_advantage=True)
    gradient_step = gradients.gradient_update_fn(
        loss_fn, make_optimizer(config, hyper.learning_rate),
        pmap_axis_name=None, has_aux=True)
    normalizer = running_statistics.update(state.normalizer, data.observation)
    (opt_state, params, _), metrics = jax.lax.scan(
        functools.partial(epoch, data=data, normalizer=normalizer,
                          gradient_step=gradient_step),
        (state.opt_state, state.params, key), (),
        length=config.num_updates_per_batch)
    metrics = jax.tree.map(jnp.mean, metrics)
    return (PolicyState(params=params, opt_state=opt_state,
                        normalizer=normalizer),
            {"ppo/total_loss": metrics["total_loss"],
             "ppo/policy_loss": metrics["policy_loss"],
             "ppo/value_loss": metrics["v_loss"],
             "ppo/entropy_loss": metrics["entropy_loss"],
             "ppo/kl": metrics["kl_mean"]})

  return update
