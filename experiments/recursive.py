"""Recursive reward modeling: unassisted vs assisted user vs full view.

  python -m launch.sweep --sweep=experiments/recursive.py:point_hazard \\
      --workdir=runs/recursive_point_hazard
  python -m launch.sweep --sweep=experiments/recursive.py:hopper \\
      --workdir=runs/recursive_hopper
  # the hazard on the straight path instead of beside the goal:
  python -m launch.sweep \\
      --sweep=experiments/recursive.py:point_hazard_on_path \\
      --workdir=runs/recursive_point_hazard_on_path
  # PPO on the true reward, same configs (the figure's dashed lines):
  python -m launch.sweep --sweep=experiments/recursive.py:point_hazard:true \\
      --workdir=runs/recursive_point_hazard_true  # and :hopper:true
  python -m experiments.plot_recursive --workdirs=runs/recursive_point_hazard,\\
runs/recursive_hopper --references=runs/recursive_point_hazard_true,\\
runs/recursive_hopper_true --out=runs/recursive.png

Three root users label the same task with the same total label budget
(`feedback.budget`, counted over every level of the tree):

  limited    the unassisted user: perceives only the most salient aspect
             (point_hazard: the goal, missing the hazard beside it and the
             effort; hopper: forward progress, missing staying healthy and
             effort);
  assisted   recursive: half the budget trains one helper reward model per
             leaf aspect from the user's (accurate) judgements of that
             aspect alone, the other half labels the root with the helpers'
             assessments combined;
  full_view  a teacher that perceives every aspect: the upper bound.

Each user is one work unit (its own program), its seeds vmapped in it.
`launch.report --group_by=recursive.user` prints final true returns, mean
and 95 % CI; the figure shows true return against total labels spent.
`:<env>:<seeds>` changes the number of seeds (default 5); `:<env>:true`
runs the reference, PPO on the env's own reward with the same config (5
seeds; the figure draws its final mean as a dashed line when its workdir is
given after the env's as `--references`); `:<env>:smoke` is a CPU-tiny
variant for tests.
"""

from experiments.configs import hopper
from experiments.configs import point_hazard
from rrm import sweep

USERS = ("limited", "assisted", "full_view")

HOPPER_TREE = {
    "name": "hop",
    "children": [
        {"name": "forward", "aspect": "reward_forward"},
        {"name": "healthy", "aspect": "reward_healthy"},
        {"name": "effort", "aspect": "reward_ctrl"},
    ],
}


def _hopper(smoke: bool):
  c = hopper.get_config("smoke" if smoke else "")
  # The reward must be the sum of its components: no failure penalty; the
  # hopper pays its healthy bonus only while healthy.
  c.env.on_failure = "continue"
  c.recursive.tree = HOPPER_TREE
  c.recursive.visible = ("reward_forward",)
  c.recursive.level_fractions = (0.5, 0.5)
  c.reward.input = "obs_action"  # effort depends on the action
  if not smoke:
    # CPU-sized: 64 envs, 40 iterations (820k env steps per member; the
    # three users' 15 members take about 35 min on 2 CPU cores).
    c.env.num_envs = 64
    # Training episodes of 200 steps (evaluation keeps the standard 1000):
    # a hopper that has fallen lies still for the rest of a fixed-horizon
    # episode, and with 1000 steps most of the data is that. Measured with
    # the true reward (`:hopper:true`, 5 seeds): 1000 steps -> final eval
    # return 525 +- 840 (2 of 5 seeds hop); 200 steps -> 1023 +- 407.
    c.env.episode_length = 200
    c.env.num_eval_envs = 16
    c.ppo.batch_size = 64
    c.ppo.num_minibatches = 16
    c.ppo.num_updates_per_batch = 4
    c.num_iterations = 40
    c.eval_every = 5
    c.feedback.pool_size = 1024
    c.feedback.segments_per_iteration = 256
    c.feedback.budget = 1000
    c.feedback.initial_labels = 300
    c.feedback.labels_per_round = 40  # the budget is spent at iteration 35
    c.feedback.round_every = 2
    c.feedback.query_selector = "disagreement"
    c.reward.hidden_layer_sizes = (64, 64)
  return c


def _point_hazard(smoke: bool):
  return point_hazard.get_config("smoke" if smoke else "")


def _point_hazard_on_path(smoke: bool):
  c = point_hazard.get_config("smoke" if smoke else "")
  c.env.kwargs.update(point_hazard.ON_PATH)
  return c


ENVS = {"point_hazard": _point_hazard,
        "point_hazard_on_path": _point_hazard_on_path, "hopper": _hopper}


def get_sweep(arg: str = "point_hazard") -> sweep.SweepDef:
  env, _, rest = arg.partition(":")
  if env not in ENVS:
    raise ValueError(f"unknown env {env!r}; known: {', '.join(ENVS)}")
  if rest not in ("", "smoke", "true") and not rest.isdigit():
    raise ValueError(f"unknown variant {rest!r} of {env!r}; known: a number "
                     "of seeds, 'true', 'smoke'")
  smoke = rest == "smoke"
  if rest == "true":
    # The reference: PPO on the env's own reward, same config, 5 seeds.
    users = sweep.values("recursive.user", ["none"])
    users = sweep.product(users, sweep.values("reward.source", ["true"]))
    rest = ""
  else:
    users = sweep.values("recursive.user", USERS)
  seeds = 2 if smoke else int(rest) if rest else 5
  return sweep.SweepDef(
      base=ENVS[env](smoke),
      members=sweep.product(users, sweep.values("seed", range(seeds))))
