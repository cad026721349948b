"""Uniform vs disagreement queries on inverted_pendulum, 3 seeds each.

  python -m launch.sweep --sweep=experiments/sweeps/queries.py \
      --workdir=runs/queries --parallel=2

Two work units (the query selector changes the program), each running its
three seeds in one vmapped program; the report gives labels-to-90 % of the
true-reward baseline per selector, mean and 95 % CI over seeds.
`:smoke` is the CPU-tiny variant the tests run.
"""

from experiments.configs import inverted_pendulum
from rrm import sweep


def get_sweep(arg: str = "") -> sweep.SweepDef:
  seeds = (0, 1) if arg == "smoke" else (0, 1, 2)
  base = inverted_pendulum.get_config(arg)
  if arg == "smoke":
    base.num_iterations = 2
    base.eval_every = 2
    base.checkpoint_every = 1
  return sweep.SweepDef(
      base=base,
      members=sweep.product(
          sweep.values("feedback.query_selector", ["uniform", "disagreement"]),
          sweep.values("seed", seeds)))
