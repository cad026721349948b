"""Workdir decisions (rrm.workdir): resume or refuse, truncate, keep labels.

Pure host code on hand-made files; no program is compiled.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import feedback
from rrm import oracle
from rrm import segments
from rrm import workdir as rrm_workdir


def _labels(n, capacity=6):
  d = feedback.init_labels(capacity, 2, 1, 1)
  seg = segments.Segments(observation=jnp.ones((n, 2, 1)),
                          action=jnp.zeros((n, 2, 1)),
                          next_observation=jnp.zeros((n, 2, 1)),
                          true_reward=jnp.zeros((n, 2)))
  return feedback.add_labels(d, seg, seg, jnp.ones((n,)),
                             jnp.ones((n,), bool), jnp.int32(0))


def _export(path, n):
  rrm_checkpoint.export_labels(_labels(n), oracle.make_teacher(), str(path),
                               "point_hazard")


def test_config_differences_skip_resumable_fields_and_tuples_equal_lists():
  saved = {"seed": 0, "num_iterations": 5, "ppo": {"sizes": [32, 32],
                                                   "lr": 1e-3}}
  now = {"seed": 1, "num_iterations": 9, "ppo": {"sizes": (32, 32),
                                                 "lr": 3e-3}}
  assert rrm_workdir.config_differences(saved, now) == [
      "ppo.lr: saved 0.001, now 0.003", "seed: saved 0, now 1"]
  # Nested fields are never resumable by name alone.
  assert rrm_workdir.config_differences(
      {"a": {"num_iterations": 1}}, {"a": {"num_iterations": 2}}) == [
          "a.num_iterations: saved 1, now 2"]


def test_check_same_configs_names_the_differences(tmp_path):
  rrm_workdir.check_same_configs(str(tmp_path), {"seed": 0, "log": 1},
                                 {"seed": 0, "log": 2}, is_sweep=False)
  with pytest.raises(rrm_config.ConfigError, match="seed: saved 0, now 1"):
    rrm_workdir.check_same_configs(str(tmp_path), {"seed": 0}, {"seed": 1},
                                   is_sweep=False)
  one = [{"overrides": {}, "config": {"seed": 0}}]
  with pytest.raises(rrm_config.ConfigError,
                     match="1 members saved, 2 now"):
    rrm_workdir.check_same_configs(str(tmp_path), one, one * 2, is_sweep=True)
  with pytest.raises(rrm_config.ConfigError, match="member 0: seed"):
    rrm_workdir.check_same_configs(
        str(tmp_path), one, [{"overrides": {}, "config": {"seed": 3}}],
        is_sweep=True)


def test_record_round_trip(tmp_path):
  assert rrm_workdir.read_record(str(tmp_path), False) is None
  rrm_workdir.write_record(str(tmp_path), {"seed": 4}, False)
  assert rrm_workdir.read_record(str(tmp_path), False) == {"seed": 4}
  assert (tmp_path / "config.json").exists()
  rrm_workdir.write_record(str(tmp_path), [{"seed": 4}], True)
  assert json.loads((tmp_path / "sweep.json").read_text()) == [{"seed": 4}]


def test_truncate_metrics_drops_later_and_cut_lines(tmp_path):
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps({"iteration": i}) for i in (1, 2, 3, 4)]
  path.write_text("\n".join(lines) + '\n{"iteration": 5, "x"')  # cut by kill
  rrm_workdir.truncate_metrics(str(path), 2)
  assert [json.loads(l)["iteration"] for l in path.read_text().splitlines()
          ] == [1, 2]
  rrm_workdir.truncate_metrics(str(tmp_path / "absent.jsonl"), 2)  # no-op


def test_holds_run_and_fresh_refusal(tmp_path):
  assert not rrm_workdir.holds_run(str(tmp_path))
  (tmp_path / "checkpoints").mkdir()
  assert not rrm_workdir.holds_run(str(tmp_path))  # an empty dir holds none
  (tmp_path / "metrics.jsonl").write_text("{}\n")
  assert rrm_workdir.holds_run(str(tmp_path))
  with pytest.raises(FileExistsError, match="--overwrite"):
    rrm_workdir.prepare_fresh(str(tmp_path), overwrite=False)


def test_discard_keeps_every_nodes_labels(tmp_path):
  _export(tmp_path / "labels.npz", 3)
  _export(tmp_path / "labels.hazard.npz", 2)
  (tmp_path / "metrics.jsonl").write_text("{}\n")
  (tmp_path / "config.json").write_text("{}")
  kept = rrm_workdir.discard_run(str(tmp_path))
  names = sorted(os.listdir(tmp_path))
  assert kept and os.path.basename(kept) in names
  assert [n for n in names if n.startswith("labels.discarded_")
          and n.endswith(".hazard.npz")]
  assert "labels.npz" not in names and "metrics.jsonl" not in names
  assert rrm_checkpoint.load_labels(kept).size == 3


def test_labels_the_restored_state_lacks_are_set_aside_per_node(tmp_path):
  _export(tmp_path / "labels.npz", 4)
  _export(tmp_path / "labels.goal.npz", 2)
  _export(tmp_path / "labels.hazard.npz", 5)
  (tmp_path / "labels.ctrl.npz").write_text("not an npz")  # unreadable
  kept = rrm_workdir.keep_unsaved_labels(
      str(tmp_path), {"labels.npz": 4, "labels.goal.npz": 2,
                      "labels.hazard.npz": 3, "labels.ctrl.npz": 9}, 7)
  names = sorted(os.path.basename(k) for k in kept)
  # The root and goal files hold no more than the state: left for the next
  # export to rewrite. Hazard holds 2 more; ctrl cannot be read: both kept.
  assert len(names) == 2
  assert all(n.startswith("labels.after_7_") for n in names)
  assert {n.split(".")[-2] for n in names} == {"hazard", "ctrl"}
  assert sorted(rrm_workdir.label_files(str(tmp_path))) == [
      "labels.goal.npz", "labels.npz"]


def test_export_writes_every_nodes_labels(tmp_path):
  from experiments.configs import point_hazard  # pylint: disable=g-import-not-at-top
  from rrm import config_parse  # pylint: disable=g-import-not-at-top
  from rrm import train as rrm_train  # pylint: disable=g-import-not-at-top
  cd = point_hazard.get_config("smoke")
  cd.recursive.tree = point_hazard.TREE_DEPTH3
  cd.recursive.level_fractions = (0.4, 0.3, 0.3)
  config = config_parse.from_config_dict(cd)
  plan = rrm_train.make_plan(config)
  helpers = jax.tree.map(lambda *x: jnp.stack(x),
                         *[_labels(h + 1) for h in range(plan.num_helpers)])
  rrm_workdir.export_labels(
      (_labels(3), oracle.make_teacher(), helpers, None, None),
      str(tmp_path), config, plan)
  assert rrm_checkpoint.load_labels(str(tmp_path / "labels.npz")).size == 3
  for h, node in enumerate(plan.helpers):
    lf = rrm_checkpoint.load_labels(str(tmp_path / f"labels.{node.name}.npz"))
    assert lf.size == h + 1
  counts = rrm_workdir.restored_counts(
      _State(labels=_labels(3), helpers=_Helpers(helpers)), plan)
  assert counts["labels.npz"] == 3 and len(counts) == plan.num_helpers + 1
  np.testing.assert_array_equal(
      [counts[f"labels.{n.name}.npz"] for n in plan.helpers],
      np.arange(1, plan.num_helpers + 1))


class _Helpers:

  def __init__(self, labels):
    self.labels = labels


class _State:

  def __init__(self, labels, helpers, safety=None, ratings=None):
    self.labels, self.helpers, self.safety = labels, helpers, safety
    self.ratings = ratings
