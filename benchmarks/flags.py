"""What the unacceptable flags cost per iteration, in one process.

  python -m benchmarks.flags [--config=experiments/configs/point_hazard.py]
      [--iterations=10] [--flags=480] [--flags_per_round=32] [--user=none]

Times the same config's iteration without flags and with them (the flag
round, the safety classifier's fit and the penalty on every step; a flag
round in every timed iteration, the most expensive schedule), after one
warm-up iteration each, and prints seconds per iteration and their ratio
(with / without). Compilation is excluded; the host's metric fetch is
included, as in the host loop.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/point_hazard.py", "Run config.",
    lock_config=False)
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "Timed iterations.")
_FLAGS = flags.DEFINE_integer("flags", 480, "safety.flags of the 'with' run "
                              "(enough for a round in every iteration).")
_PER_ROUND = flags.DEFINE_integer("flags_per_round", 32,
                                  "safety.flags_per_round.")
_USER = flags.DEFINE_string("user", "none", "recursive.user (point_hazard's "
                            "config defaults to the assisted user).")


def main(argv):
  del argv
  cd = _CONFIG.value
  cd.num_iterations = max(cd.num_iterations, _ITERATIONS.value + 1)
  cd.recursive.user = _USER.value
  cd.safety.flags = 0
  cd.safety.penalty = 0.0
  without = timing.seconds_per_iteration(cd, _ITERATIONS.value)
  cd.safety.flags = max(_FLAGS.value,
                        _PER_ROUND.value * (_ITERATIONS.value + 1))
  cd.safety.flags_per_round = _PER_ROUND.value
  cd.safety.penalty = 5.0
  cd.feedback.budget = max(cd.feedback.budget, cd.feedback.initial_labels
                           + cd.safety.flags)
  with_flags = timing.seconds_per_iteration(cd, _ITERATIONS.value)
  timing.print_ratio("without flags", without, "with flags", with_flags,
                     f"{cd.safety.flags_per_round} flags per iteration")


if __name__ == "__main__":
  app.run(main)
