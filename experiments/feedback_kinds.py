"""Which feedback buys the most return per unit of the user's effort?

  python -m launch.sweep --sweep=experiments/feedback_kinds.py:inverted_pendulum \\
      --workdir=runs/kinds_inverted_pendulum
  python -m launch.sweep --sweep=experiments/feedback_kinds.py:point_hazard \\
      --workdir=runs/kinds_point_hazard
  python -m launch.report --workdir=runs/kinds_inverted_pendulum \\
      --group_by=ratings.ratings

Three work units per env, its seeds vmapped in each, at the same budget
(feedback.budget units: a comparison costs 1, a rating ratings.rating_cost
= 0.5) spent on the same schedule (the env's initial batch, then its
rounds):

  preferences  every unit buys comparisons (the env's default config);
  ratings      every unit buys ratings of single segments, two per unit
               (feedback.initial_labels = 0: the initial batch is ratings);
  mixed        half the units buy comparisons, half ratings.

The synthetic teacher rates on its own 1..10 scale, anchored on the random
pool's returns (rrm.ratings), with noise 0.5 rating units; the learner
never sees the scale. What to read: each member's report.json
`budget_to_threshold` (units spent when the evaluated true return first
reached report.threshold x report.baseline_return) and `final_return`, per
arm (`--group_by=ratings.ratings` separates them). `:<env>:<seeds>`
changes the number of seeds (default 5); `:<env>:smoke` is a CPU-tiny
variant (2 seeds).

The initial batch is capped at half the pool size (the initial ratings
are distinct pool segments): point_hazard's 1000 initial labels become
512 in every arm, the rest of its 4000 units spent in its rounds of 120.
point_hazard is run with the plain user (recursive.user = "none": the
hidden true reward, every aspect seen), so the kinds are compared on what
they can say, not on what the user can see.
"""

from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import sweep

ENVS = ("inverted_pendulum", "point_hazard")
ARMS = ("preferences", "ratings", "mixed")


def _base(env: str, smoke: bool):
  if env == "point_hazard":
    c = point_hazard.get_config("smoke" if smoke else "")
    c.recursive.user = "none"
  else:
    c = inverted_pendulum.get_config("smoke" if smoke else "")
  c.ratings.rating_cost = 0.5
  # The initial ratings (two per unit of the initial batch) are distinct
  # pool segments, so the initial batch is capped at half the pool (every
  # arm alike): point_hazard's 1000 becomes 512, its rounds spend the rest.
  c.feedback.initial_labels = min(c.feedback.initial_labels,
                                  c.feedback.pool_size // 2)
  c.ratings.noise = 0.5
  return c


def arms(c) -> dict[str, dict[str, int]]:
  """Each arm's overrides of the base config `c`, at its budget."""
  fb = c.feedback
  per_unit = round(1 / c.ratings.rating_cost)  # ratings one unit buys
  half = lambda n: n // 2
  return {
      "preferences": {"ratings.ratings": 0, "ratings.initial": 0,
                      "ratings.per_round": 0,
                      "feedback.initial_labels": fb.initial_labels,
                      "feedback.labels_per_round": fb.labels_per_round},
      "ratings": {"ratings.ratings": per_unit * fb.budget,
                  "ratings.initial": per_unit * fb.initial_labels,
                  "ratings.per_round": per_unit * fb.labels_per_round,
                  "feedback.initial_labels": 0,
                  "feedback.labels_per_round": fb.labels_per_round},
      "mixed": {"ratings.ratings": per_unit * (fb.budget - half(fb.budget)),
                "ratings.initial": per_unit * (fb.initial_labels
                                               - half(fb.initial_labels)),
                "ratings.per_round": per_unit * (
                    fb.labels_per_round - half(fb.labels_per_round)),
                "feedback.initial_labels": half(fb.initial_labels),
                "feedback.labels_per_round": max(
                    half(fb.labels_per_round), 1)},
  }


def get_sweep(arg: str = "") -> sweep.SweepDef:
  parts = [p for p in arg.split(":") if p]
  if not parts or parts[0] not in ENVS:
    raise ValueError(f"feedback_kinds sweep {arg!r}: name an env, one of "
                     f"{', '.join(ENVS)} (e.g. inverted_pendulum or "
                     "inverted_pendulum:smoke)")
  env, rest = parts[0], parts[1:]
  smoke = rest == ["smoke"]
  seeds = int(rest[0]) if rest and rest[0].isdigit() else (2 if smoke else 5)
  base = _base(env, smoke)
  table = arms(base)
  fields = list(table["preferences"])
  axes = sweep.zip_axes(*[sweep.values(f, [table[a][f] for a in ARMS])
                          for f in fields])
  return sweep.SweepDef(base=base, members=sweep.product(
      axes, sweep.values("seed", tuple(range(seeds)))))
