"""The six B-Pref teachers x seeds on inverted_pendulum, in one program.

  python -m launch.sweep --sweep=experiments/teachers.py --workdir=runs/teachers
  python -m launch.report --workdir=runs/teachers --group_by=oracle.teacher

The teacher is part of the state (oracle.TeacherParams), so all 6 x 3
members share one compiled, vmapped program: one work unit. The report is
the teachers table: normalised final return (against the true-reward
baseline, report.baseline_return) and labels-to-90 % per teacher, mean and
95 % CI over seeds. `:smoke` is a CPU-tiny variant; `:<n>` runs n seeds.

25 iterations instead of `make run`'s 40: the 200 labels are all spent by
iteration 15, so the final evaluation (iteration 25) still shows whether a
teacher's reward model holds the policy without new labels, and 18 members
x 25 iterations fit in about half an hour on a 2-core CPU.
"""

from experiments.configs import inverted_pendulum
from rrm import oracle
from rrm import sweep


def get_sweep(arg: str = "") -> sweep.SweepDef:
  smoke = arg == "smoke"
  seeds = 2 if smoke else int(arg) if arg else 3
  base = inverted_pendulum.get_config("smoke" if smoke else "")
  if not smoke:
    base.num_iterations = 25
  return sweep.SweepDef(
      base=base,
      members=sweep.product(sweep.values("oracle.teacher", list(oracle.PRESETS)),
                            sweep.values("seed", range(seeds))))
