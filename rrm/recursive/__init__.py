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

In training (rrm/train.py and `helpers`, `config.recursive`): every rollout records the
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

Modules: `tree` (task trees), `users` (the limited, assisted and full-view
users, one implementation each), `plan` (a run's static plan and its one
budget), `assessment` (calibrated, reliability-shrunk helper assessments),
`helpers` (the helpers' reward models in the training step), `metrics`.
"""

from rrm.recursive.assessment import MIN_RELIABILITY_LABELS
from rrm.recursive.assessment import assessments
from rrm.recursive.assessment import calibrate
from rrm.recursive.assessment import reliability
from rrm.recursive.metrics import oracle_agreement
from rrm.recursive.metrics import pair_accuracy
from rrm.recursive.metrics import recursive_metrics
from rrm.recursive.plan import HELPER_KINDS
from rrm.recursive.plan import USERS
from rrm.recursive.plan import NodeSchedule
from rrm.recursive.plan import Plan
from rrm.recursive.plan import make_plan
from rrm.recursive.plan import node_budgets
from rrm.recursive.plan import plain_plan
from rrm.recursive.plan import split_budget
from rrm.recursive.plan import visible_mask
from rrm.recursive.tree import TaskNode
from rrm.recursive.tree import TreeError
from rrm.recursive.tree import aspect_names
from rrm.recursive.tree import check_root_matches_reward
from rrm.recursive.tree import depth
from rrm.recursive.tree import leaves
from rrm.recursive.tree import levels
from rrm.recursive.tree import node_weights
from rrm.recursive.tree import nodes
from rrm.recursive.tree import parse_tree
from rrm.recursive.tree import validate
from rrm.recursive.users import LimitedUser
from rrm.recursive.users import assisted_label
from rrm.recursive.users import full_view_label
from rrm.recursive.users import limited_label
from rrm.recursive.users import make_limited_user
from rrm.recursive.users import root_perceived
