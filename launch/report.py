"""Aggregates a sweep's results: mean and 95 % CI per group of members.

  python -m launch.report --workdir=runs/queries [--group_by=feedback.query_selector]

Reads every unit's results.jsonl under --workdir (launch/sweep.py's layout),
writes the tidy table of all members to --workdir/results.jsonl and
results.csv, and prints one line per group: members, diverged ones, and for
final return, best return, normalised return and labels-to-threshold the
mean ± the half-width of a 95 % Student-t confidence interval over the
group's members. Labels-to-threshold is averaged over the members that
reached the threshold ("reached k/n" says how many). So are the
challenges' measures: unsafe events in the training rollouts (rrm.safety)
and the last EPIC distance of learned and true reward, where a run has
them ("-" where none has).

Groups: by default every override column except the seed (so seeds are the
replicates); --group_by names the columns instead.

It also writes the sweep's certificate into --workdir (rrm.certificate.
write_sweep): report.md and report.json with these groups' measures, and
PNG figures of each group's mean over iterations with its 95 % band (true
returns, held-out accuracy and EPIC, cumulative unsafe events), with the
provenance; launch.sweep writes the same at the end of every sweep.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from typing import Any, Iterable, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging

# Result columns that are not overrides (everything else in a row is one).
RESULT_COLUMNS = (
    "unit", "member", "seed", "env", "final_return", "best_return",
    "labels_to_threshold", "normalised_return", "labels_spent", "iterations",
    "env_steps", "wall_s", "members_in_program", "diverged", "unsafe_events",
    "final_epic", "flags_spent", "hacking_score", "budget_to_threshold",
    "budget_spent")
METRICS = ("final_return", "best_return", "normalised_return",
           "labels_to_threshold", "unsafe_events", "final_epic",
           "budget_to_threshold")

# Two-sided 95 % quantiles of Student's t with 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
         2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093,
         2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
         2.042)


def t_quantile_975(dof: int) -> float:
  if dof < 1:
    return math.nan
  return _T975[dof - 1] if dof <= len(_T975) else 1.960


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
  """(mean, half-width of the 95 % t interval); nan half-width for n < 2."""
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return math.nan, math.nan
  mean = statistics.fmean(values)
  if len(values) < 2:
    return mean, math.nan
  sem = statistics.stdev(values) / math.sqrt(len(values))
  return mean, t_quantile_975(len(values) - 1) * sem


def collect(workdir: str, units: Iterable[str] | None = None,
            write: bool = True) -> list[dict[str, Any]]:
  """All members' rows (with a `unit` column) of the units that finished."""
  if units is None:
    units = sorted(d for d in os.listdir(workdir)
                   if os.path.isdir(os.path.join(workdir, d)))
  rows = []
  for unit in units:
    path = os.path.join(workdir, unit, "results.jsonl")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      rows += [{"unit": unit, **json.loads(line)} for line in f if line.strip()]
  if write and rows:
    with open(os.path.join(workdir, "results.jsonl"), "w") as f:
      for r in rows:
        f.write(json.dumps(r, sort_keys=True) + "\n")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=columns)
      w.writeheader()
      w.writerows(rows)
  return rows


def member_runs(workdir: str) -> Iterable[dict[str, Any]]:
  """Every member of a sweep workdir (<unit>/members/NNN/), in order:
  {"dir", "unit", "config" (config.json), "report" (report.json, None if
  absent), "metrics" (the rows of metrics.jsonl)}."""
  for unit in sorted(os.listdir(workdir)):
    members = os.path.join(workdir, unit, "members")
    if not os.path.isdir(members):
      continue
    for m in sorted(os.listdir(members)):
      d = os.path.join(members, m)
      with open(os.path.join(d, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
      yield {"dir": d, "unit": unit,
             "config": _read_json(os.path.join(d, "config.json")),
             "report": _read_json(os.path.join(d, "report.json")),
             "metrics": metrics}


def _read_json(path: str) -> Any:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def group_columns(rows: Sequence[Mapping[str, Any]],
                  group_by: Sequence[str] | None = None) -> list[str]:
  """The columns that define a group: `group_by`, or every override."""
  if group_by is not None:
    return list(group_by)
  return list(dict.fromkeys(
      k for r in rows for k in r if k not in RESULT_COLUMNS))


def aggregate(rows: Sequence[Mapping[str, Any]],
              group_by: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """One dict per group: its key columns, n, diverged and metric mean/CI."""
  group_by = group_columns(rows, group_by)
  groups: dict[tuple, list[Mapping[str, Any]]] = {}
  for r in rows:
    groups.setdefault(tuple(json.dumps(r.get(k), sort_keys=True)
                            for k in group_by), []).append(r)
  out = []
  for members in groups.values():
    g: dict[str, Any] = {k: members[0].get(k) for k in group_by}
    g["n"] = len(members)
    g["diverged"] = sum(1 for m in members if m.get("diverged"))
    for metric in METRICS:
      vals = [m.get(metric) for m in members]
      g[metric], g[metric + "_ci95"] = mean_ci(
          [v for v in vals if v is not None])
      g[metric + "_n"] = sum(1 for v in vals if v is not None)
    out.append(g)
  return out


def _fmt(mean: float, ci: float) -> str:
  if not math.isfinite(mean):
    return "-"
  return f"{mean:.3g}" + (f" ± {ci:.2g}" if math.isfinite(ci) else "")


def format_table(groups: Sequence[Mapping[str, Any]]) -> str:
  """A plain-text table of `aggregate`'s groups."""
  if not groups:
    return "(no finished members)"
  keys = [k for k in groups[0] if k not in ("n", "diverged") and not any(
      k.startswith(m) for m in METRICS)]
  header = keys + ["n", "final return", "best return", "normalised",
                   "labels to threshold (reached)",
                   "budget to threshold", "unsafe events", "final EPIC"]
  lines = []
  for g in groups:
    lines.append([str(g[k]) for k in keys] + [
        f"{g['n']}" + (f" ({g['diverged']} diverged)" if g["diverged"] else ""),
        _fmt(g["final_return"], g["final_return_ci95"]),
        _fmt(g["best_return"], g["best_return_ci95"]),
        _fmt(g["normalised_return"], g["normalised_return_ci95"]),
        _fmt(g["labels_to_threshold"], g["labels_to_threshold_ci95"])
        + f" ({g['labels_to_threshold_n']}/{g['n']})",
        _fmt(g["budget_to_threshold"], g["budget_to_threshold_ci95"]),
        _fmt(g["unsafe_events"], g["unsafe_events_ci95"]),
        _fmt(g["final_epic"], g["final_epic_ci95"])])
  widths = [max(len(x) for x in col) for col in zip(header, *lines)]
  fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
  return "\n".join([fmt(header), fmt(["-" * w for w in widths])]
                   + [fmt(l) for l in lines])


def write_certificate(workdir: str, rows: Sequence[Mapping[str, Any]],
                      group_by: Sequence[str] | None = None) -> list[str]:
  """The sweep's certificate (rrm.certificate.write_sweep) into `workdir`;
  a failure to write it is a warning, never the sweep's end."""
  from rrm import certificate  # pylint: disable=g-import-not-at-top
  columns = group_columns(rows, group_by)
  try:
    return certificate.write_sweep(workdir, rows, aggregate(rows, columns),
                                   columns, mean_ci)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("the sweep certificate was not written: %s: %s",
                    type(e).__name__, e)
    return []


def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  rows = collect(workdir)
  if not rows:
    raise app.UsageError(f"no finished work unit under {workdir}")
  print(format_table(aggregate(rows, flags.FLAGS.group_by)))
  written = write_certificate(workdir, rows, flags.FLAGS.group_by)
  if written:
    print(f"certificate: {written[0]}")


if __name__ == "__main__":
  # Defined here, not at import: launch/sweep.py imports this module and has
  # a --workdir of its own.
  flags.DEFINE_string("workdir", None, "A sweep's --workdir.")
  flags.DEFINE_list("group_by", None, "Columns to group by (default: every "
                    "override but the seed).")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
