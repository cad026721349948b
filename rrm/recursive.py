"""Recursive reward modeling: task trees, the limited user, the assisted user.

Leike et al. (2018), "Recursive reward modeling": when the user cannot
evaluate a task's outcomes directly, agents trained by reward modeling on
simpler tasks help them evaluate. Here:

* **Task tree.** A task is a node; its outcome is judged by combining its
  children's assessments with weights the user knows. Leaves are directly
  evaluable aspects of an outcome: for locomotion envs the reward components
  the simulator exposes (`reward_forward`, `reward_ctrl`, `reward_healthy`,
  ...). A node's per-step value is the weighted sum of its children's, so
  every node is a linear function of the leaf aspects, `node = W[node] @
  aspects`; the root's must be the env's reward (`check_root_matches_reward`
  measures it on a rollout). Any depth >= 2.
* **Limited user** (`LimitedUser`): judging a whole outcome unassisted, the
  user perceives only some aspects (`visible`), and their rationality drops
  with the number of aspects they weigh at once (beta / n^decay). Judging a
  single leaf aspect, they are any B-Pref teacher (rrm.oracle).
* **Assisted user** (`assisted_label`): when comparing two segments of a
  node's task, they receive each child's helper assessment of both segments
  (per-step rewards predicted by the child's reward model), combine them
  with their weights, and answer with their B-Pref noise. With perfect
  helpers that is exactly the full-view teacher (tested).
* **One budget**: `split_budget` divides the label budget between the levels
  of the tree by fixed fractions (largest remainder: the parts sum to the
  budget exactly), and a level's part equally between its nodes.

Everything here is pure and jittable; the vmapped-over-pairs callers pass
one pair at a time, as rrm.oracle does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrm import oracle as rrm_oracle


class TreeError(ValueError):
  """A task tree is malformed or does not fit the env."""


@dataclasses.dataclass(frozen=True)
class TaskNode:
  """A task. Leaves name an env reward component (`aspect`)."""
  name: str
  weight: float = 1.0  # this node's weight in its parent's combination
  aspect: str | None = None
  children: tuple["TaskNode", ...] = ()

  @property
  def is_leaf(self) -> bool:
    return not self.children


def parse_tree(spec: Mapping[str, Any], where: str = "tree") -> TaskNode:
  """Builds a tree from nested dicts (a config's `recursive.tree`).

  A node is {"name", "weight" (default 1), and either "aspect" (a leaf) or
  "children" (a list of nodes)}. Raises TreeError naming the bad node.
  """
  if not isinstance(spec, Mapping):
    raise TreeError(f"{where}: a node must be a dict, got {spec!r}")
  name = spec.get("name")
  if not isinstance(name, str) or not name:
    raise TreeError(f"{where}: every node needs a non-empty 'name'")
  where = f"{where} node {name!r}"
  unknown = set(spec) - {"name", "weight", "aspect", "children"}
  if unknown:
    raise TreeError(f"{where}: unknown keys {sorted(unknown)}")
  weight = spec.get("weight", 1.0)
  if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
      np.isfinite(weight)):
    raise TreeError(f"{where}: weight {weight!r} must be a finite number")
  aspect, children = spec.get("aspect"), spec.get("children") or ()
  if (aspect is None) == (not children):
    raise TreeError(f"{where}: a node has either an 'aspect' (a leaf) or "
                    "'children', not both and not neither")
  node = TaskNode(name=name, weight=float(weight), aspect=aspect,
                  children=tuple(parse_tree(c, where) for c in children))
  return node


def nodes(tree: TaskNode) -> list[TaskNode]:
  """Every node, parents before children (depth-first)."""
  out = [tree]
  for c in tree.children:
    out += nodes(c)
  return out


def leaves(tree: TaskNode) -> list[TaskNode]:
  return [n for n in nodes(tree) if n.is_leaf]


def depth(tree: TaskNode) -> int:
  """Levels: a root with leaf children has depth 2."""
  return 1 + max((depth(c) for c in tree.children), default=0)


def levels(tree: TaskNode) -> list[list[TaskNode]]:
  """Nodes by distance from the root: [[root], [its children], ...]."""
  out, frontier = [], [tree]
  while frontier:
    out.append(frontier)
    frontier = [c for n in frontier for c in n.children]
  return out


def validate(tree: TaskNode, available_aspects: Sequence[str]) -> None:
  """Depth >= 2, unique names, leaves name available aspects, each once."""
  if depth(tree) < 2:
    raise TreeError("a task tree needs depth >= 2: a root with children")
  names = [n.name for n in nodes(tree)]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise TreeError(f"node names must be unique; repeated: {dup}")
  aspects = [n.aspect for n in leaves(tree)]
  dup = sorted({a for a in aspects if aspects.count(a) > 1})
  if dup:
    raise TreeError(f"each aspect may be one leaf only; repeated: {dup}")
  missing = [a for a in aspects if a not in available_aspects]
  if missing:
    raise TreeError(f"aspects {missing} are not reward components of the env; "
                    f"it has {sorted(available_aspects)}")


def aspect_names(tree: TaskNode) -> tuple[str, ...]:
  """The leaves' aspects, in the order of the aspect axis [K]."""
  return tuple(n.aspect for n in leaves(tree))


def node_weights(tree: TaskNode) -> dict[str, np.ndarray]:
  """name -> [K] weights of the leaf aspects in that node's value.

  A node's value is the weighted sum of its children's; unrolled, the
  product of the weights on the path from the node down to each leaf.
  """
  index = {a: k for k, a in enumerate(aspect_names(tree))}
  k = len(index)
  out: dict[str, np.ndarray] = {}

  def visit(node: TaskNode) -> np.ndarray:
    if node.is_leaf:
      w = np.zeros(k, np.float32)
      w[index[node.aspect]] = 1.0
    else:
      w = sum(c.weight * visit(c) for c in node.children)
    out[node.name] = np.asarray(w, np.float32)
    return out[node.name]

  visit(tree)
  return out


def check_root_matches_reward(tree: TaskNode, aspects: np.ndarray,
                              reward: np.ndarray, atol: float = 1e-4) -> None:
  """Raises TreeError unless W[root] @ aspects equals the env's reward.

  Args:
    tree: the tree.
    aspects: [..., K] per-step leaf aspects of a rollout.
    reward: [...] the env's per-step reward of the same rollout.
    atol: absolute tolerance (float32 sums).
  """
  w = node_weights(tree)[tree.name]
  root = np.asarray(aspects) @ w
  err = np.max(np.abs(root - np.asarray(reward)))
  if not err <= atol:
    raise TreeError(
        f"the root of the task tree does not reproduce the env's reward: "
        f"max |sum of weighted aspects - reward| = {err:.3g} on a rollout "
        f"(weights over {list(aspect_names(tree))}: {w.tolist()})")


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
  unknown = [a for a in visible if a not in aspects]
  if unknown:
    raise TreeError(f"visible aspects {unknown} are not in the tree's "
                    f"aspects {list(aspects)}")
  if not visible:
    raise TreeError("the limited user must perceive at least one aspect")
  return LimitedUser(
      visible=jnp.asarray([a in visible for a in aspects], jnp.float32),
      decay=jnp.asarray(decay, jnp.float32))


def _combined(weights: jax.Array, per_step: jax.Array) -> jax.Array:
  """[L, K] per-step aspects, [K] weights -> [L] per-step combined reward."""
  return per_step @ weights


def limited_label(teacher: rrm_oracle.TeacherParams, user: LimitedUser,
                  weights: jax.Array, aspects_1: jax.Array,
                  aspects_2: jax.Array, key: jax.Array,
                  reference: jax.Array | float = 1.0
                  ) -> tuple[jax.Array, jax.Array]:
  """The unassisted user's label of a pair of whole-task segments.

  They combine only the aspects they perceive (weights * visible), and with
  n of them to weigh their rationality is beta / n^decay; then B-Pref's
  teacher (skip, equal, myopia, mistakes) as `oracle.label_pair`.

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
  seen = weights * user.visible
  n = jnp.maximum(jnp.sum((seen != 0).astype(jnp.float32)), 1.0)
  beta = teacher.beta / n ** user.decay
  return rrm_oracle.label_pair(teacher.replace(beta=beta),
                               _combined(seen, aspects_1),
                               _combined(seen, aspects_2), key, reference)


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
  return rrm_oracle.label_pair(teacher, _combined(weights, assessments_1),
                               _combined(weights, assessments_2), key,
                               reference)


def full_view_label(teacher: rrm_oracle.TeacherParams, weights: jax.Array,
                    aspects_1: jax.Array, aspects_2: jax.Array,
                    key: jax.Array, reference: jax.Array | float = 1.0
                    ) -> tuple[jax.Array, jax.Array]:
  """The upper bound: a teacher that sees every aspect (the true reward)."""
  return rrm_oracle.label_pair(teacher, _combined(weights, aspects_1),
                               _combined(weights, aspects_2), key, reference)


def split_budget(budget: int, fractions: Sequence[float]) -> list[int]:
  """Integer parts of `budget` proportional to `fractions`, summing to it.

  Largest remainder: floors first, the leftover labels to the largest
  fractional parts (ties to the earlier part).
  """
  fractions = np.asarray(fractions, np.float64)
  if fractions.ndim != 1 or not len(fractions) or np.any(fractions < 0) or (
      not np.isfinite(fractions).all()) or fractions.sum() <= 0:
    raise TreeError(f"budget fractions {fractions.tolist()} must be "
                    "non-negative, finite and not all zero")
  share = budget * fractions / fractions.sum()
  parts = np.floor(share).astype(int)
  left = budget - parts.sum()
  order = np.argsort(-(share - parts), kind="stable")
  parts[order[:left]] += 1
  return parts.tolist()


def node_budgets(tree: TaskNode, budget: int,
                 level_fractions: Sequence[float]) -> dict[str, int]:
  """Labels per node: `budget` split between levels, then between nodes.

  `level_fractions[d]` is the share of level d (0 = the root); one per level
  of the tree. Within a level the part is split equally between its nodes
  (largest remainder, earlier nodes first). The parts sum to `budget`.
  """
  lv = levels(tree)
  if len(level_fractions) != len(lv):
    raise TreeError(f"the tree has {len(lv)} levels; give one budget "
                    f"fraction per level, got {list(level_fractions)}")
  out = {}
  for level, part in zip(lv, split_budget(budget, level_fractions)):
    for node, n in zip(level, split_budget(part, [1.0] * len(level))):
      out[node.name] = n
  return out
