"""The recursive experiment's sweep file and figure script (no training).

Every env of experiments/recursive.py expands into one work unit per root
user, each validated (tree against the env's reward components, budget
split) before anything compiles; the figure script reads rrm.sweep's
layout, summarises final returns per user and writes a PNG.
"""

import json
import os

import numpy as np
import pytest

from experiments import plot_recursive
from experiments import recursive
from rrm import config as rrm_config
from rrm import sweep


def test_true_reward_reference_is_one_unit_of_seeds():
  (unit,) = sweep.plan_units(recursive.get_sweep("hopper:true"))
  assert [m.config.seed for m in unit.members] == list(range(5))
  for m in unit.members:
    assert m.config.recursive.user == "none"
    assert not m.config.learned_reward


@pytest.mark.parametrize("env", ["point_hazard", "point_hazard_on_path",
                                 "hopper", "point_hazard:smoke"])
def test_recursive_sweeps_plan_one_valid_unit_per_user(env):
  units = sweep.plan_units(recursive.get_sweep(env))
  users = [u.members[0].config.recursive.user for u in units]
  assert users == list(recursive.USERS)
  seeds = 2 if env.endswith("smoke") else 5
  for unit in units:
    assert [m.config.seed for m in unit.members] == list(range(seeds))
    assert len({m.config.recursive.user for m in unit.members}) == 1


@pytest.mark.parametrize("env", ["point_hazard", "inverted_pendulum",
                                 "point_hazard:smoke"])
def test_hacking_sweeps_plan_an_offline_and_an_online_unit(env):
  from experiments import hacking  # pylint: disable=g-import-not-at-top
  units = sweep.plan_units(hacking.get_sweep(env))
  assert len(units) == 2
  offline, online = (u.members[0].config.feedback for u in units)
  # Offline: every label in the initial batch, so the model is never refit.
  assert offline.budget == offline.initial_labels == online.initial_labels
  assert online.budget > online.initial_labels
  seeds = 2 if env.endswith("smoke") else 5
  for unit in units:
    assert [m.config.seed for m in unit.members] == list(range(seeds))
    assert unit.members[0].config.report.hacking_window >= 3
  with pytest.raises(ValueError, match="name an env"):
    hacking.get_sweep("hopper")


def test_the_misspecification_sweep_differs_in_what_the_user_sees():
  from experiments import hacking  # pylint: disable=g-import-not-at-top
  units = sweep.plan_units(hacking.get_sweep("point_hazard:misspecified"))
  full, limited = (u.members[0].config for u in units)
  assert (full.recursive.user, limited.recursive.user) == ("full_view",
                                                           "limited")
  assert limited.recursive.visible == ("reward_goal", "reward_ctrl")
  assert full.feedback == limited.feedback
  assert [m.config.seed for m in units[1].members] == list(range(5))
  with pytest.raises(ValueError, match="only point_hazard"):
    hacking.get_sweep("inverted_pendulum:misspecified")


def test_point_hazard_geometries_differ_only_in_the_hazard():
  beside = recursive.get_sweep("point_hazard").base
  on_path = recursive.get_sweep("point_hazard_on_path").base
  assert tuple(beside.env.kwargs.hazard_center) == (1.3, 0.0)
  assert tuple(on_path.env.kwargs.hazard_center) == (0.0, 0.0)
  beside.env.kwargs = on_path.env.kwargs
  assert beside.to_dict() == on_path.to_dict()


def test_recursive_sweep_refuses_an_unknown_env_or_variant():
  with pytest.raises(ValueError, match="unknown env 'walker'"):
    recursive.get_sweep("walker")
  with pytest.raises(ValueError, match="unknown variant 'true:3'"):
    recursive.get_sweep("hopper:true:3")


def test_a_tree_that_misses_the_envs_reward_is_refused():
  s = recursive.get_sweep("hopper")
  s.base.recursive.tree = {"name": "hop", "children": [
      {"name": "forward", "aspect": "reward_forward"},
      {"name": "effort", "aspect": "reward_speed"}]}
  with pytest.raises(rrm_config.ConfigError, match="reward_speed"):
    sweep.plan_units(s)


def _fake_sweep(workdir, finals):
  """rrm.sweep's layout with metrics whose last eval is `finals[user]`."""
  for u, (user, returns) in enumerate(finals.items()):
    for seed, final in enumerate(returns):
      d = os.path.join(workdir, f"u{u:03d}_user={user}", "members",
                       f"{seed:03d}")
      os.makedirs(d)
      with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"seed": seed, "env": {"name": "point_hazard"},
                   "recursive": {"user": user}}, f)
      with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for it, labels, ret in ((5, 100, -90.0), (10, 200, None),
                                (15, 300, final)):
          row = {"iteration": it, "eval/true_return": ret}
          if user != "none":  # true-reward runs ask for no labels
            row["oracle/labels"] = labels
          f.write(json.dumps(row) + "\n")


def test_figure_script_summarises_and_writes_a_png(tmp_path):
  pytest.importorskip("matplotlib")
  workdir = str(tmp_path / "sweep")
  _fake_sweep(workdir, {"limited": [-130.0, -134.0],
                        "assisted": [-50.0, -40.0],
                        "full_view": [-45.0, -35.0]})
  curves = plot_recursive.load_curves(workdir)
  # Evaluations without a return are skipped, labels kept beside returns.
  np.testing.assert_array_equal(curves["assisted"][0]["labels"], [100, 300])
  np.testing.assert_array_equal(curves["assisted"][1]["returns"],
                                [-90.0, -40.0])
  lines = plot_recursive.summary(curves)
  assert lines[0].split()[:5] == ["limited", "final", "true", "return",
                                  "-132.00"]
  assert "-45.0, -35.0" in lines[2]
  reference = str(tmp_path / "true")
  _fake_sweep(reference, {"none": [-28.0, -32.0]})
  mean, _, n = plot_recursive.reference_return(reference)
  assert (mean, n) == (-30.0, 2)
  with pytest.raises(ValueError, match="no true-reward"):
    plot_recursive.reference_return(workdir)
  with pytest.raises(ValueError, match="one reference per workdir"):
    plot_recursive.plot([workdir], "unused.png", [reference, reference])
  out = str(tmp_path / "fig" / "recursive.png")
  plot_recursive.plot([workdir], out, [reference])
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("variant", ["walker_walk", "cheetah_run", "hopper",
                                     "cpu", "smoke"])
def test_pebble_sweep_plans_valid_units_per_algorithm_and_budget(variant):
  """SAC+PEBBLE and PPO at each budget, and both true-reward baselines."""
  from experiments.sweeps import pebble  # pylint: disable=g-import-not-at-top
  if variant in ("walker_walk", "cheetah_run"):
    pytest.importorskip("mujoco_playground")
  units = sweep.plan_units(pebble.get_sweep(variant))
  budgets = pebble.BUDGETS if variant not in ("cpu", "smoke") else (
      pebble.CPU_BUDGETS if variant == "cpu" else (100, 120))
  assert len(units) == 2 * (len(budgets) + 1)
  seen = set()
  for unit in units:
    configs = [m.config for m in unit.members]
    c = configs[0]
    assert len({m.config.seed for m in unit.members}) == len(configs) == (
        2 if variant == "smoke" else 5)
    key = (c.rl.algorithm, c.reward.source,
           c.feedback.budget if c.learned_reward else None)
    seen.add(key)
    if c.rl.algorithm == "sac":
      assert c.sac.pretrain_iterations == (2 if c.learned_reward else 0)
  assert seen == {(a, "learned", b) for a in ("ppo", "sac") for b in budgets
                  } | {("ppo", "true", None), ("sac", "true", None)}
  with pytest.raises(ValueError, match="unknown variant"):
    pebble.get_sweep("humanoid")


def _fake_pebble(workdir, runs):
  """runs: (algorithm, source, budget, [(labels, return) per eval]) each."""
  for u, (algorithm, source, budget, evals) in enumerate(runs):
    d = os.path.join(workdir, f"u{u:03d}", "members", "000")
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
      json.dump({"seed": 0, "rl": {"algorithm": algorithm},
                 "reward": {"source": source},
                 "feedback": {"budget": budget}}, f)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
      for i, (labels, ret) in enumerate(evals):
        f.write(json.dumps({"iteration": i, "oracle/labels": labels,
                            "eval/true_return": ret}) + "\n")
        f.write(json.dumps({"iteration": i, "oracle/labels": labels}) + "\n")


def test_pebble_figure_normalises_by_true_reward_sac_and_counts_labels(
    tmp_path):
  pytest.importorskip("matplotlib")
  from experiments import plot_pebble  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "pebble")
  _fake_pebble(workdir, [
      ("sac", "true", 200, [(0, 100.0), (0, 1000.0)]),
      ("ppo", "true", 200, [(0, 50.0), (0, 500.0)]),
      ("sac", "learned", 100, [(10, 300.0), (60, 950.0), (100, 800.0)]),
      ("ppo", "learned", 100, [(10, 100.0), (100, 400.0)]),
  ])
  s = plot_pebble.summarise(plot_pebble.load_members(workdir))
  assert s["baseline_sac"] == 1000.0
  assert s["true_ppo"][0] == 0.5
  rows = {r["algorithm"]: r for r in s["rows"]}
  assert rows["sac"]["normalised"][0] == 0.8  # final, not best
  assert rows["sac"]["labels_to_90"][0] == 60 and rows["sac"]["reached"] == 1
  assert rows["ppo"]["reached"] == 0
  table = plot_pebble.format_summary(s).splitlines()
  assert table[-1].split() == ["sac", "100", "1", "0.800", "60", "(1/1)"]
  assert table[-2].split() == ["ppo", "100", "1", "0.400", "-", "(0/1)"]
  out = str(tmp_path / "pebble.png")
  plot_pebble.plot(s, out, "test")
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_hacking_figure_and_rates_from_a_sweeps_files(tmp_path):
  """plot_hacking reads members' files: which the detector flagged, per
  offline/online unit, and draws a real PNG."""
  from experiments import plot_hacking  # pylint: disable=g-import-not-at-top
  for unit, budget, flags_ in (("u000_budget=10", 10, [[3, 4], []]),
                               ("u001_budget=40", 40, [[], []])):
    for seed, flagged in enumerate(flags_):
      d = tmp_path / unit / "members" / f"{seed:03d}"
      d.mkdir(parents=True)
      (d / "config.json").write_text(json.dumps({
          "seed": seed, "feedback": {"budget": budget,
                                     "initial_labels": 10}}))
      (d / "report.json").write_text(json.dumps({
          "final_return": -50.0 - seed,
          "reward_hacking": {"flagged_iterations": flagged, "score": (
              (0.8, 0.2) if budget == 10 else (0.3, 0.1))[seed]},
          "reward_epic": {"final": 0.5 if budget == 10 else 0.1}}))
      (d / "metrics.jsonl").write_text("".join(json.dumps({
          "iteration": i, "rollout/learned_episode_return": float(i),
          "rollout/true_episode_return": -float(i)}) + "\n"
                                               for i in range(1, 6)))
  runs = plot_hacking.load(str(tmp_path))
  assert sorted(runs) == ["offline", "online"]
  # Scores: offline 0.8, 0.2; online 0.3, 0.1 -> 3 of 4 pairs right.
  assert plot_hacking.detector_auroc(runs, "offline") == 0.75
  assert plot_hacking.summary("offline", runs["offline"]).startswith(
      "offline: detector flagged 1/2 (seeds [0]); final return -50.5")
  assert "flagged 0/2" in plot_hacking.summary("online", runs["online"])
  plot_hacking.plot(runs, str(tmp_path / "h.png"))
  assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
