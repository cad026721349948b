"""Sweeps: members vmapped in one program equal their solo runs; sharding;
one unit over several processes; work units, the local, Slurm and XManager
launchers, the report and relaunches.

Every compiled program here is the smoke config's, vmapped over 4 members
on one device: compiled once in-process (the `swept` fixture) and loaded from
the session's compilation cache by the launcher subprocesses (the local,
Slurm and XManager backends), whose members then equal it bit for bit. The
sharded test runs one unit over 2 processes x 2 devices, which compile
their programs themselves (on CPU the cache keys hold the process index).
"""

import json
import os
import socket
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
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import sweep as rrm_sweep
from rrm import state as rrm_state
from rrm import diagnostics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 3
# With pytest-xdist, the tests of one compiled fixture share a worker.
SWEPT = pytest.mark.xdist_group("sweep_swept")
LAUNCHED = pytest.mark.xdist_group("sweep_launched")

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
  return [config_parse.from_config_dict(rrm_sweep.apply_overrides(base, m))
          for m in members]


@pytest.fixture(scope="session")  # kept: xdist interleaves modules
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
  state = train.init(rrm_state.run_keys(config.seed)[0],
                     rrm_state.make_hyper(config),
                     rrm_state.make_teacher(config))
  init = jax.device_get(state)
  history = []
  for _ in range(ITERATIONS):
    state, metrics = train.iteration(state)
    history.append(jax.device_get(metrics))
  return init, history, state


def _labelled_pairs(labels):
  """The labelled pairs and their labels, as a sorted list (batch order
  aside: see test_members_equal_their_solo_runs)."""
  n = int(labels.count)
  first = np.asarray(labels.first.observation[:n]).reshape(n, -1)
  second = np.asarray(labels.second.observation[:n]).reshape(n, -1)
  return sorted((a.tobytes(), b.tobytes(), float(y)) for a, b, y in
                zip(first, second, np.asarray(labels.label[:n])))


@SWEPT
def test_members_equal_their_solo_runs(smoke, swept):
  """Each member computes what its own run computes, to float32 rounding.

  vmap turns the matrix products into batched ones, whose sums run in
  another order: measured on CPU, members differ from solo runs by at most
  a few float32 ulps of the losses (relative 1e-7..1e-6) over these
  iterations, so 1e-5 is the tolerance. Discrete outcomes (which pairs the
  teacher labelled, the labels, labels spent) are exactly equal, except
  for the order of pairs within a batch: two query candidates whose
  disagreement scores agree to rounding can leave top_k in either order
  (seen on one CPU: pairs 17 and 18 of the initial batch, swapped).
  """
  configs = _configs()
  assert rrm_config.program_key(configs[0]) == rrm_config.program_key(
      smoke.config)
  for j, config in enumerate(configs[:3]):  # 3 diverges: nan on both sides
    init, history, _ = _solo(smoke, config)
    member_init = rrm_sweep.member_state(swept["init"], j)
    assert _labelled_pairs(init.labels) == _labelled_pairs(
        member_init.labels), f"member {j}"
    assert_trees_equal(init.hyper, member_init.hyper)
    assert_trees_equal(init.teacher, member_init.teacher)
    for i in range(ITERATIONS):
      for k in COMPARED:
        np.testing.assert_allclose(
            swept["history"][i][k][j], history[i][k], rtol=1e-5, atol=1e-6,
            err_msg=f"member {j}, iteration {i + 1}, {k}")


@SWEPT
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
  assert diagnostics.nonfinite_problem(row(3), configs[3])
  for j in range(3):
    assert diagnostics.nonfinite_problem(row(j), configs[j]) is None
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


@SWEPT
def test_run_sweep_stops_resumes_exactly_and_reports_divergence(swept,
                                                                tmp_path):
  sweep = swept["sweep"]
  # 4 iterations (a host-loop setting: the same program as `swept`'s).
  members = [rrm_sweep.Member(c, o) for c, o in zip(
      _configs([{**m, "num_iterations": 4} for m in MEMBERS]), MEMBERS)]
  workdir = str(tmp_path / "unit")
  calls = {"n": 0}

  def stop_after_first():  # polled before the loop, then after iteration 1
    calls["n"] += 1
    return "test stop" if calls["n"] == 2 else None

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


# The launched unit: the 4 `MEMBERS`, 2 iterations.
UNIT = "u000_num_iterations=2"


@SWEPT
def test_local_launcher_runs_a_unit_reports_and_skips_finished(swept,
                                                               tmp_path):
  """One unit of the 4 `MEMBERS` (2 iterations) run by the local backend in
  a worker process on one device: the in-process sweep's program, loaded
  from the session's compilation cache, so its members equal `swept`'s bit
  for bit. Then the report (rows, groups, CIs), a relaunch that finds the
  unit finished and runs nothing, and another sweep refused on the same
  workdir. (Sharding over devices and processes:
  test_one_unit_over_two_processes_shards_its_members.)"""
  sweep_file = tmp_path / "grid.py"
  _write_sweep_file(sweep_file, num_iterations=(2,))
  workdir = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
         f"--workdir={workdir}", "--parallel=1"]
  env = launcher_env()
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert os.path.exists(workdir / UNIT / "results.jsonl"), proc.stdout
  for j in range(len(MEMBERS)):
    path = workdir / UNIT / "members" / f"{j:03d}" / "metrics.jsonl"
    history = [json.loads(line) for line in open(path)]
    assert [m["iteration"] for m in history] == [1, 2]
    for i, m in enumerate(history):
      for k in COMPARED:
        want = np.float32(swept["history"][i][k][j])
        got = np.float32(m[k] if m[k] is not None else np.nan)
        assert got.tobytes() == want.tobytes() or (
            np.isnan(got) and np.isnan(want)), (j, i + 1, k, got, want)
  rows = [json.loads(line) for line in open(workdir / "results.jsonl")]
  assert [r["unit"] for r in rows] == [UNIT] * 4
  assert [r["iterations"] for r in rows] == [2] * 4
  assert [r["diverged"] is not None for r in rows] == [False] * 3 + [True]
  groups = sweep_report.aggregate(rows, group_by=["seed"])
  assert [(g["seed"], g["n"], g["diverged"]) for g in groups] == [
      (0, 3, 0), (1, 1, 1)]
  mine = [r["final_return"] for r in rows if r["seed"] == 0]
  assert groups[0]["final_return"] == pytest.approx(np.mean(mine))
  half = 4.303 * np.std(mine, ddof=1) / np.sqrt(3)
  assert groups[0]["final_return_ci95"] == pytest.approx(half)
  assert "final return" in proc.stdout and "done: 1 units" in proc.stdout
  # The sweep's certificate: report.md, report.json and real PNG figures.
  certificate = (workdir / "report.md").read_text()
  assert certificate.startswith("# Sweep certificate")
  figures = [line[line.index("(") + 1:-1] for line in certificate.splitlines()
             if line.startswith("![")]
  assert "sweep_returns.png" in figures
  for name in figures:
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert sum(g["n"] for g in json.loads(
      (workdir / "report.json").read_text())["groups"]) == 4
  # A relaunch finds the unit finished and runs nothing.
  mtime = os.path.getmtime(workdir / UNIT / "results.jsonl")
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "skipping 1 finished units" in again.stdout
  assert os.path.getmtime(workdir / UNIT / "results.jsonl") == mtime
  # Another sweep on the same workdir is refused.
  sweep_file.write_text(sweep_file.read_text().replace("[2]", "[3]"))
  other = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert other.returncode == 1 and "holds another sweep" in other.stderr


@SWEPT
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


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_processes(cmds, envs, logs, timeout):
  """Runs the commands at once; returns their exit codes (all killed on
  timeout: one process waiting for a dead peer must not hang the suite)."""
  procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
           for cmd, env, log in zip(cmds, envs, logs)]
  try:
    return [p.wait(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


@LAUNCHED
def test_one_unit_over_two_processes_shards_its_members(tmp_path):
  """The unit of 4 `MEMBERS` run by 2 processes x 2 host devices
  (jax.distributed over localhost, Gloo collectives), its member axis
  sharded one member per device: every member equals the unsharded
  in-process sweep (its golden values, which `swept` reproduces bit for bit)
  to float32 rounding, as members equal solo runs (see
  test_members_equal_their_solo_runs: there the batch is 4 wide, here 1).
  Process 0 alone writes the files; the checkpoint both wrote (each its
  shards) restores whole in this process (1 device), its digest checked.

  On CPU JAX's persistent cache keys hold the process index, so each
  process compiles its programs itself: the test's cost.
  """
  import golden_values  # pylint: disable=g-import-not-at-top
  sweep_file = tmp_path / "grid.py"
  _write_sweep_file(sweep_file, num_iterations=(2,))
  workdir = tmp_path / "multi"
  port = _free_port()
  cmds = [[sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
           f"--workdir={workdir}", f"--unit={UNIT}", "--distributed=on",
           f"--coordinator_address=localhost:{port}", "--num_processes=2",
           f"--process_id={i}"] for i in range(2)]
  env = launcher_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  codes = _run_processes(cmds, [env, env], logs, timeout=900)
  out = [log.read_text() for log in logs]
  assert codes == [0, 0], out[0][-3000:] + out[1][-3000:]
  assert "process 0 of 2, 2 of 4 devices" in out[0]
  assert "process 1 of 2, 2 of 4 devices" in out[1]
  assert f"unit {UNIT} done: 4 members" in out[1]
  assert "it 2/2 |" in out[0] and "it 2/2" not in out[1]  # process 0 only
  unit = workdir / UNIT
  for j in range(len(MEMBERS)):
    history = [json.loads(line) for line in
               open(unit / "members" / f"{j:03d}" / "metrics.jsonl")]
    assert [m["iteration"] for m in history] == [1, 2]
    for i, m in enumerate(history):
      for k in COMPARED:
        want = float(golden_values.metric("sweep_4_members", i + 1, k)[j])
        got = m[k] if m[k] is not None else float("nan")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"member {j}, iteration {i + 1}, {k}")
  rows = [json.loads(line) for line in open(unit / "results.jsonl")]
  assert [r["member"] for r in rows] == [0, 1, 2, 3]
  assert [r["diverged"] is not None for r in rows] == [False] * 3 + [True]
  # Saved shard by shard by 2 processes, restored whole by this one: the
  # digest recorded at save time is checked by restore; each member's labels
  # are those process 0 exported.
  sweep = rrm_sweep.make_sweep(_configs())  # its shapes: nothing compiled
  ckpt = rrm_checkpoint.Checkpointer(str(unit / "checkpoints"))
  states = ckpt.restore(2, lambda _: sweep.init(), sweep.sharding)[0]
  ckpt.close()
  assert np.asarray(states.iteration).tolist() == [2] * 4
  for j in range(len(MEMBERS)):
    labels = np.load(unit / "members" / f"{j:03d}" / "labels.npz")
    member = rrm_sweep.member_state(jax.device_get(states), j).labels
    n = int(member.count)
    assert labels["label"].shape[0] == n
    np.testing.assert_array_equal(labels["label"],
                                  np.asarray(member.label)[:n])


def test_cli_refuses_bad_process_flags_before_compiling(tmp_path):
  cases = {
      "--coordinator_address=localhost:1234": (
          "--coordinator_address needs --distributed=on"),
      "--unit=u000 --distributed=on": (
          "--distributed=on needs --coordinator_address, --num_processes "
          "and --process_id"),
      "--unit=u000 --distributed=on --coordinator_address=localhost:1 "
      "--num_processes=2 --process_id=2": "--process_id=2 must be in 0 .. 1",
      "--distributed=auto": "is for the worker processes of one unit",
      "--backend=slurm --slurm_cluster=local --slurm_nodes=2": (
          "submitit's local executor does not set the Slurm environment"),
  }
  # Not inside a cluster job, whose environment JAX would detect.
  env = {k: v for k, v in launcher_env().items()
         if not k.startswith(("SLURM_", "OMPI_"))}
  for flags_, message in cases.items():
    proc = subprocess.run(
        [sys.executable, "-m", "launch.sweep", "--sweep=none.py",
         f"--workdir={tmp_path}", *flags_.split()], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr, (flags_,
                                                             proc.stderr)
    assert not os.listdir(tmp_path)


@SWEPT
def test_xmanager_backend_runs_units_as_work_units(swept, tmp_path):
  """XManager's local executor (no Docker: the worker command as a local
  binary) runs the unit; a relaunch skips it. Same program as `swept`,
  loaded from the compilation cache. XManager's database goes to tmp_path
  (its default is ~/.xmanager)."""
  pytest.importorskip("xmanager")
  sweep_file = tmp_path / "one.py"
  _write_sweep_file(sweep_file, num_iterations=(1,))
  workdir = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
         f"--workdir={workdir}", "--backend=xmanager"]
  env = launcher_env(HOME=str(tmp_path / "home"))
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "XManager experiment" in proc.stdout
  assert "u000_num_iterations=1: exit 0: unit u000_num_iterations=1 done" in (
      proc.stdout), proc.stdout
  rows = [json.loads(line) for line in open(workdir / "results.jsonl")]
  assert [r["member"] for r in rows] == [0, 1, 2, 3]
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "skipping 1 finished units" in again.stdout
  assert "XManager experiment" not in again.stdout


@SWEPT
def test_golden_sweep(swept):
  """The 4-member sweep's states and metrics equal the golden values
  (tests/golden_values.py): init, 3 iterations, one evaluation."""
  import golden_values  # pylint: disable=g-import-not-at-top
  metrics = list(swept["history"])
  metrics[-1] = {**metrics[-1], **swept["evaluation"]}
  golden_values.check("sweep_4_members", [swept["init"], swept["final"]],
                      metrics)


def test_sweep_launcher_reports_bad_sweeps_in_one_line(tmp_path):
  """Each case in a launcher process of its own, all at once (nothing
  compiles): one 'error:' line, exit 1, no traceback, nothing written."""
  (tmp_path / "syntax.py").write_text("def get_sweep(:\n  pass\n")
  (tmp_path / "none.py").write_text("X = 1\n")
  (tmp_path / "empty.py").write_text(textwrap.dedent("""
      from experiments.configs import inverted_pendulum
      from rrm import sweep
      def get_sweep():
        return sweep.SweepDef(base=inverted_pendulum.get_config("smoke"),
                              members=[])
      """))
  one = tmp_path / "one.py"
  _write_sweep_file(one, num_iterations=(1,))
  cases = [
      (f"--sweep={tmp_path}/syntax.py", "does not parse: SyntaxError in"),
      ("--sweep=experiments/recursive.py:pointhazard",
       "get_sweep('pointhazard') failed: ValueError: unknown env"),
      ("--sweep=experiments/recursive.py:point_hazard:foo",
       "unknown variant 'foo'"),
      (f"--sweep={tmp_path}/none.py", "has no get_sweep()"),
      (f"--sweep={tmp_path}/empty.py", "the sweep has no members"),
      (f"--sweep={one} --unit=u999",
       "--unit='u999' is not a unit of"),
  ]
  procs = []
  for i, (flags_, _) in enumerate(cases):
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "launch.sweep", *flags_.split(),
         f"--workdir={tmp_path}/w{i}"], cwd=ROOT, env=launcher_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for i, (proc, (flags_, message)) in enumerate(zip(procs, cases)):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, (flags_, err[-2000:])
    assert message in err and "Traceback" not in err, (flags_, err[-2000:])
    assert len(err.strip().splitlines()) == 1, (flags_, err[-2000:])
    if i < 5:
      assert not (tmp_path / f"w{i}" / "plan.json").exists()


def test_a_dry_run_binds_the_workdir_to_no_sweep(tmp_path):
  a, b = tmp_path / "a.py", tmp_path / "b.py"
  _write_sweep_file(a, num_iterations=(1,))
  _write_sweep_file(b, num_iterations=(2,))
  workdir = tmp_path / "w"
  for sweep_file in (a, b):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.sweep", f"--sweep={sweep_file}",
         f"--workdir={workdir}", "--dry_run"], cwd=ROOT, env=launcher_env(),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 work units, 4 members" in proc.stdout
  assert not (workdir / "plan.json").exists()
