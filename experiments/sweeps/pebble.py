"""Labels vs return (Christiano et al. 2017 Fig. 1-2; PEBBLE Fig. 3): SAC
with PEBBLE against PPO at the same label budgets, and both true-reward
baselines, 5 seeds each.

  python -m launch.sweep --sweep=experiments/sweeps/pebble.py:walker_walk \\
      --workdir=runs/pebble_walker_walk
  python -m experiments.plot_pebble --workdir=runs/pebble_walker_walk \\
      --out=runs/pebble_walker_walk.png

Argument: `<env>` for the full-size configs (walker_walk, cheetah_run:
experiments/configs/dmc.py's "sac" and default PPO variants; hopper:
locomotion.py's), which are GPU-sized (5M env steps for SAC); `cpu` is the
variant that fits a 2-core CPU: inverted_pendulum (SAC: 128 envs x 50 steps
per iteration, 4 gradient updates per step; PPO: its default config), 30
iterations (192k env steps), budgets 20 to 200, 5 seeds; `smoke` the
tests' tiny one. `:<env>:<seeds>` changes the number of seeds.

Members: rl.algorithm x feedback.budget x seed, plus reward.source=true x
rl.algorithm x seed. Learned-reward SAC members pre-train (PEBBLE) for
max(the config's, 2) iterations; true-reward ones do not (nothing to
precede). The budget changes the label dataset's shape, so each
(algorithm, budget) is one work unit whose seeds run in one vmapped
program. Budgets span 100..1000 labels for the full-size tasks (the
initial batch is a tenth of the budget, at least 10 -- B-Pref's ratio).
"""

from experiments.configs import cheetah_run
from experiments.configs import hopper
from experiments.configs import inverted_pendulum
from experiments.configs import walker_walk
from rrm import sweep

_ENVS = {"walker_walk": walker_walk, "cheetah_run": cheetah_run,
         "hopper": hopper}
BUDGETS = (100, 250, 500, 1000)
CPU_BUDGETS = (20, 50, 100, 200)


def _budget(value: int, cpu: bool):
  initial = max(value // 10, 10) if not cpu else max(value // 4, 10)
  return {"feedback.budget": value, "feedback.initial_labels": initial}


def get_sweep(arg: str = "walker_walk") -> sweep.SweepDef:
  name, _, seeds = arg.partition(":")
  smoke, cpu = name == "smoke", name == "cpu"
  seeds = int(seeds) if seeds else (2 if smoke else 5)
  if smoke or cpu:
    sac = inverted_pendulum.get_config("sac_smoke" if smoke else "sac")
    ppo = inverted_pendulum.get_config("smoke" if smoke else "")
    budgets = (100, 120) if smoke else CPU_BUDGETS
  elif name in _ENVS:
    sac = _ENVS[name].get_config("sac")
    ppo = _ENVS[name].get_config("")
    budgets = BUDGETS
  else:
    raise ValueError(f"unknown variant {arg!r}; known: "
                     f"{', '.join([*_ENVS, 'cpu', 'smoke'])}[:<seeds>]")
  for c in (sac, ppo):
    if cpu:
      c.num_iterations = 30
      c.eval_every = 5
    if smoke:
      c.num_iterations, c.eval_every, c.checkpoint_every = 3, 3, 1
  # SAC's own sizes ride along as overrides of the SAC members: the sweep
  # has one base (PPO's), SAC members override everything SAC changes.
  sac_overrides = {k: v for k, v in _flat(sac).items()
                   if _flat(ppo).get(k) != v}
  members = []
  for algorithm, extra in (("ppo", {}), ("sac", sac_overrides)):
    learned, true = dict(extra), dict(extra)
    if algorithm == "sac":  # PEBBLE's pre-training precedes the labels
      learned["sac.pretrain_iterations"] = max(
          sac.sac.pretrain_iterations, 2)
      true["sac.pretrain_iterations"] = 0  # no labels, nothing to precede
    for b in budgets:
      members += [{**learned, **_budget(b, cpu or smoke), "seed": s}
                  for s in range(seeds)]
    members += [{**true, "reward.source": "true", "seed": s}
                for s in range(seeds)]
  return sweep.SweepDef(base=ppo, members=tuple(members))


def _flat(cd, prefix=""):
  out = {}
  for k, v in cd.items():
    if hasattr(v, "items"):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
