"""Checkpoint round-trip of the full state, exact continuation, label export."""

import jax
import numpy as np
import pytest

from experiments.configs import inverted_pendulum
from rrm import checkpoint
from rrm import config as rrm_config
from rrm import train as rrm_train


@pytest.fixture(scope="module")
def smoke():
  config = rrm_config.from_config_dict(inverted_pendulum.get_config("smoke"))
  return rrm_train.make_train(config)


def _iterate(train, state, key, start, stop):
  history = []
  for i in range(start, stop):
    state, metrics = train.iteration(state, jax.random.fold_in(key, i))
    history.append(jax.device_get(metrics))
  return state, history


def test_restored_state_is_identical_and_continues_bit_exactly(smoke, tmp_path):
  key = jax.random.PRNGKey(11)
  state = smoke.init(key)
  state, _ = _iterate(smoke, state, key, 0, 2)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(2, state, {"labels_spent": int(state.labels.spent)})
  ckpt.close()

  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 2
  restored, metadata = ckpt.restore(2, smoke.init)
  ckpt.close()
  assert metadata["labels_spent"] == int(state.labels.spent)
  assert metadata["step"] == 2
  # Same structure, dtypes and values: optax states, ensemble, label buffer.
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)

  # Continuing from the restored state equals continuing from the original.
  direct, hist_direct = _iterate(smoke, state, key, 2, 4)
  resumed, hist_resumed = _iterate(smoke, restored, key, 2, 4)
  np.testing.assert_equal(hist_direct, hist_resumed)
  for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
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
