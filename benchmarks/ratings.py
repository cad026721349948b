"""What the ratings cost per iteration, in one process.

  python -m benchmarks.ratings [--config=experiments/configs/inverted_pendulum.py]
      [--iterations=10] [--per_round=20]

Times the same config's iteration with comparisons alone and with ratings
beside them (a rating round from the pool and the joint reward-model update
with the ordinal loss in every timed iteration, the most expensive
schedule; the comparisons' schedule the same in both), after one warm-up
iteration each, and prints seconds per iteration and their ratio (with /
without). Compilation is excluded; the host's metric fetch is included, as
in the host loop.
"""

from __future__ import annotations

import math

from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/inverted_pendulum.py", "Run config.",
    lock_config=False)
_ITERATIONS = flags.DEFINE_integer("iterations", 10, "Timed iterations.")
_PER_ROUND = flags.DEFINE_integer("per_round", 20, "ratings.per_round.")


def main(argv):
  del argv
  cd = _CONFIG.value
  n = _ITERATIONS.value + 1
  cd.num_iterations = max(cd.num_iterations, n)
  # Comparisons in every timed iteration in both runs: the difference is
  # the ratings' round and the ordinal term of the update.
  cd.feedback.budget = cd.feedback.initial_labels + (
      cd.feedback.labels_per_round * (n + 1))
  cd.ratings.ratings = 0
  without = timing.seconds_per_iteration(cd, _ITERATIONS.value)
  cd.ratings.ratings = _PER_ROUND.value * (n + 1)
  cd.ratings.per_round = _PER_ROUND.value
  cd.ratings.initial = 0
  # The comparisons keep their budget: it grows by the ratings' units.
  cd.feedback.budget += math.ceil(cd.ratings.ratings
                                  * cd.ratings.rating_cost - 1e-9)
  with_ratings = timing.seconds_per_iteration(cd, _ITERATIONS.value)
  timing.print_ratio("comparisons alone", without, "with ratings beside",
                     with_ratings, f"{_PER_ROUND.value} ratings per iteration")


if __name__ == "__main__":
  app.run(main)
