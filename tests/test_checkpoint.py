"""Checkpoint round-trip, damaged checkpoints, the labels file, warm starts."""

import logging
import os
import shutil

import jax
import numpy as np
import pytest

from conftest import assert_trees_equal
from conftest import fast_compile

from experiments.configs import inverted_pendulum
from rrm import checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import train as rrm_train


def _iterate(train, state, start, stop):
  history = []
  for _ in range(start, stop):
    state, metrics = train.iteration(state)
    history.append(jax.device_get(metrics))
  return state, history


def test_zero_size_leaves_round_trip(tmp_path):
  # MJX physics states hold zero-size arrays (`act` of a model without
  # activations), which Orbax alone refuses to save.
  def init(key):
    return {"act": jax.numpy.zeros((0,)), "qpos": jax.numpy.ones((3,)),
            "ten": {"J": jax.numpy.zeros((2, 0), jax.numpy.int32)}, "key": key}

  state = init(jax.random.key(1))
  state["qpos"] = state["qpos"] * 2
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(1, state, {})
  ckpt.close()
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  restored, _ = ckpt.restore(1, init)
  ckpt.close()
  assert_trees_equal(restored, state)


def test_restored_state_is_identical_and_continues_bit_exactly(smoke, tmp_path):
  key = jax.random.PRNGKey(11)
  state = smoke.init(key)
  state, _ = _iterate(smoke, state, 0, 2)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(2, state, {"labels_spent": int(state.labels.spent)})
  ckpt.close()

  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 2
  restored, metadata = ckpt.restore(2, smoke.init)
  ckpt.close()
  assert metadata["labels_spent"] == int(state.labels.spent)
  assert metadata["step"] == 2
  assert metadata["packages"]["jax"] == jax.__version__
  assert metadata["state_sha256"] == checkpoint.state_digest(state)
  assert "git_revision" in metadata and "rrm_version" in metadata
  # The run's key comes back as a typed PRNG key, equal to the saved one.
  assert jax.dtypes.issubdtype(restored.key.dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(restored.key),
                                jax.random.key_data(state.key))
  # optax states keep their types (e.g. ScaleByAdamState's count).
  assert (jax.tree.structure(restored.reward.opt_state)
          == jax.tree.structure(state.reward.opt_state))
  # Same structure, dtypes and values: optax states, ensemble, label buffer.
  assert_trees_equal(state, restored)

  # Continuing from the restored state equals continuing from the original.
  direct, hist_direct = _iterate(smoke, state, 2, 4)
  resumed, hist_resumed = _iterate(smoke, restored, 2, 4)
  np.testing.assert_equal(hist_direct, hist_resumed)
  assert_trees_equal(direct, resumed)
  assert smoke.iteration._cache_size() == 1  # restored state: no recompile


def test_label_export_round_trip(smoke, tmp_path):
  state = smoke.init(jax.random.PRNGKey(12))
  path = str(tmp_path / "labels.npz")
  checkpoint.export_labels(state.labels, state.teacher, path)
  data = np.load(path)
  n = int(state.labels.count)
  assert data["label"].shape == (n,) and int(data["spent"]) == n
  np.testing.assert_array_equal(data["label"], state.labels.label[:n])
  np.testing.assert_array_equal(data["second_observation"],
                                state.labels.second.observation[:n])
  np.testing.assert_array_equal(data["iteration"], -1)  # the initial batch
  assert float(data["teacher_beta"]) == float("inf")
  # The export is consistent with the hidden rewards it carries.
  r1 = data["first_true_reward"].sum(-1)
  r2 = data["second_true_reward"].sum(-1)
  decided = data["label"] != 0.5
  np.testing.assert_array_equal(data["label"][decided],
                                (r2 > r1)[decided].astype(np.float32))


def _largest_file(directory):
  files = [os.path.join(root, f) for root, _, fs in os.walk(directory)
           for f in fs]
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_file(os.path.join(step_dir, "state"))
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip_bytes(step_dir):
  path = _largest_file(os.path.join(step_dir, "state"))
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(8)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(x ^ 0xFF for x in b))


def _delete_state_files(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for f in files:
      if "ocdbt.process_0" in root:
        os.remove(os.path.join(root, f))


def _unfinished_save(step_dir):
  """A killed save of step 3: Orbax's temporary directory, never renamed."""
  parent = os.path.dirname(step_dir)
  tmp = os.path.join(parent, "3.orbax-checkpoint-tmp-1732170000000000")
  shutil.copytree(step_dir, tmp)
  os.remove(os.path.join(tmp, "state", "manifest.ocdbt"))
  return os.path.basename(tmp)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "deleted",
                                    "unfinished"])
def test_damaged_latest_checkpoint_is_skipped_and_the_previous_restores(
    smoke, tmp_path, caplog, damage):
  state = smoke.init(jax.random.PRNGKey(13))
  ckpt_dir = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  ckpt.save(1, jax.device_get(state), {})
  state2, _ = _iterate(smoke, state, 0, 1)
  ckpt.save(2, jax.device_get(state2), {})
  ckpt.close()
  step2 = os.path.join(ckpt_dir, "2")
  if damage == "truncated":
    _truncate(step2)
    bad = "2"
  elif damage == "flipped":
    _flip_bytes(step2)
    bad = "2"
  elif damage == "deleted":
    _delete_state_files(step2)
    bad = "2"
  else:
    bad = _unfinished_save(step2)

  caplog.set_level(logging.WARNING)
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  step, restored, _ = ckpt.restore_latest(smoke.init)
  ckpt.close()
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING]
  assert any(f"skipping checkpoint {os.path.join(ckpt_dir, bad)}" in w
             for w in warnings), warnings
  # Set aside, never deleted.
  assert os.path.exists(os.path.join(ckpt_dir + "_damaged", bad))
  assert not os.path.exists(os.path.join(ckpt_dir, bad))
  if damage == "unfinished":
    assert step == 2
    assert_trees_equal(restored, state2)
  else:
    assert step == 1
    # A fresh init from the same key (state was donated above).
    assert_trees_equal(restored, smoke.init(jax.random.PRNGKey(13)))


def test_checkpoint_of_another_layout_is_refused_and_left_alone(smoke,
                                                                tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  ckpt.save(1, {"x": np.zeros(3, np.float32)}, {})
  ckpt.close()
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  with pytest.raises(checkpoint.IncompatibleCheckpointError,
                     match="another layout"):
    ckpt.restore_latest(smoke.init)
  ckpt.close()
  assert os.path.isdir(os.path.join(ckpt_dir, "1"))


def test_labels_file_round_trip_and_refusals(smoke, tmp_path):
  state = smoke.init(jax.random.PRNGKey(14))
  path = str(tmp_path / "labels.npz")
  checkpoint.export_labels(state.labels, state.teacher, path,
                           "inverted_pendulum")
  lf = checkpoint.load_labels(path)
  n = int(state.labels.count)
  assert lf.size == n and lf.env == "inverted_pendulum"
  assert lf.segment_length == smoke.config.feedback.segment_length
  np.testing.assert_array_equal(lf.first.observation,
                                state.labels.first.observation[:n])
  np.testing.assert_array_equal(lf.label, state.labels.label[:n])
  assert lf.teacher["beta"] == float("inf")

  with pytest.raises(checkpoint.LabelsFileError, match="does not exist"):
    checkpoint.load_labels(str(tmp_path / "nope.npz"))
  np.savez(tmp_path / "other.npz", x=np.zeros(3))
  with pytest.raises(checkpoint.LabelsFileError, match="not an rrm labels"):
    checkpoint.load_labels(str(tmp_path / "other.npz"))
  data = dict(np.load(path))
  data["label"] = data["label"] * 3.0 + 0.25
  np.savez(tmp_path / "badlabels.npz", **data)
  with pytest.raises(checkpoint.LabelsFileError, match="0, 0.5 or 1"):
    checkpoint.load_labels(str(tmp_path / "badlabels.npz"))
  (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
  with pytest.raises(checkpoint.LabelsFileError, match="not an .npz archive"):
    checkpoint.load_labels(str(tmp_path / "garbage.npz"))


def _warm_config(path, extra, **feedback):
  cd = inverted_pendulum.get_config("smoke")
  cd.feedback.warm_start_labels = path
  cd.feedback.warm_start_extra = extra
  for k, v in feedback.items():
    cd.feedback[k] = v
  return config_parse.from_config_dict(cd)


def test_warm_start_refuses_labels_that_do_not_fit(smoke, tmp_path):
  state = smoke.init(jax.random.PRNGKey(15))
  path = str(tmp_path / "labels.npz")
  checkpoint.export_labels(state.labels, state.teacher, path,
                           "inverted_pendulum")
  with pytest.raises(checkpoint.LabelsFileError, match="segments of length"):
    rrm_train.make_train(_warm_config(path, False, segment_length=5))
  with pytest.raises(rrm_config.ConfigError, match="more than config.feedback"
                     ".budget=60"):
    rrm_train.make_train(_warm_config(path, False, budget=60,
                                      initial_labels=50))
  checkpoint.export_labels(state.labels, state.teacher, path, "hopper")
  with pytest.raises(checkpoint.LabelsFileError, match="env 'hopper'"):
    rrm_train.make_train(_warm_config(path, False))


@pytest.mark.parametrize("extra", [False, True])
def test_warm_start_imports_labels_counted_or_extra(smoke, tmp_path, extra):
  """80 labels of one run start another: counted, or on top of its budget."""
  donor = smoke.init(jax.random.PRNGKey(16))
  path = str(tmp_path / "labels.npz")
  checkpoint.export_labels(donor.labels, donor.teacher, path,
                           "inverted_pendulum")
  n = int(donor.labels.count)  # 80 = the smoke config's initial batch
  with fast_compile():  # its own program (see conftest.fast_compile)
    train = rrm_train.make_train(_warm_config(path, extra))
    fb = train.config.feedback
    state = train.init(jax.random.PRNGKey(17))
    labels = jax.device_get(state.labels)
    np.testing.assert_array_equal(labels.first.observation[:n],
                                  donor.labels.first.observation[:n])
    np.testing.assert_array_equal(labels.label[:n], donor.labels.label[:n])
    assert np.all(labels.iteration[:n] == -2)
    if extra:
      # Capacity budget + n; the full initial batch is asked for and paid.
      assert labels.capacity == fb.budget + n
      assert int(labels.spent) == fb.initial_labels
      assert int(labels.count) == n + fb.initial_labels
      assert np.all(labels.iteration[n:n + fb.initial_labels] == -1)
    else:
      # Counted: they replace the initial batch (80 of 80) and are paid for.
      assert labels.capacity == fb.budget
      assert int(labels.spent) == int(labels.count) == n
    # The reward model was fitted on them: it ranks the donor's pairs.
    from rrm import reward as rrm_reward  # pylint: disable=g-import-not-at-top
    model = rrm_reward.make_reward_model(
        train.config.reward.input,
        train.config.reward.hidden_layer_sizes, train.envs.observation_size,
        train.envs.action_size)
    acc = rrm_reward.label_accuracy(model, state.reward, state.labels,
                                    state.labels.mask)
    assert float(acc) >= 0.9
    if extra:  # (one of the two compiles an iteration: CPU compiles are slow)
      # The budget is then spent exactly, on top of the extra labels.
      for _ in range(5):
        state, _ = train.iteration(state)
      assert int(state.labels.spent) == fb.budget
      assert int(state.labels.count) == fb.budget + n


def test_offline_reward_training_from_a_labels_file(smoke):
  from rrm.reward import offline  # pylint: disable=g-import-not-at-top
  state = smoke.init(jax.random.PRNGKey(18))
  n = int(state.labels.count)
  take = lambda t: jax.tree.map(lambda x: np.asarray(x)[:n], t)
  _, reward_state, history = offline.train_offline(
      take(state.labels.first), take(state.labels.second),
      np.asarray(state.labels.label)[:n], smoke.config.reward, num_steps=600,
      eval_every=300, key=jax.random.key(0))
  assert [m["step"] for m in history] == [300, 600]
  assert history[-1]["reward/train_accuracy"] >= 0.9
  assert history[-1]["reward/heldout_accuracy"] >= 0.75
  assert history[-1]["reward/heldout_return_correlation"] > 0.5
  assert np.isfinite(float(reward_state.normalizer.std))
