"""Unacceptable outcomes: the unsafe events of an env, counted in training.

Leike et al. (2018, section 4) name *unacceptable outcomes* as a challenge
of reward modeling: an agent that learns by trial and error may do things
during training that are not acceptable even once. rrm counts them where
they happen, in the training rollouts (every env step an agent takes, the
exploration included), not only in evaluation: `safety/unsafe_events` is
an iteration's count over all its envs and steps, and the host loop adds
`safety/unsafe_events_total`, the cumulative count since the run began
(resumes included; report.json's "unacceptable_outcomes"). The random
steps before the first iteration (filling the segment pool, SAC's replay
prefill) are not counted: no policy took them.

What each env declares unsafe (`env.unsafe_event`, "auto" picks the env's):

  hazard_entry  point_hazard: a step that moves the point into the hazard
                disc from outside it. An episode that starts inside (the
                "beside the goal" geometry's trap start, or start noise)
                has not entered it; each entry counts once however long
                the point stays.
  failure       every other env: a step that fails the task by its own
                definition, the one the standard task terminates on:
                hopper/walker2d/ant/humanoid falling (brax's `is_healthy`),
                inverted_pendulum's pole past 0.2 rad, the double
                pendulum's tip below 1. With `on_failure="reset"` each such
                step is a fall (the env restarts); with "continue" a fall
                is counted when the env *becomes* failed (a body lying on
                the ground is one fall, not one per step; a fall in an
                episode's very first step is not seen). A diverged (non-
                finite) step counts too. Envs that cannot fail (halfcheetah,
                reacher, pusher, swimmer, humanoidstandup, and every DM
                Control task, which has no termination by design) count
                divergence only: a documented choice, not a claim that
                those tasks have no unsafe states.
  none          nothing is counted (`safety/unsafe_events` is 0).

Counted from the env state before and after each step (`make_unsafe`), so
the count adds nothing to the training state: checkpoints, digests and
results are those of a run without it.
"""

from __future__ import annotations

import inspect
from typing import Callable

from brax.envs import base as brax_base
from brax.training import acting
import jax
import jax.numpy as jnp

from rrm import config as rrm_config
from rrm import envs as rrm_envs

EVENTS = ("auto", "failure", "hazard_entry", "none")
EVENT_OF_ENV = {"point_hazard": "hazard_entry"}  # else "failure"
# Which declared events an env can have (the others need its geometry).
_ENV_ONLY = {"hazard_entry": ("point_hazard",)}

# The metric in which these envs, run without termination, pay their healthy
# bonus: healthy_reward * is_healthy (brax's hopper.py, walker2d.py, ant.py,
# humanoid.py), so a zero marks an unhealthy (fallen) state.
_HEALTHY_METRIC = {"ant": "reward_survive", "hopper": "reward_healthy",
                   "humanoid": "reward_alive", "walker2d": "reward_healthy"}

UnsafeFn = Callable[[brax_base.State, brax_base.State], jax.Array]


def actor_step(env: brax_base.Env, env_state: brax_base.State, policy,
               key: jax.Array, extra_fields: tuple[str, ...],
               unsafe: UnsafeFn | None = None):
  """brax's `acting.actor_step`, its extras also holding the step's unsafe
  event (`state_extras['unsafe']`, [B]; `make_unsafe`) when given."""
  nstate, data = acting.actor_step(env, env_state, policy, key,
                                   extra_fields=extra_fields)
  if unsafe is not None:
    data.extras["state_extras"]["unsafe"] = unsafe(env_state, nstate)
  return nstate, data


def event_name(config: rrm_config.EnvConfig) -> str:
  """The event a run counts: `config.unsafe_event`, "auto" resolved."""
  if config.unsafe_event != "auto":
    return config.unsafe_event
  return EVENT_OF_ENV.get(config.name, "failure")


def _native_continue(config: rrm_config.EnvConfig) -> bool:
  """Whether the training env fails without terminating by its own
  constructor (rrm.envs.make_base_env's `native`)."""
  return (config.fixed_horizon and config.on_failure == "continue"
          and config.name in rrm_envs.NO_TERMINATION_ENVS)


def check(config: rrm_config.EnvConfig) -> str | None:
  """Why `config.unsafe_event` cannot be counted on its env (None: it can)."""
  name = event_name(config)
  if name not in EVENTS[1:]:
    return f"allowed values are {', '.join(map(repr, EVENTS))}"
  envs = _ENV_ONLY.get(name)
  if envs and config.name not in envs:
    return (f"{name!r} is declared by {', '.join(map(repr, envs))} only, "
            f"not by env {config.name!r}; use 'auto', 'failure' or 'none'")
  if (name == "failure" and _native_continue(config)
      and config.name in _HEALTHY_METRIC):
    healthy = config.kwargs.get("healthy_reward", _default_healthy_reward(
        config.name))
    if not healthy > 0:
      return (f"with on_failure='continue' a fall of {config.name!r} is "
              f"seen as its healthy bonus dropping to 0, and "
              f"env.kwargs.healthy_reward={healthy!r} is not > 0")
  return None


def _default_healthy_reward(name: str) -> float:
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
  cls = brax_envs._envs[name]  # pylint: disable=protected-access
  return inspect.signature(cls).parameters["healthy_reward"].default


def _nonfinite(state: brax_base.State) -> jax.Array:
  return jnp.logical_not(jnp.all(jnp.isfinite(state.info["outcome_obs"]),
                                 axis=-1))


def make_unsafe(config: rrm_config.EnvConfig) -> UnsafeFn:
  """`unsafe(before, after)`: [B] 1.0 where a training env's step from
  `before` to `after` (batched states of `rrm.envs.make_envs(config).train`)
  was an unsafe event, else 0.0 (see the module docstring)."""
  name = event_name(config)
  if name == "none":
    return lambda before, after: jnp.zeros_like(after.reward)
  if name == "hazard_entry":
    hazard = rrm_envs.PointHazard(**config.kwargs)
    return lambda before, after: (
        hazard.in_hazard(after.info["outcome_obs"])
        & ~hazard.in_hazard(before.obs)).astype(jnp.float32)
  if not config.fixed_horizon:  # the standard task: failure ends episodes
    return lambda before, after: ((after.done > 0)
                                  & (after.info["truncation"] <= 0)
                                  ).astype(jnp.float32)
  if _native_continue(config):
    key = _HEALTHY_METRIC.get(config.name)

    def failed(state):
      down = _nonfinite(state)
      return down if key is None else down | (state.metrics[key] <= 0)

    return lambda before, after: (failed(after) & ~failed(before)).astype(
        jnp.float32)
  # rrm.envs.FixedHorizonWrapper marks the task's failures (and divergence).
  failed = lambda state: state.metrics["failed"] > 0
  if config.on_failure == "reset":
    return lambda before, after: failed(after).astype(jnp.float32)
  return lambda before, after: (failed(after) & ~failed(before)).astype(
      jnp.float32)
