"""Figure of the recursive experiment: true return against labels spent.

  python -m experiments.plot_recursive \\
      --workdirs=runs/recursive_point_hazard,runs/recursive_hopper \\
      --references=runs/recursive_point_hazard_true,\\
runs/recursive_hopper_true \\
      --out=runs/recursive.png

One panel per sweep workdir (experiments/recursive.py, run by
launch.sweep): for each root user (limited, assisted, full view), the
evaluated true return of the main agent against the total labels spent
over every level of the tree, mean over seeds with a 95 % Student-t band.
It reads every member's metrics.jsonl (rrm.sweep's layout:
<workdir>/<unit>/members/NNN/) and prints the final returns per seed.
`--references` (optional, one per workdir, '' for none) are the same
envs' `:true` sweeps: PPO on the true reward, drawn as a dashed line at
its final mean.
"""

from __future__ import annotations

import collections
import os
from typing import Any

from absl import app
from absl import flags
import numpy as np

from launch import report as sweep_report

USERS = ("limited", "assisted", "full_view")
LABELS = {"limited": "(a) unassisted limited user",
          "assisted": "(b) assisted user (recursive)",
          "full_view": "(c) full-view oracle"}


def load_curves(workdir: str) -> dict[str, list[dict[str, Any]]]:
  """user -> one {seed, labels [E], returns [E]} per member, eval points only."""
  out = collections.defaultdict(list)
  for run in sweep_report.member_runs(workdir):
    config = run["config"]
    # True-reward runs (the references) ask for no labels.
    evals = [(row.get("oracle/labels", 0), row["eval/true_return"])
             for row in run["metrics"]
             if row.get("eval/true_return") is not None
             and np.isfinite(row["eval/true_return"])]
    out[config["recursive"]["user"]].append({
        "seed": config["seed"], "env": config["env"]["name"],
        "labels": np.asarray([e[0] for e in evals]),
        "returns": np.asarray([e[1] for e in evals])})
  return dict(out)


def summary(curves: dict[str, list[dict[str, Any]]]) -> list[str]:
  lines = []
  for user in USERS:
    runs = sorted(curves.get(user, []), key=lambda r: r["seed"])
    finals = [float(r["returns"][-1]) for r in runs if len(r["returns"])]
    mean, ci = sweep_report.mean_ci(finals)
    lines.append(f"  {user:<10} final true return {mean:9.2f} ± {ci:.2f} "
                 f"(seeds {', '.join(str(r['seed']) for r in runs)}: "
                 + ", ".join(f"{v:.1f}" for v in finals) + ")")
  return lines


def reference_return(workdir: str) -> tuple[float, float, int]:
  """Mean, 95 % half-width and count of a `:true` sweep's final returns."""
  runs = load_curves(workdir).get("none", [])
  finals = [float(r["returns"][-1]) for r in runs if len(r["returns"])]
  if not finals:
    raise ValueError(f"{workdir}: no true-reward (recursive.user='none') "
                     "member with an evaluation")
  mean, ci = sweep_report.mean_ci(finals)
  return mean, ci, len(finals)


def plot(workdirs: list[str], out: str,
         references: list[str] | None = None) -> None:
  references = list(references or [])
  if references and len(references) != len(workdirs):
    raise ValueError(f"give one reference per workdir ('' for none): "
                     f"{len(workdirs)} workdirs, {len(references)} references")
  references += [""] * (len(workdirs) - len(references))
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(workdirs), figsize=(5.5 * len(workdirs), 4),
                           squeeze=False)
  for ax, workdir, ref in zip(axes[0], workdirs, references):
    curves = load_curves(workdir)
    env = next(iter(curves.values()))[0]["env"] if curves else workdir
    print(f"{workdir} ({env}):")
    print("\n".join(summary(curves)))
    for user in USERS:
      runs = curves.get(user)
      if not runs:
        continue
      n = min(len(r["returns"]) for r in runs)
      labels = np.mean([r["labels"][:n] for r in runs], axis=0)
      returns = np.stack([r["returns"][:n] for r in runs])
      mean = returns.mean(axis=0)
      half = np.asarray([sweep_report.mean_ci(list(col))[1]
                         for col in returns.T])
      line, = ax.plot(labels, mean, marker="o", ms=3,
                      label=f"{LABELS[user]} (n={len(runs)})")
      if len(runs) > 1:
        ax.fill_between(labels, mean - half, mean + half, alpha=0.2,
                        color=line.get_color())
    if ref:
      mean, ci, n = reference_return(ref)
      print(f"  true-reward PPO final true return {mean:9.2f} ± {ci:.2f} "
            f"(n={n})")
      ax.axhline(mean, color="k", ls="--", lw=1,
                 label=f"true-reward PPO, final (n={n})")
    ax.set_title(f"{env} ({os.path.basename(os.path.normpath(workdir))})",
                 fontsize=10)
    ax.set_xlabel("labels spent (all levels)")
    ax.set_ylabel("true return (evaluation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120)
  print(f"figure: {out}")


if __name__ == "__main__":
  _WORKDIRS = flags.DEFINE_list("workdirs", None,
                                "Sweep workdirs of experiments/recursive.py.")
  _REFERENCES = flags.DEFINE_list(
      "references", [], "Optional: one `:true` sweep workdir per workdir "
      "('' for none), drawn as a dashed line.")
  _OUT = flags.DEFINE_string("out", "recursive.png", "PNG to write.")
  flags.mark_flags_as_required(["workdirs"])
  app.run(lambda argv: plot(_WORKDIRS.value, _OUT.value, _REFERENCES.value))
