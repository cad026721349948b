"""Reward hacking: an offline reward model against an online one.

  python -m launch.sweep --sweep=experiments/hacking.py:point_hazard \\
      --workdir=runs/hacking_point_hazard
  python -m launch.sweep --sweep=experiments/hacking.py:inverted_pendulum \\
      --workdir=runs/hacking_inverted_pendulum
  python -m launch.report --workdir=runs/hacking_point_hazard \\
      --group_by=feedback.budget

Ibarz et al. (2018) saw an offline reward model, fitted once to labels of
the first policy's behaviour, get exploited by the policy trained on it,
and an online one, refitted as the policy moves, not. Two work units per
env, its seeds vmapped in each:

  offline  every label is asked at the start (feedback.budget =
           feedback.initial_labels), on the random policy's segments; the
           reward model is never refitted;
  online   the same initial batch, then labels every iteration until a
           larger budget is spent (the env's own schedule).

Both with the full-view oracle (B-Pref's perfect teacher). What to read:
each member's report.json `reward_hacking` (the detector's flagged
iterations: the training rollouts' learned return rising while the true
return falls over `report.hacking_window` iterations), `reward_epic`
(point_hazard) and the returns. The detector's hit rate is the share of
offline members it flags, its false-alarm rate the share of online ones.
`:<env>:<seeds>` changes the number of seeds (default 5); `:<env>:smoke`
is a CPU-tiny variant.

`point_hazard:misspecified[:<seeds>]` injects a misspecification instead:
two online units whose user compares through the task tree, one seeing
every component (recursive.user = "full_view": the true reward) and one
ignoring the hazard component (recursive.user = "limited" with goal and
effort visible). The detector's AUROC over the runs' scores
(experiments/plot_hacking.py) says how well it tells them apart.
"""

from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import sweep

ENVS = ("point_hazard", "inverted_pendulum")


def _base(env: str, smoke: bool):
  if env == "point_hazard":
    c = point_hazard.get_config("smoke" if smoke else "")
    c.recursive.user = "none"  # the plain loop: one reward model
    c.feedback.labels_per_round = 30 if smoke else 120
  else:
    c = inverted_pendulum.get_config("smoke" if smoke else "")
    if not smoke:
      # 30 iterations: a 1000-step training episode completes once per 25
      # of them, so the detector (which reads completed episodes) sees too
      # few points here (measured, README); the falls and returns do not.
      c.num_iterations = 30
  c.report.hacking_window = 3 if smoke else 10
  return c


def get_sweep(arg: str = "") -> sweep.SweepDef:
  parts = [p for p in arg.split(":") if p]
  if not parts or parts[0] not in ENVS:
    raise ValueError(f"hacking sweep {arg!r}: name an env, one of "
                     f"{', '.join(ENVS)} (e.g. point_hazard or "
                     "point_hazard:smoke)")
  env, rest = parts[0], parts[1:]
  if rest[:1] == ["misspecified"]:
    return _misspecified(env, rest[1:])
  smoke = rest == ["smoke"]
  seeds = int(rest[0]) if rest and rest[0].isdigit() else (2 if smoke else 5)
  base = _base(env, smoke)
  initial = base.feedback.initial_labels
  return sweep.SweepDef(
      base=base,
      members=sweep.product(
          sweep.values("feedback.budget", [initial, base.feedback.budget]),
          sweep.values("seed", tuple(range(seeds)))))


def _misspecified(env: str, rest: list[str]) -> sweep.SweepDef:
  if env != "point_hazard":
    raise ValueError(f"hacking sweep {env}:misspecified: only point_hazard "
                     "has a task tree whose components a teacher can ignore")
  smoke = rest == ["smoke"]
  seeds = int(rest[0]) if rest and rest[0].isdigit() else (2 if smoke else 5)
  base = _base(env, smoke)
  base.recursive.visible = ("reward_goal", "reward_ctrl")  # not the hazard
  return sweep.SweepDef(base=base, members=sweep.product(
      sweep.values("recursive.user", ["full_view", "limited"]),
      sweep.values("seed", tuple(range(seeds)))))

