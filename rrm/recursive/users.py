"""The users of recursive reward modeling, one implementation each.

* **Limited** (`limited_label`): judging a whole outcome unassisted, the user
  perceives only some aspects (`visible`), and their rationality drops with
  the number n of aspects they weigh at once (beta / n^decay).
* **Assisted** (`assisted_label`): they combine their helpers' assessments of
  the node's children with their weights.
* **Full view** (`full_view_label`): every aspect, weighted: the true reward.

Each user is what they perceive (`*_values`: per-step values of a segment,
or of a whole pool at once) and the B-Pref teacher they answer with
(`limited_teacher`), then `oracle.label_pair`. The trainer perceives the
whole pool at once through the same functions (`root_perceived`).
"""

from __future__ import annotations

from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrm import oracle as rrm_oracle
from rrm.recursive import plan as rrm_plan


@flax.struct.dataclass
class LimitedUser:
  """What the unassisted user perceives of a whole outcome.

  visible: [K] 1.0 for the aspects they perceive, 0.0 for those they miss.
  decay:   [] rationality falls with the number n of aspects weighed at
           once: beta_eff = beta / n^decay (0: no effect).
  """
  visible: jax.Array
  decay: jax.Array


def make_limited_user(aspects: Sequence[str], visible: Sequence[str],
                      decay: float = 0.0) -> LimitedUser:
  return LimitedUser(
      visible=jnp.asarray(rrm_plan.visible_mask(aspects, visible)),
      decay=jnp.asarray(decay, jnp.float32))


def combined(weights: jax.Array, per_step: jax.Array) -> jax.Array:
  """[..., L, K] per-step aspects, [K] weights -> [..., L] combined reward."""
  return per_step @ weights


def limited_weights(weights: jax.Array | np.ndarray,
                    visible: jax.Array | np.ndarray):
  """The weights the limited user applies: the task's, on what they see."""
  return weights * visible


def limited_teacher(teacher: rrm_oracle.TeacherParams,
                    seen: jax.Array | np.ndarray,
                    decay: jax.Array | float) -> rrm_oracle.TeacherParams:
  """The limited user's teacher: rationality beta / n^decay, n the number of
  aspects they weigh at once (those with a non-zero weight in `seen`).

  With static `seen` and `decay` (a run's plan: numpy and a float), n and
  n^decay are computed on the host in float64; traced ones in float32.
  """
  if isinstance(seen, np.ndarray) and isinstance(decay, (int, float)):
    n = max(int(np.sum(seen != 0)), 1)
  else:
    n = jnp.maximum(jnp.sum((seen != 0).astype(jnp.float32)), 1.0)
  return teacher.replace(beta=teacher.beta / n ** decay)


def limited_label(teacher: rrm_oracle.TeacherParams, user: LimitedUser,
                  weights: jax.Array, aspects_1: jax.Array,
                  aspects_2: jax.Array, key: jax.Array,
                  reference: jax.Array | float = 1.0
                  ) -> tuple[jax.Array, jax.Array]:
  """The unassisted user's label of a pair of whole-task segments.

  They combine only the aspects they perceive (`limited_weights`), with
  the rationality of `limited_teacher`; then B-Pref's teacher (skip, equal,
  myopia, mistakes) as `oracle.label_pair`.

  Args:
    teacher: the user's B-Pref teacher.
    user: what they perceive.
    weights: [K] the task's weights over leaf aspects (`node_weights`).
    aspects_1: [L, K] per-step aspects of segment 1.
    aspects_2: [L, K] same for segment 2.
    key: PRNG key.
    reference: reference return for the skip/equal thresholds.

  Returns:
    (label, skipped) as `oracle.label_pair`.
  """
  seen = limited_weights(weights, user.visible)
  return rrm_oracle.label_pair(limited_teacher(teacher, seen, user.decay),
                               combined(seen, aspects_1),
                               combined(seen, aspects_2), key, reference)


def assisted_values(root_combine: jax.Array | np.ndarray,
                    assessed: jax.Array) -> jax.Array:
  """[..., L] what the assisted user compares: the children's assessments
  [C, ..., L] combined with their weights [C]."""
  return jnp.einsum("h,h...l->...l", root_combine, assessed)


def assisted_label(teacher: rrm_oracle.TeacherParams, weights: jax.Array,
                   assessments_1: jax.Array, assessments_2: jax.Array,
                   key: jax.Array, reference: jax.Array | float = 1.0
                   ) -> tuple[jax.Array, jax.Array]:
  """The assisted user's label: helpers' assessments, combined, then noise.

  Args:
    teacher: the user's B-Pref teacher.
    weights: [C] the user's weights over the node's children.
    assessments_1: [L, C] per-step rewards of segment 1 as each child's
      helper assesses them (a helper's reward model; for a leaf child with a
      perfect helper, the true aspect).
    assessments_2: [L, C] same for segment 2.
    key: PRNG key.
    reference: reference return for the skip/equal thresholds.
  """
  return rrm_oracle.label_pair(teacher, combined(weights, assessments_1),
                               combined(weights, assessments_2), key,
                               reference)


def full_view_label(teacher: rrm_oracle.TeacherParams, weights: jax.Array,
                    aspects_1: jax.Array, aspects_2: jax.Array,
                    key: jax.Array, reference: jax.Array | float = 1.0
                    ) -> tuple[jax.Array, jax.Array]:
  """The upper bound: a teacher that sees every aspect (the true reward)."""
  return rrm_oracle.label_pair(teacher, combined(weights, aspects_1),
                               combined(weights, aspects_2), key, reference)


def root_perceived(plan: rrm_plan.Plan, aspects: jax.Array,
                   assessed: jax.Array | None,
                   teacher: rrm_oracle.TeacherParams
                   ) -> tuple[jax.Array, rrm_oracle.TeacherParams]:
  """[P, L] per-step values the root's user compares of the pool [P, L, K],
  and the teacher they answer with: the users above, on a whole pool.

  full_view: the true reward (every aspect, weighted); limited: only the
  visible aspects, with rationality beta / n^decay; assisted: the root's
  children's assessments [H, P, L], combined with the user's weights.
  """
  if plan.user == "assisted":
    return assisted_values(plan.root_combine, assessed), teacher
  if plan.user == "limited":
    seen = limited_weights(plan.root_weights, plan.visible)
    return combined(jnp.asarray(seen), aspects), limited_teacher(
        teacher, seen, plan.decay)
  return combined(jnp.asarray(plan.root_weights), aspects), teacher
