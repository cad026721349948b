"""Trains a policy by reward modeling (or on the true reward, as a baseline).

  python -m launch.train --config=experiments/configs/inverted_pendulum.py \
      --workdir=runs/pendulum [--config.feedback.budget=100 ...]

Writes config.json, metrics.jsonl, checkpoints/ and labels.npz to --workdir
and prints progress.

  * A workdir that holds a checkpoint is resumed from its latest valid one;
    --fresh starts over instead, and refuses to discard a run unless
    --overwrite is given too (the old run's labels are kept).
  * SIGTERM / SIGINT (preemption, Ctrl-C): the iteration in flight finishes,
    a checkpoint is saved and waited for, and the process exits 0; launching
    the same command again resumes.
  * --labels=FILE warm-starts the reward model from an earlier run's
    labels.npz, counted against the budget, or on top of it with
    --labels_extra.

Exit status: 0 when done or stopped by a signal with a checkpoint saved;
1 with a message naming the problem (bad config, a damaged or incompatible
checkpoint, non-finite values, an unwritable workdir or a full disk);
2 when the flags or the config file cannot be parsed.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from launch import common
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import preemption
from rrm import loop as rrm_loop
from rrm import workdir as rrm_workdir

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config file, e.g. experiments/configs/hopper.py[:smoke].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (config.json, metrics.jsonl, "
    "checkpoints/, labels.npz).")
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start a new run even if --workdir holds one (requires "
    "--overwrite if it does).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "With --fresh: discard the run in --workdir (its "
    "labels.npz is kept as labels.discarded_<time>.npz).")
_LABELS = flags.DEFINE_string(
    "labels", None, "labels.npz of an earlier run to warm-start the reward "
    "model from (sets config.feedback.warm_start_labels).")
_LABELS_EXTRA = flags.DEFINE_bool(
    "labels_extra", False, "The --labels are extra, on top of the label "
    "budget (default: counted against it).")
flags.mark_flags_as_required(["config", "workdir"])

# Errors that are the user's to fix: reported as one message, no traceback.
_REPORTED = (rrm_config.ConfigError, FileExistsError, rrm_workdir.WorkdirError,
             rrm_checkpoint.CheckpointError, rrm_checkpoint.LabelsFileError,
             FloatingPointError)


def main(argv):
  common.start(argv)
  try:
    config_dict = _CONFIG.value
    config_dict.keys()  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except
    common.config_unparsable(e, sys.argv)
  if _LABELS.value:
    config_dict.feedback.warm_start_labels = os.path.abspath(_LABELS.value)
    config_dict.feedback.warm_start_extra = _LABELS_EXTRA.value
  workdir = _WORKDIR.value
  try:
    config = config_parse.from_config_dict(config_dict)
    with preemption.StopOnSignals() as stop:
      result = rrm_loop.run(config, workdir, stop=stop, fresh=_FRESH.value,
                             overwrite=_OVERWRITE.value)
  except _REPORTED as e:
    sys.exit(f"error: {e}")
  if result["stopped"]:
    print(f"done: stopped by {result['stopped']} at iteration "
          f"{result['iteration']}; " + (
              "relaunch the same command to resume" if config.checkpoint_every
              else "nothing saved (config.checkpoint_every=0)"))
    return
  final = result["final"]
  if final is None:
    print(f"done: {workdir} had already completed "
          f"{config.num_iterations} iterations")
    return
  summary = [f"eval true return {final.get('eval/true_return', float('nan')):.1f}"]
  if "oracle/labels" in final:
    summary.append(f"labels {int(final['oracle/labels'])}")
  # Other kinds than comparisons (flags, ratings): the effort in units.
  units = "feedback/budget_spent" in final
  if units:
    summary.append(f"budget {final['feedback/budget_spent']:g} units")
  report = result["report"]
  if report["baseline_return"] is not None:
    pct = f"{report['threshold']:.0%}"
    what, key = (("budget units", "budget_to_threshold") if units
                 else ("labels", "labels_to_threshold"))
    summary.append(
        f"{what} to {pct} of baseline {report['baseline_return']:g}: "
        + ("not reached" if report[key] is None else
           f"{report[key]:g} (iteration "
           f"{report['iteration_to_threshold']})"))
    summary.append(f"normalised return {report['normalised_return']:.2f}")
  summary.append(f"wall {final['time/elapsed_s']:.0f}s")
  print(f"done: {' | '.join(summary)} | metrics in {workdir}/metrics.jsonl")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
