"""The run certificate: report.md beside report.json, with PNG figures.

Leike et al. 2018 ask for "safety certificates": what a run did, measured
against the hidden truth, in a form a reader can check. Each run (and each
sweep member) writes into its directory, at the end of the host loop:

  report.md            the report.json numbers as a table, the figures and
                       the provenance: rrm version, git revision, package
                       versions, the config's and the last checkpoint's
                       SHA-256
  certificate_returns.png   evaluated true return; the training rollouts'
                       learned and true episode returns; the iterations the
                       reward-hacking detector flagged
  certificate_feedback.png  labels spent (labels-to-threshold marked);
                       held-out label accuracy and the learned reward's
                       pair accuracy on the labelled and the policy's
                       segments; its EPIC distance to the true reward
  certificate_gap.png  with report.baseline_aspects: each reward
                       component's share of the true-reward baseline's
  certificate_unsafe.png  unsafe events in the training rollouts
                       (rrm.safety): per iteration and cumulative

A sweep's certificate (`write_sweep`, called by launch.sweep at its end and
by launch.report) goes to the sweep's --workdir: report.md with one row per
group of members (the seeds as replicates) and its measures as mean ± the
half-width of a 95 % Student-t interval, report.json with the same numbers,
and figures of the groups' means over iterations with their 95 % bands:

  sweep_returns.png    evaluated true return; training rollouts' true
                       episode return
  sweep_feedback.png   held-out label accuracy; EPIC distance (where runs
                       have it)
  sweep_unsafe.png     cumulative unsafe events in training
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Mapping, Sequence

FIGURES = ("certificate_returns.png", "certificate_feedback.png",
           "certificate_gap.png", "certificate_unsafe.png")


def _series(history: Sequence[Mapping[str, Any]], key: str
            ) -> tuple[list[int], list[float]]:
  its, values = [], []
  for m in history:
    v = m.get(key)
    if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
      its.append(int(m["iteration"]))
      values.append(float(v))
  return its, values


def _figures(directory: str, history: Sequence[Mapping[str, Any]],
             report: Mapping[str, Any]) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  written = []

  fig, ax = plt.subplots(figsize=(6.4, 3.6))
  drawn_returns = False
  for key, label in (("eval/true_return", "eval true return"),
                     ("rollout/true_episode_return", "rollout true return"),
                     ("rollout/learned_episode_return",
                      "rollout learned return")):
    its, values = _series(history, key)
    if its:
      ax.plot(its, values, marker="o" if key.startswith("eval") else None,
              label=label)
      drawn_returns = True
  for it in (report.get("reward_hacking") or {}).get("flagged_iterations",
                                                     []):
    ax.axvline(it, color="red", alpha=0.25, linewidth=3)
  ax.set_xlabel("iteration")
  ax.set_ylabel("return")
  ax.set_title("returns (red: reward-hacking detector flags)")
  if drawn_returns:
    ax.legend(fontsize="small")
  fig.tight_layout()
  written.append(_save(fig, directory, FIGURES[0]))
  plt.close(fig)

  fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6))
  its, values = _series(history, "oracle/labels")
  left.plot(its, values, label="preference labels")
  its, values = _series(history, "feedback/budget_spent")
  if its:  # other kinds too (flags, ratings): every kind at its cost
    left.plot(its, values, label="budget units, all kinds")
    left.legend(fontsize="small")
  if report.get("iteration_to_threshold") is not None:
    left.axvline(report["iteration_to_threshold"], color="green",
                 linestyle="--", label=f"threshold reached "
                 f"({report.get('labels_to_threshold')} labels)")
    left.legend(fontsize="small")
  left.set_xlabel("iteration")
  left.set_ylabel("feedback spent")
  drawn = 0
  for key in ("reward/heldout_accuracy", "reward/labelled_pair_accuracy",
              "reward/policy_pair_accuracy", "reward/epic"):
    its, values = _series(history, key)
    if its:
      right.plot(its, values, label=key.split("/")[1])
      drawn += 1
  right.set_ylim(0.0, 1.05)
  right.set_xlabel("iteration")
  right.set_ylabel("accuracy; EPIC distance")
  if drawn:
    right.legend(fontsize="small")
  else:
    right.set_title("no learned reward (true-reward run)")
  fig.tight_layout()
  written.append(_save(fig, directory, FIGURES[1]))
  plt.close(fig)

  gap = report.get("reward_result_gap") or {}
  if gap:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = sorted(gap)
    shares = [gap[n]["share"] if gap[n]["share"] is not None else 0.0
              for n in names]
    ax.bar(names, shares)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_ylabel("share of the true-reward baseline")
    ax.set_title("reward-result gap per component")
    fig.tight_layout()
    written.append(_save(fig, directory, FIGURES[2]))
    plt.close(fig)

  written += _unsafe_figure(plt, directory, history, report)
  return written


def _unsafe_figure(plt, directory: str, history: Sequence[Mapping[str, Any]],
                   report: Mapping[str, Any]) -> list[str]:
  """certificate_unsafe.png, when the run counted unsafe events."""
  unsafe = report.get("unacceptable_outcomes") or {}
  its, values = _series(history, "safety/unsafe_events")
  if not its or unsafe.get("total") is None:
    return []
  fig, ax = plt.subplots(figsize=(6.4, 3.6))
  ax.bar(its, values, color="tab:red", alpha=0.5, label="per iteration")
  ax.set_xlabel("iteration")
  ax.set_ylabel(f"{unsafe.get('event')} events")
  twin = ax.twinx()
  twin.plot(its, _series(history, "safety/unsafe_events_total")[1],
            color="black", label="cumulative")
  twin.set_ylabel("cumulative")
  flags = unsafe.get("flags")
  ax.set_title(f"unsafe events in training ({unsafe['total']} in all)"
               + (f"; {flags['flagged']} of the user's {flags['spent']} "
                  "flags" if flags else ""))
  fig.tight_layout()
  path = _save(fig, directory, FIGURES[3])
  plt.close(fig)
  return [path]


def _provenance() -> list[str]:
  """report.md's provenance table: rrm, git revision, package versions."""
  from rrm import __version__  # pylint: disable=g-import-not-at-top
  from rrm import checkpoint as rrm_checkpoint  # pylint: disable=g-import-not-at-top
  lines = ["", "## Provenance", "", "| | |", "|---|---|",
           f"| rrm | {__version__} |",
           f"| git revision | {rrm_checkpoint.git_revision()} |"]
  for name, version in sorted(rrm_checkpoint.package_versions().items()):
    lines.append(f"| {name} | {version} |")
  return lines


def _save(fig, directory: str, name: str) -> str:
  path = os.path.join(directory, name)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=80)
  os.replace(tmp, path)
  return path


def _flat(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
  """Nested dicts as sorted (dotted key, value) rows."""
  rows = []
  for k in sorted(d):
    if isinstance(d[k], Mapping) and d[k]:
      rows += _flat(d[k], f"{prefix}{k}.")
    else:
      rows.append((prefix + k, d[k]))
  return rows


def _value(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, (dict, list)):
    return "`" + json.dumps(v, sort_keys=True)[:200] + "`"
  return str(v)


def write(directory: str, history: Sequence[Mapping[str, Any]],
          report: Mapping[str, Any], config: Mapping[str, Any],
          checkpoint: Mapping[str, Any] | None = None) -> list[str]:
  """Writes report.md and the figures into `directory`; returns the paths.

  Args:
    directory: the run's (or sweep member's) directory.
    history: its metrics rows (metrics.jsonl, a resumed run's included).
    report: its report.json content.
    config: its config as rrm.config.to_dict gives it.
    checkpoint: {"step", "state_sha256"} of its last checkpoint, if any.
  """
  written = _figures(directory, history, report)
  config_sha = hashlib.sha256(json.dumps(
      config, sort_keys=True, default=str).encode()).hexdigest()
  lines = ["# Run certificate", "",
           f"{len(history)} iterations recorded in metrics.jsonl.", "",
           "| measure | value |", "|---|---|"]
  for k, v in _flat(report):
    lines.append(f"| {k} | {_value(v)} |")
  lines += [""]
  lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})"
            for p in written]
  lines += _latest_video(directory)
  lines += _provenance()
  lines.append(f"| config SHA-256 | `{config_sha}` |")
  if checkpoint:
    lines.append(f"| checkpoint (iteration {checkpoint.get('step')}) "
                 f"state SHA-256 | `{checkpoint.get('state_sha256')}` |")
  path = os.path.join(directory, "report.md")
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
  return [path] + written


def _latest_video(directory: str) -> list[str]:
  """The run's last evaluation video (`log.videos_every`), if it has one."""
  videos = os.path.join(directory, "videos")
  clips = {}
  for name in os.listdir(videos) if os.path.isdir(videos) else []:
    stem, ext = os.path.splitext(name)
    if stem.startswith("eval_") and stem[5:].isdigit() and ext in (
        ".gif", ".mp4", ".webm"):
      clips[int(stem[5:])] = name
  if not clips:
    return []
  it = max(clips)
  name = clips[it]
  shown = (f"![{name}](videos/{name})" if name.endswith(".gif")
           else f"[{name}](videos/{name})")
  return ["", f"What the policy does at iteration {it} (an evaluation "
          "episode, rrm.video):", "", shown, ""]


SWEEP_FIGURES = ("sweep_returns.png", "sweep_feedback.png",
                 "sweep_unsafe.png")


def _band(histories: Sequence[Sequence[Mapping[str, Any]]], key: str,
          mean_ci) -> tuple[list[int], list[float], list[float]]:
  """Per iteration, the mean and 95 % half-width of `key` over the members
  that have a finite value there."""
  by_it: dict[int, list[float]] = {}
  for history in histories:
    for it, v in zip(*_series(history, key)):
      by_it.setdefault(it, []).append(v)
  its = sorted(by_it)
  stats = [mean_ci(by_it[i]) for i in its]
  return its, [m for m, _ in stats], [0.0 if math.isnan(c) else c
                                      for _, c in stats]


def _sweep_figures(workdir: str, groups: Sequence[Mapping[str, Any]],
                   mean_ci) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = {
      SWEEP_FIGURES[0]: (("eval/true_return", "eval true return"),
                         ("rollout/true_episode_return",
                          "rollout true episode return")),
      SWEEP_FIGURES[1]: (("reward/heldout_accuracy", "held-out accuracy"),
                         ("reward/epic", "EPIC distance")),
      SWEEP_FIGURES[2]: (("safety/unsafe_events_total",
                          "cumulative unsafe events"),),
  }
  written = []
  for name, keys in panels.items():
    fig, axes = plt.subplots(1, len(keys), figsize=(5.6 * len(keys), 3.6),
                             squeeze=False)
    drawn = False
    for ax, (key, label) in zip(axes[0], keys):
      for i, g in enumerate(groups):
        its, mean, ci = _band(g["histories"], key, mean_ci)
        if not its:
          continue
        drawn = True
        lo = [m - c for m, c in zip(mean, ci)]
        hi = [m + c for m, c in zip(mean, ci)]
        ax.plot(its, mean, color=f"C{i}", label=f"{g['name']} (n={g['n']})")
        ax.fill_between(its, lo, hi, color=f"C{i}", alpha=0.2)
      ax.set_xlabel("iteration")
      ax.set_title(f"{label}: mean, 95 % CI", fontsize="small")
      if ax.lines:
        ax.legend(fontsize="x-small")
    if drawn:
      fig.tight_layout()
      written.append(_save(fig, workdir, name))
    plt.close(fig)
  return written


def _read_json(path: str) -> Any:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _read_jsonl(path: str) -> list[dict[str, Any]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_sweep(workdir: str, rows: Sequence[Mapping[str, Any]],
                groups: Sequence[Mapping[str, Any]],
                group_by: Sequence[str], mean_ci) -> list[str]:
  """Writes the sweep's report.md, report.json and figures into `workdir`.

  Args:
    workdir: the sweep's --workdir (units under it, rrm.sweep's layout).
    rows: every finished member's results row (launch.report.collect).
    groups: launch.report.aggregate(rows, group_by).
    group_by: the columns that define a group.
    mean_ci: (values) -> (mean, 95 % half-width), launch.report.mean_ci.
  Returns the paths written.
  """
  key = lambda r: tuple(json.dumps(r.get(k), sort_keys=True)
                        for k in group_by)
  members: dict[tuple, list[str]] = {}
  for r in rows:
    members.setdefault(key(r), []).append(os.path.join(
        workdir, r["unit"], "members", f"{int(r['member']):03d}"))
  named = []
  for g in groups:
    dirs = members.get(key(g), [])
    reports = [r for r in (_read_json(os.path.join(d, "report.json"))
                           for d in dirs) if r is not None]
    flagged = sum(1 for rp in reports
                  if (rp.get("reward_hacking") or {}).get("flagged_iterations"))
    named.append({**g, "name": ", ".join(f"{k}={g.get(k)}" for k in group_by)
                  or "all", "hacking_flagged": flagged,
                  "histories": [_read_jsonl(os.path.join(d, "metrics.jsonl"))
                                for d in dirs]})
  written = _sweep_figures(workdir, named, mean_ci)
  measures = [k[:-len("_ci95")] for k in groups[0] if k.endswith("_ci95")]
  lines = ["# Sweep certificate", "",
           f"{len(rows)} members in {len(groups)} groups (by "
           f"{', '.join(group_by) or 'nothing'}; the seeds are the "
           "replicates). Mean ± half-width of the 95 % Student-t interval "
           "over a group's members (n: members with the measure).", "",
           "| group | members | " + " | ".join(measures)
           + " | flagged by the hacking detector |",
           "|---" * (len(measures) + 3) + "|"]
  for g in named:
    cells = []
    for m in measures:
      mean, ci = g[m], g[m + "_ci95"]
      cells.append("-" if not math.isfinite(mean) else f"{mean:.4g}"
                   + (f" ± {ci:.2g}" if math.isfinite(ci) else "")
                   + f" (n={g[m + '_n']})")
    lines.append(f"| {g['name']} | {g['n']}"
                 + (f" ({g['diverged']} diverged)" if g["diverged"] else "")
                 + " | " + " | ".join(cells)
                 + f" | {g['hacking_flagged']}/{g['n']} |")
  lines += [""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})"
                   for p in written]
  lines += _provenance()
  for unit in sorted({r["unit"] for r in rows}):
    path = os.path.join(workdir, unit, "sweep.json")
    if os.path.exists(path):
      with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      lines.append(f"| {unit} sweep.json SHA-256 | `{digest}` |")
  out = os.path.join(workdir, "report.md")
  with open(out + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(out + ".tmp", out)
  data = os.path.join(workdir, "report.json")
  with open(data + ".tmp", "w") as f:
    json.dump({"group_by": list(group_by), "groups": [
        {k: v for k, v in g.items() if k != "histories"} for g in named]},
              f, indent=2, sort_keys=True, default=str)
  os.replace(data + ".tmp", data)
  return [out, data] + written

