"""The training state and its parts, and the run's key schedule.

Everything a run carries from one iteration to the next is one pytree,
`TrainState`: saving it is saving the run (rrm.checkpoint), and stacking S
of them is a sweep (rrm.sweep). Array-valued hyperparameters (`Hyper`) and
the teacher (`oracle.TeacherParams`) are leaves of it, so one compiled
program runs any of their values.

Keys. A run's randomness comes from one seed through fixed splits, named
here so that every consumer agrees on the index:

    seed_key = key(seed)
    RunKeys(init, run, eval)  = split(seed_key, 3)
    InitKeys(env, policy, reward, rollout, pool, ask, fit) = split(init, 7)
    iteration i: IterationKeys(rollout, ppo, pool, ask, fit)
                 = split(fold_in(run, i), 5)
    evaluation after iteration i: fold_in(eval, i)
"""

from __future__ import annotations

from typing import NamedTuple

from brax import envs as brax_envs
import flax
import jax
import jax.numpy as jnp

from rrm import config as rrm_config
from rrm import feedback as rrm_feedback
from rrm import flags as rrm_flags
from rrm import ratings as rrm_ratings
from rrm import oracle as rrm_oracle
from rrm import ppo as rrm_ppo
from rrm import reward as rrm_reward
from rrm import sac as rrm_sac
from rrm import segments as rrm_segments


@flax.struct.dataclass
class EpisodeStats:
  """Per-env running and last completed episode returns, [B] each."""
  true_sum: jax.Array
  learned_sum: jax.Array
  last_true: jax.Array
  last_learned: jax.Array
  completed: jax.Array  # int32 episodes completed so far


def init_episode_stats(num_envs: int) -> EpisodeStats:
  zeros = jnp.zeros((num_envs,))
  return EpisodeStats(zeros, zeros, zeros, zeros,
                      jnp.zeros((num_envs,), jnp.int32))


@flax.struct.dataclass
class Hyper:
  """The run's array-valued hyperparameters (they change no shape).

  They live in the state, so one compiled program runs any values of them
  and `vmap` over stacked `Hyper`s runs a sweep (rrm.sweep). The teacher's
  parameters are the other such part of the state (`TrainState.teacher`).
  """
  # The RL algorithm's own (`rl`): rrm.ppo.PPOHyper, or rrm.sac.SACHyper
  # when config.rl.algorithm = "sac". The field keeps the name it had before
  # SAC existed, so that PPO checkpoints written then still restore (a new
  # field would change the state's layout).
  ppo: rrm_ppo.PPOHyper | rrm_sac.SACHyper
  reward_learning_rate: jax.Array
  reward_weight_decay: jax.Array
  uncertainty_penalty: jax.Array  # learned reward = mean - penalty * std

  @property
  def rl(self) -> rrm_ppo.PPOHyper | rrm_sac.SACHyper:
    """The RL algorithm's hyperparameters (PPO's or SAC's)."""
    return self.ppo

  def reward_optimizer(self):
    """The reward models' optimiser with these values (rrm.reward)."""
    return rrm_reward.make_optimizer(self.reward_learning_rate,
                                     self.reward_weight_decay)


def make_hyper(config: rrm_config.TrainConfig) -> Hyper:
  rc = config.reward
  f = lambda x: jnp.asarray(x, jnp.float32)
  rl = (rrm_sac.hyper(config.sac) if config.rl.algorithm == "sac"
        else rrm_ppo.hyper(config.ppo))
  return Hyper(ppo=rl, reward_learning_rate=f(rc.learning_rate),
               reward_weight_decay=f(rc.weight_decay),
               uncertainty_penalty=f(rc.uncertainty_penalty))


def make_teacher(config: rrm_config.TrainConfig) -> rrm_oracle.TeacherParams:
  oc = config.oracle
  return rrm_oracle.make_teacher(
      beta=oc.beta, gamma=oc.gamma, mistake=oc.mistake, skip=oc.skip,
      equal=oc.equal, forward_discount=oc.forward_discount)


@flax.struct.dataclass
class HelperState:
  """Recursive reward modeling's helpers: one reward model per non-root node.

  Stacked over the helper axis [H] (rrm.recursive.Plan.helpers): ensemble
  parameters, optimiser states and each node's own label dataset (capacity:
  the largest node budget; each node stops at its own).
  """
  reward: rrm_reward.RewardState
  labels: rrm_feedback.LabelDataset


@flax.struct.dataclass
class TrainState:
  """One run's complete state between iterations.

  The field order is the checkpoint's leaf order: change it only with a
  migration (rrm.checkpoint's state layout refuses the old one).
  """
  # The RL algorithm's state (rrm.agent): PPO's networks, optimiser and
  # observation normaliser; SAC's actor, critics, temperature, normaliser
  # and replay buffer.
  policy: rrm_ppo.PolicyState | rrm_sac.SACState
  reward: rrm_reward.RewardState  # the root's reward-model ensemble
  pool: rrm_segments.SegmentPool  # recent segments queries are drawn from
  labels: rrm_feedback.LabelDataset  # the root user's labels (capacity fixed)
  teacher: rrm_oracle.TeacherParams  # the synthetic user's B-Pref parameters
  hyper: Hyper
  env: brax_envs.State  # [B] training envs, mid-episode
  episodes: EpisodeStats
  key: jax.Array  # typed PRNG key of the run (RunKeys.run)
  iteration: jax.Array  # int32 scalar, iterations completed
  helpers: HelperState | None = None  # assisted user's helpers (recursive)
  # The safety classifier and the user's unacceptable flags (rrm.flags;
  # None without flags). Added after checkpoints without it were written:
  # rrm.checkpoint.state_layout leaves a None here out of the layout.
  safety: rrm_flags.SafetyState | None = None
  # The user's scalar ratings and the learner's scale for them (rrm.ratings;
  # None without ratings), left out of the layout as `safety` is.
  ratings: rrm_ratings.RatingState | None = None


class RunKeys(NamedTuple):
  """The seed's three streams (see the module docstring)."""
  init: jax.Array
  run: jax.Array
  eval: jax.Array


class InitKeys(NamedTuple):
  env: jax.Array
  policy: jax.Array
  reward: jax.Array
  rollout: jax.Array
  pool: jax.Array
  ask: jax.Array
  fit: jax.Array


class IterationKeys(NamedTuple):
  rollout: jax.Array
  ppo: jax.Array
  pool: jax.Array
  ask: jax.Array
  fit: jax.Array


def as_typed_key(key: jax.Array) -> jax.Array:
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return jax.random.wrap_key_data(key)


def split_seed(seed_key: jax.Array) -> RunKeys:
  return RunKeys(*jax.random.split(as_typed_key(seed_key), 3))


def init_keys(key: jax.Array) -> InitKeys:
  """`RunKeys.init`'s splits, as raw uint32 keys (brax takes raw keys)."""
  return InitKeys(*jax.random.split(jax.random.key_data(key), 7))


def iteration_keys(run_key: jax.Array, iteration: jax.Array) -> IterationKeys:
  key = jax.random.key_data(jax.random.fold_in(run_key, iteration))
  return IterationKeys(*jax.random.split(key, 5))


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(key for `init`, key whose fold_in(., iteration) seeds evaluations)."""
  seed_key = jax.random.key(seed)
  return seed_key, split_seed(seed_key).eval
