"""Figure and numbers of the hacking experiment (experiments/hacking.py).

  python -m experiments.plot_hacking --workdir=runs/hacking_point_hazard \\
      --out=runs/hacking_point_hazard.png

Two panels, offline and online reward model: every member's training
rollouts' learned and true episode return over iterations (rrm's
`rollout/*_episode_return`), each on its own scale (learned: left axis,
true: right), the iterations the reward-hacking detector flagged shaded.
Prints, per unit, the members the detector flagged (the hit rate on
offline runs, the false-alarm rate on online ones), their final returns
and final EPIC distances, read from each member's report.json and
metrics.jsonl (rrm.sweep's layout: <workdir>/<unit>/members/NNN/); and
the detector's AUROC: how well each run's detector score (report.json's
`reward_hacking.score`, the best window's min(learned trend, -true trend))
ranks the offline or misspecified runs above the online ones.

The misspecification sweep (`experiments/hacking.py:point_hazard:
misspecified`) has a "misspecified" unit (a teacher that ignores one
reward component) and an "online" one (the same user perceiving all);
`--workdir` takes several workdirs, comma-separated, whose units are
pooled by kind. `--signal=step` re-runs the detector on every member's
metrics with the iteration's mean per-step rewards instead of the runs'
own setting (rrm.report.SIGNALS), at the window and threshold each run
was configured with.
"""

from __future__ import annotations

import glob
import json
import os

from absl import app
from absl import flags

from launch import report as sweep_report
from rrm import hacking
from rrm import report as rrm_report


def load(workdir: str) -> dict[str, list[dict]]:
  """"offline"/"online"/"misspecified" -> per member {seed, rows, report}.

  A unit is offline when its budget is its initial batch, misspecified when
  its user is the limited one (it perceives only recursive.visible), else
  online.
  """
  out = {}
  for unit in sorted(glob.glob(os.path.join(workdir, "u*", ""))):
    members = []
    for d in sorted(glob.glob(os.path.join(unit, "members", "*", ""))):
      with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
      with open(os.path.join(d, "report.json")) as f:
        report = json.load(f)
      with open(os.path.join(d, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      fb = config["feedback"]
      user = (config.get("recursive") or {}).get("user", "none")
      kind = ("offline" if fb["budget"] == fb["initial_labels"] else
              "misspecified" if user == "limited" else "online")
      members.append({"seed": config["seed"], "rows": rows, "report": report,
                      "kind": kind, "config": config})
    if members:
      out.setdefault(members[0]["kind"], []).extend(members)
  return out


def rescore(runs: dict[str, list[dict]], signal: str) -> None:
  """Replaces every member's `reward_hacking` by the detector on `signal`
  (its own window and threshold), in place."""
  for members in runs.values():
    for m in members:
      rp = m["config"].get("report") or {}
      m["report"]["reward_hacking"] = rrm_report.reward_hacking(
          m["rows"], rp.get("hacking_window") or 10,
          rp.get("hacking_threshold", 0.6), signal)


def detector_auroc(runs: dict[str, list[dict]], kind: str) -> float:
  """AUROC of the runs' detector scores, `kind` (offline, misspecified)
  as the positives and the online runs as the negatives."""
  score = lambda m: m["report"]["reward_hacking"].get("score")
  pos = [score(m) for m in runs.get(kind, []) if score(m) is not None]
  neg = [score(m) for m in runs.get("online", []) if score(m) is not None]
  return hacking.auroc(pos, neg)


def summary(kind: str, members: list[dict]) -> str:
  flagged = [m for m in members if m["report"]["reward_hacking"][
      "flagged_iterations"]]
  finals = [m["report"]["final_return"] for m in members]
  epic = [(m["report"].get("reward_epic") or {}).get("final")
          for m in members]
  mean, ci = sweep_report.mean_ci(finals)
  line = (f"{kind}: detector flagged {len(flagged)}/{len(members)} "
          f"(seeds {[m['seed'] for m in flagged]}); final return "
          f"{mean:.1f} ± {ci:.1f}")
  if all(e is not None for e in epic):
    e_mean, e_ci = sweep_report.mean_ci(epic)
    line += f"; final EPIC {e_mean:.3f} ± {e_ci:.3f}"
  return line


def plot(runs: dict[str, list[dict]], out: str,
         signal: str = "episode") -> None:
  """The figure, of the series the detector read (`signal`)."""
  learned_key, true_key = rrm_report.SIGNALS[signal]
  what = "episode return" if signal == "episode" else "mean step reward"
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  kinds = [k for k in ("offline", "misspecified", "online") if k in runs]
  fig, axes = plt.subplots(1, len(kinds), figsize=(6.0 * len(kinds), 3.8),
                           squeeze=False)
  for ax, kind in zip(axes[0], kinds):
    twin = ax.twinx()
    for i, m in enumerate(runs[kind]):
      its = [r["iteration"] for r in m["rows"]]
      color = f"C{i}"
      ax.plot(its, [r.get(learned_key) for r in
                    m["rows"]], color=color, linestyle="-")
      twin.plot(its, [r.get(true_key) for r in
                      m["rows"]], color=color, linestyle="--")
      for it in m["report"]["reward_hacking"]["flagged_iterations"]:
        ax.axvspan(it - 0.5, it + 0.5, color=color, alpha=0.08)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"learned {what} (solid)")
    twin.set_ylabel(f"true {what} (dashed)")
    ax.set_title(summary(kind, runs[kind]).split(";")[0], fontsize="small")
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  plt.close(fig)


def main(argv):
  del argv
  runs = {}
  for workdir in flags.FLAGS.workdir.split(","):
    for kind, members in load(workdir).items():
      runs.setdefault(kind, []).extend(members)
  if not runs:
    raise app.UsageError(f"no finished members under {flags.FLAGS.workdir}")
  if flags.FLAGS.signal:
    rescore(runs, flags.FLAGS.signal)
  for kind, members in runs.items():
    print(summary(kind, members))
  for kind in ("offline", "misspecified"):
    if kind in runs and "online" in runs:
      print(f"detector AUROC, {kind} vs online: "
            f"{detector_auroc(runs, kind):.3f}")
  if flags.FLAGS.out:
    plot(runs, flags.FLAGS.out, flags.FLAGS.signal or "episode")
    print(f"figure: {flags.FLAGS.out}")


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "An experiments/hacking.py sweep's "
                      "--workdir (several: comma-separated).")
  flags.DEFINE_string("out", None, "Where to write the PNG figure.")
  flags.DEFINE_enum("signal", None, list(rrm_report.SIGNALS),
                    "Re-run the detector on this signal (default: the "
                    "runs' own reports).")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
