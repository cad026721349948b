"""Sweep scaling: S members vmapped in one program vs S runs one after another.

  python -m benchmarks.sweep_scaling [--sizes=1,4,16] [--iterations=5] \
      [--config=experiments/configs/inverted_pendulum.py:smoke]

For each S: S members (seeds 0..S-1, PPO learning rates alternating between
two values, so they are a real hyperparameter sweep) are run

  * sequentially: each its own `make_train` + compile + init + iterations, as
    one-run-per-process frameworks do (the persistent compilation cache is
    off, so every run compiles);
  * vmapped: one `rrm.sweep.make_sweep` program, compiled once, all members
    in lockstep;

and the wall times (compile included, evaluation excluded) are printed with
their ratio, plus the steady-state ratio (env steps/s after compilation).
Both sides run in this process, one after the other.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rrm import config_parse
from rrm import config as rrm_config
from rrm import sweep as rrm_sweep
from rrm import state as rrm_state
from rrm import train as rrm_train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/inverted_pendulum.py:smoke", "Run config.",
    lock_config=False)
_SIZES = flags.DEFINE_list("sizes", ["1", "4", "16"], "Sweep sizes S.")
_ITERATIONS = flags.DEFINE_integer("iterations", 5, "Iterations per member.")
_SKIP_SEQUENTIAL_ABOVE = flags.DEFINE_integer(
    "skip_sequential_above", 0, "Time the sequential runs only for S up to "
    "this (0: always); larger S extrapolate from the largest timed S.")


def _members(base, size: int) -> list[rrm_config.TrainConfig]:
  out = []
  for i in range(size):
    cd = rrm_sweep.apply_overrides(base, {
        "seed": i, "ppo.learning_rate": (3e-4, 1e-3)[i % 2]})
    out.append(config_parse.from_config_dict(cd))
  return out


def sequential(configs, iterations: int) -> dict[str, float]:
  t0 = time.perf_counter()
  steady = 0.0
  for config in configs:
    train = rrm_train.make_train(config)
    state = train.init(rrm_state.run_keys(config.seed)[0])
    state, m = train.iteration(state)  # compiles
    jax.device_get(m)
    t1 = time.perf_counter()
    for _ in range(iterations - 1):
      state, m = train.iteration(state)
      jax.device_get(m)
    steady += time.perf_counter() - t1
  return {"wall_s": time.perf_counter() - t0, "steady_s": steady}


def vmapped(configs, iterations: int) -> dict[str, float]:
  t0 = time.perf_counter()
  sweep = rrm_sweep.make_sweep(configs)
  states = sweep.init()
  states, m = sweep.iteration(states)  # compiles
  jax.device_get(m)
  t1 = time.perf_counter()
  for _ in range(iterations - 1):
    states, m = sweep.iteration(states)
    jax.device_get(m)
  end = time.perf_counter()
  return {"wall_s": end - t0, "steady_s": end - t1}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  jax.config.update("jax_enable_compilation_cache", False)
  base = _CONFIG.value
  iterations = _ITERATIONS.value
  steps = config_parse.from_config_dict(base).env_steps_per_iteration
  print(f"backend {jax.default_backend()}, {len(jax.devices())} device(s); "
        f"{iterations} iterations of {steps} env steps per member")
  print(f"{'S':>4} {'sequential s':>13} {'vmapped s':>10} {'wall ratio':>11} "
        f"{'steady seq sps':>15} {'steady vmap sps':>16} {'steady ratio':>13}")
  seq_per_member = None
  for size in map(int, _SIZES.value):
    configs = _members(base, size)
    limit = _SKIP_SEQUENTIAL_ABOVE.value
    if not limit or size <= limit:
      seq = sequential(configs, iterations)
      seq_per_member = {k: v / size for k, v in seq.items()}
      note = ""
    else:
      seq = {k: v * size for k, v in seq_per_member.items()}
      note = " (sequential extrapolated)"
    vm = vmapped(configs, iterations)
    work = size * (iterations - 1) * steps
    print(f"{size:>4} {seq['wall_s']:>13.1f} {vm['wall_s']:>10.1f} "
          f"{seq['wall_s'] / vm['wall_s']:>10.2f}x "
          f"{work / seq['steady_s']:>15,.0f} {work / vm['steady_s']:>16,.0f} "
          f"{seq['steady_s'] / vm['steady_s']:>12.2f}x{note}", flush=True)


if __name__ == "__main__":
  app.run(main)
