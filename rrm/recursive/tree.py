"""Task trees: a task is a node, leaves are directly evaluable aspects.

A node's per-step value is the weighted sum of its children's, so every node
is a linear function of the leaf aspects, `node = W[node] @ aspects`
(`node_weights`); the root's must be the env's reward
(`check_root_matches_reward`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

import numpy as np


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
  if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
    raise TreeError(f"{where}: node name {name!r} may hold only letters, "
                    "digits, '_', '-' and '.' (it names files and metrics)")
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
