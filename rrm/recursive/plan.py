"""The static plan of a run: its tree, its users, one budget split over nodes.

`split_budget` divides the label budget between the levels of the tree by
fixed fractions (largest remainder: the parts sum to the budget exactly),
and a level's part equally between its nodes. A plain run (no tree) is a
one-node plan whose root has the whole budget (`plain_plan`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from rrm.recursive.tree import TaskNode
from rrm.recursive.tree import TreeError
from rrm.recursive.tree import aspect_names
from rrm.recursive.tree import depth
from rrm.recursive.tree import levels
from rrm.recursive.tree import node_weights
from rrm.recursive.tree import nodes
from rrm.recursive.tree import parse_tree


USERS = ("none", "limited", "assisted", "full_view")
HELPER_KINDS = ("learned", "perfect")


def visible_mask(aspects: Sequence[str], visible: Sequence[str]) -> np.ndarray:
  """[K] 1.0 for the aspects the limited user perceives, 0.0 for the others."""
  unknown = [a for a in visible if a not in aspects]
  if unknown:
    raise TreeError(f"visible aspects {unknown} are not in the tree's "
                    f"aspects {list(aspects)}")
  if not visible:
    raise TreeError("the limited user must perceive at least one aspect")
  return np.asarray([a in visible for a in aspects], np.float32)


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


@dataclasses.dataclass(frozen=True)
class NodeSchedule:
  """A node's share of the label budget and of each batch (see `make_plan`)."""
  budget: int
  initial: int
  per_round: int


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything static a recursive run needs, from its config.

  Helpers are the tree's non-root nodes (assisted user only), in `nodes`
  order; `helper_levels` are their distances from the root (1 = the root's
  children). Weights are over the leaf aspects [K] (`node_weights`);
  `combine[h]` [H] holds node h's children's weights at their helper
  indices (zero rows for leaves) and `root_combine` [H] the root's.
  """
  user: str
  tree: TaskNode | None  # None: a plain run (no task tree)
  aspects: tuple[str, ...]
  root_weights: np.ndarray  # [K]
  visible: np.ndarray  # [K] the limited user's perception (ones otherwise)
  decay: float
  perfect_helpers: bool
  helpers: tuple[TaskNode, ...]
  helper_levels: tuple[int, ...]
  helper_weights: np.ndarray  # [H, K]
  combine: np.ndarray  # [H, H]
  root_combine: np.ndarray  # [H]
  root: NodeSchedule
  helper_schedules: tuple[NodeSchedule, ...]

  @property
  def recursive(self) -> bool:
    """False for a plain run's one-node plan (`plain_plan`)."""
    return self.tree is not None

  @property
  def num_helpers(self) -> int:
    return len(self.helpers)

  @property
  def depth(self) -> int:
    return depth(self.tree)

  def level_of(self, h: int) -> int:
    return self.helper_levels[h]


def _split_schedule(tree: TaskNode, user: str, budget: int, initial: int,
                    per_round: int, fractions: Sequence[float]
                    ) -> dict[str, NodeSchedule]:
  if user != "assisted":
    return {tree.name: NodeSchedule(budget, initial, per_round)}
  budgets = node_budgets(tree, budget, fractions)
  initials = node_budgets(tree, initial, fractions)
  rounds = node_budgets(tree, per_round, fractions)
  out = {}
  for name, b in budgets.items():
    i = min(initials[name], b)
    # A node with labels left after its initial batch asks >= 1 per round.
    r = max(rounds[name], 1) if b > i else 0
    out[name] = NodeSchedule(b, i, r)
  return out


def make_plan(user: str, tree_spec: Mapping[str, Any], visible: Sequence[str],
              decay: float, level_fractions: Sequence[float],
              perfect_helpers: bool, budget: int, initial_labels: int,
              labels_per_round: int) -> Plan:
  """The static plan of a recursive run (user != "none").

  Budget: with the assisted user, `budget`, the initial batch and each
  round's labels are split between the levels by `level_fractions` and
  within a level equally between nodes (`node_budgets`); the parts of each
  sum to the whole, so the run spends exactly `budget` labels over all
  nodes. The other users label the root only, with all of it.
  """
  tree = parse_tree(tree_spec)
  aspects = aspect_names(tree)
  weights = node_weights(tree)
  helpers = tuple(n for n in nodes(tree) if n is not tree) if (
      user == "assisted") else ()
  index = {n.name: h for h, n in enumerate(helpers)}
  level = {n.name: d for d, lv in enumerate(levels(tree)) for n in lv}
  k, hn = len(aspects), len(helpers)
  combine = np.zeros((hn, hn), np.float32)
  for h, n in enumerate(helpers):
    for c in n.children:
      combine[h, index[c.name]] = c.weight
  root_combine = np.zeros((hn,), np.float32)
  for c in tree.children if helpers else ():
    root_combine[index[c.name]] = c.weight
  if user == "limited":
    vis = visible_mask(aspects, visible)
  else:
    vis = np.ones((k,), np.float32)
  schedules = _split_schedule(tree, user, budget, initial_labels,
                              labels_per_round, level_fractions)
  return Plan(
      user=user, tree=tree, aspects=aspects,
      root_weights=weights[tree.name], visible=vis, decay=float(decay),
      perfect_helpers=bool(perfect_helpers), helpers=helpers,
      helper_levels=tuple(level[n.name] for n in helpers),
      helper_weights=np.stack([weights[n.name] for n in helpers]) if helpers
      else np.zeros((0, k), np.float32),
      combine=combine, root_combine=root_combine,
      root=schedules[tree.name],
      helper_schedules=tuple(schedules[n.name] for n in helpers))


def plain_plan(budget: int, initial_labels: int, labels_per_round: int) -> Plan:
  """A plain run's plan: one node, the root, with the whole budget."""
  return Plan(
      user="none", tree=None, aspects=(), root_weights=np.zeros((0,),
                                                                np.float32),
      visible=np.zeros((0,), np.float32), decay=0.0, perfect_helpers=False,
      helpers=(), helper_levels=(), helper_weights=np.zeros((0, 0),
                                                            np.float32),
      combine=np.zeros((0, 0), np.float32),
      root_combine=np.zeros((0,), np.float32),
      root=NodeSchedule(budget, initial_labels, labels_per_round),
      helper_schedules=())
