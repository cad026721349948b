"""Feedback efficiency: labels-to-threshold and normalised return."""

import json

import numpy as np
import pytest

from launch import report as sweep_report
from rrm import report


def _m(it, labels, ret=None):
  m = {"iteration": it, "oracle/labels": labels}
  if ret is not None:
    m["eval/true_return"] = ret
  return m


def test_labels_to_threshold_is_the_first_evaluation_over_the_bar():
  metrics = [_m(1, 60), _m(2, 70, 500.0), _m(3, 80), _m(4, 90, 905.0),
             _m(5, 100), _m(6, 110, 880.0)]
  r = report.feedback_efficiency(metrics, 1000.0, 0.9)
  assert r["labels_to_threshold"] == 90 and r["iteration_to_threshold"] == 4
  assert r["final_return"] == 880.0
  assert r["normalised_return"] == 0.88
  assert r["labels_spent"] == 110
  # Any iterable of metrics, e.g. a generator over a metrics file.
  assert report.feedback_efficiency(iter(metrics), 1000.0, 0.9) == r


def test_budget_to_threshold_counts_every_kind_at_its_cost():
  """A run of preferences alone: budget = labels. A run that also rates
  (feedback/budget_spent): its budget units, not its preference labels."""
  metrics = [_m(1, 60), _m(2, 70, 500.0), _m(4, 90, 905.0)]
  r = report.feedback_efficiency(metrics, 1000.0, 0.9)
  assert r["budget_to_threshold"] == 90.0 and r["budget_spent"] == 90.0
  rated = [{**m, "feedback/budget_spent": 2.0 * m["oracle/labels"] + 0.5}
           for m in metrics]
  r = report.feedback_efficiency(rated, 1000.0, 0.9)
  assert r["labels_to_threshold"] == 90
  assert r["budget_to_threshold"] == 180.5 and r["budget_spent"] == 180.5
  assert report.feedback_efficiency(metrics[:2], 1000.0, 0.9)[
      "budget_to_threshold"] is None


def test_not_reached_unknown_baseline_and_true_reward_runs():
  metrics = [_m(1, 60, 100.0), _m(2, 70, 200.0)]
  assert report.feedback_efficiency(metrics, 1000.0, 0.9)[
      "labels_to_threshold"] is None
  r = report.feedback_efficiency(metrics, None, 0.9)
  assert r["normalised_return"] is None and r["final_return"] == 200.0
  true_run = [{"iteration": 1, "eval/true_return": 950.0}]
  r = report.feedback_efficiency(true_run, 1000.0, 0.9)
  assert r["labels_to_threshold"] == 0 and r["labels_spent"] == 0


def _rollout(it, learned, true):
  return {"iteration": it, "rollout/learned_episode_return": learned,
          "rollout/true_episode_return": true}


def test_reward_hacking_flags_learned_up_true_down_windows():
  # Healthy for 5 iterations (both rise), then learned up, true down.
  rows = [_rollout(i, float(i), float(i)) for i in range(1, 6)]
  rows += [_rollout(5 + i, 5.0 + 3 * i, 5.0 - 2 * i) for i in range(1, 6)]
  r = report.reward_hacking(rows, 4, 0.6)
  # Window ending at 7: true (4, 5, 3, 1): pairs i<j: 5-4 up, 3-4 down,
  # 1-4 down, 3-5 down, 1-5 down, 1-3 down: tau = (1 - 5) / 6 = -2/3;
  # learned rises throughout: tau 1. Ending at 6: true (3, 4, 5, 3): +1/6.
  assert r["flagged_iterations"] == [7, 8, 9, 10] and r["first_flagged"] == 7
  assert r["learned_trend"] == 1.0 and r["true_trend"] == -1.0
  # The run's score: its best window's min(learned, -true) trend, 1.0 at
  # the end; the healthy first windows alone score -1 (true rises, +1).
  assert r["score"] == 1.0
  assert report.reward_hacking(rows[:5], 4, 0.6)["score"] == -1.0
  # nan (no completed episode in an iteration) is left out of its windows.
  rows[7]["rollout/true_episode_return"] = None
  assert report.reward_hacking(rows, 4, 0.6)["first_flagged"] == 7


def test_the_step_signal_reads_the_iterations_mean_rewards():
  """Episode returns flat (one episode spans the run), per-step rewards
  learned up, true down: only the step signal sees it."""
  rows = [{"iteration": i, "rollout/learned_episode_return": 1.0,
           "rollout/true_episode_return": 1.0,
           "rollout/learned_reward": 0.1 * i, "rollout/true_reward": -0.1 * i}
          for i in range(1, 7)]
  assert report.reward_hacking(rows, 4, 0.6)["flagged_iterations"] == []
  step = report.reward_hacking(rows, 4, 0.6, "step")
  assert step["flagged_iterations"] == [4, 5, 6] and step["signal"] == "step"
  watch = report.HackingWatch(4, 0.6, rows[:3], "step")
  assert watch.observe(rows[3])["hacking/flag"] == 1.0


def test_reward_hacking_off_and_why():
  rows = [_rollout(i, float(i), -float(i)) for i in range(1, 4)]
  assert report.reward_hacking(rows, 0, 0.6)["off"].endswith("=0")
  assert "fewer than the window" in report.reward_hacking(rows, 4, 0.6)["off"]
  true_run = [{"iteration": 1, "rollout/true_episode_return": 1.0}]
  assert "true-reward run" in report.reward_hacking(true_run, 3, 0.6)["off"]


def test_the_watch_decides_as_the_whole_run_report_also_after_a_resume():
  rng = np.random.default_rng(3)
  learned = np.concatenate([np.arange(12.0), 12 + 3 * np.arange(12.0)])
  true = np.concatenate([np.arange(12.0), 12 - 2 * np.arange(12.0)])
  rows = [_rollout(i + 1, float(a), float(b)) for i, (a, b) in enumerate(
      zip(learned + rng.normal(size=24), true + rng.normal(size=24)))]
  rows[5]["rollout/true_episode_return"] = float("nan")  # no episode ended
  whole = report.reward_hacking(rows, 6, 0.6)
  watch = report.HackingWatch(6, 0.6)
  flags = [watch.observe(m).get("hacking/flag") for m in rows]
  assert [m["iteration"] for m, f in zip(rows, flags) if f] == (
      whole["flagged_iterations"]) and whole["flagged_iterations"]
  assert flags[:5] == [None] * 5  # until the window is full
  # Resumed after iteration 15: seeded with the rows written (a nan read
  # back from metrics.jsonl is None).
  past = [{**m, "rollout/true_episode_return": None} if i == 5 else m
          for i, m in enumerate(rows[:15])]
  resumed = report.HackingWatch(6, 0.6, past)
  assert [resumed.observe(m).get("hacking/flag") for m in rows[15:]] == (
      flags[15:])
  assert report.HackingWatch(0, 0.6).observe(rows[0]) == {}


def test_reward_result_gap_is_the_share_of_the_baseline_per_component():
  metrics = [{"iteration": 1, "eval/true_return": 10.0,
              "eval/reward_forward": 100.0, "eval/reward_ctrl": -4.0},
             {"iteration": 2},
             {"iteration": 3, "eval/true_return": 20.0,
              "eval/reward_forward": 300.0, "eval/reward_ctrl": -6.0}]
  gap = report.reward_result_gap(metrics, (("reward_ctrl", -3.0),
                                           ("reward_forward", 400.0),
                                           ("reward_healthy", 50.0)))
  assert gap["reward_forward"] == {"final": 300.0, "baseline": 400.0,
                                   "share": 0.75}
  assert gap["reward_ctrl"]["share"] == 2.0  # twice the baseline's cost
  assert gap["reward_healthy"] == {"final": None, "baseline": 50.0,
                                   "share": None}
  assert report.reward_result_gap(metrics, ()) == {}
  # A run's own final components: what a baseline run's report offers.
  assert report.feedback_efficiency(metrics, None, 0.9)["final_aspects"] == {
      "reward_ctrl": -6.0, "reward_forward": 300.0}


def test_sweep_report_averages_the_challenges_measures_per_group():
  rows = [{"seed": s, "user": u, "final_return": 1.0, "unsafe_events": n,
           "final_epic": e}
          for s, u, n, e in [(0, "a", 3, 0.4), (1, "a", 5, 0.2),
                             (0, "b", 0, None), (1, "b", 2, None)]]
  groups = {g["user"]: g for g in sweep_report.aggregate(rows, ["user"])}
  assert groups["a"]["unsafe_events"] == 4.0
  assert groups["a"]["final_epic"] == pytest.approx(0.3)
  assert groups["a"]["final_epic_ci95"] == pytest.approx(12.706 * 0.1)
  assert groups["b"]["unsafe_events"] == 1.0
  assert groups["b"]["final_epic_n"] == 0
  table = sweep_report.format_table(list(groups.values()))
  assert "unsafe events" in table and "final EPIC" in table


def test_a_sweep_certificate_gives_each_groups_mean_and_band(tmp_path):
  """Two groups of two members (hand-written files in rrm.sweep's layout):
  report.md has one row per group with mean ± 95 % half-width, the
  detector's hits, the provenance; report.json the same numbers; every
  figure is a real PNG."""
  from rrm import certificate  # pylint: disable=g-import-not-at-top
  rows = []
  for unit, flags_, finals in (("u000_flags=0", 0, (-130.0, -120.0)),
                               ("u001_flags=8", 8, (-40.0, -30.0))):
    (tmp_path / unit).mkdir()
    (tmp_path / unit / "sweep.json").write_text("[]")
    for i, final in enumerate(finals):
      d = tmp_path / unit / "members" / f"{i:03d}"
      d.mkdir(parents=True)
      (d / "metrics.jsonl").write_text("".join(json.dumps({
          "iteration": it, "eval/true_return": final * it / 3,
          "rollout/true_episode_return": final,
          "reward/heldout_accuracy": 0.5 + 0.1 * it,
          "safety/unsafe_events_total": 10.0 * it * (1 + (flags_ == 0))})
                                               + "\n" for it in (1, 2, 3)))
      (d / "report.json").write_text(json.dumps({"reward_hacking": {
          "flagged_iterations": [3] if i == 0 and flags_ == 0 else []}}))
      rows.append({"unit": unit, "member": i, "seed": i,
                   "safety.flags": flags_, "final_return": final,
                   "unsafe_events": 30.0})
  groups = sweep_report.aggregate(rows, ["safety.flags"])
  written = certificate.write_sweep(str(tmp_path), rows, groups,
                                    ["safety.flags"], sweep_report.mean_ci)
  md = (tmp_path / "report.md").read_text()
  half = 12.706 * np.std([-130.0, -120.0], ddof=1) / np.sqrt(2)
  assert f"| safety.flags=0 | 2 | -125 ± {half:.2g} (n=2)" in md
  assert "| 1/2 |" in md and "| 0/2 |" in md  # the detector's hits
  assert "u001_flags=8 sweep.json SHA-256" in md
  data = json.loads((tmp_path / "report.json").read_text())
  assert [g["final_return"] for g in data["groups"]] == [-125.0, -35.0]
  pngs = [p for p in written if p.endswith(".png")]
  assert len(pngs) == 3
  for p in pngs:
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
