"""Reward modeling on Brax ant (fixed-horizon variant for training).

  python -m launch.train --config=experiments/configs/ant.py --workdir=runs/ant
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/ant.py \\
      --config.reward.source=true --workdir=runs/ant_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/ant.py:smoke --workdir=/tmp/s
"""

from experiments.configs import locomotion


def get_config(arg: str = ""):
  return locomotion.get_locomotion_config("ant", arg)
