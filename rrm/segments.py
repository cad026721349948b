"""Cutting rollouts into fixed-length segments, and the segment pool.

A segment is L consecutive transitions of one env, within one episode. The
pool is a fixed-size ring buffer of recent segments (with their hidden true
rewards) that queries draw pairs from; its shapes never change.
"""

from __future__ import annotations

from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp


class Segments(NamedTuple):
  """Segments of L steps; leading batch dims `[...]` are the caller's."""
  observation: jax.Array  # [..., L, obs_size]
  action: jax.Array  # [..., L, action_size]
  next_observation: jax.Array  # [..., L, obs_size] outcome, before any reset
  true_reward: jax.Array  # [..., L]  hidden from the learner


def zeros(batch: int, length: int, obs_size: int, action_size: int) -> Segments:
  return Segments(
      observation=jnp.zeros((batch, length, obs_size)),
      action=jnp.zeros((batch, length, action_size)),
      next_observation=jnp.zeros((batch, length, obs_size)),
      true_reward=jnp.zeros((batch, length)))


def cut(observation: jax.Array, action: jax.Array, next_observation: jax.Array,
        true_reward: jax.Array, episode_end: jax.Array,
        length: int) -> tuple[Segments, jax.Array]:
  """Cuts a time-major rollout into non-overlapping segments.

  Args:
    observation: [T, B, obs_size].
    action: [T, B, action_size].
    next_observation: [T, B, obs_size].
    true_reward: [T, B].
    episode_end: [T, B], 1 where transition t is the last of its episode.
    length: L; the trailing T mod L steps are dropped.

  Returns:
    Segments with leading dim [(T // L) * B] (segment-major within each env
    slot: index k * B + b is the k-th segment of env b), and a [(T // L) * B]
    bool mask, true where the segment lies inside one episode (no episode ends
    before its last step).
  """
  split = lambda x: split_time(x, length)
  segments = Segments(split(observation), split(action),
                      split(next_observation), split(true_reward))
  ends = split(episode_end)  # [k * B, L]
  valid = jnp.all(ends[:, :-1] == 0, axis=-1)
  return segments, valid


def split_time(x: jax.Array, length: int) -> jax.Array:
  """[T, B, ...] -> [(T // L) * B, L, ...], as `cut` lays segments out."""
  t, b = x.shape[:2]
  k = t // length
  x = x[:k * length].reshape((k, length, b) + x.shape[2:])
  x = jnp.swapaxes(x, 1, 2)  # [k, B, L, ...]
  return x.reshape((k * b, length) + x.shape[3:])


@flax.struct.dataclass
class SegmentPool:
  """Ring buffer of the most recent segments."""
  segments: Segments  # [P, L, ...]
  valid: jax.Array  # [P] bool: slot holds a real segment
  cursor: jax.Array  # int32 scalar: next slot to write
  # [P, L, K] hidden per-step reward components of the segments: the aspects
  # a task tree's leaves name (rrm.recursive); K = 0 without a tree.
  aspects: jax.Array

  @property
  def size(self) -> int:
    return self.valid.shape[0]


def init_pool(size: int, length: int, obs_size: int,
              action_size: int, num_aspects: int = 0) -> SegmentPool:
  return SegmentPool(segments=zeros(size, length, obs_size, action_size),
                     valid=jnp.zeros((size,), bool),
                     cursor=jnp.zeros((), jnp.int32),
                     aspects=jnp.zeros((size, length, num_aspects)))


def add(pool: SegmentPool, segments: Segments, valid: jax.Array, num: int,
        key: jax.Array, aspects: jax.Array | None = None) -> SegmentPool:
  """Writes `num` randomly chosen valid segments into the pool.

  Args:
    pool: the pool.
    segments: candidate segments, leading dim [S].
    valid: [S] bool; invalid candidates are chosen only when fewer than `num`
      are valid, and then written as invalid slots.
    num: static number of segments to write (<= S, <= pool size).
    key: PRNG key for the choice.
    aspects: [S, L, K] the candidates' reward components (a pool with K > 0
      needs them).

  Returns:
    The pool with slots [cursor, cursor + num) mod P overwritten.
  """
  # Random priority, valid candidates first: top_k picks `num` of them
  # uniformly without replacement.
  priority = jax.random.uniform(key, valid.shape) + valid.astype(jnp.float32)
  _, chosen = jax.lax.top_k(priority, num)
  slots = (pool.cursor + jnp.arange(num)) % pool.size
  new_segments = jax.tree.map(lambda p, s: p.at[slots].set(s[chosen]),
                              pool.segments, segments)
  new_aspects = pool.aspects
  if pool.aspects.shape[-1]:
    if aspects is None:
      raise ValueError("this pool keeps reward components (aspects); pass "
                       "the candidates' aspects")
    new_aspects = pool.aspects.at[slots].set(aspects[chosen])
  return pool.replace(segments=new_segments, aspects=new_aspects,
                      valid=pool.valid.at[slots].set(valid[chosen]),
                      cursor=(pool.cursor + num) % pool.size)
