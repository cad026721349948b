"""Figure and table of experiments/sweeps/pebble.py: labels vs return.

  python -m experiments.plot_pebble --workdir=runs/pebble_walker_walk \\
      --out=runs/pebble_walker_walk.png

For each algorithm (SAC with PEBBLE, PPO) and label budget: the final
evaluated true return normalised by true-reward SAC's (the same env, the
same env steps as the SAC runs), mean over seeds with a 95 % Student-t
interval; and labels-to-90 %: the labels spent when a member's evaluated
return first reached 0.9 x true-reward SAC's final mean (members that never
did are counted apart). PPO's true-reward run is drawn as a second line.
Reads every member's config.json and metrics.jsonl (rrm.sweep's layout:
<workdir>/<unit>/members/NNN/) and prints the table it plots.
"""

from __future__ import annotations

import collections
import os
from typing import Any

from absl import app
from absl import flags
import numpy as np

from launch import report as sweep_report

THRESHOLD = 0.9


def load_members(workdir: str) -> list[dict[str, Any]]:
  """One {algorithm, source, budget, seed, evals [(labels, return)]} each."""
  out = []
  for run in sweep_report.member_runs(workdir):
    config = run["config"]
    evals = [(row.get("oracle/labels", 0) or 0, row["eval/true_return"])
             for row in run["metrics"] if "eval/true_return" in row]
    out.append({"algorithm": (config.get("rl") or {}).get("algorithm",
                                                         "ppo"),
                "source": config["reward"]["source"],
                "budget": config["feedback"]["budget"],
                "seed": config["seed"], "evals": evals})
  return out


def summarise(members: list[dict[str, Any]]) -> dict[str, Any]:
  """The table: per (algorithm, budget) normalised return and labels-to-90 %."""
  finals = collections.defaultdict(list)
  for m in members:
    if m["evals"] and m["source"] == "true":
      finals[m["algorithm"]].append(m["evals"][-1][1])
  baseline = float(np.mean(finals["sac"])) if finals["sac"] else float("nan")
  rows = []
  groups = collections.defaultdict(list)
  for m in members:
    if m["source"] == "learned" and m["evals"]:
      groups[(m["algorithm"], m["budget"])].append(m)
  for (algorithm, budget), ms in sorted(groups.items()):
    normalised = [m["evals"][-1][1] / baseline for m in ms]
    reached = [next((lab for lab, ret in m["evals"]
                     if ret >= THRESHOLD * baseline), None) for m in ms]
    hit = [r for r in reached if r is not None]
    rows.append({"algorithm": algorithm, "budget": budget, "n": len(ms),
                 "normalised": sweep_report.mean_ci(normalised),
                 "labels_to_90": sweep_report.mean_ci(hit),
                 "reached": len(hit)})
  return {"baseline_sac": baseline,
          "true_ppo": (sweep_report.mean_ci([f / baseline
                                             for f in finals["ppo"]])
                       if finals["ppo"] else (float("nan"),) * 2),
          "rows": rows}


def format_summary(s: dict[str, Any]) -> str:
  def f(mc, digits=3):
    if not np.isfinite(mc[0]):
      return "-"
    ci = f" ± {mc[1]:.{digits}f}" if np.isfinite(mc[1]) else ""
    return f"{mc[0]:.{digits}f}{ci}"

  lines = [f"true-reward SAC final return (the normaliser): "
           f"{s['baseline_sac']:.1f}",
           f"true-reward PPO, normalised: {f(s['true_ppo'])}",
           "algorithm  budget  n  normalised final return  "
           "labels to 90 % (reached)"]
  for r in s["rows"]:
    lines.append(f"{r['algorithm']:<9}  {r['budget']:>6}  {r['n']}  "
                 f"{f(r['normalised']):<23}  "
                 f"{f(r['labels_to_90'], 0)} ({r['reached']}/{r['n']})")
  return "\n".join(lines)


def plot(s: dict[str, Any], out: str, title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for algorithm, label in (("sac", "SAC + PEBBLE (learned reward)"),
                           ("ppo", "PPO (learned reward)")):
    rows = [r for r in s["rows"] if r["algorithm"] == algorithm]
    if not rows:
      continue
    ax.errorbar([r["budget"] for r in rows],
                [r["normalised"][0] for r in rows],
                yerr=[np.nan_to_num(r["normalised"][1]) for r in rows],
                marker="o", capsize=3, label=label)
  ax.axhline(1.0, color="k", linestyle="--", label="SAC, true reward")
  if np.isfinite(s["true_ppo"][0]):
    ax.axhline(s["true_ppo"][0], color="grey", linestyle=":",
               label="PPO, true reward")
  ax.set_xscale("log")
  ax.set_xlabel("labels (budget)")
  ax.set_ylabel("final true return / true-reward SAC's")
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out, dpi=120)


def main(argv):
  del argv
  s = summarise(load_members(flags.FLAGS.workdir))
  print(format_summary(s))
  if flags.FLAGS.out:
    plot(s, flags.FLAGS.out, flags.FLAGS.title or os.path.basename(
        flags.FLAGS.workdir.rstrip("/")))
    print(f"wrote {flags.FLAGS.out}")


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "launch.sweep workdir of pebble.py.")
  flags.DEFINE_string("out", "", "PNG to write ('' = table only).")
  flags.DEFINE_string("title", "", "Figure title (default: the workdir).")
  flags.mark_flag_as_required("workdir")
  app.run(main)
