"""Recursive reward modeling on rrm's point_hazard task (rrm/envs.py).

A point mass must reach a goal; a hazard disc covers the goal's far side,
and control costs. The reward is the sum of three components, the leaves of
the task tree below. The limited user perceives only the most salient one
(the goal), so it prefers outcomes that sit on the goal inside the hazard;
the assisted user combines helpers' assessments of all three.

  python -m launch.train --config=experiments/configs/point_hazard.py \\
      --config.recursive.user=assisted --workdir=runs/point_hazard
  # users: limited | assisted | full_view | none (the plain loop)
  # the hazard on the straight path to the goal instead (README: why the
  # full view's learned reward then often stalls the policy):
  python -m launch.train --config=experiments/configs/point_hazard.py:on_path
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/point_hazard.py:smoke
"""

from experiments.configs import base

# The task tree: the root's value is the sum of its children's, which is
# exactly the env's reward (checked on every rollout).
TREE = {
    "name": "reach_safely",
    "children": [
        {"name": "goal", "aspect": "reward_goal"},
        {"name": "hazard", "aspect": "reward_hazard"},
        {"name": "effort", "aspect": "reward_ctrl"},
    ],
}

# The same reward as a depth-3 tree: "safety" judges hazard and effort.
TREE_DEPTH3 = {
    "name": "reach_safely",
    "children": [
        {"name": "goal", "aspect": "reward_goal"},
        {"name": "safety", "children": [
            {"name": "hazard", "aspect": "reward_hazard"},
            {"name": "effort", "aspect": "reward_ctrl"},
        ]},
    ],
}


# The hazard's geometries (rrm.envs.PointHazard's docstring), as env kwargs.
# Beside the goal, the default: the best outcome waits at the disc's edge,
# 0.2 short of the goal.
BESIDE_GOAL = {"hazard_center": (1.3, 0.0), "hazard_radius": 0.5,
               "hazard_cost": 3.0}
# On the straight path from start to goal (the `on_path` variant).
ON_PATH = {"hazard_center": (0.0, 0.0), "hazard_radius": 0.7,
           "hazard_cost": 3.0}


def get_config(arg: str = ""):
  c = base.get_base_config()
  c.env.name = "point_hazard"
  c.env.episode_length = 50
  c.env.eval_episode_length = 50
  c.env.kwargs.update(BESIDE_GOAL)
  c.env.num_envs = 128
  c.env.num_eval_envs = 32
  c.num_iterations = 30
  c.eval_every = 5
  c.ppo.unroll_length = 10
  c.ppo.batch_size = 128
  c.ppo.num_minibatches = 5  # 640 unrolls: 50 steps (one episode) per env
  # Measured with the true reward (30 iterations, 192k steps, 5 seeds):
  # these reach eval return -30 +- 5 (on the path -31 +- 15, 2 of 5 seeds
  # stalling in front of the hazard; standing still: -96); on the path,
  # discounting 0.97, lr 3e-4 and 4 epochs stayed near -100.
  c.ppo.num_updates_per_batch = 8
  c.ppo.learning_rate = 3e-3
  c.ppo.discounting = 0.9
  c.ppo.entropy_cost = 0.0
  c.ppo.reward_scaling = 0.1
  c.ppo.policy_hidden_layer_sizes = (64, 64)
  c.ppo.value_hidden_layer_sizes = (64, 64)
  c.reward.input = "obs_action"  # effort depends on the action
  c.reward.hidden_layer_sizes = (64, 64)
  # Measured with the full-view teacher on the path (one seed): with 600
  # labels (200 initial, 20 per round, 50 SGD steps) the learned reward has
  # a ridge at the hazard that the policy never crosses (final return -105,
  # as standing still); with 2000 -70; with 4000 and 4x the SGD steps -33.
  c.reward.num_steps = 200
  c.reward.initial_num_steps = 2000
  c.feedback.segment_length = 10
  c.feedback.pool_size = 1024
  c.feedback.segments_per_iteration = 256
  c.feedback.budget = 4000
  c.feedback.initial_labels = 1000
  c.feedback.labels_per_round = 120  # the budget is spent at iteration 25
  c.feedback.query_selector = "disagreement"
  c.recursive.user = "assisted"
  c.recursive.tree = TREE
  c.recursive.visible = ("reward_goal",)
  c.recursive.level_fractions = (0.5, 0.5)
  if arg == "on_path":
    c.env.kwargs.update(ON_PATH)
  elif arg == "smoke":
    # Big enough that leaf helpers learn their aspects in a few iterations
    # (the tests assert it), small enough to compile and run in ~30 s.
    c.num_iterations = 4
    c.eval_every = 2
    c.env.num_envs = 32
    c.env.num_eval_envs = 4
    c.ppo.batch_size = 32
    c.ppo.num_minibatches = 5
    c.ppo.num_updates_per_batch = 4
    c.ppo.policy_hidden_layer_sizes = (32,)
    c.ppo.value_hidden_layer_sizes = (32,)
    c.reward.hidden_layer_sizes = (32, 32)
    c.reward.initial_num_steps = 500
    c.reward.num_steps = 50
    c.feedback.pool_size = 256
    c.feedback.segments_per_iteration = 64
    c.feedback.budget = 600
    c.feedback.initial_labels = 300
    c.feedback.labels_per_round = 30
  elif arg:
    raise ValueError(f"unknown variant {arg!r}; known: '' (default), "
                     "'on_path', 'smoke'")
  return c
