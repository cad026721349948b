"""Trains a policy by reward modeling (or on the true reward, as a baseline).

  python -m launch.train --config=experiments/configs/inverted_pendulum.py \
      --workdir=runs/pendulum [--config.feedback.budget=100 ...]

Writes config.json, metrics.jsonl, checkpoints/ and labels.npz to --workdir
and prints progress. A workdir holding a checkpoint is resumed.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rrm import config as rrm_config
from rrm import train as rrm_train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config file, e.g. experiments/configs/hopper.py[:smoke].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (config.json, metrics.jsonl).")
flags.mark_flags_as_required(["config", "workdir"])


def _enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, on unless RRM_COMPILATION_CACHE=off."""
  path = os.environ.get("RRM_COMPILATION_CACHE",
                        os.path.expanduser("~/.cache/rrm/jax"))
  if path.lower() == "off":
    return
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  _enable_compilation_cache()
  # Progress lines are the run's output; library INFO logs (orbax's save
  # threads, jax's backend probing) are noise unless --verbosity asks.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    config = rrm_config.from_config_dict(_CONFIG.value)
  except rrm_config.ConfigError as e:
    sys.exit(f"error: {e}")
  workdir = _WORKDIR.value
  try:
    result = rrm_train.run(config, workdir)
  except (rrm_config.ConfigError, FileExistsError) as e:
    sys.exit(f"error: {e}")
  final = result["final"]
  if final is None:
    print(f"done: {workdir} had already completed "
          f"{config.num_iterations} iterations")
    return
  summary = [f"eval true return {final.get('eval/true_return', float('nan')):.1f}"]
  if "oracle/labels" in final:
    summary.append(f"labels {int(final['oracle/labels'])}")
  summary.append(f"wall {final['time/elapsed_s']:.0f}s")
  print(f"done: {' | '.join(summary)} | metrics in {workdir}/metrics.jsonl")


if __name__ == "__main__":
  app.run(main)
