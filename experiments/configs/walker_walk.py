"""Reward modeling on DM Control walker_walk (from MuJoCo Playground; B-Pref).

Needs MuJoCo Playground: pip install -e '.[playground]'

  python -m launch.train --config=experiments/configs/walker_walk.py --workdir=runs/walker_walk
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/walker_walk.py \\
      --config.reward.source=true --workdir=runs/walker_walk_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/walker_walk.py:smoke --workdir=/tmp/s
"""

from experiments.configs import dmc


def get_config(arg: str = ""):
  return dmc.get_dmc_config("walker_walk", arg)
