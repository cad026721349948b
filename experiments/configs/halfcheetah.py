"""Reward modeling on Brax halfcheetah (fixed-horizon variant for training).

  python -m launch.train --config=experiments/configs/halfcheetah.py --workdir=runs/halfcheetah
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/halfcheetah.py \\
      --config.reward.source=true --workdir=runs/halfcheetah_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/halfcheetah.py:smoke --workdir=/tmp/s
"""

from experiments.configs import locomotion


def get_config(arg: str = ""):
  return locomotion.get_locomotion_config("halfcheetah", arg)
