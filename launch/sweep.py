"""Runs a sweep: its work units, each one vmapped program, on a backend.

  python -m launch.sweep --sweep=experiments/sweeps/queries.py \
      --workdir=runs/queries [--backend=local --parallel=2 --gpus=0,1]

The sweep file's `get_sweep(arg)` gives a base config and member overrides
(rrm.sweep: values / product / zip_axes / chain). Members that differ only
in SWEEPABLE fields (seed, learning rates, loss coefficients, teacher) run
together in one compiled program; other differences (env, sizes, budgets,
query selector ...) become separate work units, each with its own workdir
`--workdir/<unit>/` (rrm.sweep.run_sweep's layout). `--max_members` caps a
program's size (memory).

Backends:
  local    (default) a pool of `--parallel` processes on this machine; with
           `--gpus=0,1,...` each process sees one GPU (CUDA_VISIBLE_DEVICES,
           round robin) and, when several share one, a fraction of its memory
           (XLA_PYTHON_CLIENT_MEM_FRACTION);
  slurm    a Slurm job array through submitit (pip install -e '.[launch]'):
           one task per unit, requeued on preemption or timeout; a requeued
           unit resumes from its checkpoint. `--slurm_cluster=local` runs the
           same code path on this machine (submitit's local executor).

Relaunching the same command skips finished units (their results.jsonl
exists) and resumes unfinished ones from their checkpoints. At the end,
`--workdir/results.jsonl` holds one row per member of every unit (overrides
as columns, final and best true return, labels-to-threshold, steps, wall
time) and the grouped report (launch/report.py) is printed.

Worker mode (what backends run): `--unit=NAME` runs one unit in this
process, its member axis sharded over this process's devices. (One unit
over several hosts is not supported yet; see BUILD.md.)
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading

from absl import app
from absl import flags

from launch import common
from launch import report as sweep_report

_SWEEP = flags.DEFINE_string(
    "sweep", None, "Sweep file with get_sweep([arg]), e.g. "
    "experiments/sweeps/queries.py[:smoke].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the sweep.")
_BACKEND = flags.DEFINE_enum("backend", "local", ["local", "slurm"],
                             "Where work units run.")
_PARALLEL = flags.DEFINE_integer(
    "parallel", 1, "local: work units run at the same time.")
_GPUS = flags.DEFINE_list(
    "gpus", [], "local: GPU ids to spread work units over (empty: do not set "
    "CUDA_VISIBLE_DEVICES).")
_MAX_MEMBERS = flags.DEFINE_integer(
    "max_members", 0, "Most members in one program (0: all that can share one).")
_UNIT = flags.DEFINE_string("unit", None, "Worker mode: run this unit only.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False,
                             "Print the work units and exit.")
_SLURM_CLUSTER = flags.DEFINE_string(
    "slurm_cluster", None, "slurm: submitit cluster (None: auto; 'local' or "
    "'debug' to run on this machine).")
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", None,
                                       "slurm: partition.")
_SLURM_TIMEOUT_MIN = flags.DEFINE_integer("slurm_timeout_min", 240,
                                          "slurm: time limit per task.")
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 1,
                                   "slurm: GPUs per task.")
_SLURM_ARRAY_PARALLELISM = flags.DEFINE_integer(
    "slurm_array_parallelism", 64, "slurm: tasks of the array running at once.")
flags.mark_flags_as_required(["sweep", "workdir"])


def load_sweep(spec: str):
  """Runs `path.py[:arg]`'s get_sweep(arg) -> rrm.sweep.SweepDef."""
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise rrm_config.ConfigError(f"sweep file {path} does not exist")
  module_spec = importlib.util.spec_from_file_location("rrm_sweep_def", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_sweep(arg) if arg else module.get_sweep()


def plan(spec: str, workdir: str, max_members: int):
  """The sweep's units; the plan is recorded in (and checked against) workdir."""
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  units = rrm_sweep.plan_units(load_sweep(spec), max_members)
  record = {u.name: [dict(m.overrides) for m in u.members] for u in units}
  path = os.path.join(workdir, "plan.json")
  text = json.dumps(record, indent=2, sort_keys=True, default=str)
  if os.path.exists(path):
    with open(path) as f:
      saved = f.read()
    if saved != text:
      raise rrm_config.ConfigError(
          f"{workdir} holds another sweep (its plan.json differs from "
          f"{spec}'s); use a new --workdir")
  else:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      f.write(text)
  return units


def finished(workdir: str, unit) -> bool:
  return os.path.exists(os.path.join(workdir, unit.name, "results.jsonl"))


def run_unit(spec: str, workdir: str, name: str, max_members: int) -> str:
  """Worker: runs one unit here. Returns a one-line outcome."""
  from rrm import preemption  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  units = {u.name: u for u in plan(spec, workdir, max_members)}
  if name not in units:
    raise ValueError(f"no unit {name!r} in {spec}; units: {', '.join(units)}")
  unit = units[name]
  with preemption.StopOnSignals() as stop:
    result = rrm_sweep.run_sweep(unit.members, os.path.join(workdir, name),
                                 stop=stop)
  if result["stopped"]:
    return (f"unit {name} stopped by {result['stopped']} at iteration "
            f"{result['iteration']}; relaunch to resume")
  return f"unit {name} done: {len(unit.members)} members"


def _worker_argv(name: str) -> list[str]:
  return [sys.executable, "-m", "launch.sweep", f"--sweep={_SWEEP.value}",
          f"--workdir={os.path.abspath(_WORKDIR.value)}", f"--unit={name}",
          f"--max_members={_MAX_MEMBERS.value}"]


def run_local(units, workdir: str) -> tuple[list[str], list[str]]:
  """Runs units as subprocesses, `--parallel` at a time.

  Returns (failed, stopped) unit descriptions.

  SIGTERM or SIGINT to this process is passed on to the running units (each
  saves a checkpoint and exits; a relaunch resumes them) and no new unit
  starts.
  """
  gpus = _GPUS.value
  parallel = max(1, _PARALLEL.value)
  per_gpu = math.ceil(parallel / len(gpus)) if gpus else 0
  running: set[subprocess.Popen] = set()
  lock = threading.Lock()
  stopping = threading.Event()

  def forward(signum, frame):
    del frame
    stopping.set()
    with lock:
      for p in running:
        p.send_signal(signum)

  def launch(slot_and_unit):
    slot, unit = slot_and_unit
    if stopping.is_set():
      return "stopped", unit.name
    env = dict(os.environ)
    if gpus:
      env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
      if per_gpu > 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    log = os.path.join(workdir, f"{unit.name}.log")
    with open(log, "a") as f:
      with lock:
        proc = subprocess.Popen(_worker_argv(unit.name), env=env, stdout=f,
                                stderr=subprocess.STDOUT, cwd=os.getcwd())
        running.add(proc)
      rc = proc.wait()
      with lock:
        running.discard(proc)
    with open(log) as f:
      tail = f.read().strip().splitlines()[-1:] or [""]
    print(f"{unit.name}: exit {rc}: {tail[0]}", flush=True)
    if rc == 0:
      return (None, None) if finished(workdir, unit) else ("stopped",
                                                           unit.name)
    return "failed", f"{unit.name} (exit {rc}; log {log})"

  previous = {s: signal.signal(s, forward)
              for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
      outcomes = list(pool.map(launch, [(i % parallel, u)
                                        for i, u in enumerate(units)]))
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  return ([o for kind, o in outcomes if kind == "failed"],
          [o for kind, o in outcomes if kind == "stopped"])


class _SlurmUnit:
  """A submitit task running one unit; requeued (and resumed) on preemption."""

  def __init__(self, spec: str, workdir: str, max_members: int):
    self.spec, self.workdir, self.max_members = spec, workdir, max_members

  def __call__(self, name: str) -> str:
    # A fresh process (submitit's), not launched through main().
    common.enable_compilation_cache()
    return run_unit(self.spec, self.workdir, name, self.max_members)

  def checkpoint(self, name: str):
    # submitit calls this on preemption / timeout: requeue the same unit;
    # the run's own SIGTERM handling has saved a checkpoint to resume from.
    import submitit  # pylint: disable=g-import-not-at-top
    return submitit.helpers.DelayedSubmission(self, name)


def run_slurm(units, workdir: str) -> tuple[list[str], list[str]]:
  try:
    import submitit  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit("error: --backend=slurm needs submitit: pip install -e "
             "'.[launch]'")
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, "slurm"),
                                   cluster=_SLURM_CLUSTER.value)
  params = {"timeout_min": _SLURM_TIMEOUT_MIN.value, "name": "rrm-sweep"}
  if executor.cluster == "slurm":
    params.update(slurm_array_parallelism=_SLURM_ARRAY_PARALLELISM.value,
                  gpus_per_node=_SLURM_GPUS.value,
                  slurm_partition=_SLURM_PARTITION.value)
  executor.update_parameters(**{k: v for k, v in params.items()
                                if v is not None})
  task = _SlurmUnit(_SWEEP.value, os.path.abspath(workdir), _MAX_MEMBERS.value)
  jobs = executor.map_array(task, [u.name for u in units])
  failures = []
  for unit, job in zip(units, jobs):
    try:
      print(f"{unit.name}: {job.result()}", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f"{unit.name} (job {job.job_id}: {e})")
  return failures, []


def main(argv):
  common.start(argv)
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  from rrm import train as rrm_train  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value
  try:
    if _UNIT.value:
      print(run_unit(_SWEEP.value, workdir, _UNIT.value, _MAX_MEMBERS.value))
      return
    units = plan(_SWEEP.value, workdir, _MAX_MEMBERS.value)
  except (rrm_config.ConfigError, rrm_train.WorkdirError,
          FloatingPointError) as e:
    sys.exit(f"error: {e}")
  members = sum(len(u.members) for u in units)
  print(f"{len(units)} work units, {members} members:")
  for u in units:
    print(f"  {u.name}: {len(u.members)} members"
          + (" (finished)" if finished(workdir, u) else ""))
  if _DRY_RUN.value:
    return
  pending = [u for u in units if not finished(workdir, u)]
  if len(pending) < len(units):
    print(f"skipping {len(units) - len(pending)} finished units")
  failures, stopped = (run_local if _BACKEND.value == "local" else
                       run_slurm)(pending, workdir)
  rows = sweep_report.collect(workdir, [u.name for u in units])
  if rows:
    print(sweep_report.format_table(sweep_report.aggregate(rows)))
  if failures:
    sys.exit("error: work units failed: " + "; ".join(failures))
  if stopped:
    print(f"done: stopped; {len(stopped)} units unfinished ("
          + ", ".join(stopped) + "); relaunch the same command to resume")
    return
  print(f"done: {len(units)} units, results in "
        f"{os.path.join(workdir, 'results.jsonl')}")


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
