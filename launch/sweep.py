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
           one job per unit, requeued on preemption or timeout; a requeued
           unit resumes from its checkpoint. `--slurm_cluster=local` runs the
           same code path on this machine (submitit's local executor).
           `--slurm_nodes=N --slurm_tasks_per_node=T` runs each unit over
           N*T processes (one JAX process per task, devices found by JAX's
           Slurm detection; see BUILD.md).
  xmanager one XManager experiment, one work unit per unit, on XManager's
           local executor (pip install -e '.[xmanager]'; see
           launch/xm_backend.py).

Relaunching the same command skips finished units (their results.jsonl
exists) and resumes unfinished ones from their checkpoints. At the end,
`--workdir/results.jsonl` holds one row per member of every unit (overrides
as columns, final and best true return, labels-to-threshold, steps, wall
time) and the grouped report (launch/report.py) is printed.

Worker mode (what backends run): `--unit=NAME` runs one unit in this
process, its member axis sharded over this process's devices. One unit
over several processes or hosts: start the same worker command in each,
with `--distributed=on --coordinator_address=HOST:PORT --num_processes=N
--process_id=I` (process 0 serves HOST:PORT), or `--distributed=auto`
where JAX detects the cluster (Slurm, Open MPI, ...). The member axis is
then sharded over every process's devices and process 0 writes the files:

  python -m launch.sweep --sweep=experiments/sweeps/queries.py \
      --workdir=/shared/runs/queries --unit=u000_query_selector=uniform \
      --distributed=on --coordinator_address=host0:12355 \
      --num_processes=2 --process_id=0      # and --process_id=1 on host1
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
_BACKEND = flags.DEFINE_enum("backend", "local",
                             ["local", "slurm", "xmanager"],
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
_SLURM_NODES = flags.DEFINE_integer(
    "slurm_nodes", 1, "slurm: nodes per unit (>1: one unit over several "
    "hosts, one JAX process per task).")
_SLURM_TASKS_PER_NODE = flags.DEFINE_integer(
    "slurm_tasks_per_node", 1, "slurm: JAX processes per node and unit (one "
    "per GPU when a unit spans several processes).")
_XM_EXPERIMENT = flags.DEFINE_string(
    "xmanager_experiment_title", None, "xmanager: experiment title (default: "
    "rrm-sweep-<workdir name>).")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto", "on"],
    "Worker mode (--unit): one unit over several processes with "
    "jax.distributed.initialize(). off: this process alone; on: initialize "
    "with --coordinator_address/--num_processes/--process_id, and what JAX "
    "detects from the cluster environment (Slurm, Open MPI, Kubernetes, "
    "Cloud TPU) for those unset; auto: as on if those flags are set or a "
    "detected cluster environment has more than one process, else off.")
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "--distributed: HOST:PORT of process 0, "
    "which serves the coordinator there (the same on every process).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "--distributed: processes running the unit.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "--distributed: this process's index, 0 .. "
    "num_processes - 1 (0 writes the files).")
flags.mark_flags_as_required(["sweep", "workdir"])


def load_sweep(spec: str):
  """Runs `path.py[:arg]`'s get_sweep(arg) -> rrm.sweep.SweepDef."""
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise rrm_config.ConfigError(f"sweep file {path} does not exist")
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  module_spec = importlib.util.spec_from_file_location("rrm_sweep_def", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise rrm_config.ConfigError(
        f"sweep file {path} does not parse: SyntaxError in {e.filename}, "
        f"line {e.lineno}: {e.msg}") from e
  except Exception as e:  # pylint: disable=broad-except
    raise rrm_config.ConfigError(
        f"sweep file {path} fails to load: {type(e).__name__}: {e}") from e
  get_sweep = getattr(module, "get_sweep", None)
  if not callable(get_sweep):
    raise rrm_config.ConfigError(
        f"sweep file {path} has no get_sweep() (it must define "
        "get_sweep([arg]) returning an rrm.sweep.SweepDef)")
  try:
    sweep = get_sweep(arg) if arg else get_sweep()
  except rrm_config.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise rrm_config.ConfigError(
        f"sweep file {spec}: get_sweep({arg!r}) failed: "
        f"{type(e).__name__}: {e}") from e
  if not isinstance(sweep, rrm_sweep.SweepDef):
    raise rrm_config.ConfigError(
        f"sweep file {spec}: get_sweep() returned {type(sweep).__name__}, "
        "expected an rrm.sweep.SweepDef")
  if not sweep.members:
    raise rrm_config.ConfigError(
        f"sweep file {spec}: the sweep has no members (an empty product or "
        "list of overrides); nothing to run")
  return sweep


def plan(spec: str, workdir: str, max_members: int, record: bool = True):
  """The sweep's units, checked against the plan recorded in workdir; with
  `record`, the plan is recorded there if none is (a dry run records
  nothing, so that it binds the workdir to no sweep)."""
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  units = rrm_sweep.plan_units(load_sweep(spec), max_members)
  plan_record = {u.name: [dict(m.overrides) for m in u.members]
                 for u in units}
  path = os.path.join(workdir, "plan.json")
  text = json.dumps(plan_record, indent=2, sort_keys=True, default=str)
  if os.path.exists(path):
    with open(path) as f:
      saved = f.read()
    if saved != text:
      raise rrm_config.ConfigError(
          f"{workdir} holds another sweep (its plan.json differs from "
          f"{spec}'s); use a new --workdir")
  elif record:
    # Atomic: the processes of a multi-process unit all get here.
    os.makedirs(workdir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  return units


# --- Several processes per unit ----------------------------------------------


def cluster_environment() -> tuple[str, int] | None:
  """(name, processes) of the cluster environment JAX would detect, or None.

  JAX's own detection (`jax.distributed.initialize()` without arguments:
  Slurm's SLURM_* variables, Open MPI's, Kubernetes, Cloud TPU). It has no
  public API to ask, so this reads its registry, and says None if that
  moves.
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    known = clusters.ClusterEnv._cluster_types  # pylint: disable=protected-access
    for env in known:
      if not env.opt_in_only_method and env.is_env_present():
        return env.__name__, int(env.get_process_count())
  except Exception:  # pylint: disable=broad-except
    return None
  return None


def distributed_problem(mode: str, unit: str | None,
                        coordinator_address: str | None,
                        num_processes: int | None, process_id: int | None,
                        cluster: tuple[str, int] | None) -> str | None:
  """What is wrong with the --distributed flags, or None."""
  given = {"--coordinator_address": coordinator_address,
           "--num_processes": num_processes, "--process_id": process_id}
  set_flags = [k for k, v in given.items() if v is not None]
  if mode == "off":
    if set_flags:
      return (f"{', '.join(set_flags)} "
              f"need{'s' if len(set_flags) == 1 else ''} --distributed=on "
              "(or auto); "
              "with --distributed=off the unit runs in this process alone")
    return None
  if not unit:
    return (f"--distributed={mode} is for the worker processes of one unit "
            "(--unit=NAME), started once per process; the launcher itself "
            "runs no unit (with --backend=slurm, --slurm_nodes and "
            "--slurm_tasks_per_node spread each unit over several processes)")
  if coordinator_address is not None:
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
      return (f"--coordinator_address={coordinator_address!r} is not "
              "HOST:PORT")
  if num_processes is not None and num_processes < 1:
    return f"--num_processes={num_processes} must be at least 1"
  if process_id is not None and (process_id < 0 or (
      num_processes is not None and process_id >= num_processes)):
    last = "num_processes - 1" if num_processes is None else num_processes - 1
    return f"--process_id={process_id} must be in 0 .. {last}"
  missing = [k for k, v in given.items() if v is None]
  if missing and set_flags and cluster is None:
    return (f"--distributed={mode} with {', '.join(set_flags)} also needs "
            f"{', '.join(missing)}: no cluster environment JAX detects "
            "(Slurm, Open MPI, ...) is there to give them")
  if mode == "on" and missing and cluster is None:
    return ("--distributed=on needs --coordinator_address, --num_processes "
            "and --process_id outside a cluster environment JAX detects "
            "(Slurm, Open MPI, Kubernetes, Cloud TPU); none is detected here")
  return None


class DistributedError(RuntimeError):
  """jax.distributed.initialize() failed."""


def init_distributed(mode: str, coordinator_address: str | None = None,
                     num_processes: int | None = None,
                     process_id: int | None = None) -> str | None:
  """Calls jax.distributed.initialize() as `mode` says; describes it or None.

  Must run before anything touches a JAX backend. The flags were checked by
  `distributed_problem`.
  """
  if mode == "off":
    return None
  cluster = cluster_environment()
  manual = any(v is not None for v in (coordinator_address, num_processes,
                                       process_id))
  if mode == "auto" and not manual and (cluster is None or cluster[1] <= 1):
    return None
  import jax  # pylint: disable=g-import-not-at-top
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  except Exception as e:  # pylint: disable=broad-except
    raise DistributedError(
        "jax.distributed.initialize(coordinator_address="
        f"{coordinator_address!r}, num_processes={num_processes}, "
        f"process_id={process_id}) failed"
        + (f" (cluster environment {cluster[0]})" if cluster else "")
        + f": {type(e).__name__}: {e}") from e
  return (f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} of {jax.device_count()} devices")


def finished(workdir: str, unit) -> bool:
  return os.path.exists(os.path.join(workdir, unit.name, "results.jsonl"))


def run_unit(spec: str, workdir: str, name: str, max_members: int) -> str:
  """Worker: runs one unit here. Returns a one-line outcome."""
  from rrm import preemption  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  units = {u.name: u for u in plan(spec, workdir, max_members)}
  if name not in units:
    from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
    raise rrm_config.ConfigError(
        f"--unit={name!r} is not a unit of {spec}; its units: "
        f"{', '.join(units)}")
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
  """A submitit task running one unit; requeued (and resumed) on preemption.

  With several tasks per job (`distributed`), every task runs this and
  they join one JAX program through JAX's Slurm detection.
  """

  def __init__(self, spec: str, workdir: str, max_members: int,
               distributed: bool = False):
    self.spec, self.workdir, self.max_members = spec, workdir, max_members
    self.distributed = distributed

  def __call__(self, name: str) -> str:
    # A fresh process (submitit's), not launched through main().
    common.enable_compilation_cache()
    if self.distributed:
      init_distributed("auto")
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
  tasks = _SLURM_NODES.value * _SLURM_TASKS_PER_NODE.value
  if executor.cluster == "slurm":
    params.update(slurm_array_parallelism=_SLURM_ARRAY_PARALLELISM.value,
                  gpus_per_node=_SLURM_GPUS.value * _SLURM_TASKS_PER_NODE.value,
                  slurm_partition=_SLURM_PARTITION.value,
                  nodes=_SLURM_NODES.value,
                  tasks_per_node=_SLURM_TASKS_PER_NODE.value)
  executor.update_parameters(**{k: v for k, v in params.items()
                                if v is not None})
  task = _SlurmUnit(_SWEEP.value, os.path.abspath(workdir), _MAX_MEMBERS.value,
                    distributed=tasks > 1)
  jobs = executor.map_array(task, [u.name for u in units])
  failures = []
  for unit, job in zip(units, jobs):
    try:
      print(f"{unit.name}: {job.result()}", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f"{unit.name} (job {job.job_id}: {e})")
  return failures, []


def run_xmanager(units, workdir: str) -> tuple[list[str], list[str]]:
  from launch import xm_backend  # pylint: disable=g-import-not-at-top
  title = _XM_EXPERIMENT.value or (
      f"rrm-sweep-{os.path.basename(os.path.abspath(workdir))}")
  return xm_backend.run(units, workdir, _worker_argv, title)


def slurm_problem(backend: str, cluster: str | None, nodes: int,
                  tasks_per_node: int, gpus_per_task: int) -> str | None:
  """What is wrong with the --slurm_* flags for a unit's processes, or None."""
  if nodes < 1 or tasks_per_node < 1:
    return (f"--slurm_nodes={nodes} and --slurm_tasks_per_node="
            f"{tasks_per_node} must be at least 1")
  if nodes * tasks_per_node == 1:
    return None
  if backend != "slurm":
    return (f"--slurm_nodes / --slurm_tasks_per_node are for --backend=slurm "
            f"(not {backend})")
  if cluster in ("local", "debug"):
    return (f"--slurm_nodes={nodes} --slurm_tasks_per_node={tasks_per_node}: "
            f"submitit's {cluster} executor does not set the Slurm "
            "environment JAX detects; several processes per unit need a Slurm "
            "cluster (or worker mode with --distributed=on, see --helpfull)")
  if gpus_per_task > 1:
    return (f"--slurm_gpus_per_task={gpus_per_task} with several tasks per "
            "unit: JAX's Slurm detection gives each process one GPU "
            "(SLURM_LOCALID), so use --slurm_gpus_per_task=1 (or 0 on CPU "
            "nodes) and --slurm_tasks_per_node=<GPUs per node>")
  return None


def check_flags() -> str | None:
  """The first problem with the flags' combination, or None (no compile yet)."""
  problem = distributed_problem(
      _DISTRIBUTED.value, _UNIT.value, _COORDINATOR_ADDRESS.value,
      _NUM_PROCESSES.value, _PROCESS_ID.value,
      cluster_environment() if _DISTRIBUTED.value != "off" else None)
  if problem:
    return problem
  if not _UNIT.value:
    problem = slurm_problem(_BACKEND.value, _SLURM_CLUSTER.value,
                            _SLURM_NODES.value, _SLURM_TASKS_PER_NODE.value,
                            _SLURM_GPUS.value)
    if problem:
      return problem
    if _BACKEND.value != "local" and (_GPUS.value or _PARALLEL.value != 1):
      return (f"--gpus / --parallel are for --backend=local (not "
              f"{_BACKEND.value}, which schedules the units itself)")
    if (_BACKEND.value == "xmanager"
        and importlib.util.find_spec("xmanager") is None):
      return "--backend=xmanager needs xmanager: pip install -e '.[xmanager]'"
  return None


def main(argv):
  common.start(argv)
  problem = check_flags()
  if problem:
    sys.exit(f"error: {problem}")
  if _UNIT.value:
    # Before anything (an import, say) touches a JAX backend.
    try:
      joined = init_distributed(_DISTRIBUTED.value, _COORDINATOR_ADDRESS.value,
                                _NUM_PROCESSES.value, _PROCESS_ID.value)
    except DistributedError as e:
      sys.exit(f"error: {e}")
    if joined:
      print(f"unit {_UNIT.value}: {joined}", flush=True)
  from rrm import config as rrm_config  # pylint: disable=g-import-not-at-top
  from rrm import workdir as rrm_workdir
  workdir = _WORKDIR.value
  try:
    if _UNIT.value:
      print(run_unit(_SWEEP.value, workdir, _UNIT.value, _MAX_MEMBERS.value))
      return
    units = plan(_SWEEP.value, workdir, _MAX_MEMBERS.value,
                 record=not _DRY_RUN.value)
  except (rrm_config.ConfigError, rrm_workdir.WorkdirError,
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
  backends = {"local": run_local, "slurm": run_slurm, "xmanager": run_xmanager}
  failures, stopped = (backends[_BACKEND.value](pending, workdir) if pending
                       else ([], []))
  rows = sweep_report.collect(workdir, [u.name for u in units])
  if rows:
    print(sweep_report.format_table(sweep_report.aggregate(rows)))
    sweep_report.write_certificate(workdir, rows)
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
