"""The labels file: a run's feedback as a plain `.npz` that outlives code.

`export_labels` writes a run's label dataset (and its unacceptable flags,
rrm.flags, and its ratings, rrm.ratings) atomically; `load_labels` reads one back, checking every array
before any is used, so that a file that does not fit is refused naming the
file and the field, never inside JAX. Schema in `export_labels`; files of
every earlier schema version still load (READABLE_FORMATS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import jax
import numpy as np

from rrm import feedback as rrm_feedback
from rrm import segments as rrm_segments

LABELS_FORMAT = "rrm.labels.v3"
# Formats `load_labels` reads: v1 (written before the unacceptable flags)
# is v2 without them, v2 (before the ratings) v3 without those.
READABLE_FORMATS = ("rrm.labels.v1", "rrm.labels.v2", LABELS_FORMAT)


class LabelsFileError(ValueError):
  """A labels file is missing, unreadable, or does not fit the run."""


def export_labels(dataset: rrm_feedback.LabelDataset, teacher: Any,
                  path: str, env_name: str = "", flags: Any = None,
                  ratings: Any = None) -> None:
  """Writes the stored labels (flags, ratings) to `path` (.npz), atomically.

  Schema (N = labels stored, L = segment length):
    format                                           [] str, "rrm.labels.v3"
    env                                              [] str, env name
    first_observation, second_observation            [N, L, obs_size] float32
    first_action, second_action                      [N, L, action_size]
    first_next_observation, second_next_observation  [N, L, obs_size]
      (the step's outcome, before any auto-reset)
    first_true_reward, second_true_reward            [N, L]  (hidden rewards)
    label      [N] float32, P(second preferred): 0, 0.5 or 1
    iteration  [N] int32, iteration that asked (-1: initial batch,
               -2: imported from another labels file)
    spent      [] int32, labels this run paid for (imported extra labels are
               stored but not paid for, so spent may be < N)
    teacher_<field>  [] teacher parameters (beta, equal_threshold, ...)
  and, when the run has unacceptable flags (`flags`, rrm.flags.FlagDataset;
  F = flags stored):
    flag_observation, flag_action, flag_next_observation, flag_true_reward
               [F, L, ...] the segments the user was shown
    flag       [F] float32, 1: flagged unacceptable
    flag_truth [F] float32, whether the segment held an unsafe event (the
               synthetic teacher's hidden truth)
    flag_iteration  [F] int32, iteration that asked
  and, when the run has ratings (`ratings`, rrm.ratings.RatingState;
  R = ratings stored):
    rating_observation, rating_action, rating_next_observation,
    rating_true_reward  [R, L, ...] the segments the user rated
    rating            [R] int32 in 1..rating_levels
    rating_iteration  [R] int32, iteration that asked (-1: before the first)
    rating_levels     [] int32, K of the scale
    rating_anchors    [2] float32, the synthetic teacher's hidden scale
  v2 files are v3 files without ratings; v1 files v2 files without flags.
  """
  dataset = jax.device_get(dataset)
  n = int(dataset.count)
  arrays = {"format": np.asarray(LABELS_FORMAT), "env": np.asarray(env_name),
            "label": np.asarray(dataset.label)[:n],
            "iteration": np.asarray(dataset.iteration)[:n],
            "spent": np.asarray(dataset.spent)}
  for side in ("first", "second"):
    segs = getattr(dataset, side)
    for field in segs._fields:
      arrays[f"{side}_{field}"] = np.asarray(getattr(segs, field))[:n]
  for field in dataclasses.fields(teacher):
    arrays[f"teacher_{field.name}"] = np.asarray(
        jax.device_get(getattr(teacher, field.name)))
  if flags is not None:
    flags = jax.device_get(flags)
    f = int(flags.count)
    for field in flags.segments._fields:
      arrays[f"flag_{field}"] = np.asarray(getattr(flags.segments,
                                                   field))[:f]
    arrays["flag"] = np.asarray(flags.flag)[:f]
    arrays["flag_truth"] = np.asarray(flags.truth)[:f]
    arrays["flag_iteration"] = np.asarray(flags.iteration)[:f]
  if ratings is not None:
    arrays.update(_rating_arrays(jax.device_get(ratings)))
  tmp = path + ".tmp.npz"
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    # A full disk, a kill: no half-written file left to mislead.
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


@dataclasses.dataclass(frozen=True)
class FlagRecord:
  """A labels file's unacceptable flags (schema v2; rrm.flags)."""
  segments: rrm_segments.Segments  # [F, L, ...] numpy
  flag: np.ndarray  # [F] float32, 1: unacceptable
  truth: np.ndarray  # [F] float32, the hidden truth
  iteration: np.ndarray  # [F] int32

  @property
  def size(self) -> int:
    return int(self.flag.shape[0])


def _rating_arrays(state: Any) -> dict[str, np.ndarray]:
  r = state.ratings
  n = int(r.count)
  arrays = {f"rating_{field}": np.asarray(getattr(r.segments, field))[:n]
            for field in r.segments._fields}
  arrays["rating"] = np.asarray(r.rating)[:n].astype(np.int32)
  arrays["rating_iteration"] = np.asarray(r.iteration)[:n]
  arrays["rating_levels"] = np.asarray(
      state.params["thresholds"].shape[-1] + 1, np.int32)
  arrays["rating_anchors"] = np.asarray(state.anchors, np.float32)
  return arrays


@dataclasses.dataclass(frozen=True)
class RatingRecord:
  """A labels file's scalar ratings (schema v3; rrm.ratings)."""
  segments: rrm_segments.Segments  # [R, L, ...] numpy
  rating: np.ndarray  # [R] int32 in 1..levels
  iteration: np.ndarray  # [R] int32
  levels: int
  anchors: np.ndarray  # [2] the synthetic teacher's hidden (lo, hi)

  @property
  def size(self) -> int:
    return int(self.rating.shape[0])


@dataclasses.dataclass(frozen=True)
class LabelFile:
  """A labels file read back: N labelled pairs and where they came from."""
  path: str
  env: str
  first: rrm_segments.Segments  # [N, L, ...] numpy
  second: rrm_segments.Segments
  label: np.ndarray  # [N] float32
  iteration: np.ndarray  # [N] int32
  teacher: dict[str, float]
  flags: FlagRecord | None = None  # None: a v1 file, or a run without flags
  ratings: RatingRecord | None = None  # None: before v3, or no ratings

  @property
  def size(self) -> int:
    return int(self.label.shape[0])

  @property
  def segment_length(self) -> int:
    return int(self.first.true_reward.shape[1])

  @property
  def observation_size(self) -> int:
    return int(self.first.observation.shape[-1])

  @property
  def action_size(self) -> int:
    return int(self.first.action.shape[-1])


def _numeric(path: str, name: str, a: np.ndarray, kinds: str) -> None:
  if a.dtype.kind not in kinds:
    raise LabelsFileError(
        f"labels file {path}: {name} holds {a.dtype} values, expected "
        + ("integers" if kinds == "iu" else "numbers"))


def _segments(path: str, arrays: dict[str, np.ndarray], n: int
              ) -> dict[str, rrm_segments.Segments]:
  """Both sides' segments, every field of the schema's shape (one N, L,
  observation and action size throughout) and finite."""
  fields = rrm_segments.Segments._fields
  ref = arrays["first_observation"]
  if ref.ndim != 3 or ref.shape[0] != n:
    raise LabelsFileError(
        f"labels file {path}: first_observation has shape {ref.shape}, "
        f"expected [N={n}, L, observation size]")
  _, length, obs = ref.shape
  act = (arrays["first_action"].shape[-1]
         if arrays["first_action"].ndim == 3 else -1)
  want = {"observation": (n, length, obs), "next_observation":
          (n, length, obs), "action": (n, length, act),
          "true_reward": (n, length)}
  sides = {}
  for side in ("first", "second"):
    for f in fields:
      a = arrays[f"{side}_{f}"]
      if a.shape != want[f] or (f == "action" and act < 1):
        raise LabelsFileError(
            f"labels file {path}: {side}_{f} has shape {a.shape}, expected "
            f"{want[f]} (N={n} pairs, segments of L={length} steps, "
            f"observations of {obs}"
            + (f", actions of {act}" if act > 0 else "") + ")")
      if not np.all(np.isfinite(a)):
        raise LabelsFileError(f"labels file {path}: {side}_{f} holds "
                              "non-finite values")
    sides[side] = rrm_segments.Segments(*[
        arrays[f"{side}_{f}"].astype(np.float32) for f in fields])
  return sides


def load_labels(path: str) -> LabelFile:
  """Reads and checks a labels file written by `export_labels`.

  Every array is checked before any is used: numeric, and of the schema's
  shape ([N] labels and iterations; [N, L, obs], [N, L, act], [N, L]
  segments, one N, L, obs and act across all of them), so that a file that
  does not fit is refused naming the file and the field, never inside JAX.
  """
  if not os.path.isfile(path):
    raise LabelsFileError(f"labels file {path} does not exist")
  try:
    with open(path, "rb") as f:
      magic = f.read(4)
  except OSError as e:
    raise LabelsFileError(f"labels file {path} cannot be read: {e}") from e
  if magic != b"PK\x03\x04":  # an .npz is a zip archive
    raise LabelsFileError(
        f"{path} is not an rrm labels file (not an .npz archive; rrm writes "
        "labels.npz with rrm.checkpoint.export_labels)")
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except Exception as e:  # pylint: disable=broad-except
    raise LabelsFileError(f"labels file {path} cannot be read: {e}") from e
  fmt = str(arrays.get("format", ""))
  if fmt not in READABLE_FORMATS:
    raise LabelsFileError(
        f"{path} is not an rrm labels file (format {fmt!r}, expected one of "
        f"{', '.join(map(repr, READABLE_FORMATS))})")
  fields = rrm_segments.Segments._fields
  missing = [k for k in ["label", "iteration"] + [
      f"{s}_{f}" for s in ("first", "second") for f in fields]
             if k not in arrays]
  if missing:
    raise LabelsFileError(f"labels file {path} lacks {', '.join(missing)}")
  for k in ["label"] + [f"{s}_{f}" for s in ("first", "second")
                        for f in fields]:
    _numeric(path, k, arrays[k], "biuf")
  _numeric(path, "iteration", arrays["iteration"], "iu")
  n = arrays["label"].shape[0] if arrays["label"].ndim else 0
  for k in ("label", "iteration"):
    if arrays[k].shape != (n,):
      raise LabelsFileError(
          f"labels file {path}: {k} has shape {arrays[k].shape}, expected "
          f"({n},): one value per labelled pair")
  sides = _segments(path, arrays, n)
  label = arrays["label"].astype(np.float32)
  if not np.all(np.isin(label, (0.0, 0.5, 1.0))):
    raise LabelsFileError(f"labels file {path}: labels must be 0, 0.5 or 1")
  teacher = {}
  for k, v in arrays.items():
    if k.startswith("teacher_"):
      _numeric(path, k, v, "biuf")
      teacher[k[len("teacher_"):]] = float(v)
  return LabelFile(path=path, env=str(arrays.get("env", "")),
                   first=sides["first"], second=sides["second"], label=label,
                   iteration=arrays["iteration"].astype(np.int32),
                   teacher=teacher, flags=_flags(path, arrays, sides),
                   ratings=_ratings(path, arrays, sides))


def _kind_arrays(path: str, arrays: dict[str, np.ndarray],
                 sides: dict[str, rrm_segments.Segments], prefix: str,
                 what: str, per_row: dict[str, str],
                 fixed: dict[str, tuple[tuple[int, ...], str]]) -> bool:
  """Checks one feedback kind's arrays in a labels file: all or none
  present (False: none), numeric, of one count R per row and of the
  preferences' segment length, observation and action sizes, finite.

  `per_row`: the [R] arrays and their kinds ("iu" integers, "biuf"
  numbers), the first giving R; `fixed`: other arrays' (shape, kind); the
  segments are `<prefix>_<field>` of every Segments field."""
  fields = rrm_segments.Segments._fields
  seg_names = [f"{prefix}_{f}" for f in fields]
  names = list(per_row) + list(fixed) + seg_names
  if not any(k in arrays for k in names):
    return False
  missing = [k for k in names if k not in arrays]
  if missing:
    raise LabelsFileError(f"labels file {path} has {what} but lacks "
                          f"{', '.join(missing)}")
  kinds = {**per_row, **{k: kind for k, (_, kind) in fixed.items()},
           **{k: "biuf" for k in seg_names}}
  for k in names:
    _numeric(path, k, arrays[k], kinds[k])
  first = arrays[next(iter(per_row))]
  n = first.shape[0] if first.ndim == 1 else -1
  ref = sides["first"]
  length, obs, act = (ref.observation.shape[1], ref.observation.shape[2],
                      ref.action.shape[2])
  want = {**{k: (n,) for k in per_row},
          **{k: shape for k, (shape, _) in fixed.items()},
          f"{prefix}_observation": (n, length, obs),
          f"{prefix}_next_observation": (n, length, obs),
          f"{prefix}_action": (n, length, act),
          f"{prefix}_true_reward": (n, length)}
  for k, shape in want.items():
    if arrays[k].shape != shape or n < 0:
      raise LabelsFileError(
          f"labels file {path}: {k} has shape {arrays[k].shape}, expected "
          f"{shape} ({what} of segments as the preferences' L={length}, "
          f"observations of {obs}, actions of {act})")
    if not np.all(np.isfinite(arrays[k])):
      raise LabelsFileError(f"labels file {path}: {k} holds non-finite "
                            "values")
  return True


def _segments_of(arrays: dict[str, np.ndarray],
                 prefix: str) -> rrm_segments.Segments:
  return rrm_segments.Segments(*[
      arrays[f"{prefix}_{f}"].astype(np.float32)
      for f in rrm_segments.Segments._fields])


def _flags(path: str, arrays: dict[str, np.ndarray],
           sides: dict[str, rrm_segments.Segments]) -> FlagRecord | None:
  """The file's flags (None without), of the preferences' L, observation
  and action sizes, checked as they are."""
  if not _kind_arrays(path, arrays, sides, "flag", "F flags",
                      {"flag": "biuf", "flag_truth": "biuf",
                       "flag_iteration": "iu"}, {}):
    return None
  for k in ("flag", "flag_truth"):
    if not np.all(np.isin(arrays[k], (0.0, 1.0))):
      raise LabelsFileError(f"labels file {path}: {k} must be 0 or 1")
  return FlagRecord(
      segments=_segments_of(arrays, "flag"),
      flag=arrays["flag"].astype(np.float32),
      truth=arrays["flag_truth"].astype(np.float32),
      iteration=arrays["flag_iteration"].astype(np.int32))


def _ratings(path: str, arrays: dict[str, np.ndarray],
             sides: dict[str, rrm_segments.Segments]) -> RatingRecord | None:
  """The file's ratings (None without), of the preferences' L, observation
  and action sizes, each in 1..rating_levels."""
  if not _kind_arrays(path, arrays, sides, "rating", "R ratings",
                      {"rating": "iu", "rating_iteration": "iu"},
                      {"rating_levels": ((), "iu"),
                       "rating_anchors": ((2,), "biuf")}):
    return None
  levels = int(arrays["rating_levels"])
  if levels < 2 or not np.all((arrays["rating"] >= 1)
                              & (arrays["rating"] <= levels)):
    raise LabelsFileError(
        f"labels file {path}: rating must lie in 1..rating_levels="
        f"{levels} (and rating_levels >= 2)")
  return RatingRecord(
      segments=_segments_of(arrays, "rating"),
      rating=arrays["rating"].astype(np.int32),
      iteration=arrays["rating_iteration"].astype(np.int32), levels=levels,
      anchors=arrays["rating_anchors"].astype(np.float32))
