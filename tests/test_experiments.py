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
