"""Reward modeling on Brax hopper (fixed-horizon variant for training).

  python -m launch.train --config=experiments/configs/hopper.py --workdir=runs/hopper
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/hopper.py \\
      --config.reward.source=true --workdir=runs/hopper_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/hopper.py:smoke --workdir=/tmp/s
"""

from experiments.configs import locomotion


def get_config(arg: str = ""):
  return locomotion.get_locomotion_config("hopper", arg)
