"""Synthetic teachers: label segment pairs from their hidden true rewards.

A teacher stands in for the human. It sees the true per-step rewards of two
segments, computes their returns R_1 and R_2 and answers with the probability
that segment 2 is preferred (the label convention throughout rrm, as in
B-Pref: label 1 = second segment preferred, 0 = first, 0.5 = equally good):

  equal   if |R_2 - R_1| <= equal_threshold         -> label 0.5
  else    P(2 > 1) = sigmoid(beta (R_2 - R_1))      -> label ~ Bernoulli(P)
          beta = inf is the perfect (argmax) teacher.

Exact ties are labelled 0.5 even with `equal_threshold = 0` (B-Pref's code
labels them 0, "first preferred", which teaches a spurious preference when many
segments share a return, e.g. all-fallen pendulum segments).

Teacher parameters are a pytree of arrays, so one program can vmap over
teachers. Functions here handle one pair; callers vmap.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TeacherParams:
  beta: jax.Array  # [] rationality; inf = perfect teacher
  equal_threshold: jax.Array  # [] |R_2 - R_1| at or below which label = 0.5


def make_teacher(beta: float = float("inf"),
                 equal_threshold: float = 0.0) -> TeacherParams:
  return TeacherParams(beta=jnp.asarray(beta, jnp.float32),
                       equal_threshold=jnp.asarray(equal_threshold,
                                                   jnp.float32))


def preference_probability(params: TeacherParams, return_1: jax.Array,
                           return_2: jax.Array) -> jax.Array:
  """P(segment 2 preferred) for returns R_1, R_2 (any equal shapes)."""
  delta = return_2 - return_1
  perfect = jnp.where(delta > 0, 1.0, jnp.where(delta < 0, 0.0, 0.5))
  # Where beta is inf, beta * delta would be nan at delta == 0: guard it.
  finite_beta = jnp.where(jnp.isinf(params.beta), 1.0, params.beta)
  boltzmann = jax.nn.sigmoid(finite_beta * delta)
  p = jnp.where(jnp.isinf(params.beta), perfect, boltzmann)
  return jnp.where(jnp.abs(delta) <= params.equal_threshold, 0.5, p)


def label_pair(params: TeacherParams, reward_1: jax.Array, reward_2: jax.Array,
               key: jax.Array) -> jax.Array:
  """Labels one segment pair.

  Args:
    params: the teacher.
    reward_1: [L] hidden true per-step rewards of segment 1.
    reward_2: [L] same for segment 2.
    key: PRNG key for the teacher's randomness.

  Returns:
    [] float label in {0, 0.5, 1}: 1 when segment 2 is preferred.
  """
  p = preference_probability(params, jnp.sum(reward_1), jnp.sum(reward_2))
  sampled = jax.random.bernoulli(key, p).astype(jnp.float32)
  return jnp.where(p == 0.5, 0.5, sampled)
