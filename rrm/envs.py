"""Brax environments for reward modeling: batched, auto-reset, fixed-horizon.

Why fixed-horizon variants. Brax's inverted_pendulum, hopper, walker2d and ant
pay a constant "alive" reward every step and *terminate* on failure. With
auto-reset, every fixed-length segment then has the same true return, so a
teacher comparing segments has nothing to tell apart, and a preference-learned
reward carries no information (imitation's preference comparisons fail on
InvertedPendulum for exactly this reason). Christiano et al. (2017) removed
early termination and priced failure into the reward instead. We do the same:

* `on_failure="reset"` (default): a step the standard task would end the
  episode on pays `failure_reward` (a penalty) instead, the env restarts from
  the episode's initial state, and the episode goes on to the fixed horizon.
  Training data stays on the task's state distribution (measured: with
  "continue", inverted_pendulum's pole spins freely for ~99% of a 1000-step
  episode, and PPO on the *true* reward reaches only ~150 of 1000 in 250k
  steps; with "reset" it learns as fast as on the standard task);
* `on_failure="continue"`: the physics runs on from the failed state. Envs
  whose constructor supports it (hopper, walker2d, ant, humanoid) get
  `terminate_when_unhealthy=False` and pay the healthy bonus only while
  healthy; for others the failed steps pay `failure_reward`.

Episodes then all last exactly `episode_length` steps, so the policy cannot
change how many rewards it collects by dying early or surviving long: the sign
of the learned reward can no longer decide behaviour through episode length
(the "survival bias" of learned rewards under termination). Segments are cut
so that they never straddle an episode boundary (see `segments.py`).

Evaluation always uses the standard task (with termination, its own episode
length) and its true reward, so returns are comparable with the literature.

The true reward and the env's reward components (`state.metrics`) travel beside
the observations; the learner only ever sees observations and actions.
"""

from __future__ import annotations

from typing import NamedTuple

import rrm  # noqa: F401  (imports brax quietly first)
from brax import envs as brax_envs
from brax.envs import base as brax_base
import jax
import jax.numpy as jnp

from rrm import config as rrm_config

BACKENDS = ("generalized", "positional", "spring", "mjx")

# Constructor arguments that make an env keep running when it fails, pricing
# the failure into its reward (it loses the healthy bonus) instead.
_NO_TERMINATION_KWARGS = {
    "ant": {"terminate_when_unhealthy": False},
    "hopper": {"terminate_when_unhealthy": False},
    "humanoid": {"terminate_when_unhealthy": False},
    "humanoidstandup": {},
    "walker2d": {"terminate_when_unhealthy": False},
}


def available_envs() -> tuple[str, ...]:
  """Names of the Brax environments that can be made."""
  return tuple(sorted(brax_envs._envs))  # pylint: disable=protected-access


class FixedHorizonWrapper(brax_base.Wrapper):
  """Turns termination into a priced event; the episode goes on.

  The wrapped env never reports done (`EpisodeWrapper` ends episodes at the
  fixed horizon). On a step the base env would end the episode on, the reward
  is `failure_reward` instead of the env's, and then:

  * `reset_on_failure=True`: the env restarts from the episode's initial state
    (as brax's AutoResetWrapper does) within the same fixed-length episode, so
    training data stays on the task's state distribution and each failure
    costs its penalty;
  * `reset_on_failure=False`: the physics simply continues from the failed
    state (which may never recover, and may diverge on some backends).

  `state.metrics['failed']` marks failure steps (for unsafe-event metrics).
  """

  def __init__(self, env: brax_base.Env, failure_reward: float,
               reset_on_failure: bool):
    super().__init__(env)
    self._failure_reward = failure_reward
    self._reset_on_failure = reset_on_failure

  def reset(self, rng):
    state = self.env.reset(rng)
    info = {**state.info, "fh_first_pipeline_state": state.pipeline_state,
            "fh_first_obs": state.obs}
    return state.replace(info=info, metrics={
        **state.metrics, "failed": jnp.zeros_like(state.reward)})

  def step(self, state, action):
    state = self.env.step(state.replace(done=jnp.zeros_like(state.done)),
                          action)
    failed = state.done
    reward = jnp.where(failed > 0, self._failure_reward, state.reward)
    if self._reset_on_failure:
      pick = lambda first, now: jnp.where(failed > 0, first, now)
      state = state.replace(
          pipeline_state=jax.tree.map(
              pick, state.info["fh_first_pipeline_state"],
              state.pipeline_state),
          obs=pick(state.info["fh_first_obs"], state.obs))
    return state.replace(reward=reward, done=jnp.zeros_like(state.done),
                         metrics={**state.metrics, "failed": failed})


class NonFiniteGuardWrapper(brax_base.Wrapper):
  """A step whose observation is not finite is a failure, never a reward.

  Some backends diverge in states the standard task never reaches (brax's
  `generalized` inverted_pendulum spinning freely without termination). The
  task's own checks are comparisons (`|angle| > 0.2`) that are False for nan,
  so a diverged state would be paid as success: in training and in
  evaluation. Here it ends the episode (standard task) or counts as failed
  (fixed horizon) with zero reward; the trainer also stops the run, naming
  the backend (see `rollout/nonfinite_fraction`).
  """

  def step(self, state, action):
    state = self.env.step(state, action)
    bad = jnp.logical_not(jnp.all(jnp.isfinite(state.obs), axis=-1))
    return state.replace(reward=jnp.where(bad, 0.0, state.reward),
                         done=jnp.where(bad, 1.0, state.done))


class OutcomeObservationWrapper(brax_base.Wrapper):
  """Keeps each step's own outcome in `info['outcome_obs']`.

  Auto-reset (on failure or at the horizon) replaces `state.obs` with the
  restart state, so a transition's `next_observation` then shows a fresh,
  upright, motionless system instead of what the step did. A reward model
  fed that would see every penalty next to a fresh-reset state and learn to
  penalise the start state (measured: it pushed inverted_pendulum policies
  to drift away from it). Wrappers outside this one may reset `obs`; they
  leave `info` alone, so the outcome survives for segments and reward models.
  """

  def reset(self, rng):
    state = self.env.reset(rng)
    return state.replace(info={**state.info, "outcome_obs": state.obs})

  def step(self, state, action):
    state = self.env.step(state, action)
    return state.replace(info={**state.info, "outcome_obs": state.obs})


class Envs(NamedTuple):
  """The batched training env, the evaluation env and their sizes."""
  train: brax_base.Env  # batched, auto-reset, fixed-horizon when configured
  eval: brax_base.Env  # standard task, batched, auto-reset (wrap EvalWrapper)
  observation_size: int
  action_size: int


def make_base_env(config: rrm_config.EnvConfig, fixed_horizon: bool):
  """The unbatched Brax env, in its fixed-horizon variant if asked."""
  kwargs = dict(config.kwargs)
  native = (fixed_horizon and config.on_failure == "continue"
            and config.name in _NO_TERMINATION_KWARGS)
  if native:
    kwargs = {**_NO_TERMINATION_KWARGS[config.name], **kwargs}
  env = OutcomeObservationWrapper(NonFiniteGuardWrapper(
      brax_envs.get_environment(config.name, backend=config.backend,
                                **kwargs)))
  if fixed_horizon and not native:
    env = FixedHorizonWrapper(env, config.failure_reward,
                              reset_on_failure=config.on_failure == "reset")
  return env


def make_envs(config: rrm_config.EnvConfig) -> Envs:
  """Makes the training and evaluation envs of a run.

  Args:
    config: the env section of the run config.

  Returns:
    `Envs`: `train` is batched over `num_envs` by the caller's reset keys,
    auto-resets, and ends episodes after exactly `episode_length` steps when
    `fixed_horizon`; `eval` is the standard task with `eval_episode_length`.
  """
  base = make_base_env(config, config.fixed_horizon)
  train = brax_envs.training.wrap(base, episode_length=config.episode_length)
  eval_env = brax_envs.training.wrap(
      make_base_env(config, fixed_horizon=False),
      episode_length=config.eval_episode_length)
  obs_size = base.observation_size  # brax's Wrapper forwards the sizes
  if not isinstance(obs_size, int):
    raise ValueError(
        f"env {config.name!r} has dict observations {obs_size}; rrm's reward "
        "models and policies take flat vector observations.")
  return Envs(train=train, eval=eval_env, observation_size=obs_size,
              action_size=base.action_size)
