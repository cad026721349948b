"""The reward model: an ensemble of MLPs r̂(x) on per-step inputs.

Members share one flax module; their parameters carry a leading member axis
[M] and are applied with `vmap`, so the ensemble costs one batched matmul.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from brax.training import networks
from brax.training.acme import running_statistics
from flax import linen
import jax
import jax.numpy as jnp

from rrm import segments as rrm_segments


# What the reward model reads per step, and where training rewards come from
# ("true": the env's own reward, the baseline every comparison needs).
INPUTS = ("obs", "obs_action", "next_obs")
SOURCES = ("learned", "true")


class RewardModel(NamedTuple):
  """Static description of the reward network (no parameters)."""
  network: linen.Module
  input_kind: str  # "obs" | "obs_action" | "next_obs"
  input_size: int

  def inputs(self, observation: jax.Array, action: jax.Array,
             next_observation: jax.Array) -> jax.Array:
    """Per-step model inputs [..., input_size] from a transition's parts."""
    if self.input_kind == "obs":
      return observation
    if self.input_kind == "obs_action":
      return jnp.concatenate([observation, action], axis=-1)
    if self.input_kind == "next_obs":
      return next_observation
    raise ValueError(f"unknown reward input {self.input_kind!r}")


def make_reward_model(input_kind: str, hidden_layer_sizes: Sequence[int],
                      observation_size: int, action_size: int) -> RewardModel:
  sizes = {"obs": observation_size, "next_obs": observation_size,
           "obs_action": observation_size + action_size}
  if input_kind not in sizes:
    raise ValueError(f"unknown reward input {input_kind!r}; known: "
                     f"{', '.join(sizes)}")
  network = networks.MLP(layer_sizes=tuple(hidden_layer_sizes) + (1,),
                         activation=linen.swish)
  return RewardModel(network=network, input_kind=input_kind,
                     input_size=sizes[input_kind])


def init_ensemble(model: RewardModel, key: jax.Array, ensemble_size: int) -> Any:
  """Independently initialised member parameters, leading axis [M]."""
  dummy = jnp.zeros((1, model.input_size))
  keys = jax.random.split(key, ensemble_size)
  return jax.vmap(lambda k: model.network.init(k, dummy))(keys)


def fit_input_normalizer(
    model: RewardModel, segments: rrm_segments.Segments,
    valid: jax.Array) -> running_statistics.RunningStatisticsState:
  """Mean/std of the model's per-step inputs over the valid segments.

  The trainer fits this once, on the initial random-policy pool, and keeps it
  fixed: inputs on very different scales (inverted_pendulum: angle ~0.2 rad,
  angular velocity ~2 rad/s) otherwise leave the small-scale feature that
  decides the task nearly invisible to a weight-decayed MLP (measured: the
  unnormalised model preferred a 0.15 rad tilt to upright, and the policy
  drifted into the rail). Fixed statistics keep the reward stationary.
  """
  x = model.inputs(segments.observation, segments.action,
                   segments.next_observation)  # [P, L, F]
  weights = jnp.broadcast_to(valid[:, None], x.shape[:2]).astype(jnp.float32)
  # The std floor keeps constant features (some envs pad observations with
  # zeros) from being blown up to noise.
  return running_statistics.update(
      running_statistics.init_state(jnp.zeros((model.input_size,))), x,
      weights=weights, std_min_value=1e-3)


def predict(model: RewardModel, params: Any,
            input_normalizer: running_statistics.NestedMeanStd,
            observation: jax.Array, action: jax.Array,
            next_observation: jax.Array) -> jax.Array:
  """Per-step rewards of every member: [M, ...] for inputs [..., features]."""
  x = model.inputs(observation, action, next_observation)
  x = running_statistics.normalize(x, input_normalizer, max_abs_value=10.0)
  flat = x.reshape((-1, x.shape[-1]))
  out = jax.vmap(lambda p: model.network.apply(p, flat)[..., 0])(params)
  return out.reshape((out.shape[0],) + x.shape[:-1])


def member_returns(model: RewardModel, params: Any,
                   input_normalizer: running_statistics.NestedMeanStd,
                   segments: rrm_segments.Segments) -> jax.Array:
  """Predicted segment returns of every member: [M, ...] for segments [..., L]."""
  rewards = predict(model, params, input_normalizer, segments.observation,
                    segments.action, segments.next_observation)
  return jnp.sum(rewards, axis=-1)
