"""Sweeps: members vmapped in one program equal their solo runs; sharding;
work units, the local launcher, its report and relaunches.

Every compiled program here is the smoke config's, vmapped over 4 members
on one device: compiled once in-process (the `swept` fixture) and loaded from
the session's compilation cache by the launcher subprocesses. The sharded
test compiles the 4-device program once in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import assert_trees_equal
from conftest import launcher_env
from experiments.configs import inverted_pendulum
from launch import report as sweep_report
from rrm import config as rrm_config
from rrm import sweep as rrm_sweep
from rrm import train as rrm_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 3

# Member overrides on the smoke config. Members 0-2 share seed 0, so any
# difference between them is their hyperparameters' doing; member 3's reward
# learning rate makes its reward model overflow (a diverging member).
MEMBERS = (
    {"seed": 0},
    {"seed": 0, "ppo.learning_rate": 1e-3, "ppo.entropy_cost": 0.0},
    {"seed": 0, "oracle.teacher": "mistake"},
    {"seed": 1, "reward.learning_rate": 1e38},
)
# Metrics compared between a member and its solo run.
COMPARED = ("ppo/total_loss", "ppo/policy_loss", "ppo/value_loss",
            "reward/loss", "reward/heldout_accuracy", "rollout/true_reward",
            "rollout/learned_reward", "oracle/labels", "oracle/labels_stored")


def _configs(members=MEMBERS):
  base = inverted_pendulum.get_config("smoke")
  return [rrm_config.from_config_dict(rrm_sweep.apply_overrides(base, m))
          for m in members]


@pytest.fixture(scope="module")
def swept():
  """4 members, vmapped, `ITERATIONS` iterations: init state and metrics."""
  sweep = rrm_sweep.make_sweep(_configs())
  states = sweep.init()
  init_states = jax.device_get(states)
  history = []
  for _ in range(ITERATIONS):
    states, metrics = sweep.iteration(states)
    history.append(jax.device_get(metrics))
  evaluation = jax.device_get(sweep.evaluate(states, ITERATIONS))
  return {"sweep": sweep, "init": init_states, "history": history,
          "evaluation": evaluation, "final": jax.device_get(states)}


def _solo(train, config):
  state = train.init(rrm_train.run_keys(config.seed)[0],
                     rrm_train.make_hyper(config),
                     rrm_train.make_teacher(config))
  init = jax.device_get(state)
  history = []
  for _ in range(ITERATIONS):
    state, metrics = train.iteration(state)
    history.append(jax.device_get(metrics))
  return init, history, state


def test_members_equal_their_solo_runs(smoke, swept):
  """Each member computes what its own run computes, to float32 rounding.

  vmap turns the matrix products into batched ones, whose sums run in
  another order: measured on CPU, members differ from solo runs by at most
  a few float32 ulps of the losses (relative 1e-7..1e-6) over these
  iterations, so 1e-5 is the tolerance. Discrete outcomes (which pairs the
  teacher labelled, the labels, labels spent) are exactly equal.
  """
  configs = _configs()
  assert rrm_config.program_key(configs[0]) == rrm_config.program_key(
      smoke.config)
  for j, config in enumerate(configs[:3]):  # 3 diverges: nan on both sides
    init, history, _ = _solo(smoke, config)
    member_init = rrm_sweep.member_state(swept["init"], j)
    np.testing.assert_array_equal(init.labels.label, member_init.labels.label)
    np.testing.assert_array_equal(init.labels.first.observation,
                                  member_init.labels.first.observation)
    assert_trees_equal(init.hyper, member_init.hyper)
    assert_trees_equal(init.teacher, member_init.teacher)
    for i in range(ITERATIONS):
      for k in COMPARED:
        np.testing.assert_allclose(
            swept["history"][i][k][j], history[i][k], rtol=1e-5, atol=1e-6,
            err_msg=f"member {j}, iteration {i + 1}, {k}")


def test_hyperparameters_and_teachers_take_effect(swept):
  h = swept["history"]
  # Same seed, other PPO learning rate / teacher: other runs.
  assert h[0]["ppo/total_loss"][1] != h[0]["ppo/total_loss"][0]
  labels = swept["init"].labels.label
  assert not np.array_equal(labels[0], labels[2])  # mistakes flip labels
  assert np.array_equal(swept["init"].labels.first.observation[0],
                        swept["init"].labels.first.observation[2])
  # The diverging member is flagged, and only it.
  row = lambda j: {k: float(v[j]) for k, v in h[0].items()}
  configs = _configs()
  assert rrm_train.nonfinite_problem(row(3), configs[3])
  for j in range(3):
    assert rrm_train.nonfinite_problem(row(j), configs[j]) is None
  assert np.all(np.isfinite(swept["evaluation"]["eval/true_return"][:3]))


def test_members_that_need_another_program_are_refused():
  configs = _configs(({"seed": 0}, {"seed": 1, "feedback.budget": 100}))
  with pytest.raises(rrm_config.ConfigError, match=r"feedback\.budget"):
    rrm_sweep.check_members(configs)


def test_plan_groups_by_program_and_validates_every_member():
  base = inverted_pendulum.get_config("smoke")
  members = rrm_sweep.product(
      rrm_sweep.values("feedback.query_selector", ["uniform", "entropy"]),
      rrm_sweep.zip_axes(rrm_sweep.values("seed", [0, 1, 2]),
                         rrm_sweep.values("ppo.learning_rate",
                                          [1e-4, 3e-4, 1e-3])))
  units = rrm_sweep.plan_units(rrm_sweep.SweepDef(base, members))
  assert [u.name for u in units] == ["u000_query_selector=uniform",
                                     "u001_query_selector=entropy"]
  assert [len(u.members) for u in units] == [3, 3]
  assert [m.config.ppo.learning_rate for m in units[1].members] == [
      1e-4, 3e-4, 1e-3]
  split = rrm_sweep.plan_units(rrm_sweep.SweepDef(base, members),
                               max_members=2)
  assert [len(u.members) for u in split] == [2, 1, 2, 1]
  assert len(rrm_sweep.chain(members, members[:1])) == 7
  bad = members[:1] + [{"seed": 0, "ppo.learning_rat": 1e-3}]
  with pytest.raises(rrm_config.ConfigError,
                     match=r"sweep member 1 .*no field 'learning_rat'"):
    rrm_sweep.plan_units(rrm_sweep.SweepDef(base, bad))
  with pytest.raises(rrm_config.ConfigError, match=r"sweep member 0 .*budget"):
    rrm_sweep.plan_units(rrm_sweep.SweepDef(base, [{"feedback.budget": 10}]))
  with pytest.raises(rrm_config.ConfigError, match="equal length"):
    rrm_sweep.zip_axes(rrm_sweep.values("seed", [0, 1]),
                       rrm_sweep.values("ppo.learning_rate", [1e-4]))


def test_run_sweep_stops_resumes_exactly_and_reports_divergence(swept,
                                                                tmp_path):
  sweep = swept["sweep"]
  # 4 iterations (a host-loop setting: the same program as `swept`'s).
  members = [rrm_sweep.Member(c, o) for c, o in zip(
      _configs([{**m, "num_iterations": 4} for m in MEMBERS]), MEMBERS)]
  workdir = str(tmp_path / "unit")
  calls = {"n": 0}

  def stop_after_first():
    calls["n"] += 1
    return "test stop" if calls["n"] == 1 else None

  first = rrm_sweep.run_sweep(members, workdir, progress=None,
                              stop=stop_after_first, sweep=sweep)
  assert first["stopped"] == "test stop" and first["iteration"] == 1
  assert not os.path.exists(os.path.join(workdir, "results.jsonl"))
  config = members[0].config
  assert config.num_iterations > ITERATIONS
  out = rrm_sweep.run_sweep(members, workdir, progress=None, sweep=sweep)
  assert out["stopped"] is None and out["iteration"] == config.num_iterations
  # The resumed sweep equals an uninterrupted one of the same program.
  states = sweep.init()
  for _ in range(config.num_iterations):
    states, _ = sweep.iteration(states)
  assert_trees_equal(jax.device_get(states), jax.device_get(out["states"]))
  for j in range(len(members)):
    d = os.path.join(workdir, "members", f"{j:03d}")
    with open(os.path.join(d, "metrics.jsonl")) as f:
      its = [json.loads(line)["iteration"] for line in f]
    assert its == list(range(1, config.num_iterations + 1))
    assert os.path.exists(os.path.join(d, "labels.npz"))
    assert os.path.exists(os.path.join(d, "report.json"))
  with open(os.path.join(workdir, "results.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["member"] for r in rows] == [0, 1, 2, 3]
  assert rows[1]["ppo.learning_rate"] == 1e-3
  assert rows[3]["diverged"].startswith("iteration 1: non-finite")
  assert all(r["diverged"] is None for r in rows[:3])
  assert all(r["labels_spent"] == config.feedback.budget for r in rows)


def _write_sweep_file(path, num_iterations=(1, 2)):
  """Units by num_iterations (a host-loop setting: same program), each with
  the `MEMBERS` of the in-process sweep."""
  path.write_text(textwrap.dedent(f"""
      from experiments.configs import inverted_pendulum
      from rrm import sweep

      def get_sweep():
        base = inverted_pendulum.get_config("smoke")
        base.checkpoint_every = 1
        return sweep.SweepDef(base=base, members=sweep.product(
            sweep.values("num_iterations", {list(num_iterations)}),
            {list(MEMBERS)!r}))
      """))


def test_local_launcher_sharded_units_reports_and_skips_finished(swept,
                                                                 tmp_path):
  """Two units (num_iterations 1 and 2) of the 4 `MEMBERS`, run one after the
  other by the local backend with 4 host devices: each unit's program is
  sharded one member per device (compiled by the first unit, loaded from the
  cache by the second). The sharded members equal the unsharded in-process
  sweep (`swept`) to float32 rounding, as members equal solo runs (see
  test_members_equal_their_solo_runs: there the batch is 4 wide, here 1)."""
  sweep_file = tmp_path / "grid.py"
  _write_sweep_file(sweep_file)
  workdir = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
         f"--workdir={workdir}", "--parallel=1"]
  env = launcher_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  units = ["u000_num_iterations=1", "u001_num_iterations=2"]
  for unit in units:
    assert os.path.exists(workdir / unit / "results.jsonl"), proc.stdout
  # Sharded (4 devices, launched) vs unsharded (1 device, in-process).
  for j in range(len(MEMBERS)):
    path = workdir / units[1] / "members" / f"{j:03d}" / "metrics.jsonl"
    history = [json.loads(line) for line in open(path)]
    assert [m["iteration"] for m in history] == [1, 2]
    for i, m in enumerate(history):
      for k in COMPARED:
        want = float(swept["history"][i][k][j])
        got = m[k] if m[k] is not None else float("nan")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"member {j}, iteration {i + 1}, {k}")
  rows = [json.loads(line) for line in open(workdir / "results.jsonl")]
  assert len(rows) == 8
  assert {r["unit"] for r in rows} == set(units)
  assert sorted(r["iterations"] for r in rows) == [1] * 4 + [2] * 4
  assert [r["diverged"] is not None for r in rows] == [False] * 3 + [True] + [
      False] * 3 + [True]
  groups = sweep_report.aggregate(rows, group_by=["num_iterations", "seed"])
  assert [(g["num_iterations"], g["seed"], g["n"], g["diverged"])
          for g in groups] == [(1, 0, 3, 0), (1, 1, 1, 1), (2, 0, 3, 0),
                               (2, 1, 1, 1)]
  for g in groups[::2]:
    mine = [r["final_return"] for r in rows
            if r["num_iterations"] == g["num_iterations"] and r["seed"] == 0]
    assert g["final_return"] == pytest.approx(np.mean(mine))
    half = 4.303 * np.std(mine, ddof=1) / np.sqrt(3)
    assert g["final_return_ci95"] == pytest.approx(half)
  assert "final return" in proc.stdout and "done: 2 units" in proc.stdout
  # A relaunch finds both units finished and runs nothing.
  mtime = os.path.getmtime(workdir / units[0] / "results.jsonl")
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "skipping 2 finished units" in again.stdout
  assert os.path.getmtime(workdir / units[0] / "results.jsonl") == mtime
  # Another sweep on the same workdir is refused.
  sweep_file.write_text(sweep_file.read_text().replace("[1, 2]", "[1, 3]"))
  other = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert other.returncode == 1 and "holds another sweep" in other.stderr


def test_slurm_backend_through_submitit_local_executor(swept, tmp_path):
  """The Slurm path (job array of units, requeue-able tasks) on submitit's
  local executor: same unit program, loaded from the compilation cache."""
  pytest.importorskip("submitit")
  sweep_file = tmp_path / "one.py"
  _write_sweep_file(sweep_file, num_iterations=(1,))
  workdir = tmp_path / "sweep"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
       f"--workdir={workdir}", "--backend=slurm", "--slurm_cluster=local"],
      cwd=ROOT, env=launcher_env(), capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "u000_num_iterations=1 done: 4 members" in proc.stdout, proc.stdout
  rows = [json.loads(line) for line in open(workdir / "results.jsonl")]
  assert [r["member"] for r in rows] == [0, 1, 2, 3]
  assert list((workdir / "slurm").glob("*_0_log.out"))
