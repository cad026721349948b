"""Rollouts: collecting, relabelling, PPO's layout, episode returns, evaluation.

The acting side of the loop, on brax's `acting.generate_unroll`: data are
time-major `[T, B, ...]` brax `Transition`s whose extras carry brax's
truncation flag (for GAE), the step's outcome observation before any
auto-reset (for segments and the reward model; envs.OutcomeObservationWrapper)
and, with a task tree, the step's reward components (envs.AspectsWrapper).
"""

from __future__ import annotations

from typing import Callable

from brax import envs as brax_envs
from brax.training import acting
from brax.training import types as brax_types
import jax
import jax.numpy as jnp

from rrm import safety as rrm_safety
from rrm import segments as rrm_segments
from rrm import state as rrm_state

EXTRA_FIELDS = ("truncation", "outcome_obs")
RECURSIVE_EXTRA_FIELDS = EXTRA_FIELDS + ("aspects",)


def outcome(data: brax_types.Transition) -> jax.Array:
  """[T, B, obs]: what each step led to (next_observation before resets)."""
  return data.extras["state_extras"]["outcome_obs"]


def aspects(data: brax_types.Transition) -> jax.Array | None:
  """[T, B, K]: each step's reward components, when the run has a tree."""
  return data.extras["state_extras"].get("aspects")


def split_aspects(data: brax_types.Transition, length: int):
  """[S, L, K] reward components of the rollout's segments (None: no tree)."""
  a = aspects(data)
  return None if a is None else rrm_segments.split_time(a, length)


def cut_segments(data: brax_types.Transition, length: int):
  """The rollout's length-L segments within episodes, and which are whole."""
  return rrm_segments.cut(data.observation, data.action, outcome(data),
                          data.reward, 1.0 - data.discount, length)


def collect(env: brax_envs.Env, env_state: brax_envs.State, policy,
            key: jax.Array, steps: int, recursive: bool,
            unsafe: Callable | None = None):
  """`steps` steps of every env: (final env state, [T, B] Transition).

  brax's `acting.generate_unroll` (the same keys: one split per step), its
  steps taken by `rrm.safety.actor_step`: brax's, which adds the step's
  unsafe event (`unsafe`, rrm.safety.make_unsafe) to the extras."""
  fields = RECURSIVE_EXTRA_FIELDS if recursive else EXTRA_FIELDS

  def step(carry, _):
    state, current_key = carry
    current_key, next_key = jax.random.split(current_key)
    nstate, data = rrm_safety.actor_step(env, state, policy, current_key,
                                         fields, unsafe)
    return (nstate, next_key), data

  (final_state, _), data = jax.lax.scan(step, (env_state, key), (),
                                        length=steps)
  return final_state, data


def unsafe_events(data: brax_types.Transition) -> jax.Array | None:
  """[T, B] the rollout's unsafe events (None: not counted)."""
  return data.extras["state_extras"].get("unsafe")


def random_policy(action_size: int) -> Callable:
  """Uniform actions in [-1, 1]: the policy of the pool's first segments."""

  def policy(obs, key):
    return jax.random.uniform(key, obs.shape[:-1] + (action_size,),
                              minval=-1.0, maxval=1.0), {}

  return policy


def to_ppo_layout(data: brax_types.Transition, unroll_length: int):
  """[T, B, ...] time-major rollout -> brax PPO's [T/U * B, U, ...] layout."""

  def f(x):
    t, b = x.shape[:2]
    x = x.reshape((t // unroll_length, unroll_length, b) + x.shape[2:])
    x = jnp.swapaxes(x, 1, 2)
    return x.reshape((t // unroll_length * b, unroll_length) + x.shape[3:])

  return jax.tree.map(f, data)


def update_episode_stats(stats: rrm_state.EpisodeStats, true_reward: jax.Array,
                         learned_reward: jax.Array,
                         episode_end: jax.Array) -> rrm_state.EpisodeStats:
  """Accumulates [T, B] rewards into per-env episode returns."""

  def step(s, x):
    rt, rl, end = x
    true_sum, learned_sum = s.true_sum + rt, s.learned_sum + rl
    done = end > 0
    return rrm_state.EpisodeStats(
        true_sum=jnp.where(done, 0.0, true_sum),
        learned_sum=jnp.where(done, 0.0, learned_sum),
        last_true=jnp.where(done, true_sum, s.last_true),
        last_learned=jnp.where(done, learned_sum, s.last_learned),
        completed=s.completed + done.astype(jnp.int32)), None

  stats, _ = jax.lax.scan(step, stats, (true_reward, learned_reward,
                                        episode_end))
  return stats


def mean_over_completed(x: jax.Array, completed: jax.Array) -> jax.Array:
  """Mean of [B] `x` over envs with a completed episode (nan if none)."""
  has = completed > 0
  n = jnp.sum(has)
  return jnp.where(n > 0, jnp.sum(jnp.where(has, x, 0.0)) / jnp.maximum(n, 1),
                   jnp.nan)


def strip_weak_types(tree):
  """Makes every leaf strongly typed.

  Leaves built from Python scalars (brax's running-statistics counts, zeros)
  are weakly typed in `init`'s output and strongly typed after one
  `iteration`; without this the second call of `iteration` would compile
  again (brax's trainer does the same).
  """

  def strong(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x.astype(
        x.dtype)

  return jax.tree.map(strong, tree)


def make_evaluate(eval_env: brax_envs.Env, make_policy, inference_params,
                  num_envs: int, episode_length: int):
  """`evaluate(state, key)`: the deterministic policy on the standard task.

  One episode per env, true reward. A pure function of (state, key), so
  evaluations repeat exactly after a resume (brax's acting.Evaluator keeps
  its RNG inside the object).
  """
  eval_env = brax_envs.training.EvalWrapper(eval_env)

  def evaluate(state: rrm_state.TrainState,
               key: jax.Array) -> dict[str, jax.Array]:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)  # brax takes raw keys
    key_reset, key_unroll = jax.random.split(key)
    env_state = eval_env.reset(jax.random.split(key_reset, num_envs))
    policy = make_policy(inference_params(state.policy), deterministic=True)
    env_state, _ = acting.generate_unroll(eval_env, env_state, policy,
                                          key_unroll, episode_length)
    m = env_state.info["eval_metrics"]
    returns = m.episode_metrics["reward"]
    # The true return's components (the env's `reward_*` metrics): which
    # aspects of the task the policy got right, e.g. a task tree's leaves.
    components = {f"eval/{k}": jnp.mean(v)
                  for k, v in m.episode_metrics.items()
                  if k.startswith("reward_")}
    return {"eval/true_return": jnp.mean(returns),
            "eval/true_return_std": jnp.std(returns),
            "eval/episode_length": jnp.mean(m.episode_steps), **components}

  return evaluate
