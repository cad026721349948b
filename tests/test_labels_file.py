"""The labels file is checked array by array before anything is built.

Hand-built files (no compile): every array of the schema in
rrm.checkpoint.export_labels, then one field broken at a time.
"""

import os

import numpy as np
import pytest

from experiments.configs import inverted_pendulum
from rrm import checkpoint
from rrm import config_parse
from rrm import loop as rrm_loop

N, L, OBS, ACT = 3, 10, 4, 1  # inverted_pendulum: 4 observations, 1 action


def _arrays():
  rng = np.random.default_rng(0)
  out = {"format": np.asarray(checkpoint.LABELS_FORMAT),
         "env": np.asarray("inverted_pendulum"),
         "label": np.asarray([0.0, 0.5, 1.0], np.float32),
         "iteration": np.asarray([-1, -1, 2], np.int32),
         "spent": np.asarray(3, np.int32),
         "teacher_beta": np.asarray(np.inf, np.float32)}
  for side in ("first", "second"):
    out[f"{side}_observation"] = rng.normal(size=(N, L, OBS)).astype(
        np.float32)
    out[f"{side}_action"] = rng.normal(size=(N, L, ACT)).astype(np.float32)
    out[f"{side}_next_observation"] = rng.normal(size=(N, L, OBS)).astype(
        np.float32)
    out[f"{side}_true_reward"] = rng.normal(size=(N, L)).astype(np.float32)
  return out


def _write(tmp_path, **changes):
  arrays = {**_arrays(), **changes}
  path = str(tmp_path / "labels.npz")
  np.savez(path, **arrays)
  return path


def test_hand_built_file_loads(tmp_path):
  lf = checkpoint.load_labels(_write(tmp_path))
  assert (lf.size, lf.segment_length, lf.observation_size, lf.action_size) == (
      N, L, OBS, ACT)


@pytest.mark.parametrize("field, value, match", [
    ("first_next_observation", np.zeros((N, L, OBS + 1), np.float32),
     r"first_next_observation has shape \(3, 10, 5\), expected \(3, 10, 4\)"),
    ("second_action", np.zeros((N, L, 2), np.float32),
     r"second_action has shape \(3, 10, 2\), expected \(3, 10, 1\)"),
    ("first_true_reward", np.zeros((N, L + 1), np.float32),
     r"first_true_reward has shape \(3, 11\), expected \(3, 10\)"),
    ("label", np.zeros((N, 1), np.float32),
     r"label has shape \(3, 1\), expected \(3,\)"),
    ("label", np.asarray(["0", "1", "0.5"]),
     r"label holds <U3 values, expected numbers"),
    ("iteration", np.asarray([0.5, 1.0, 2.0]),
     r"iteration holds float64 values, expected integers"),
    ("first_observation", np.zeros((N, L), np.float32),
     r"first_observation has shape \(3, 10\), expected \[N=3, L"),
])
def test_a_field_that_does_not_fit_is_named(tmp_path, field, value, match):
  path = _write(tmp_path, **{field: value})
  with pytest.raises(checkpoint.LabelsFileError, match=match) as e:
    checkpoint.load_labels(path)
  assert path in str(e.value)


def test_a_text_file_is_not_an_rrm_labels_file(tmp_path):
  path = tmp_path / "labels.npz"
  path.write_text("first,second,label\n1,2,0\n")
  with pytest.raises(checkpoint.LabelsFileError) as e:
    checkpoint.load_labels(str(path))
  assert "is not an rrm labels file" in str(e.value)
  assert "allow_pickle" not in str(e.value)


def test_a_bad_file_leaves_the_workdir_free_for_the_corrected_command(
    tmp_path):
  """Refused before anything compiles or is written: the workdir holds no
  metrics.jsonl or config.json that would bind the next launch."""
  cd = inverted_pendulum.get_config("smoke")
  cd.feedback.warm_start_labels = _write(
      tmp_path, first_next_observation=np.zeros((N, L, 7), np.float32))
  config = config_parse.from_config_dict(cd)
  workdir = tmp_path / "run"
  with pytest.raises(checkpoint.LabelsFileError,
                     match="first_next_observation"):
    rrm_loop.run(config, str(workdir), progress=None)
  assert not workdir.exists() or not os.listdir(workdir)
