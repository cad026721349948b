"""Reward modeling on DM Control cheetah_run (from MuJoCo Playground; B-Pref).

Needs MuJoCo Playground: pip install -e '.[playground]'

  python -m launch.train --config=experiments/configs/cheetah_run.py --workdir=runs/cheetah_run
  # true-reward baseline through the same code:
  python -m launch.train --config=experiments/configs/cheetah_run.py \\
      --config.reward.source=true --workdir=runs/cheetah_run_true
  # tiny variant for tests:
  python -m launch.train --config=experiments/configs/cheetah_run.py:smoke --workdir=/tmp/s
"""

from experiments.configs import dmc


def get_config(arg: str = ""):
  return dmc.get_dmc_config("cheetah_run", arg)
