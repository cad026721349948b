"""Checkpoint cost: save / restore time and size, and overhead on a whole run.

  python -m benchmarks.checkpoint [--config=experiments/configs/inverted_pendulum.py]
      [--iterations=20] [--every=10] [--repeats=3]

For the config's full `TrainState` it prints
  * save: the blocking part (device-to-host copy, digest, handing to Orbax)
    and the time until the asynchronous write has finished; labels.npz export;
  * restore: newest valid step, digest check included;
  * size on disk of one checkpoint and of labels.npz;
  * overhead: wall time of `--iterations` iterations through the host loop
    with a checkpoint every `--every` iterations (and at the end) against the
    same loop without checkpoints, same compiled program, same process,
    runs interleaved (A B A B ...) so that drift hits both; the ratio is
    the figure (target < 1.05).
"""

import dataclasses
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rrm import checkpoint
from rrm import config_parse
from rrm import loop as rrm_loop
from rrm import state as rrm_state
from rrm import train as rrm_train

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/inverted_pendulum.py", "Run config.")
_ITERATIONS = flags.DEFINE_integer("iterations", 20, "Iterations per run.")
_EVERY = flags.DEFINE_integer("every", 10, "Checkpoint every N iterations.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs of each kind.")


def _du(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(r, f))
             for r, _, fs in os.walk(path) for f in fs)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  config = config_parse.from_config_dict(_CONFIG.value)
  train = rrm_train.make_train(config)
  root = tempfile.mkdtemp(prefix="rrm-bench-ckpt-")
  try:
    seed_key, _ = rrm_state.run_keys(config.seed)
    state = train.init(seed_key)
    state, _ = train.iteration(state)
    jax.block_until_ready(train.evaluate(state, seed_key))  # compiled now

    # Save and restore of one full state, timed in parts; a first save
    # warms Orbax up (thread pools, tensorstore contexts) and is not timed.
    ckpt = checkpoint.Checkpointer(os.path.join(root, "single",
                                                "checkpoints"))
    ckpt.save(0, jax.device_get(state), {})
    ckpt.wait()
    t0 = time.perf_counter()
    host = jax.device_get(state)
    t_get = time.perf_counter() - t0
    t0 = time.perf_counter()
    ckpt.save(1, host, {})
    t_block = time.perf_counter() - t0
    ckpt.wait()
    t_save = time.perf_counter() - t0
    labels_path = os.path.join(root, "labels.npz")
    t0 = time.perf_counter()
    checkpoint.export_labels(host.labels, host.teacher, labels_path)
    t_labels = time.perf_counter() - t0
    ckpt.close()
    size = _du(os.path.join(root, "single", "checkpoints", "1"))
    t0 = time.perf_counter()
    ckpt = checkpoint.Checkpointer(os.path.join(root, "single",
                                                "checkpoints"))
    step, restored, _ = ckpt.restore_latest(train.init)
    jax.block_until_ready(restored)
    t_restore = time.perf_counter() - t0
    ckpt.close()
    assert step == 1
    num_leaves = len(jax.tree.leaves(state))
    print(f"state: {num_leaves} arrays, {size / 1e6:.2f} MB on disk per "
          f"checkpoint; labels.npz {_du(labels_path) / 1e6:.2f} MB "
          f"({int(host.labels.count)} labels)")
    print(f"save: device_get {t_get * 1e3:.1f} ms + blocking save "
          f"{(t_block) * 1e3:.1f} ms; written after {t_save * 1e3:.0f} ms; "
          f"labels.npz export {t_labels * 1e3:.1f} ms")
    print(f"restore (Checkpointer open + newest valid step + digest): "
          f"{t_restore * 1e3:.0f} ms")

    # Overhead on whole runs.
    iterations = _ITERATIONS.value
    with_ckpt = dataclasses.replace(config, num_iterations=iterations,
                                    checkpoint_every=_EVERY.value)
    without = dataclasses.replace(config, num_iterations=iterations,
                                  checkpoint_every=0)
    walls = {"without": [], "with": []}
    blocked = []
    for r in range(_REPEATS.value):
      for name, cfg in (("without", without), ("with", with_ckpt)):
        workdir = os.path.join(root, f"{name}_{r}")
        t0 = time.perf_counter()
        result = rrm_loop.run(cfg, workdir, progress=None, train=train)
        walls[name].append(time.perf_counter() - t0)
        if name == "with":
          blocked.append(result["checkpoint_seconds"])
        shutil.rmtree(workdir)
    a, b = min(walls["without"]), min(walls["with"])
    saves = iterations // _EVERY.value + (iterations % _EVERY.value > 0)
    print(f"run of {iterations} iterations, best of {_REPEATS.value}: "
          f"{a:.1f}s without checkpoints, {b:.1f}s with {saves} "
          f"(every {_EVERY.value} + the end) -> ratio {b / a:.3f} "
          f"(all: without {', '.join(f'{w:.1f}' for w in walls['without'])};"
          f" with {', '.join(f'{w:.1f}' for w in walls['with'])})")
    print(f"time the loop was blocked by checkpointing (device_get, save, "
          f"labels export, final wait): {min(blocked):.2f}s of "
          f"{min(walls['with']):.1f}s -> "
          f"{min(blocked) / min(walls['with']):.1%} (all: "
          f"{', '.join(f'{x:.2f}' for x in blocked)})")
  finally:
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
