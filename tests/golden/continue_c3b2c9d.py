"""Records, on the OLD code, how the c3b2c9d checkpoint continues here.

Run from a worktree of 72edd36 (tests/golden_values.py's recipe), on the
machine whose kind is being recorded:

  .venv/bin/python /path/to/rrm/tests/golden/continue_c3b2c9d.py \\
      /path/to/rrm/tests/golden/checkpoint_c3b2c9d

It restores the checkpoint with that code, runs one iteration and prints
both digests: the "checkpoint_c3b2c9d_continued" entry of this kind in
values.json (test_golden.py's checkpoint test compares the new code's
continuation with it).
"""

import os
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.getcwd())

from experiments.configs import inverted_pendulum  # pylint: disable=g-import-not-at-top
from rrm import checkpoint as rrm_checkpoint  # pylint: disable=g-import-not-at-top
from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
from rrm import train as rrm_train  # pylint: disable=g-import-not-at-top


def main(source):
  config = rrm_config.from_config_dict(inverted_pendulum.get_config("smoke"))
  smoke = rrm_train.make_train(config)
  directory = os.path.join(tempfile.mkdtemp(), "checkpoints")
  shutil.copytree(source, directory)
  ckpt = rrm_checkpoint.Checkpointer(directory)
  step, restored, _ = ckpt.restore_latest(smoke.init)
  ckpt.close()
  print(f"step {step}")
  print(f"restored {rrm_checkpoint.state_digest(restored)}")
  continued, _ = smoke.iteration(restored)  # donates `restored`
  print(f"continued {rrm_checkpoint.state_digest(continued)}")


if __name__ == "__main__":
  main(sys.argv[1])
