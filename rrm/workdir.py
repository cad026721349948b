"""A run's workdir: what it holds, whether it resumes, and the labels in it.

    workdir/                    a single run          a sweep's unit
      config.json               the config            -
      sweep.json                -                     members' overrides+configs
      checkpoints/              the complete state    the stacked states
      metrics.jsonl, labels.npz, labels.<node>.npz, report.json
                                at the top            per member in members/NNN/
      results.jsonl             -                     one row per member

Labels are the most expensive thing in a workdir: every decision here keeps
them (a discarded run's labels are renamed, never deleted; labels the
restored state lacks are set aside), and `export_labels` writes every node's
labels of a recursive run, not only the root's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
from typing import Any, Iterator, Sequence

from absl import logging
import jax
import numpy as np

from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import recursive as rrm_recursive
from rrm import state as rrm_state

# Fields a resumed run may change; any other difference is refused.
RESUMABLE_CHANGES = ("num_iterations", "eval_every", "checkpoint_every",
                     "keep_checkpoints", "log", "report")


class WorkdirError(OSError):
  """The workdir cannot be written (permissions, a full disk, ...)."""


class WorkdirBusyError(WorkdirError):
  """Another live process holds the workdir (see `lock`)."""


LOCK_FILE = ".rrm.lock"
_held: dict[str, list[int]] = {}  # realpath -> [fd, depth], this process's


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds `workdir` for this process: one process per workdir.

  An exclusive `flock` on workdir/.rrm.lock, which names its holder (pid,
  host, start time). The kernel releases it when the holder exits, however
  it exits (kill -9 included), so a lock left behind never blocks a
  relaunch. Re-entrant within a process. Raises WorkdirBusyError, naming
  the holder, if another process holds it.
  """
  existed = os.path.isdir(workdir)
  check_writable(workdir)
  key = os.path.realpath(workdir)
  if key in _held:
    _held[key][1] += 1
    try:
      yield
    finally:
      _held[key][1] -= 1
    return
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise WorkdirBusyError(
        f"{workdir} is in use by another rrm process ({holder}); one "
        "process per workdir: wait for it to finish or stop it (SIGTERM "
        "saves and exits), or choose another --workdir") from e
  os.ftruncate(fd, 0)
  os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n").encode())
  _held[key] = [fd, 1]
  try:
    yield
  finally:
    del _held[key]
    try:
      # A launch that wrote nothing (refused before it built anything)
      # leaves nothing: no empty workdir, no lock file.
      if os.listdir(workdir) == [LOCK_FILE]:
        os.remove(path)
        if not existed:
          os.rmdir(workdir)
    except OSError:
      pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# Config fields added after workdirs were first written, with the value an
# older config.json (which lacks them) meant: such a run resumes unchanged.
ADDED_LATER = {"rl": {"algorithm": "ppo"}, "sac": None,
               "feedback.recent_segments": 0, "env.unsafe_event": "auto",
               "safety": None, "report.hacking_signal": "episode",
               "ratings": None}


def config_differences(saved: dict[str, Any], now: dict[str, Any],
                       resumable: Sequence[str] = RESUMABLE_CHANGES,
                       prefix: str = "") -> list[str]:
  """'field: saved x, now y' for each differing field, except `resumable`."""
  diffs = []
  for k in sorted(set(saved) | set(now)):
    name = prefix + k
    if not prefix and k in resumable:
      continue
    a, b = saved.get(k, ADDED_LATER.get(name)), now.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, resumable, name + ".")
    elif a != b and not (isinstance(a, list) and tuple(a) == b):
      diffs.append(f"{name}: saved {a!r}, now {b!r}")
  return diffs


def record_path(workdir: str, is_sweep: bool) -> str:
  return os.path.join(workdir, "sweep.json" if is_sweep else "config.json")


def read_record(workdir: str, is_sweep: bool) -> Any:
  """The saved config (a run's dict, a sweep's member list), or None."""
  path = record_path(workdir, is_sweep)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_record(workdir: str, record: Any, is_sweep: bool) -> None:
  write_json(record_path(workdir, is_sweep), record)


def check_same_configs(workdir: str, saved: Any, now: Any,
                       is_sweep: bool) -> None:
  """Refuses to resume a workdir of another config (or other members).

  `saved` and `now`: a run's config dict, or a sweep's list of
  {"overrides", "config"}; fields in RESUMABLE_CHANGES may differ.
  """
  now = json.loads(json.dumps(now))
  if not is_sweep:
    diffs = config_differences(saved or {}, now)
    if diffs:
      raise rrm_config.ConfigError(
          f"{workdir} holds a run with another config; a resumed run may "
          f"change only {', '.join(RESUMABLE_CHANGES)}. Differences:\n  "
          + "\n  ".join(diffs))
    return
  saved = saved or []
  diffs = []
  if len(saved) != len(now):
    diffs.append(f"{len(saved)} members saved, {len(now)} now")
  else:
    for i, (a, b) in enumerate(zip(saved, now)):
      diffs += [f"member {i}: {d}" for d in config_differences(
          a["config"], b["config"])]
  if diffs:
    raise rrm_config.ConfigError(
        f"{workdir} holds a sweep of other members; differences:\n  "
        + "\n  ".join(diffs))


def truncate_metrics(path: str, last_iteration: int) -> None:
  """Drops metric lines after `last_iteration` (written after the checkpoint)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  with open(path + ".tmp", "w") as f:
    for line in lines:
      try:
        m = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      if m["iteration"] <= last_iteration:
        f.write(json.dumps(m, sort_keys=True) + "\n")
  os.replace(path + ".tmp", path)


def check_writable(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".rrm-write-probe-{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable: "
                       f"{e.strerror or e}") from e


def holds_run(workdir: str) -> bool:
  return any(os.path.exists(os.path.join(workdir, name)) and (
      not os.path.isdir(os.path.join(workdir, name))
      or os.listdir(os.path.join(workdir, name)))
             for name in ("metrics.jsonl", "checkpoints", "labels.npz"))


def _stamp() -> str:
  return time.strftime("%Y%m%d_%H%M%S")


def label_files(directory: str) -> list[str]:
  """The exported labels in `directory`: labels.npz and every node's
  labels.<node>.npz (not the ones already set aside)."""
  if not os.path.isdir(directory):
    return []
  names = [n for n in os.listdir(directory) if n == "labels.npz" or (
      n.startswith("labels.") and n.endswith(".npz")
      and not n.startswith(("labels.discarded_", "labels.after_"))
      and ".tmp" not in n)]
  return sorted(names)


def _set_aside(directory: str, name: str, tag: str) -> str:
  """labels[.<node>].npz -> labels[.<node>].<tag>.npz, never overwriting."""
  node = name[len("labels"):-len(".npz")]  # "" or ".<node>"
  kept = os.path.join(directory, f"labels.{tag}{node}.npz")
  os.replace(os.path.join(directory, name), kept)
  return kept


def discard_run(workdir: str) -> str | None:
  """Removes a previous run's outputs; its labels (every node's) are kept as
  labels.discarded_<time>[.<node>].npz. Returns the root's kept path."""
  kept = None
  tag = f"discarded_{_stamp()}"
  for name in label_files(workdir):
    path = _set_aside(workdir, name, tag)
    if name == "labels.npz":
      kept = path
  for name in ("checkpoints", "checkpoints_damaged", "tensorboard", "wandb"):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  for name in ("metrics.jsonl", "config.json"):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  return kept


def prepare_fresh(workdir: str, overwrite: bool) -> None:
  """--fresh: refuses a workdir that holds a run unless `overwrite`, which
  discards it (keeping its labels)."""
  if not holds_run(workdir):
    return
  if not overwrite:
    raise FileExistsError(
        f"{workdir} already holds a run; starting afresh would discard "
        "it. Add --overwrite to do so (its labels are kept), or drop "
        "--fresh to resume it.")
  kept = discard_run(workdir)
  logging.warning("discarded the run in %s%s", workdir,
                  f"; its labels are kept as {kept}" if kept else "")


def _count(path: str) -> int | None:
  """Labels, flags and ratings a labels file holds (None: unreadable)."""
  try:
    with np.load(path) as data:
      return int(data["label"].shape[0]) + sum(
          int(data[k].shape[0]) for k in ("flag", "rating")
          if k in data.files)
  except Exception:  # pylint: disable=broad-except
    return None  # unreadable


def keep_unsaved_labels(directory: str, restored: dict[str, int],
                        step: int) -> list[str]:
  """Sets aside exported labels the restored state lacks.

  That happens when a run stopped on non-finite values (its labels are
  exported even though its state is not saved) or lost its latest
  checkpoint. The next export would overwrite them; they are kept instead.

  Args:
    directory: where the run's labels are exported.
    restored: file name (labels.npz, labels.<node>.npz) -> the number of
      labels the restored state holds for it.
    step: the restored iteration.

  Returns:
    The paths of the files set aside (labels.after_<step>_<time>...npz).
  """
  kept, tag = [], f"after_{step}_{_stamp()}"
  for name in label_files(directory):
    have = restored.get(name, 0)
    count = _count(os.path.join(directory, name))
    if count is not None and count <= have:
      continue  # unreadable ones are kept, to be safe
    path = _set_aside(directory, name, tag)
    kept.append(path)
    logging.warning(
        "%s holds %s labels, the checkpoint restored (iteration %d) %d; they "
        "are kept as %s (warm-start a run from them with --labels)",
        os.path.join(directory, name), "unreadable" if count is None else
        count, step, have, path)
  return kept


def restored_counts(state: rrm_state.TrainState,
                    plan: rrm_recursive.Plan) -> dict[str, int]:
  """The labels (flags, ratings) a (host) state holds, per exported file."""
  counts = {"labels.npz": int(state.labels.count) + (
      0 if state.safety is None else int(state.safety.flags.count)) + (
          0 if state.ratings is None else int(state.ratings.ratings.count))}
  if state.helpers is not None:
    for h, node in enumerate(plan.helpers):
      counts[f"labels.{node.name}.npz"] = int(state.helpers.labels.count[h])
  return counts


def labels_view(state: rrm_state.TrainState) -> tuple[Any, ...]:
  """The parts of a state `export_labels` writes: (root labels, teacher,
  helpers' labels or None, unacceptable flags or None, ratings or None).
  Small enough to gather to one host."""
  return (state.labels, state.teacher,
          None if state.helpers is None else state.helpers.labels,
          None if state.safety is None else state.safety.flags,
          state.ratings)


def export_labels(view: tuple[Any, Any, Any], directory: str,
                  config: rrm_config.TrainConfig,
                  plan: rrm_recursive.Plan) -> None:
  """Exports every label of a run (`labels_view` of its host state): the
  root's to labels.npz, each helper's (recursive runs) to
  labels.<node>.npz; the root user's flags and ratings go with its
  labels."""
  labels, teacher, helper_labels, flags, ratings = view
  rrm_checkpoint.export_labels(labels, teacher,
                               os.path.join(directory, "labels.npz"),
                               config.env.name, flags, ratings)
  if helper_labels is None:
    return
  for h, node in enumerate(plan.helpers):
    rrm_checkpoint.export_labels(
        jax.tree.map(lambda x, h=h: x[h], helper_labels), teacher,
        os.path.join(directory, f"labels.{node.name}.npz"), config.env.name)


def load_warm_start(config: rrm_config.TrainConfig, observation_size: int,
                    action_size: int) -> rrm_checkpoint.LabelFile | None:
  """Reads `feedback.warm_start_labels` and checks that it fits the run (its
  env's observation and action sizes)."""
  fb = config.feedback
  if not fb.warm_start_labels:
    return None
  lf = rrm_checkpoint.load_labels(fb.warm_start_labels)
  where = f"labels file {fb.warm_start_labels}"
  if lf.env and lf.env != config.env.name:
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds labels of env {lf.env!r}, this run trains "
        f"{config.env.name!r}")
  if lf.size and (lf.observation_size, lf.action_size) != (
      observation_size, action_size):
    raise rrm_checkpoint.LabelsFileError(
        f"{where} has observations of size {lf.observation_size} and actions "
        f"of size {lf.action_size}; env {config.env.name!r} has "
        f"{observation_size} and {action_size}")
  if lf.size and lf.segment_length != fb.segment_length:
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds segments of length {lf.segment_length}; "
        f"config.feedback.segment_length={fb.segment_length}")
  if not fb.warm_start_extra and lf.size > config.preference_budget:
    flags = (f" (less the safety flags' {config.safety.budget_units} units)"
             if config.safety is not None else "")
    raise rrm_config.ConfigError(
        f"{where} holds {lf.size} labels, more than config.feedback.budget="
        f"{fb.budget}{flags} they are counted against; raise the budget or "
        "declare "
        "them extra (config.feedback.warm_start_extra=True, --labels_extra)")
  shown = None if lf.flags is None else lf.flags.segments.observation
  if shown is not None and config.safety is not None and lf.flags.size and (
      shown.shape[1:] != (fb.segment_length, observation_size)
      or lf.flags.segments.action.shape[-1] != action_size):
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds flagged segments of {shown.shape[1]} steps, "
        f"observations of {shown.shape[2]} and actions of "
        f"{lf.flags.segments.action.shape[-1]}; this run has "
        f"config.feedback.segment_length={fb.segment_length}, "
        f"{observation_size} and {action_size}")
  if lf.flags is not None and config.safety is not None and (
      lf.flags.size > config.safety.flags):
    raise rrm_config.ConfigError(
        f"{where} holds {lf.flags.size} unacceptable flags, more than "
        f"config.safety.flags={config.safety.flags} they are counted "
        "against; raise safety.flags")
  if lf.flags is not None and config.safety is None:
    logging.info("%s holds %d unacceptable flags; this run has none "
                 "(safety.flags=0), so they are not imported", where,
                 lf.flags.size)
  _check_warm_ratings(lf, config, observation_size, action_size, where)
  return lf


def _check_warm_ratings(lf: rrm_checkpoint.LabelFile,
                        config: rrm_config.TrainConfig, observation_size: int,
                        action_size: int, where: str) -> None:
  """A file's ratings fit a run with ratings: its segments, its scale and
  the run's ratings.ratings they count against."""
  rt, fb = config.ratings, config.feedback
  if lf.ratings is None or not lf.ratings.size:
    return
  if rt is None:
    logging.info("%s holds %d ratings; this run has none "
                 "(ratings.ratings=0), so they are not imported", where,
                 lf.ratings.size)
    return
  shown = lf.ratings.segments
  if shown.observation.shape[1:] != (fb.segment_length, observation_size) or (
      shown.action.shape[-1] != action_size):
    raise rrm_checkpoint.LabelsFileError(
        f"{where} holds rated segments of {shown.observation.shape[1]} steps, "
        f"observations of {shown.observation.shape[2]} and actions of "
        f"{shown.action.shape[-1]}; this run has "
        f"config.feedback.segment_length={fb.segment_length}, "
        f"{observation_size} and {action_size}")
  if lf.ratings.levels != rt.levels:
    raise rrm_config.ConfigError(
        f"{where} holds ratings on a scale of 1..{lf.ratings.levels}; "
        f"config.ratings.levels={rt.levels}")
  if lf.ratings.size > rt.ratings:
    raise rrm_config.ConfigError(
        f"{where} holds {lf.ratings.size} ratings, more than "
        f"config.ratings.ratings={rt.ratings} they are counted against; "
        "raise ratings.ratings")


def write_json(path: str, value: Any) -> None:
  """Writes JSON atomically: another process may be reading `path`."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, default=json_default)
  os.replace(tmp, path)


def json_default(v: Any) -> Any:
  if isinstance(v, (np.integer, np.floating)):
    return v.item()
  return str(v)
