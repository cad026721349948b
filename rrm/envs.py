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

DM Control tasks. B-Pref's (Lee et al. 2021) DeepMind Control Suite tasks come
from MuJoCo Playground (`pip install -e '.[playground]'`), named as in B-Pref
and dm_control (`walker_walk`, `cheetah_run`: Playground's `WalkerWalk`,
`CheetahRun`; every task of its `dm_control_suite` is offered the same way).
`PlaygroundEnv` puts them behind brax's `Env` interface, so brax's training
wrappers and rrm's own apply unchanged. They run on MJX only
(`env.backend="mjx"`); `env.kwargs` are Playground config overrides (its MJX
`impl` is "jax" unless set). They have no early termination (fixed-length
episodes, per-step reward in [0, 1]); a diverged (nan) state is their only
`done`, handled like any failure above.

The true reward and the env's reward components (`state.metrics`) travel beside
the observations; the learner only ever sees observations and actions.

Why one module of ~590 lines: every env rrm trains on and every wrapper
between brax and the loop, so a reader finds what the learner and the
teacher see in one place; the point_hazard task is a third of it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from typing import Any, Mapping, NamedTuple

import rrm  # noqa: F401  (imports brax quietly first)
from brax import envs as brax_envs
from brax.envs import base as brax_base
import jax
import jax.numpy as jnp
import numpy as np

from rrm import config as rrm_config

BACKENDS = ("generalized", "positional", "spring", "mjx")
# What a fixed-horizon training env does when the task fails (FixedHorizonWrapper).
ON_FAILURE = ("reset", "continue")

# Constructor arguments that make an env keep running when it fails, pricing
# the failure into its reward (it loses the healthy bonus) instead.
_NO_TERMINATION_KWARGS = {
    "ant": {"terminate_when_unhealthy": False},
    "hopper": {"terminate_when_unhealthy": False},
    "humanoid": {"terminate_when_unhealthy": False},
    "humanoidstandup": {},
    "walker2d": {"terminate_when_unhealthy": False},
}


NO_TERMINATION_ENVS = tuple(_NO_TERMINATION_KWARGS)

# B-Pref / PEBBLE tasks that MuJoCo Playground does not have, and why.
_NO_QUADRUPED = ("MuJoCo Playground's dm_control_suite has no Quadruped task "
                 "(checked: playground 0.2.0)")
_PLAYGROUND_MISSING = {"quadruped_walk": _NO_QUADRUPED,
                       "quadruped_run": _NO_QUADRUPED}
_PLAYGROUND_INSTALL = "pip install -e '.[playground]'"


@functools.cache
def playground_envs() -> Mapping[str, str]:
  """rrm name -> Playground registry name of its DM Control tasks.

  rrm's names are B-Pref's and dm_control's (`walker_walk` for `WalkerWalk`).
  Empty when MuJoCo Playground is not installed.
  """
  if importlib.util.find_spec("mujoco_playground") is None:
    return {}
  from mujoco_playground import dm_control_suite  # pylint: disable=g-import-not-at-top
  return {re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower(): n
          for n in dm_control_suite.ALL_ENVS}


def available_envs() -> tuple[str, ...]:
  """Names of the Brax and (if installed) Playground envs that can be made."""
  return tuple(sorted({*brax_envs._envs, *playground_envs()}))  # pylint: disable=protected-access


def unknown_env_message(name: str) -> str:
  """Why env `name` cannot be made, and what to do (for config errors)."""
  if name in _PLAYGROUND_MISSING:
    return (f"{_PLAYGROUND_MISSING[name]}; known envs are "
            + ", ".join(map(repr, available_envs())))
  hint = ""
  if not playground_envs():
    hint = ("; DM Control tasks (walker_walk, cheetah_run, ...) need MuJoCo "
            f"Playground, which is not installed: {_PLAYGROUND_INSTALL}")
  return "known envs are " + ", ".join(map(repr, available_envs())) + hint


class PlaygroundEnv(brax_base.Env):
  """A MuJoCo Playground env behind brax's `Env` interface.

  Playground's `State(data, obs, reward, done, metrics, info)` becomes brax's
  `State` with `pipeline_state=data`, so brax's wrappers (which reset and
  select `pipeline_state`) and rrm's work unchanged. The task's `metrics` (its
  reward components, e.g. `reward/upright`) and `info` pass through; the keys
  that outer wrappers add to either are kept but not shown to Playground.

  Playground's `reset` and `step` are wrapped in `jax.jit`, not to compile
  them apart (inside the trainer's jit they are inlined) but so that JAX
  traces MJX's physics once per process: the trainer's init, iteration and
  evaluation each trace the env again, and tracing MJX is slow (measured, the
  walker_walk smoke launch on CPU: 35s of tracing without this, 9s with). That
  is also why the env is shown only the entries it made: the same arguments
  every time.
  """

  def __init__(self, env: Any):
    """Wraps `env`.

    Args:
      env: a `mujoco_playground.MjxEnv`; rrm needs flat observations.
    """
    from mujoco_playground import State  # pylint: disable=g-import-not-at-top
    self.playground_env = env
    self._playground_state = State
    self._reset = jax.jit(env.reset)
    self._step = jax.jit(env.step)
    first = jax.eval_shape(self._reset, jax.random.PRNGKey(0))
    self._metric_keys = tuple(first.metrics)
    self._info_keys = tuple(first.info)
    obs = first.obs
    self._observation_size = (obs.shape[-1] if hasattr(obs, "shape") else
                              jax.tree.map(lambda x: x.shape, obs))

  def reset(self, rng: jax.Array) -> brax_base.State:
    s = self._reset(rng)
    return brax_base.State(pipeline_state=s.data, obs=s.obs, reward=s.reward,
                           done=s.done, metrics=dict(s.metrics),
                           info=dict(s.info))

  def step(self, state: brax_base.State,
           action: jax.Array) -> brax_base.State:
    s = self._step(self._playground_state(
        data=state.pipeline_state, obs=state.obs, reward=state.reward,
        done=state.done,
        metrics={k: state.metrics[k] for k in self._metric_keys},
        info={k: state.info[k] for k in self._info_keys}), action)
    return state.replace(pipeline_state=s.data, obs=s.obs, reward=s.reward,
                         done=s.done, metrics={**state.metrics, **s.metrics},
                         info={**state.info, **s.info})

  @property
  def observation_size(self) -> brax_base.ObservationSize:
    return self._observation_size

  @property
  def action_size(self) -> int:
    return self.playground_env.action_size

  @property
  def backend(self) -> str:
    return "mjx"

  @property
  def dt(self) -> float:
    """Control timestep (seconds per env step)."""
    return self.playground_env.dt


# (name, overrides) -> PlaygroundEnv: a run's training and evaluation envs
# share one, and with it the traced physics (see PlaygroundEnv).
_PLAYGROUND_CACHE: dict[tuple[str, str], PlaygroundEnv] = {}


def make_playground_env(name: str,
                        overrides: Mapping[str, Any] | None = None
                        ) -> PlaygroundEnv:
  """The Playground DM Control task `name` (rrm's name) as a brax `Env`.

  Args:
    name: e.g. "walker_walk" (see `playground_envs`).
    overrides: Playground config overrides (e.g. `impl`, `ctrl_dt`); MJX's
      `impl` defaults to "jax" (Playground's own default, "warp", needs an
      NVIDIA GPU; rrm is tested with "jax").

  Raises:
    ValueError: `name` is not a Playground task, or Playground is missing.
  """
  if not playground_envs():
    raise ValueError(f"env {name!r} needs MuJoCo Playground, which is not "
                     f"installed: {_PLAYGROUND_INSTALL}")
  if name not in playground_envs():
    raise ValueError(f"env {name!r} is not a Playground task: "
                     + unknown_env_message(name))
  overrides = {"impl": "jax", **(overrides or {})}
  key = (name, repr(sorted(overrides.items())))
  if key not in _PLAYGROUND_CACHE:
    from mujoco_playground import registry  # pylint: disable=g-import-not-at-top
    _PLAYGROUND_CACHE[key] = PlaygroundEnv(registry.load(
        playground_envs()[name], config_overrides=overrides))
  return _PLAYGROUND_CACHE[key]


class PointHazard(brax_base.Env):
  """A point mass that should reach a goal while keeping out of a hazard.

  rrm's own small task for recursive reward modeling (pure JAX, no physics
  engine: it compiles in seconds on a CPU). The agent is a point in the plane
  at `start` with velocity, driven by a 2-D acceleration in [-1, 1]^2; the
  goal is at `goal`; a disc of radius `hazard_radius` around `hazard_center`
  is the hazard. The reward is the sum of three components, each in
  `state.metrics` (the aspects a task tree's leaves name):

    reward_goal    -|position - goal|          (per step: get there, stay)
    reward_hazard  -hazard_cost inside the disc, else 0
    reward_ctrl    -ctrl_cost |action|^2

  Two geometries (experiments/configs/point_hazard.py):
    beside the goal  the disc covers the goal's far side (centre (1.3, 0),
                     radius 0.5): the best outcome waits at the disc's edge,
                     short of the goal. A user who perceives only the most
                     salient aspect (the goal) prefers outcomes that sit on
                     the goal, inside the hazard, for the whole episode.
    on the path      the disc lies on the straight line from start to goal
                     (centre (0, 0), the constructor's default): that user
                     cuts through it; one who weighs the hazard detours. Any
                     reward that prices the disc then has a ridge across the
                     direct path, and a policy following a *learned* one
                     often stalls in front of it (measured; README).
  Walls bound the arena (a learned reward cannot send the agent off to
  states no label ever covered). Episodes never terminate; observations are
  (position, velocity).
  """

  def __init__(self, start=(-1.0, 0.0), goal=(1.0, 0.0),
               hazard_radius: float = 0.7, hazard_cost: float = 3.0,
               hazard_center=(0.0, 0.0),
               ctrl_cost: float = 0.1, dt: float = 0.1, damping: float = 0.1,
               max_accel: float = 5.0, start_noise: float = 0.25,
               arena: float = 2.0, backend: str | None = None):
    del backend  # no physics pipeline: every backend name runs the same code
    for name, value in (("hazard_radius", hazard_radius),
                        ("hazard_cost", hazard_cost), ("ctrl_cost", ctrl_cost),
                        ("start_noise", start_noise)):
      if not value >= 0:
        raise ValueError(f"point_hazard: {name}={value!r} must be >= 0")
    for name, value in (("start", start), ("goal", goal),
                        ("hazard_center", hazard_center)):
      if jnp.asarray(value).shape != (2,):
        raise ValueError(f"point_hazard: {name}={value!r} must be a point "
                         "(x, y)")
    self._start = jnp.asarray(start, jnp.float32)
    self._goal = jnp.asarray(goal, jnp.float32)
    self._hazard_radius = hazard_radius
    self._hazard_center = jnp.asarray(hazard_center, jnp.float32)
    self._hazard_cost = hazard_cost
    self._ctrl_cost = ctrl_cost
    self._dt = dt
    self._damping = damping
    self._max_accel = max_accel
    self._start_noise = start_noise
    self._arena = arena

  @property
  def geometry(self) -> dict[str, Any]:
    """Where things are, for drawing (rrm.video): start, goal, hazard."""
    return {"start": np.asarray(self._start), "goal": np.asarray(self._goal),
            "hazard_center": np.asarray(self._hazard_center),
            "hazard_radius": float(self._hazard_radius)}

  def _metrics(self, pos, action):
    return {
        "reward_goal": -jnp.linalg.norm(pos - self._goal),
        "reward_hazard": jnp.where(
            jnp.linalg.norm(pos - self._hazard_center) < self._hazard_radius,
            -self._hazard_cost,
            0.0),
        "reward_ctrl": -self._ctrl_cost * jnp.sum(jnp.square(action)),
    }

  def transition_reward(self, obs: jax.Array, action: jax.Array,
                        next_obs: jax.Array) -> jax.Array:
    """[...] the true reward of transitions (obs [..., 4], action [..., 2],
    next_obs [..., 4]): what `step` pays, as a function EPIC can query on
    transitions no rollout took."""
    del obs
    metrics = jax.vmap(self._metrics)(
        next_obs.reshape(-1, 4)[:, :2],
        jnp.clip(action, -1.0, 1.0).reshape(-1, 2))
    return sum(metrics.values()).reshape(next_obs.shape[:-1])

  def in_hazard(self, obs: jax.Array) -> jax.Array:
    """[...] whether observations [..., 4] lie inside the hazard disc."""
    return jnp.linalg.norm(obs[..., :2] - self._hazard_center,
                           axis=-1) < self._hazard_radius

  def reset(self, rng: jax.Array) -> brax_base.State:
    pos = self._start + self._start_noise * jax.random.normal(rng, (2,))
    vel = jnp.zeros((2,))
    zero = jnp.zeros(())
    metrics = {k: zero for k in ("reward_goal", "reward_hazard",
                                 "reward_ctrl")}
    return brax_base.State(pipeline_state=(pos, vel),
                           obs=jnp.concatenate([pos, vel]), reward=zero,
                           done=zero, metrics=metrics)

  def step(self, state: brax_base.State,
           action: jax.Array) -> brax_base.State:
    pos, vel = state.pipeline_state
    action = jnp.clip(action, -1.0, 1.0)
    vel = (1.0 - self._damping) * vel + self._dt * self._max_accel * action
    pos = pos + self._dt * vel
    # Walls: the arena is [-arena, arena]^2; hitting one stops that motion.
    wall = jnp.abs(pos) > self._arena
    pos = jnp.clip(pos, -self._arena, self._arena)
    vel = jnp.where(wall, 0.0, vel)
    metrics = self._metrics(pos, action)
    reward = (metrics["reward_goal"] + metrics["reward_hazard"]
              + metrics["reward_ctrl"])
    return state.replace(pipeline_state=(pos, vel),
                         obs=jnp.concatenate([pos, vel]), reward=reward,
                         metrics={**state.metrics, **metrics})

  @property
  def observation_size(self) -> int:
    return 4

  @property
  def action_size(self) -> int:
    return 2

  @property
  def backend(self) -> str:
    return "none"

  @property
  def dt(self) -> float:
    return self._dt


brax_envs.register_environment("point_hazard", PointHazard)


class AspectsWrapper(brax_base.Wrapper):
  """Records chosen reward components of each step in `info['aspects']`.

  A task tree's leaves (rrm.recursive) are the env's reward components;
  this stacks them, [K] per step in the tree's order, where the trainer's
  rollout (brax acting's `extra_fields`) picks them up beside the outcome
  observation. The values are the step's own, before any auto-reset.
  """

  def __init__(self, env: brax_base.Env, names: tuple[str, ...]):
    super().__init__(env)
    self._names = tuple(names)

  def _aspects(self, state):
    return jnp.stack([jnp.asarray(state.metrics[n], jnp.float32)
                      for n in self._names], axis=-1)

  def reset(self, rng):
    state = self.env.reset(rng)
    return state.replace(info={**state.info,
                               "aspects": jnp.zeros_like(self._aspects(state))})

  def step(self, state, action):
    state = self.env.step(state, action)
    return state.replace(info={**state.info, "aspects": self._aspects(state)})


def transition_reward(config: rrm_config.EnvConfig):
  """The env's true reward as a function of transitions (obs, action,
  next_obs), or None where the reward is not one of the observations
  (brax's locomotion tasks pay for motion between physics states the
  observation leaves out). Only point_hazard declares one."""
  if config.name == "point_hazard":
    return PointHazard(**config.kwargs).transition_reward
  return None


def reward_components(config: rrm_config.EnvConfig,
                      fixed_horizon: bool = True) -> tuple[str, ...]:
  """Names of the env's per-step reward components (`reward_*` metrics).

  Read from the shapes of a reset (nothing is compiled or run).
  """
  env = make_base_env(config, fixed_horizon)
  state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
  return tuple(sorted(k for k in state.metrics if k.startswith("reward")))


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


class TracedOnceWrapper(brax_base.Wrapper):
  """The batched env's `reset` and `step` as jitted functions of their own.

  Inside an outer trace a call of them is one `jit` equation whose jaxpr
  JAX caches by argument shapes, so a program that steps the env in several
  places (init's first rollout, every iteration's rollout, the SAC prefill)
  traces the physics once: tracing brax's MJX pipeline step costs ~1.7 s on
  the CPU each time. XLA inlines the call when compiling.
  """

  def __init__(self, env: brax_base.Env):
    super().__init__(env)
    self._reset = jax.jit(env.reset)
    self._step = jax.jit(env.step)

  def reset(self, rng):
    return self._reset(rng)

  def step(self, state, action):
    return self._step(state, action)


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
  if config.name in brax_envs._envs:  # pylint: disable=protected-access
    env = brax_envs.get_environment(config.name, backend=config.backend,
                                    **kwargs)
  else:
    if config.backend != "mjx":
      raise ValueError(f"env {config.name!r} (MuJoCo Playground) runs on MJX "
                       f"only; backend is {config.backend!r}, set 'mjx'.")
    env = make_playground_env(config.name, kwargs)
  env = OutcomeObservationWrapper(NonFiniteGuardWrapper(env))
  if fixed_horizon and not native:
    env = FixedHorizonWrapper(env, config.failure_reward,
                              reset_on_failure=config.on_failure == "reset")
  return env


def observation_size(env: brax_base.Env) -> int | dict[str, tuple[int, ...]]:
  """The size of `env`'s flat observations (a dict of shapes if not flat).

  brax's `Env.observation_size` runs `reset` op by op to find it: on the CPU
  that is about a hundred tiny compiles, 6 s for inverted_pendulum, paid by
  every process before its first step. The shape alone needs a trace.
  """
  obs = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs
  if isinstance(obs, Mapping):
    return {k: tuple(v.shape) for k, v in obs.items()}
  return int(obs.shape[-1])


def make_envs(config: rrm_config.EnvConfig,
              aspects: tuple[str, ...] = ()) -> Envs:
  """Makes the training and evaluation envs of a run.

  Args:
    config: the env section of the run config.
    aspects: reward components the training env records per step in
      `info['aspects']` (a task tree's leaves; see AspectsWrapper).

  Returns:
    `Envs`: `train` is batched over `num_envs` by the caller's reset keys,
    auto-resets, and ends episodes after exactly `episode_length` steps when
    `fixed_horizon`; `eval` is the standard task with `eval_episode_length`.
  """
  base = make_base_env(config, config.fixed_horizon)
  if aspects:
    base = AspectsWrapper(base, tuple(aspects))
  train = TracedOnceWrapper(brax_envs.training.wrap(
      base, episode_length=config.episode_length))
  eval_env = TracedOnceWrapper(brax_envs.training.wrap(
      make_base_env(config, fixed_horizon=False),
      episode_length=config.eval_episode_length))
  obs_size = observation_size(base)
  if not isinstance(obs_size, int):
    raise ValueError(
        f"env {config.name!r} has dict observations {obs_size}; rrm's reward "
        "models and policies take flat vector observations.")
  return Envs(train=train, eval=eval_env, observation_size=obs_size,
              action_size=base.action_size)
