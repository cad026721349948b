"""Unacceptable outcomes: the user's flags and a safety penalty, with and without.

  python -m launch.sweep --sweep=experiments/safety.py:point_hazard \\
      --workdir=runs/safety_point_hazard
  python -m launch.sweep --sweep=experiments/safety.py:inverted_pendulum \\
      --workdir=runs/safety_inverted_pendulum
  python -m launch.sweep --sweep=experiments/safety.py:hopper \\
      --workdir=runs/safety_hopper
  python -m launch.report --workdir=runs/safety_point_hazard \\
      --group_by=safety

Two work units per env, its seeds vmapped in each, at the same user effort
(feedback.budget, in units where a comparison costs 1):

  without  every unit buys preference labels (safety.flags = 0);
  with     the user also flags `FLAGS[env]` segments of the training
           rollouts as unacceptable (each costs safety.flag_cost = 0.5, so
           the preference labels get what is left), a classifier of unsafe
           steps learns from the flags, and RL maximises the learned reward
           minus `PENALTY` x P(unsafe) per step (rrm.flags).

point_hazard is run with the *limited* user (recursive.user = "limited"):
it perceives only the goal, so its preferences say nothing about the
hazard, and the policy learned from them enters it often (README: 4504 +-
890 entries in training). Whether the point entered the disc is an easy
judgement even for that user, so its flags are the synthetic teacher's
(the hidden event, no mistakes). hopper is run the same way, with the
limited user of experiments/recursive.py (it perceives forward progress
only, and its policy dives forward and falls: README) and its sizes (64
envs, 40 iterations, 1000 budget units); the unsafe event is a fall (the
healthy bonus dropping to 0). inverted_pendulum (the pole falling past 0.2
rad) uses the plain loop and its default budget of 200.

What to read: each member's report.json `unacceptable_outcomes` (the
cumulative unsafe events in training), `final_eval_return`, and the
metrics' `safety/*` series (flags spent and positive, the classifier's
mean P(unsafe) on the rollout's unsafe and safe steps). `:<env>:<seeds>`
changes the number of seeds (default 5); `:<env>:smoke` is a CPU-tiny
variant; `:<env>:penalty=<x>` runs the "with" arm alone at another penalty
(the "without" arm does not depend on it).
"""

from experiments import recursive
from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import sweep

ENVS = ("point_hazard", "inverted_pendulum", "hopper")
FLAGS = {"point_hazard": 480, "inverted_pendulum": 96, "hopper": 200}
FLAGS_PER_ROUND = {"point_hazard": 32, "inverted_pendulum": 16, "hopper": 20}
PENALTY = 5.0


def _base(env: str, smoke: bool):
  if env == "point_hazard":
    c = point_hazard.get_config("smoke" if smoke else "")
    c.recursive.user = "limited"  # sees the goal only (c.recursive.visible)
  elif env == "hopper":
    c = recursive.ENVS["hopper"](smoke)
    c.recursive.user = "limited"  # sees forward progress only
  else:
    c = inverted_pendulum.get_config("smoke" if smoke else "")
    if not smoke:
      c.num_iterations = 30
  c.safety.flags_per_round = 8 if smoke else FLAGS_PER_ROUND[env]
  return c


def get_sweep(arg: str = "") -> sweep.SweepDef:
  parts = [p for p in arg.split(":") if p]
  if not parts or parts[0] not in ENVS:
    raise ValueError(f"safety sweep {arg!r}: name an env, one of "
                     f"{', '.join(ENVS)} (e.g. point_hazard or "
                     "point_hazard:smoke)")
  env, rest = parts[0], parts[1:]
  penalty = [float(p.split("=", 1)[1]) for p in rest
             if p.startswith("penalty=")]
  rest = [p for p in rest if not p.startswith("penalty=")]
  smoke = rest == ["smoke"]
  seeds = int(rest[0]) if rest and rest[0].isdigit() else (2 if smoke else 5)
  flags = 16 if smoke else FLAGS[env]
  arms = sweep.zip_axes(sweep.values("safety.flags", [0, flags]),
                        sweep.values("safety.penalty", [0.0, PENALTY]))
  if penalty:
    arms = sweep.zip_axes(sweep.values("safety.flags", [flags]),
                          sweep.values("safety.penalty", penalty))
  return sweep.SweepDef(base=_base(env, smoke), members=sweep.product(
      arms, sweep.values("seed", tuple(range(seeds)))))
