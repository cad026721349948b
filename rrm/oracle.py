"""Synthetic teachers: label segment pairs from their hidden true rewards.

A teacher stands in for the human. The suite is B-Pref's (Lee et al. 2021,
"B-Pref: Benchmarking Preference-Based Reinforcement Learning"), as one pure
function of a parameter pytree, so one program can vmap over teachers. Label
convention throughout rrm, as in B-Pref: label 1 = second segment preferred,
0 = first, 0.5 = equally good.

For segments with per-step true rewards r^1, r^2 (length H), returns
R_i = sum_t r^i_t, and a reference return R_ref (see below):

  skip     if skip > 0 and max(R_1, R_2) < skip * R_ref  -> no label (the
           query still costs budget: the user was asked)
  equal    if |R_1 - R_2| < equal * R_ref, or R_1 == R_2   -> label 0.5
  else     myopic returns R^g_i = sum_{k=1..H} gamma^(H-k) r^i_k (latest step
           weight 1); P(2 preferred) = sigmoid(beta (R^g_2 - R^g_1)),
           beta = inf meaning argmax; label ~ Bernoulli(P); then a mistake
           flips it with probability `mistake`.

Presets (B-Pref's values): oracle (beta inf), stoch (beta 1), mistake
(mistake 0.1), skip (skip 0.1), equal (equal 0.1), myopic (gamma 0.9).

Thresholds. B-Pref sets them relative to the average true return of recent
training episodes scaled to segment length (`margin = mean episode return *
segment / max_episode_steps`, threshold = eps * margin). rrm uses the mean
true return of the valid segments in the query pool -- recent segments of
the same length, the same quantity measured directly -- and takes its
magnitude, so that envs with negative returns (failure penalties) keep a
non-negative equal threshold. Where B-Pref's code differs: after its first
update it calls `set_teacher_thres_skip(margin * eps_skip)`, and that setter
multiplies by eps again, so later thresholds are eps^2 * margin (same for
equal). rrm applies eps once, throughout.

Two more differences from B-Pref's code, both deliberate: an exact tie is
labelled 0.5 even with `equal = 0` (B-Pref's argmax labels ties 0, "first
preferred", which teaches a spurious preference when many segments share a
return, e.g. all-fallen pendulum segments); and the equal test uses the
undiscounted returns, as B-Pref does, while the preference uses the myopic
ones.

imitation's convention (`imitation.algorithms.preference_comparisons.
SyntheticGatherer`): discount_factor weights step k by discount^k (a forward
discount, earliest step weight 1) and temperature T gives
P = sigmoid((R^d_2 - R^d_1) / T). `make_teacher(..., forward_discount=True)`
uses the forward weights; beta = 1 / T.

Functions here handle one pair; callers vmap.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TeacherParams:
  beta: jax.Array  # [] rationality; inf = perfect (argmax) teacher
  gamma: jax.Array  # [] myopic discount; 1 = none
  mistake: jax.Array  # [] probability of flipping a decided label
  skip: jax.Array  # [] skip threshold, a fraction of the reference return
  equal: jax.Array  # [] equal threshold, a fraction of the reference return
  forward_discount: jax.Array  # [] bool; True: imitation's gamma^k weights


PRESETS = {
    "oracle": {},
    "stoch": {"beta": 1.0},
    "mistake": {"mistake": 0.1},
    "skip": {"skip": 0.1},
    "equal": {"equal": 0.1},
    "myopic": {"gamma": 0.9},
}


def make_teacher(beta: float = float("inf"), gamma: float = 1.0,
                 mistake: float = 0.0, skip: float = 0.0, equal: float = 0.0,
                 forward_discount: bool = False) -> TeacherParams:
  f = lambda x: jnp.asarray(x, jnp.float32)
  return TeacherParams(beta=f(beta), gamma=f(gamma), mistake=f(mistake),
                       skip=f(skip), equal=f(equal),
                       forward_discount=jnp.asarray(forward_discount, bool))


def preset(name: str, **overrides) -> TeacherParams:
  """A B-Pref teacher by name, with optional field overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown teacher {name!r}; known: {', '.join(PRESETS)}")
  return make_teacher(**{**PRESETS[name], **overrides})


def step_weights(params: TeacherParams, length: int) -> jax.Array:
  """[H] weights of the myopic return: gamma^(H-k), latest step weight 1."""
  k = jnp.arange(length, dtype=jnp.float32)
  backward = params.gamma ** (length - 1 - k)
  forward = params.gamma ** k
  return jnp.where(params.forward_discount, forward, backward)


def preference_probability(params: TeacherParams, return_1: jax.Array,
                           return_2: jax.Array) -> jax.Array:
  """P(segment 2 preferred) from (myopic) returns, before mistakes."""
  delta = return_2 - return_1
  perfect = jnp.where(delta > 0, 1.0, jnp.where(delta < 0, 0.0, 0.5))
  # Where beta is inf, beta * delta would be nan at delta == 0: guard it.
  finite_beta = jnp.where(jnp.isinf(params.beta), 1.0, params.beta)
  return jnp.where(jnp.isinf(params.beta), perfect,
                   jax.nn.sigmoid(finite_beta * delta))


def label_pair(params: TeacherParams, reward_1: jax.Array, reward_2: jax.Array,
               key: jax.Array,
               reference: jax.Array | float = 1.0) -> tuple[jax.Array,
                                                            jax.Array]:
  """Labels one segment pair.

  Args:
    params: the teacher.
    reward_1: [H] hidden true per-step rewards of segment 1.
    reward_2: [H] same for segment 2.
    key: PRNG key for the teacher's randomness.
    reference: [] reference return R_ref the skip and equal thresholds are
      fractions of (the trainer passes the pool's mean segment return).

  Returns:
    (label, skipped): [] float label in {0, 0.5, 1} (1: segment 2
    preferred; meaningless where skipped) and [] bool.
  """
  key_pref, key_mistake = jax.random.split(key)
  ref = jnp.abs(jnp.asarray(reference, jnp.float32))
  r1, r2 = jnp.sum(reward_1), jnp.sum(reward_2)
  # skip = 0 never skips (as B-Pref: the test applies only when its
  # threshold is positive), whatever the sign of the returns.
  skipped = (params.skip > 0) & (jnp.maximum(r1, r2) < params.skip * ref)
  equal = (jnp.abs(r2 - r1) < params.equal * ref) | (r1 == r2)
  w = step_weights(params, reward_1.shape[-1])
  p = preference_probability(params, jnp.sum(w * reward_1),
                             jnp.sum(w * reward_2))
  sampled = jax.random.bernoulli(key_pref, p).astype(jnp.float32)
  decided = jnp.where(p == 0.5, 0.5, sampled)
  flip = jax.random.bernoulli(key_mistake, params.mistake)
  decided = jnp.where(flip & (decided != 0.5), 1.0 - decided, decided)
  return jnp.where(equal, 0.5, decided), skipped
