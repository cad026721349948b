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
  budget exactly), and a level's part equally between its nodes. The split
  is fixed (`config.recursive.level_fractions`), not adaptive; the initial
  batch and each round's labels are split the same way (`make_plan`).

In training (rrm/train.py, `config.recursive`): every rollout records the
leaves' aspects per step (envs.AspectsWrapper) beside the segments in the
pool. With the assisted user each non-root node has a helper: a reward-model
ensemble trained by reward modeling from the user's labels of that node
(leaves: the aspect judged alone; inner nodes: assisted by their children's
helpers), all helpers stacked on one axis and updated in one vmapped step
before the root's labels of the same iteration are asked. A helper's
prediction becomes an assessment in its node's units by `calibrate`, shrunk
by its `reliability` on the user's own held-out labels. The root's reward
model learns from the root user's labels (limited, assisted or full view:
`root_perceived`) and PPO trains on it, as in the plain loop. Metrics per
level and node: labels spent, accuracy against the hidden truth
(`pair_accuracy`), reliability; the root user's agreement with a full-view
oracle (`oracle_agreement`).

Everything here is pure and jittable; the vmapped-over-pairs callers pass
one pair at a time, as rrm.oracle does.
"""

from __future__ import annotations

import dataclasses
import re
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
  tree: TaskNode
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
    lim = make_limited_user(aspects, visible, decay)
    vis = np.asarray(lim.visible)
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


def _stats(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and std of [P, L] per-step values over the valid segments' steps."""
  w = jnp.broadcast_to(valid[:, None], x.shape).astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(w * x) / n
  var = jnp.sum(w * jnp.square(x - mean)) / n
  return mean, jnp.sqrt(var)


# Held-out labels of a node below which its helper's reliability is not
# estimated (see `reliability`).
MIN_RELIABILITY_LABELS = 5


def reliability(predicted_diff: jax.Array, label: jax.Array,
                mask: jax.Array) -> jax.Array:
  """A helper's reliability in [0, 1], from the user's held-out labels.

  An estimate of rho = corr(dp, dt) over the node's labelled pairs, between
  the helper's predicted return difference dp (second - first) and the
  node's true difference dt, from what the user said of them: which
  segment was better, or that they were equal. Since dt = 0 on equal
  pairs, E[dp dt] comes from the decided pairs alone and

    rho = rho_decided * sqrt(1 - q),  q = sum_equal dp^2 / sum_all dp^2,

  where q is the share of the helper's spread that falls on pairs the user
  saw as equal (pure noise: a hazard helper that varies on the many
  segments that never touch the hazard), and rho_decided, the correlation
  on the decided pairs, follows from the helper's sign agreement there,
  acc, by the bivariate-normal identity acc = 1/2 + arcsin(rho) / pi
  (Greiner's relation), i.e. rho_decided = sin(pi (acc - 1/2)): 1 for a
  helper that orders every pair right, 0 at chance (clipped there). A
  perfect helper scores 1. (A Pearson correlation with the answers coded
  -1 / 0 / +1, tried first, gives a perfect helper about 0.7-0.8: signs
  are not magnitudes.) With fewer than `MIN_RELIABILITY_LABELS` held-out
  labels the user has no evidence either way and takes the helper at its
  word: 1 (shrinking an untested helper would make every assessment a
  constant, and every label a tie).

  Args:
    predicted_diff: [N] the helper's predicted return differences.
    label: [N] the user's labels (0, 0.5, 1).
    mask: [N] bool, the held-out labels to use.
  """
  w = mask.astype(jnp.float32)
  n = jnp.sum(w)
  decided = w * (label != 0.5)
  n_decided = jnp.sum(decided)
  agree = (predicted_diff > 0) == (label > 0.5)
  acc = jnp.sum(decided * agree) / jnp.maximum(n_decided, 1.0)
  rho_decided = jnp.where(
      n_decided > 0, jnp.sin(jnp.pi * (jnp.clip(acc, 0.5, 1.0) - 0.5)), 0.0)
  spread = jnp.sum(w * jnp.square(predicted_diff))
  on_equal = jnp.sum((w - decided) * jnp.square(predicted_diff))
  q = jnp.where(spread > 0, on_equal / jnp.maximum(spread, 1e-30), 1.0)
  rho = rho_decided * jnp.sqrt(jnp.clip(1.0 - q, 0.0, 1.0))
  return jnp.where(n >= MIN_RELIABILITY_LABELS, rho, 1.0)


def calibrate(prediction: jax.Array, target: jax.Array, valid: jax.Array,
              rho: jax.Array | float = 1.0) -> jax.Array:
  """A helper's assessment, [P, L]: its prediction in its node's units.

  Comparisons fix a learned reward only up to a monotone transformation
  (a Bradley-Terry model trained on argmax labels, up to an offset and a
  scale at least), and the user must add several helpers' assessments with
  their weights. The user supplies the units from what they know of the
  node: how its value is distributed over the pool's segments as they
  perceive it when labelling it (a leaf: the aspect itself, which they judge
  accurately; an inner node: the combination of its children's
  assessments). The assessment of a segment is the value of that
  distribution at the segment's rank among the helper's predicted returns
  (quantile matching, at the level the user compares: segment returns),
  shrunk towards the mean by the helper's reliability rho (`reliability`):
  mean + rho * (quantile - mean). A helper that orders the segments right
  gives exactly their true returns, whatever its scale, and a rare aspect
  keeps its shape: a hazard helper's many near-equal predictions for
  segments that never touch the hazard all map to the hazard-free value.
  (Matching the mean and spread instead, tried first, let that helper's
  noise on those segments grow as large as the goal's real signal: the
  assisted user's view then ordered pool pairs right only 56-77 % of the
  time while each helper alone scored 80-100 %.)

  The assessment is spread evenly over the segment's steps: teachers that
  weigh steps (myopic) see assessments as flat.

  Args:
    prediction: [P, L] the helper's (ensemble-mean) per-step predictions.
    target: [P, L] the values the user perceives for this node.
    valid: [P] bool, the pool's real segments.
    rho: [] the helper's reliability in [0, 1].

  Returns:
    [P, L]; invalid segments get the mean.
  """
  p, length = prediction.shape
  predicted = jnp.where(valid, jnp.sum(prediction, axis=-1), jnp.inf)
  true = jnp.sum(target, axis=-1)
  # Rank of each segment's prediction among the valid ones (invalid last),
  # and the perceived returns in order: rank r gets the r-th smallest.
  rank = jnp.zeros((p,), jnp.int32).at[jnp.argsort(predicted)].set(
      jnp.arange(p, dtype=jnp.int32))
  quantile = jnp.sort(jnp.where(valid, true, jnp.inf))[rank]
  n = jnp.maximum(jnp.sum(valid), 1)
  mean = jnp.sum(jnp.where(valid, true, 0.0)) / n
  assessed = jnp.where(valid, mean + rho * (quantile - mean), mean)
  return jnp.broadcast_to(assessed[:, None] / length, (p, length))


def assessments(plan: Plan, predictions: jax.Array, aspects: jax.Array,
                valid: jax.Array, rho: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """Every helper's assessment of the pool, and what the user judges it by.

  Bottom-up over the tree's levels: a leaf helper is calibrated to its
  aspect; an inner helper to the combination of its children's assessments,
  which is also what the user perceives when labelling that node.

  Args:
    plan: the run's plan (assisted user).
    predictions: [H, P, L] helpers' per-step predictions (ignored with
      perfect helpers).
    aspects: [P, L, K] the pool's true aspects.
    valid: [P] bool.
    rho: [H] the helpers' reliabilities (`reliability`; default 1).

  Returns:
    (assessed, perceived), each [H, P, L]: the helpers' assessments, and the
    per-step values the user compares when labelling each helper's node.
  """
  hn = plan.num_helpers
  true_values = jnp.einsum("plk,hk->hpl", aspects, plan.helper_weights)
  if plan.perfect_helpers:
    return true_values, true_values
  if rho is None:
    rho = jnp.ones((hn,))
  assessed = jnp.zeros_like(true_values)
  perceived = true_values
  for d in sorted(set(plan.helper_levels), reverse=True):
    idx = np.asarray([h for h in range(hn) if plan.helper_levels[h] == d])
    leaf = np.asarray([plan.helpers[h].is_leaf for h in idx])
    combined = jnp.einsum("ih,hpl->ipl", plan.combine[idx], assessed)
    target = jnp.where(leaf[:, None, None], true_values[idx], combined)
    perceived = perceived.at[idx].set(target)
    assessed = assessed.at[idx].set(jax.vmap(
        calibrate, in_axes=(0, 0, None, 0))(predictions[idx], target, valid,
                                            rho[idx]))
  return assessed, perceived


def root_perceived(plan: Plan, aspects: jax.Array,
                   assessed: jax.Array | None,
                   teacher: rrm_oracle.TeacherParams
                   ) -> tuple[jax.Array, rrm_oracle.TeacherParams]:
  """[P, L] per-step values the root's user compares, and their teacher.

  full_view: the true reward (every aspect, weighted); limited: only the
  visible aspects, with rationality beta / n^decay; assisted: the root's
  children's assessments, combined with the user's weights.
  """
  if plan.user == "assisted":
    return jnp.einsum("h,hpl->pl", plan.root_combine, assessed), teacher
  if plan.user == "limited":
    seen = plan.root_weights * plan.visible
    n = max(int(np.sum(seen != 0)), 1)
    return aspects @ jnp.asarray(seen), teacher.replace(
        beta=teacher.beta / n ** plan.decay)
  return aspects @ jnp.asarray(plan.root_weights), teacher


def pair_accuracy(predicted: jax.Array, truth: jax.Array,
                  valid: jax.Array) -> jax.Array:
  """How often predicted segment returns order pool pairs as the truth does.

  Pairs are (i, i + P/2) of the pool; only pairs of valid segments whose
  true returns differ count. nan when there are none.

  Args:
    predicted: [P] predicted segment returns.
    truth: [P] true segment returns.
    valid: [P] bool.
  """
  half = predicted.shape[0] // 2
  a, b = slice(0, half), slice(half, 2 * half)
  decided = valid[a] & valid[b] & (truth[a] != truth[b])
  correct = ((predicted[b] > predicted[a]) == (truth[b] > truth[a])) & decided
  n = jnp.sum(decided)
  return jnp.where(n > 0, jnp.sum(correct) / jnp.maximum(n, 1), jnp.nan)


def oracle_agreement(labels: Any) -> jax.Array:
  """Share of stored labels a full-view perfect oracle would have given.

  The stored segments' `true_reward` is the env's reward (the root's true
  value), so this measures any root user -- limited, assisted, full view --
  against the truth. Ties count as 0.5 for the oracle. nan when empty.
  """
  r1 = jnp.sum(labels.first.true_reward, axis=-1)
  r2 = jnp.sum(labels.second.true_reward, axis=-1)
  oracle = jnp.where(r2 > r1, 1.0, jnp.where(r2 < r1, 0.0, 0.5))
  agree = (oracle == labels.label) & labels.mask
  n = jnp.sum(labels.mask)
  return jnp.where(n > 0, jnp.sum(agree) / jnp.maximum(n, 1), jnp.nan)
