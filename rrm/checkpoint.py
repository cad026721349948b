"""Checkpoints of the complete training state, and the label export.

`Checkpointer` wraps an Orbax `CheckpointManager` with two items per step:
the whole `TrainState` (policy, reward ensemble, optimiser states, segment
pool, label dataset, teacher, env state, episode statistics, iteration) saved
with StandardSave and restored onto `jax.eval_shape(init, key)`, so every
optax/flax type comes back typed; and JSON metadata (rrm version, iteration,
labels spent, config). A restored state continues bit-identically on CPU.

`export_labels` writes the label dataset to a plain `.npz` (schema in its
docstring): the most expensive thing a run holds is its feedback, and it must
outlive any change of code.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

import rrm
from rrm import feedback as rrm_feedback


class Checkpointer:
  """Saves and restores `TrainState`s under `directory` (keeps the last k)."""

  def __init__(self, directory: str, max_to_keep: int = 3):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))

  def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
    """Saves `state` as `step` (asynchronously; `close` waits for it)."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave({"rrm_version": rrm.__version__,
                                    "step": step, **metadata})))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, step: int,
              init: Callable[[jax.Array], Any]) -> tuple[Any, dict[str, Any]]:
    """Restores `step` onto the structure, dtypes and shapes `init` makes.

    Orbax returns arrays committed to a device; the trainer's own state is
    uncommitted (jit outputs), and jit keys its cache on that, so a restored
    state would compile the iteration a second time. The leaves are rebuilt
    uncommitted (one host copy; restoring is rare).
    """
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        metadata=ocp.args.JsonRestore()))
    state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), restored.state)
    return state, restored.metadata

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def export_labels(dataset: rrm_feedback.LabelDataset, teacher: Any,
                  path: str) -> None:
  """Writes the stored labels to `path` (.npz), atomically.

  Schema (N = labels stored, L = segment length):
    first_observation, second_observation            [N, L, obs_size]
    first_action, second_action                      [N, L, action_size]
    first_next_observation, second_next_observation  [N, L, obs_size]
    first_true_reward, second_true_reward            [N, L]  (hidden rewards)
    label      [N] float, P(second preferred): 0, 0.5 or 1
    iteration  [N] int32, iteration that asked (-1: initial batch)
    spent      [] int32, labels paid for
    teacher_<field>  [] teacher parameters (beta, equal_threshold, ...)
  """
  dataset = jax.device_get(dataset)
  n = int(dataset.count)
  arrays = {"label": dataset.label[:n], "iteration": dataset.iteration[:n],
            "spent": np.asarray(dataset.spent)}
  for side in ("first", "second"):
    segs = getattr(dataset, side)
    for field in segs._fields:
      arrays[f"{side}_{field}"] = np.asarray(getattr(segs, field))[:n]
  for field, value in vars(jax.device_get(teacher)).items():
    arrays[f"teacher_{field}"] = np.asarray(value)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
