"""Figure and table of the feedback-kinds experiment (experiments/feedback_kinds.py).

  python -m experiments.plot_feedback_kinds \\
      --workdir=runs/kinds_inverted_pendulum,runs/kinds_point_hazard \\
      --out=docs/feedback_kinds.png

One panel per workdir (env): the evaluated true return against the
iteration, per arm, mean and 95 % CI over its seeds, with the budget units
spent by each evaluation (`feedback/budget_spent`, every kind at its cost;
the preference labels for a run of comparisons alone: the arms spend on
one schedule) on the top axis and a line where the budget is spent. Prints, per env and arm, the final return, the best,
the budget units spent when the return first reached report.threshold x
report.baseline_return (members that reached it / all), read from each
member's report.json and metrics.jsonl (rrm.sweep's layout:
<workdir>/<unit>/members/NNN/).
"""

from __future__ import annotations

from absl import app
from absl import flags

from launch import report as sweep_report

_WORKDIRS = flags.DEFINE_string("workdir", None, "Sweep workdirs of "
                                "experiments/feedback_kinds.py, "
                                "comma-separated (one per env).",
                                required=True)
_OUT = flags.DEFINE_string("out", "", "Where to write the PNG ('': none).")


def arm_of(unit_config: dict) -> str:
  """The arm a member's config belongs to (feedback_kinds.ARMS)."""
  ratings = (unit_config.get("ratings") or {}).get("ratings", 0)
  if not ratings:
    return "preferences"
  if not unit_config["feedback"]["initial_labels"]:
    return "ratings"
  return "mixed"


def load(workdir: str) -> tuple[str, dict[str, list[dict]]]:
  """(env, arm -> members), each member {"report", "evals"} with evals the
  (iteration, budget spent, eval return) of its evaluations."""
  arms: dict[str, list[dict]] = {}
  env = ""
  for run in sweep_report.member_runs(workdir):
    env = run["config"]["env"]["name"]
    evals = [(int(m["iteration"]),
              float(m.get("feedback/budget_spent", m.get("oracle/labels"))),
              float(m["eval/true_return"])) for m in run["metrics"]
             if m.get("eval/true_return") is not None]
    arms.setdefault(arm_of(run["config"]), []).append(
        {"report": run["report"], "evals": evals})
  return env, arms


def table(env: str, arms: dict[str, list[dict]]) -> list[str]:
  fmt = lambda mc: (f"{mc[0]:.0f} ± {mc[1]:.0f}" if mc[1] == mc[1]
                    else f"{mc[0]:.0f}")
  rows = []
  for arm, members in arms.items():
    final = sweep_report.mean_ci([m["report"]["final_return"]
                                  for m in members])
    best = sweep_report.mean_ci([max(e[2] for e in m["evals"])
                                 for m in members])
    reached = [m["report"].get("budget_to_threshold") for m in members]
    hit = [r for r in reached if r is not None]
    to = (fmt(sweep_report.mean_ci(hit)) if hit else "-")
    spent = members[0]["report"].get("budget_spent")
    finals = ", ".join(f"{m['report']['final_return']:.0f}" for m in members)
    rows.append(f"| {env} | {arm} | {spent:.0f} | {fmt(final)} ({finals}) | "
                f"{fmt(best)} | {to} ({len(hit)}/{len(members)}) |")
  return rows


def main(argv):
  del argv
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  workdirs = [w for w in _WORKDIRS.value.split(",") if w]
  fig, axes = plt.subplots(1, len(workdirs), figsize=(5.6 * len(workdirs),
                                                      3.8), squeeze=False)
  print("| env | arm | budget units | final eval return (seeds) | best eval "
        "return | budget units to threshold (reached) |")
  print("|---|---|---|---|---|---|")
  for ax, workdir in zip(axes[0], workdirs):
    env, arms = load(workdir)
    for line in table(env, arms):
      print(line)
    ticks = {}
    for i, (arm, members) in enumerate(arms.items()):
      n = min(len(m["evals"]) for m in members)
      its = [members[0]["evals"][k][0] for k in range(n)]
      for k in range(n):
        ticks[its[k]] = members[0]["evals"][k][1]
      stats = [sweep_report.mean_ci([m["evals"][k][2] for m in members])
               for k in range(n)]
      mean = [st[0] for st in stats]
      ci = [0.0 if st[1] != st[1] else st[1] for st in stats]
      ax.plot(its, mean, color=f"C{i}", marker="o", markersize=3,
              label=f"{arm} (n={len(members)})")
      ax.fill_between(its, [m - c for m, c in zip(mean, ci)],
                      [m + c for m, c in zip(mean, ci)], color=f"C{i}",
                      alpha=0.2)
    full = max(ticks.values())
    ax.axvline(min(i for i, b in ticks.items() if b >= full), color="grey",
               linestyle="--", linewidth=0.8, label="budget spent")
    top = ax.secondary_xaxis("top")
    top.set_xticks(sorted(ticks), [f"{ticks[i]:.0f}" for i in sorted(ticks)],
                   fontsize="x-small")
    top.set_xlabel("budget units spent (comparison 1, rating 0.5)",
                   fontsize="small")
    ax.set_xlabel("iteration")
    ax.set_ylabel("eval true return")
    ax.set_title(f"{env}: mean, 95 % CI", fontsize="small")
    ax.legend(fontsize="x-small")
  fig.tight_layout()
  if _OUT.value:
    fig.savefig(_OUT.value, dpi=110)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
