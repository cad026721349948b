"""Checkpoints of the complete training state, and the label file.

`Checkpointer` wraps an Orbax `CheckpointManager` with two items per step:
the whole `TrainState` (policy, reward ensemble, optimiser states, segment
pool, label dataset, teacher, env state, episode statistics, run key,
iteration) saved with StandardSave and restored onto
`jax.eval_shape(init, key)`, so every optax/flax type and the typed PRNG key
come back typed; and JSON metadata (rrm version, git revision, package
versions, iteration, labels spent, config, and a SHA-256 digest of the state).
A restored state continues bit-identically on CPU.

Damaged checkpoints are never restored and never deleted: an Orbax temporary
directory left by a killed save, a step directory Orbax does not list as
finalised, or a step whose state does not restore or does not match its
digest (a truncated or partly deleted file) is moved to
`<directory>_damaged/` with a warning naming it, and the previous step is
tried.

Several processes (multi-host JAX, `rrm.multihost`): every process makes
the same calls with the same (global, sharded) state; Orbax writes each
process's shards and the metadata once, process 0 alone moves damaged
steps aside, and `restore` onto an `init` whose outputs are sharded gives
the state back on that sharding. The directory must be on a filesystem
every process sees.

The labels file, the run's other durable format, is rrm.labels_file (its
names are re-exported here, where callers have always found them): the
most expensive thing a run holds is its feedback, and it must outlive any
change of code.

Why one module of ~550 lines: the checkpoint's faults of reading and
writing (a damaged or unreadable step set aside, Orbax's aftermath of a
failed read or write kept to one line) belong with the Checkpointer that
meets them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import importlib.metadata
import logging as logging_std
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

import rrm
# The labels file's names, where callers have always found them.
from rrm.labels_file import FlagRecord  # pylint: disable=unused-import
from rrm.labels_file import LABELS_FORMAT  # pylint: disable=unused-import
from rrm.labels_file import LabelFile  # pylint: disable=unused-import
from rrm.labels_file import LabelsFileError  # pylint: disable=unused-import
from rrm.labels_file import READABLE_FORMATS  # pylint: disable=unused-import
from rrm.labels_file import export_labels  # pylint: disable=unused-import
from rrm.labels_file import load_labels  # pylint: disable=unused-import
from rrm import multihost

# The packages whose versions a checkpoint records.
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "brax", "mujoco",
             "orbax-checkpoint", "numpy", "ml_collections", "absl-py")
_TMP_MARKER = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
  """A checkpoint could not be restored or written."""


class IncompatibleCheckpointError(CheckpointError):
  """A sound checkpoint whose state layout is not the one this code builds."""


@functools.cache
def package_versions() -> dict[str, str | None]:
  versions = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


@functools.cache
def git_revision() -> str | None:
  """The rrm checkout's commit ("<sha>-dirty" with local changes), or None."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True,
                         capture_output=True, text=True,
                         timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain",
                            "--untracked-files=no"], cwd=root, check=True,
                           capture_output=True, text=True,
                           timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return sha + ("-dirty" if dirty else "")


def _host_leaf(x: Any) -> np.ndarray:
  if jnp.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(x)


def state_layout(tree: Any) -> str:
  """SHA-256 of the tree structure and every leaf's shape and dtype.

  Object addresses are left out of the structure: MJX physics states carry
  static numpy arrays whose repr is `<... object at 0x...>`, which differs
  from process to process for the same layout.
  """
  structure = re.sub(r" object at 0x[0-9a-fA-F]+>", " object>",
                     str(jax.tree.structure(tree)))
  structure = _without_added_none(structure, _trailing_added_none(tree))
  parts = [structure]
  parts += [f"{leaf.shape}{leaf.dtype}" for leaf in jax.tree.leaves(tree)]
  return hashlib.sha256("|".join(parts).encode()).hexdigest()


# The TrainState's fields added after checkpoints were written without them
# (rrm.state.TrainState.safety, then .ratings: its last fields, in the order
# they were added): when None they are left out of the layout, so those
# checkpoints keep theirs. The structure's string ends with the last
# fields' children; a None child prints as "None".
_ADDED_FIELDS = ("safety", "ratings")
_ADDED_NONE = ", None]))"


def _trailing_added_none(tree: Any) -> int:
  """How many of the TrainState's last fields are added ones that are None."""
  if not _is_train_state(tree):
    return 0
  n = 0
  for name in reversed(_ADDED_FIELDS):
    if getattr(tree, name, 0) is not None:
      break
    n += 1
  return n


def _without_added_none(structure: str, count: int) -> str:
  for _ in range(count):
    if not structure.endswith(_ADDED_NONE):
      break
    structure = structure[:-len(_ADDED_NONE)] + "]))"
  return structure


def state_digest(tree: Any) -> str:
  """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(_host_leaf(leaf))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


class Checkpointer:
  """Saves and restores `TrainState`s under `directory` (keeps the last k).

  Saves are asynchronous: `save` returns once Orbax has the (host) state, the
  files are written by a background thread while training goes on, and
  `close` (or `wait`) blocks until every save has finished. Each save first
  waits for the previous one, so at most one is in flight.
  """

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self.damaged_directory = self.directory + "_damaged"
    self.digests: dict[int, str] = {}  # step -> state_sha256, saved here
    _quiet_orbax_aftermath()
    os.makedirs(self.directory, exist_ok=True)
    # Orbax's own barriers are collectives: enter them together.
    multihost.barrier("checkpoint_manager")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True))
    self._set_aside_unfinished()

  # -- damaged checkpoints -------------------------------------------------

  def _set_aside(self, name: str, why: str) -> None:
    """Moves `directory/name` to the damaged directory, with a warning.

    With several processes only process 0 moves it; every process must call
    this (a barrier), so that none lists the directory while it changes.
    """
    if multihost.is_primary():
      self._set_aside_here(name, why)
    multihost.barrier("checkpoint_set_aside")
    self._manager.reload()

  def _set_aside_unfinished(self) -> None:
    # Process 0 decides (the others might list the directory while it moves
    # things); then all wait for it and reload.
    if multihost.is_primary():
      listed = {str(s) for s in self._manager.all_steps()}
      for name in sorted(os.listdir(self.directory)):
        if _TMP_MARKER in name:
          self._set_aside_here(name, "an unfinished save (Orbax temporary "
                               "directory of a process that was killed while "
                               "saving)")
        elif name.isdigit() and name not in listed:
          self._set_aside_here(name, "not a finalised Orbax checkpoint")
    multihost.barrier("checkpoint_set_aside_unfinished")
    self._manager.reload()

  def _set_aside_here(self, name: str, why: str) -> None:
    source = os.path.join(self.directory, name)
    os.makedirs(self.damaged_directory, exist_ok=True)
    target = os.path.join(self.damaged_directory, name)
    if os.path.exists(target):
      target += f".{time.strftime('%Y%m%d_%H%M%S')}"
    target = _move_aside(source, target)
    logging.warning("skipping checkpoint %s: %s; moved to %s", source, why,
                    target)

  # -- save / restore -----------------------------------------------------

  def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
    """Saves `state` as `step`, asynchronously.

    `state` is a host copy (see `run`) or, with several processes, the
    global state itself (Orbax refuses host-local arrays there), which every
    process passes.
    """
    self.wait()
    meta = {"rrm_version": rrm.__version__, "git_revision": git_revision(),
            "packages": package_versions(), "step": step,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "state_layout": state_layout(state),
            "state_sha256": state_digest(multihost.fetch(state)), **metadata}
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(_on_disk(_without_empty(state))),
          metadata=ocp.args.JsonSave(meta)))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"saving checkpoint {step} to {self.directory} failed: "
          f"{_describe(e)}") from e
    self.digests[step] = meta["state_sha256"]  # for the run certificate

  def wait(self) -> None:
    """Blocks until pending saves have finished; raises if one failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"writing a checkpoint to {self.directory} failed: "
          f"{_describe(e)}") from e

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def metadata(self, step: int) -> dict[str, Any]:
    """The JSON metadata of `step` alone (CheckpointError if unreadable)."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          metadata=ocp.args.JsonRestore()))
      return dict(restored.metadata)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"its metadata does not restore ({_describe(e)})") from e

  def restore(self, step: int, init: Callable[[jax.Array], Any],
              sharding: jax.sharding.Sharding | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Restores `step` onto the structure, dtypes and shapes `init` makes.

    `sharding`: where every leaf goes (a sweep's member axis, say), whatever
    the devices and processes that saved it; default: as saved, which needs
    the same devices.

    Raises IncompatibleCheckpointError if the checkpoint's state layout is not
    the one `init` makes (another rrm version or config: nothing is wrong
    with the files), and CheckpointError if it does not restore or does not
    match the digest recorded at save time (damaged files).

    Orbax returns arrays committed to a device; the trainer's own state is
    uncommitted (jit outputs), and jit keys its cache on that, so a restored
    state would compile the iteration a second time. The leaves are rebuilt
    uncommitted (one host copy; restoring is rare). With several processes
    the state comes back as global arrays on `init`'s output sharding
    (zero-size leaves as numpy zeros) and is left so.
    """
    abstract = jax.eval_shape(init, jax.random.key(0))
    if sharding is not None:
      abstract = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
          abstract)
    multihost.barrier("checkpoint_restore")
    metadata = self.metadata(step)
    layout = metadata.get("state_layout")
    if layout is not None and layout != state_layout(abstract):
      raise IncompatibleCheckpointError(
          f"checkpoint {step} in {self.directory} holds a state of another "
          "layout than this code and config build (written by another rrm "
          "version?); it is left untouched")
    try:
      state = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(
              _on_disk(_without_empty(abstract))))).state
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"it does not restore ({_describe(e)})") from e
    state = _with_empty(abstract, _from_disk(abstract, state))
    expected = metadata.get("state_sha256")
    if expected is not None and state_digest(
        multihost.fetch(state)) != expected:
      raise CheckpointError("its state does not match the digest recorded "
                            "when it was saved (a damaged file)")
    if multihost.is_multiprocess():
      return state, metadata
    return jax.tree.map(_uncommitted, state), metadata

  def restore_latest(
      self, init: Callable[[jax.Array], Any],
      sharding: jax.sharding.Sharding | None = None
  ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest valid step: (step, state, metadata), or None.

    Steps that fail to restore are set aside (see the module docstring) and
    the next older one is tried. Raises CheckpointError if steps exist but
    none restores.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        state, metadata = self.restore(step, init, sharding)
      except IncompatibleCheckpointError:
        raise
      except CheckpointError as e:
        self._set_aside(str(step), str(e))
        continue
      return step, state, metadata
    if steps:
      raise CheckpointError(
          f"none of the checkpoints {steps} in {self.directory} restores; "
          f"they are in {self.damaged_directory}")
    return None

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    try:
      self.wait()
    finally:
      self._manager.close()


_quieted = False


def _abandoned_read(unraisable: Any) -> bool:
  """Whether an unraisable exception is the aftermath of a failed read/write.

  When one array of a damaged checkpoint fails to read (or one write fails
  on a full disk), Orbax raises at once and closes its event loop while
  TensorStore still has the other operations in flight; as each of those
  ends, its completion callback meets the closed loop (`RuntimeError: Event
  loop is closed`) and its coroutine is collected with its own error:
  hundreds of tracebacks around the one line that matters (measured: 282 on
  a damaged inverted_pendulum smoke checkpoint, 456 lines on a full disk).
  """
  value = unraisable.exc_value
  message = str(value)
  return ((isinstance(value, RuntimeError)
           and message == "Event loop is closed")
          or message.startswith("Encountered error while reading array"))


class _OrbaxFailureLog(logging_std.Filter):
  """Drops the error records Orbax's threads write about a failed save.

  On a full disk every failing write is logged by Orbax's save threads
  (each with a traceback) and by asyncio ("Task exception was never
  retrieved", one per array): ~420 lines for the smoke state. The failure
  itself is raised again by `Checkpointer.save` / `wait`, which the host
  loop reports in one line with the labels it rescued. Orbax's warnings
  and everything not from Orbax still print.
  """

  def filter(self, record: logging_std.LogRecord) -> bool:
    if record.levelno < logging_std.ERROR:
      return True
    if _from_orbax(record.pathname):
      return False
    if not record.exc_info or record.exc_info[1] is None:
      return True
    # A TensorStore future Orbax abandoned: asyncio reports it with a
    # traceback through asyncio alone; the error names its TensorStore spec.
    return not ("tensorstore_spec=" in str(record.exc_info[1]) or any(
        _from_orbax(frame.filename)
        for frame in traceback.extract_tb(record.exc_info[2])))


def _from_orbax(path: str) -> bool:
  return f"{os.sep}orbax{os.sep}" in path


def _without_abandoned_reads(hook: Callable[[Any], None]
                             ) -> Callable[[Any], None]:
  """`hook` (a `sys.unraisablehook`) less the `_abandoned_read` reports."""

  def without(unraisable):
    if not _abandoned_read(unraisable):
      hook(unraisable)

  return without


def _quiet_orbax_aftermath() -> None:
  """Installs `_abandoned_read` and `_OrbaxFailureLog`, once per process.

  Process-wide, from the first Checkpointer on: the reports arrive from
  TensorStore's and Orbax's threads after the call that failed has returned
  (or, for a background save, before the host loop learns of it), so a
  scoped filter would miss them. Every other unraisable exception and log
  record still prints.
  """
  global _quieted
  if _quieted:
    return
  _quieted = True
  sys.unraisablehook = _without_abandoned_reads(sys.unraisablehook)
  for name in ("absl", "asyncio"):
    logging_std.getLogger(name).addFilter(_OrbaxFailureLog())


def _move_aside(source: str, target: str) -> str:
  """Renames the step directory `source` to `target`, readable or not.

  Moving a directory to another parent needs write permission on the
  directory itself (its ".." entry changes), so a step whose mode is 000 (a
  directory this user cannot read) does not move, and `shutil.move` would
  fall back to copying what it cannot read. Ours: the mode is lifted for the
  move and put back after it (the set-aside copy is left as it was found); a
  directory of another owner gets a sibling name Orbax does not list.
  Returns where it went; raises CheckpointError, naming the directory, when
  neither works.
  """
  try:
    os.rename(source, target)
    return target
  except OSError as e:
    if e.errno == errno.EXDEV:  # another filesystem: copy, then delete
      return shutil.move(source, target)
    first = e
  mode = None
  with contextlib.suppress(OSError):
    mode = stat.S_IMODE(os.stat(source).st_mode)
    os.chmod(source, mode | stat.S_IRWXU)
  try:
    os.rename(source, target)
    if mode is not None:
      os.chmod(target, mode)
    return target
  except OSError:
    if mode is not None:
      with contextlib.suppress(OSError):
        os.chmod(source, mode)
  beside = f"{source}.set_aside.{time.strftime('%Y%m%d_%H%M%S')}"
  try:
    os.rename(source, beside)  # same parent: no write on `source` needed
  except OSError as e:
    raise CheckpointError(
        f"checkpoint {source} cannot be read and cannot be moved aside "
        f"({_describe(first)}; {_describe(e)}): give this user access to it "
        "or move it out of the checkpoint directory, then launch again"
    ) from e
  return beside


def _on_disk(tree: Any) -> Any:
  """The tree Orbax writes: a TrainState with an added-later field None as a
  dict of its other fields, so that it is stored (and read) exactly as
  states were before those fields existed (Orbax matches trees by field
  name; see `_ADDED_FIELDS`)."""
  if not _has_added_none(tree):
    return tree
  return {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)
          if not (f.name in _ADDED_FIELDS and getattr(tree, f.name) is None)}


def _from_disk(abstract: Any, restored: Any) -> Any:
  """Inverse of `_on_disk`, onto `abstract`'s type."""
  if not _has_added_none(abstract):
    return restored
  return type(abstract)(**restored)


def _is_train_state(tree: Any) -> bool:
  return type(tree).__name__ == "TrainState" and dataclasses.is_dataclass(tree)


def _has_added_none(tree: Any) -> bool:
  return _is_train_state(tree) and any(
      getattr(tree, f, 0) is None for f in _ADDED_FIELDS)


def _without_empty(tree: Any) -> Any:
  """`tree` with its zero-size leaves replaced by None.

  Orbax refuses to save zero-size arrays, and MJX physics states have many
  (`act` of a model without activations, ...): every env on MJX (brax's `mjx`
  backend, MuJoCo Playground) holds them. They carry no data beyond the shape
  and dtype, which `_with_empty` takes back from the abstract state.
  """
  return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _with_empty(abstract: Any, tree: Any) -> Any:
  """Inverse of `_without_empty`: zero-size leaves from `abstract` put back."""
  return jax.tree.map(
      lambda a, x: np.zeros(a.shape, a.dtype) if a.size == 0 else x,
      abstract, tree)


def _uncommitted(x: Any) -> jax.Array:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(jnp.asarray(np.asarray(
        jax.random.key_data(x))), impl=jax.random.key_impl(x))
  return jnp.asarray(np.asarray(x))


def _describe(e: BaseException) -> str:
  text = f"{type(e).__name__}: {e}"
  cause = e.__cause__ or e.__context__
  if cause is not None and str(cause) not in text:
    text += f" (caused by {type(cause).__name__}: {cause})"
  text = " ".join(text.split())  # one line in the log, whatever the library
  return text if len(text) < 600 else text[:600] + " ..."
