"""Trains a reward model offline from a labels file (an earlier run's labels).

  python -m launch.train_reward --labels=runs/pendulum/labels.npz \
      --workdir=runs/pendulum_rm [--steps=2000] \
      [--config=experiments/configs/inverted_pendulum.py --config.reward.ensemble_size=5]

Only the config's `reward.*` fields, `ratings.*` (weight, learning rate,
batch size of a file's ratings) and `seed` are used (architecture, input
kind, ensemble size, optimiser, batch size, held-out fraction). A file's
ratings (rrm.ratings) are trained on jointly with its comparisons; a file
of ratings alone trains on them. Writes to --workdir: `metrics.jsonl`
(train and held-out label accuracy, held-out correlation of predicted and
true segment returns; with ratings their loss and the held-out ratings'
correlation with the predicted return; every --eval_every steps), `reward_model.json` (what rebuilds the model, the labels file, the
final metrics) and `reward_model/` (an Orbax checkpoint of the RewardState:
ensemble parameters, optimiser state, input and output normalisers).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import orbax.checkpoint as ocp

from launch import common
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import logging as rrm_logging
from rrm.reward import offline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/inverted_pendulum.py",
    "Config file whose reward.* fields and seed are used.", lock_config=True)
_LABELS = flags.DEFINE_string("labels", None, "labels.npz to train on.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_STEPS = flags.DEFINE_integer("steps", 2000, "SGD steps (each member, each "
                              "step, one minibatch of reward.batch_size).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 200,
                                   "Steps between evaluations.")
flags.mark_flags_as_required(["labels", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    config_dict = _CONFIG.value
    config_dict.keys()
  except Exception as e:  # pylint: disable=broad-except
    common.config_unparsable(e, sys.argv)
  workdir = _WORKDIR.value
  try:
    if _STEPS.value < 1 or _EVAL_EVERY.value < 1:
      raise rrm_config.ConfigError("--steps and --eval_every must be >= 1")
    config = config_parse.from_config_dict(config_dict)
    labels = rrm_checkpoint.load_labels(_LABELS.value)
    rated = labels.ratings.size if labels.ratings is not None else 0
    if labels.size + rated < 2:
      raise rrm_checkpoint.LabelsFileError(
          f"{_LABELS.value} holds {labels.size} labels and {rated} ratings; "
          "at least 2 are needed")
    model_dir = os.path.join(os.path.abspath(workdir), "reward_model")
    if os.path.exists(model_dir):
      raise FileExistsError(f"{model_dir} exists; choose a new --workdir")
    os.makedirs(workdir, exist_ok=True)
  except (rrm_config.ConfigError, rrm_checkpoint.LabelsFileError,
          FileExistsError, OSError) as e:
    sys.exit(f"error: {e}")

  print(f"{labels.size} labels of segments of length {labels.segment_length} "
        f"(env {labels.env or '?'}), every {config.reward.heldout_every}th "
        "held out" + (f"; {rated} ratings on 1..{labels.ratings.levels} "
                      "(held out alike), trained on jointly" if rated
                      else ""))
  writer = rrm_logging.MetricWriter(workdir)

  def report(m):
    writer.write(m)
    line = (f"step {m['step']} | loss {m['reward/loss']:.3f} | train acc "
            f"{m['reward/train_accuracy']:.3f} | heldout acc "
            f"{m['reward/heldout_accuracy']:.3f} | heldout return corr "
            f"{m['reward/heldout_return_correlation']:.3f}")
    if "ratings/loss" in m:
      line += (f" | ratings loss {m['ratings/loss']:.3f} | heldout rating "
               f"corr {m['ratings/heldout_correlation']:.3f}")
    print(line)

  try:
    model, state, history = offline.train_offline(
        labels.first, labels.second, labels.label, config.reward,
        _STEPS.value, _EVAL_EVERY.value, jax.random.key(config.seed),
        progress=report, ratings=labels.ratings,
        ratings_config=config.ratings)
  except FloatingPointError as e:
    sys.exit(f"error: {e}")
  finally:
    writer.close()
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(model_dir, jax.device_get(state))
  with open(os.path.join(workdir, "reward_model.json"), "w") as f:
    json.dump({"model": offline.describe(model, config.reward),
               "labels": os.path.abspath(_LABELS.value),
               "num_labels": labels.size, "num_ratings": rated,
               "steps": _STEPS.value,
               "final": history[-1], "seed": config.seed,
               "reward_config": rrm_config.to_dict(config)["reward"]},
              f, indent=2)
  final = history[-1]
  quality = (f"heldout acc {final['reward/heldout_accuracy']:.3f}"
             if labels.size else "heldout rating corr "
             f"{final['ratings/heldout_correlation']:.3f}")
  print(f"done: {quality} | reward model in {model_dir}")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
