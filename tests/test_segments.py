"""Cutting rollouts into segments, and the segment pool (rrm.segments).

tests/test_feedback.py already checks one episode end inside a segment and
the pool's preference for valid candidates; these check the layout of every
field, the dropped tail, ends on a segment's first step, the episode
property on random end patterns, and which segments a full ring holds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import segments

T, B, L, OBS, ACT = 7, 2, 3, 2, 1
# Jitted: one compile per shape is quicker on the CPU than dispatching each
# op eagerly (each eager op compiles on its own).
_cut = jax.jit(segments.cut, static_argnames="length")
_add = jax.jit(segments.add, static_argnames="num")


def _rollout(episode_end):
  """A [T, B] rollout whose every entry says where it came from.

  observation[t, b] = [100 t + b, 100 t + b + .5], next_observation is
  observation + 1000 (so a field swapped with another is caught), action
  [t, b] = -(100 t + b) and true_reward[t, b] = 100 t + b.
  """
  tb = (100 * jnp.arange(T)[:, None] + jnp.arange(B)[None, :]).astype(
      jnp.float32)
  obs = jnp.stack([tb, tb + 0.5], axis=-1)
  return dict(observation=obs, action=-tb[..., None],
              next_observation=obs + 1000.0, true_reward=tb,
              episode_end=jnp.asarray(episode_end, jnp.float32))


def _ends(*steps):
  end = np.zeros((T, B), np.float32)
  for t, b in steps:
    end[t, b] = 1.0
  return end


def test_cut_lays_out_every_field_and_drops_the_tail():
  r = _rollout(_ends())
  segs, valid = jax.device_get(_cut(**r, length=L))
  r = jax.device_get(r)  # numpy: slicing below dispatches no jax ops
  # T = 7, L = 3: two segments per env (steps 0-2, 3-5); step 6 is dropped.
  assert segs.observation.shape == (2 * B, L, OBS)
  assert segs.action.shape == (2 * B, L, ACT)
  assert segs.next_observation.shape == (2 * B, L, OBS)
  assert segs.true_reward.shape == (2 * B, L)
  assert valid.shape == (2 * B,) and valid.dtype == np.bool_
  for k in range(2):
    for b in range(B):
      i, steps = k * B + b, slice(k * L, (k + 1) * L)
      np.testing.assert_array_equal(segs.observation[i],
                                    r["observation"][steps, b])
      np.testing.assert_array_equal(segs.action[i], r["action"][steps, b])
      np.testing.assert_array_equal(segs.next_observation[i],
                                    r["next_observation"][steps, b])
      np.testing.assert_array_equal(segs.true_reward[i],
                                    r["true_reward"][steps, b])
  assert 600.0 not in np.asarray(segs.true_reward)  # step 6 of env 0
  np.testing.assert_array_equal(valid, [True] * (2 * B))  # no episode ends


def test_cut_valid_segments_lie_inside_one_episode():
  # Ends (t, b): (0, 0) first step of env 0's segment 0; (5, 0) last step of
  # its segment 1; (3, 1) first step of env 1's segment 1; (4, 1) and (5, 1)
  # too; (6, 1) in the dropped tail.
  # Segment k * B + b covers steps [3k, 3k + 3) of env b, valid iff no end
  # among its first L - 1 = 2 steps:
  #   0 = (k0, env 0), steps 0-2, end at 0        -> invalid
  #   1 = (k0, env 1), steps 0-2, no end          -> valid
  #   2 = (k1, env 0), steps 3-5, end at 5 (last) -> valid
  #   3 = (k1, env 1), steps 3-5, ends at 3, 4, 5 -> invalid
  r = _rollout(_ends((0, 0), (5, 0), (3, 1), (4, 1), (5, 1), (6, 1)))
  _, valid = _cut(**r, length=L)
  np.testing.assert_array_equal(valid, [False, True, True, False])
  # Length 1: every step is its own episode-safe segment, ends or not.
  _, valid1 = _cut(**r, length=1)
  assert valid1.shape == (T * B,) and bool(jnp.all(valid1))


@pytest.mark.parametrize("seed", range(4))
def test_cut_never_crosses_an_episode_boundary_on_random_ends(seed):
  # Reference: episode id of step t = number of ends strictly before t. A
  # segment is episode-pure iff all its steps share one id; cut's mask must
  # be exactly that.
  t, b, length = 12, 3, 4
  rng = np.random.default_rng(seed)
  end = (rng.uniform(size=(t, b)) < 0.2).astype(np.float32)
  episode = np.cumsum(end, axis=0) - end  # [T, B]
  obs = jnp.asarray(episode)[..., None]
  segs, valid = _cut(obs, obs, obs, jnp.asarray(episode),
                      jnp.asarray(end), length=length)
  expected = [len(set(episode[k * length:(k + 1) * length, e])) == 1
              for k in range(t // length) for e in range(b)]
  np.testing.assert_array_equal(valid, expected)
  ids = np.asarray(segs.true_reward)[np.asarray(valid)]
  assert np.all(ids == ids[:, :1])  # valid segments: one episode each


def test_split_time_matches_cut_layout():
  x = jnp.arange(T * B, dtype=jnp.float32).reshape(T, B)
  np.testing.assert_array_equal(
      segments.split_time(x, L),
      segments.cut(x[..., None], x[..., None], x[..., None], x, x * 0, L)[
          0].true_reward)


def _candidates(call, n=3, length=2):
  """n valid candidates of call `call`; candidate i carries id 10 call + i

  in every field (observation, action, next_observation offset so that all
  fields must come from the same candidate)."""
  ids = 10.0 * call + jnp.arange(n, dtype=jnp.float32)
  full = lambda width, offset: jnp.broadcast_to(
      (ids + offset)[:, None, None], (n, length, width))
  return segments.Segments(
      observation=full(OBS, 0.0), action=full(ACT, 0.25),
      next_observation=full(OBS, 0.5),
      true_reward=jnp.broadcast_to(ids[:, None], (n, length)))


def _ids(pool):
  return np.asarray(pool.segments.true_reward[:, 0])


def test_pool_keeps_shapes_and_holds_the_newest_segments():
  pool = segments.init_pool(size=4, length=2, obs_size=OBS, action_size=ACT)
  shapes = jax.tree.map(lambda x: (x.shape, x.dtype), pool)
  assert not bool(jnp.any(pool.valid)) and int(pool.cursor) == 0
  add = jax.jit(segments.add, static_argnames="num")  # own compile count
  valid = jnp.ones(3, bool)
  # Three adds of three segments into four slots:
  #   call 1 writes slots 0, 1, 2 (cursor 0 -> 3),
  #   call 2 writes slots 3, 0, 1 (cursor 3 -> 2),
  #   call 3 writes slots 2, 3, 0 (cursor 2 -> 1):
  # the pool ends up with call 3's three segments (slots 0, 2, 3) and the
  # newest one left of call 2 (slot 1), whatever order each call drew.
  written = {}
  for call, cursor in ((1, 3), (2, 2), (3, 1)):
    pool = add(pool, _candidates(call), valid, num=3,
               key=jax.random.PRNGKey(call))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), pool) == shapes
    assert int(pool.cursor) == cursor
    written[call] = _ids(pool)
  assert add._cache_size() == 1  # fixed shapes: one compile for all calls
  assert sorted(written[1][:3]) == [10, 11, 12]
  assert sorted(written[2][[3, 0, 1]]) == [20, 21, 22]
  assert written[2][2] == written[1][2]  # slot 2 untouched by call 2
  ids = written[3]
  assert sorted(ids[[2, 3, 0]]) == [30, 31, 32]
  assert ids[1] == written[2][1] and 20 <= ids[1] <= 22
  assert bool(jnp.all(pool.valid))
  # Every field of a slot comes from the same candidate.
  seg = pool.segments
  np.testing.assert_array_equal(seg.observation, np.broadcast_to(
      ids[:, None, None], (4, 2, OBS)))
  np.testing.assert_array_equal(seg.action, np.broadcast_to(
      ids[:, None, None] + 0.25, (4, 2, ACT)))
  np.testing.assert_array_equal(seg.next_observation, np.broadcast_to(
      ids[:, None, None] + 0.5, (4, 2, OBS)))


def test_pool_add_is_a_function_of_its_key():
  pool = segments.init_pool(size=3, length=2, obs_size=OBS, action_size=ACT)
  cands, valid = _candidates(0), jnp.ones(3, bool)
  order = lambda k: tuple(_ids(_add(pool, cands, valid, num=3,
                                   key=jax.random.PRNGKey(k))))
  assert order(0) == order(0)
  # Every draw is a permutation of the three candidates, and the key picks
  # which (3! orders; ten keys must not all agree).
  orders = {order(k) for k in range(10)}
  assert all(sorted(o) == [0, 1, 2] for o in orders)
  assert len(orders) > 1


def test_pool_with_aspects_writes_them_beside_their_segments():
  pool = segments.init_pool(size=4, length=2, obs_size=OBS, action_size=ACT,
                            num_aspects=2)
  assert pool.aspects.shape == (4, 2, 2)
  cands = _candidates(1)
  aspects = jnp.broadcast_to(cands.true_reward[..., None] * jnp.array(
      [1.0, -1.0]), (3, 2, 2))
  pool = _add(pool, cands, jnp.ones(3, bool), num=3,
               key=jax.random.PRNGKey(0), aspects=aspects)
  assert pool.aspects.shape == (4, 2, 2)
  written = jax.device_get(pool)
  np.testing.assert_array_equal(written.aspects[:3, :, 0],
                                written.segments.true_reward[:3])
  np.testing.assert_array_equal(written.aspects[:3, :, 1],
                                -written.segments.true_reward[:3])
  np.testing.assert_array_equal(written.aspects[3], 0.0)  # slot not written
  with pytest.raises(ValueError, match="pass the candidates' aspects"):
    _add(pool, cands, jnp.ones(3, bool), num=3, key=jax.random.PRNGKey(0))
