"""Many runs in one compiled program: seeds x hyperparameters, vmapped.

A sweep's members are full run configs that differ only in
`config.SWEEPABLE` fields (seed, learning rates, loss coefficients, the
teacher). Those enter the state as arrays (`train.Hyper`,
`oracle.TeacherParams`, the PRNG key), so `make_train(config)` of any one
member compiles a program every member can run, and

    states = jit(vmap(init))(seed_keys, hypers, teachers)     # [S, ...]
    states, metrics = jit(vmap(iteration))(states)            # metrics [S]

runs all S members in lockstep: one compile, one dispatch per iteration,
S-wide batched kernels. Members that differ in anything else (env, sizes,
budgets, schedules, query selector, ...) need programs of their own; the
launcher (launch/sweep.py) splits those into separate work units.

Devices. The member axis is sharded over the given devices (default: all
devices, `jax.devices()`) with a 1-D mesh `("members",)`, and each device
runs the vmapped program on its own block of members (`jax.shard_map`: no
communication between devices); S is padded up to a multiple of the device
count by repeating the last member, whose copies are computed and never
reported.

Hosts. After `jax.distributed.initialize()` (launch/sweep.py
`--distributed`), `jax.devices()` spans every process, and each process
runs `run_sweep` with the same members: the inputs are built identically on
every process and placed on the global sharding, each process computes its
own members' shards (members do not communicate), metrics and labels are
gathered to every process (`rrm.multihost.fetch`), every process takes part
in each checkpoint save (Orbax writes each process's shards), and process 0
alone writes the files. The workdir must be on a filesystem every process
sees.

Exactness. A member of a sweep computes what its run alone computes (same
seed, same hyperparameters, both through the same state-held `Hyper`), but
batched kernels are not always the same kernels: on CPU the vmapped program
is bit-identical for the configs tested (tests/test_sweep.py), and elsewhere
(GPU reductions, sharded layouts) members may differ from solo runs in the
last bits, which RL amplifies over iterations like any change of seed.

`jax.lax.cond` under vmap runs both branches and selects, so in a sweep the
reward model's update is computed every iteration and kept only where labels
arrived: results are the same, the cost is higher than a solo run's on
iterations without labels.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import logging as rrm_logging
from rrm import multihost
from rrm import report as rrm_report
from rrm import train as rrm_train

AXIS = "members"
P = jax.sharding.PartitionSpec


# --- Sweep definitions --------------------------------------------------------
# An axis is a list of override dicts {"dotted.config.field": value}. A sweep
# file (experiments/sweeps/*.py) builds its members from axes:
#   product(values("seed", range(3)), values("ppo.learning_rate", [1e-4, 3e-4]))


def values(field: str, vals: Sequence[Any]) -> list[dict[str, Any]]:
  """One axis: `field` takes each of `vals`."""
  vals = list(vals)
  if not vals:
    raise rrm_config.ConfigError(f"sweep axis {field!r} has no values")
  return [{field: v} for v in vals]


def product(*axes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Every combination (the first axis varies slowest)."""
  out = [{}]
  for axis in axes:
    out = [{**a, **b} for a in out for b in axis]
  return out


def zip_axes(*axes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Element-wise combination of axes of equal length."""
  lengths = {len(a) for a in axes}
  if len(lengths) > 1:
    raise rrm_config.ConfigError(
        f"zip_axes needs axes of equal length, got {sorted(lengths)}")
  return [dict(collections.ChainMap(*reversed(group))) for group in zip(*axes)]


def chain(*axes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One axis after the other."""
  return [dict(m) for axis in axes for m in axis]


@dataclasses.dataclass(frozen=True)
class SweepDef:
  """A sweep file's `get_sweep()`: a base config dict and member overrides."""
  base: Any  # ml_collections.ConfigDict
  members: Sequence[Mapping[str, Any]]


def apply_overrides(base: Any, overrides: Mapping[str, Any]) -> Any:
  """A copy of ConfigDict `base` with dotted-field overrides applied."""
  cd = copy.deepcopy(base)
  for field, value in overrides.items():
    *path, last = field.split(".")
    node = cd
    for p in path:
      if p not in node:
        raise rrm_config.ConfigError(f"sweep override {field!r}: config has "
                                     f"no field {p!r}")
      node = node[p]
    if last not in node:
      raise rrm_config.ConfigError(f"sweep override {field!r}: config has no "
                                   f"field {last!r}")
    try:
      node[last] = value
    except (TypeError, ValueError) as e:
      raise rrm_config.ConfigError(
          f"sweep override {field}={value!r}: {e}") from e
  return cd


@dataclasses.dataclass(frozen=True)
class Unit:
  """A work unit: members one program runs, and its workdir's name."""
  name: str
  members: tuple[Member, ...]


def plan_units(sweep_def: SweepDef, max_members: int = 0) -> list[Unit]:
  """Expands a sweep into work units.

  Every member is validated (ConfigError names the member and the field)
  before anything runs. Members are grouped by `config.program_key` in order
  of first appearance; a group larger than `max_members` (0: no limit) is
  split. A unit's name lists the overrides its members share that are not
  SWEEPABLE, so workdirs say what they hold.
  """
  groups: dict[str, list[Member]] = {}
  for i, overrides in enumerate(sweep_def.members):
    try:
      config = rrm_config.from_config_dict(
          apply_overrides(sweep_def.base, overrides))
    except rrm_config.ConfigError as e:
      raise rrm_config.ConfigError(
          f"sweep member {i} {dict(overrides)}: {e}") from e
    groups.setdefault(rrm_config.program_key(config), []).append(
        Member(config=config, overrides=dict(overrides)))
  units = []
  for members in groups.values():
    shared = {k: v for k, v in members[0].overrides.items()
              if k not in rrm_config.SWEEPABLE}
    label = "_".join(f"{k.split('.')[-1]}={v}" for k, v in shared.items())
    step = max_members or len(members)
    for start in range(0, len(members), step):
      name = f"u{len(units):03d}" + (f"_{label}" if label else "")
      name = "".join(ch if ch.isalnum() or ch in "._=-" else "-"
                     for ch in name)
      units.append(Unit(name=name,
                        members=tuple(members[start:start + step])))
  return units


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep: its config and the overrides that define it."""
  config: rrm_config.TrainConfig
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Sweep(NamedTuple):
  """What `make_sweep` builds; states and metrics carry a leading [padded] axis.

  `init()` makes the stacked, sharded state; `iteration(states)` runs one
  iteration of every member; `evaluate(states, iteration)` evaluates every
  member with the key its solo run would use at that iteration; `shard`
  places a host (e.g. restored) state on the mesh. With several processes
  the mesh holds every process's devices and the arrays are global.
  """
  configs: tuple[rrm_config.TrainConfig, ...]
  train: rrm_train.Train
  size: int  # members
  padded: int  # members + padding copies (a multiple of the device count)
  mesh: jax.sharding.Mesh
  sharding: jax.sharding.NamedSharding  # of every state leaf and metric
  init: Callable[[], rrm_train.TrainState]
  iteration: Callable[[rrm_train.TrainState],
                      tuple[rrm_train.TrainState, dict[str, jax.Array]]]
  evaluate: Callable[[rrm_train.TrainState, int], dict[str, jax.Array]]
  shard: Callable[[Any], Any]


def check_members(configs: Sequence[rrm_config.TrainConfig]) -> None:
  """Raises ConfigError unless one program can run every config."""
  if not configs:
    raise rrm_config.ConfigError("a sweep needs at least one member")
  key = rrm_config.program_key(configs[0])
  for i, c in enumerate(configs[1:], 1):
    if rrm_config.program_key(c) != key:
      diffs = [d for d in rrm_train.config_differences(
          rrm_config.to_dict(configs[0]), rrm_config.to_dict(c), resumable=())
               if d.split(":")[0] not in rrm_config.SWEEPABLE]
      raise rrm_config.ConfigError(
          f"sweep member {i} differs from member 0 in fields that change the "
          f"compiled program (only {', '.join(rrm_config.SWEEPABLE)} can "
          "differ within one program; run the others as separate work units, "
          "as launch/sweep.py does): " + "; ".join(diffs))


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_sweep(configs: Sequence[rrm_config.TrainConfig],
               devices: Sequence[jax.Device] | None = None) -> Sweep:
  """Builds the vmapped program of a sweep, sharded over `devices` (default:
  every device, of every process); compiled lazily.

  With several processes every process must call this with the same
  configs (and devices): each builds the same host inputs, which become
  global arrays.
  """
  configs = tuple(configs)
  check_members(configs)
  devices = list(devices) if devices is not None else jax.devices()
  size = len(configs)
  padded = -(-size // len(devices)) * len(devices)
  members = configs + (configs[-1],) * (padded - size)
  if multihost.is_multiprocess():
    multihost.place_mjx_models_locally()
  train = rrm_train.make_train(configs[0])
  mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
  sharding = jax.sharding.NamedSharding(mesh, P(AXIS))
  keys = [rrm_train.run_keys(c.seed) for c in members]
  put = functools.partial(multihost.put_global, sharding=sharding)
  seed_keys = put(jnp.stack([k[0] for k in keys]))
  eval_keys = put(jnp.stack([k[1] for k in keys]))
  hypers = put(_stack([rrm_train.make_hyper(c) for c in members]))
  teachers = put(_stack([rrm_train.make_teacher(c) for c in members]))

  def per_device(f, in_specs=P(AXIS)):
    # Each device runs vmap(f) over its own block of members. Left to the
    # SPMD partitioner, a vmapped top_k (query selection) is partitioned
    # with all-gathers of the whole member axis; members never need each
    # other's data, and across processes a collective is a rendezvous.
    # check_vma off: no output is replicated, every one is per member.
    return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS),
                         check_vma=False)

  # out_shardings: the abstract state (jax.eval_shape of init) then names
  # the mesh, and a checkpoint restores onto this mesh whatever the devices
  # and processes that saved it.
  init_all = jax.jit(per_device(jax.vmap(train.init)), out_shardings=sharding)
  iteration_all = jax.jit(per_device(jax.vmap(train.iteration)),
                          donate_argnums=0, out_shardings=sharding)

  def evaluate_block(states, keys, iteration):
    ks = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, iteration)
    return jax.vmap(train.evaluate)(states, ks)

  # The keys are an argument: a jitted function may not close over an array
  # of other processes' devices.
  evaluate_all = jax.jit(per_device(evaluate_block,
                                    in_specs=(P(AXIS), P(AXIS), P())))

  return Sweep(
      configs=configs, train=train, size=size, padded=padded, mesh=mesh,
      sharding=sharding, init=lambda: init_all(seed_keys, hypers, teachers),
      iteration=iteration_all,
      # A numpy scalar: every process passes the same host value.
      evaluate=lambda states, it: evaluate_all(states, eval_keys,
                                               np.int32(it)),
      shard=put)


def member_state(states: Any, i: int) -> Any:
  """Member i's state, out of a stacked (host or device) state."""
  return jax.tree.map(lambda x: x[i], states)


def _member_dir(workdir: str, i: int) -> str:
  return os.path.join(workdir, "members", f"{i:03d}")


def _json_default(v: Any) -> Any:
  if isinstance(v, (np.integer, np.floating)):
    return v.item()
  return str(v)


def results_row(member: Member, i: int, report: Mapping[str, Any],
                metrics: Sequence[Mapping[str, Any]], diverged: str | None,
                wall_s: float, size: int) -> dict[str, Any]:
  """One row of the sweep's results table."""
  evals = [m["eval/true_return"] for m in metrics
           if m.get("eval/true_return") is not None
           and math.isfinite(m["eval/true_return"])]
  last = metrics[-1] if metrics else {}
  return {
      "member": i, **{k: v for k, v in member.overrides.items()},
      "seed": member.config.seed,
      "env": member.config.env.name,
      "final_return": report["final_return"],
      "best_return": max(evals) if evals else None,
      "labels_to_threshold": report["labels_to_threshold"],
      "normalised_return": report["normalised_return"],
      "labels_spent": report["labels_spent"],
      "iterations": last.get("iteration", 0),
      "env_steps": last.get("env_steps", 0),
      "wall_s": wall_s, "members_in_program": size,
      "diverged": diverged,
  }


def _write_json(path: str, value: Any) -> None:
  """Writes JSON atomically: another process may be reading `path`."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True, default=_json_default)
  os.replace(tmp, path)


def run_sweep(members: Sequence[Member], workdir: str,
              progress: Callable[[str], None] | None = print,
              stop: Callable[[], str | None] | None = None,
              devices: Sequence[jax.Device] | None = None,
              sweep: Sweep | None = None) -> dict[str, Any]:
  """Runs every member in one program, writing one workdir for the unit.

  workdir/
    sweep.json              the members' overrides and configs
    checkpoints/            the stacked state of all members (resumable)
    members/NNN/            per member: config.json, metrics.jsonl,
                            labels.npz, report.json (as a solo run's workdir)
    results.jsonl           one row per member (see `results_row`)

  A member whose values stop being finite is reported as diverged (the
  iteration and what was not finite) and the others go on: a diverging
  learning rate is a result of a sweep, not an error. Relaunching on the same
  workdir resumes from the latest checkpoint (the members must be the same).
  Returns {"states", "results", "stopped", "iteration", "sweep"}.

  With several processes (see the module docstring) every process calls
  this with the same members; process 0 writes the files and prints
  progress, all take part in the checkpoints, a stop requested in any
  process stops all of them at the same iteration, and every process
  returns the same results (read back from process 0's files).
  """
  members = list(members)
  configs = [m.config for m in members]
  check_members(configs)
  c0 = configs[0]
  primary = multihost.is_primary()
  if not primary:
    progress = None
  rrm_train.check_writable(workdir)
  spec = [{"overrides": dict(m.overrides), "config": rrm_config.to_dict(
      m.config)} for m in members]
  spec_path = os.path.join(workdir, "sweep.json")
  t_start = time.time()
  checkpointer = (rrm_checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints"), c0.keep_checkpoints)
                  if c0.checkpoint_every else None)
  if sweep is None:
    sweep = make_sweep(configs, devices)
  states, start, diverged = None, 0, {}
  if checkpointer is not None and checkpointer.latest_step() is not None:
    with open(spec_path) as f:
      saved = json.load(f)
    diffs = []
    if len(saved) != len(spec):
      diffs.append(f"{len(saved)} members saved, {len(spec)} now")
    else:
      for i, (a, b) in enumerate(zip(saved, spec)):
        diffs += [f"member {i}: {d}" for d in rrm_train.config_differences(
            a["config"], json.loads(json.dumps(b["config"])))]
    if diffs:
      raise rrm_config.ConfigError(
          f"{workdir} holds a sweep of other members; differences:\n  "
          + "\n  ".join(diffs))
    restored = checkpointer.restore_latest(lambda _: sweep.init(),
                                           sweep.sharding)
    if restored is not None:
      start, host_states, metadata = restored
      states = sweep.shard(host_states)
      diverged = {int(k): v for k, v in metadata.get("diverged", {}).items()}
      if progress:
        progress(f"resumed sweep of {sweep.size} from {checkpointer.directory}"
                 f" at iteration {start}")
  writers = []
  if primary:
    _write_json(spec_path, spec)
    for i, m in enumerate(members):
      d = _member_dir(workdir, i)
      os.makedirs(d, exist_ok=True)
      with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(rrm_config.to_dict(m.config), f, indent=2, sort_keys=True)
      metrics_path = os.path.join(d, "metrics.jsonl")
      if start:
        rrm_train.truncate_metrics(metrics_path, start)
      elif os.path.exists(metrics_path):
        os.remove(metrics_path)  # a sweep that never reached a checkpoint
      writers.append(rrm_logging.MetricWriter(
          d, tensorboard=c0.log.tensorboard))

  def save(it: int, states) -> None:
    meta = {"iteration": it, "members": sweep.size,
            "diverged": {str(k): v for k, v in diverged.items()},
            "config": rrm_config.to_dict(c0)}
    if multihost.is_multiprocess():
      # Orbax saves global arrays shard by shard (every process its own);
      # the labels are gathered for process 0 to write.
      checkpointer.save(it, states, meta)
      labels = multihost.fetch((states.labels, states.teacher)) if (
          c0.learned_reward) else None
    else:
      host = jax.device_get(states)
      checkpointer.save(it, host, meta)
      labels = (host.labels, host.teacher)
    if c0.learned_reward and primary:
      for i in range(sweep.size):
        dataset, teacher = member_state(labels, i)
        rrm_checkpoint.export_labels(
            dataset, teacher,
            os.path.join(_member_dir(workdir, i), "labels.npz"),
            c0.env.name)

  stopped, it = None, start
  try:
    if states is None:
      states = sweep.init()
    t_loop = time.time()
    if progress and start == 0:
      progress(f"init of {sweep.size} members (compile + initial labels): "
               f"{t_loop - t_start:.1f}s")
    for i in range(start, c0.num_iterations):
      states, metrics = sweep.iteration(states)
      it = i + 1
      if it % c0.eval_every == 0 or it == c0.num_iterations:
        metrics = {**metrics, **sweep.evaluate(states, it)}
      metrics = multihost.fetch(metrics)
      now = time.time()
      for j, m in enumerate(members):
        row = {k: float(v[j]) for k, v in metrics.items()}
        row.update({"iteration": it,
                    "env_steps": it * c0.env_steps_per_iteration,
                    "time/elapsed_s": now - t_start})
        problem = rrm_train.nonfinite_problem(row, m.config)
        if problem and j not in diverged:
          diverged[j] = f"iteration {it}: {problem}"
          if primary:
            logging.warning("sweep member %d %s diverged at %s", j,
                            dict(m.overrides), diverged[j])
        if writers:
          writers[j].write(row)
      requested = stop() if stop else None
      if multihost.any_process(requested is not None):
        # Every process stops (and saves) at the same iteration.
        requested = requested or "a stop requested in another process"
      if checkpointer and (it % c0.checkpoint_every == 0
                           or it == c0.num_iterations or requested):
        save(it, states)
      if progress and (it % c0.log.print_every == 0
                       or it == c0.num_iterations):
        sps = ((it - start) * c0.env_steps_per_iteration * sweep.size
               / (now - t_loop))
        ret = metrics.get("eval/true_return")
        progress(f"[{it}/{c0.num_iterations}] {sweep.size} members, "
                 f"{sps:,.0f} env steps/s in all"
                 + ("" if ret is None else ", eval return " + " ".join(
                     f"{r:.0f}" for r in ret[:sweep.size])))
      if requested and it < c0.num_iterations:
        stopped = requested
        break
  finally:
    for w in writers:
      w.close()
    if checkpointer:
      checkpointer.close()
  # The others read what process 0 has written.
  multihost.barrier("sweep_written")
  wall = time.time() - t_start
  results = []
  for i, m in enumerate(members):
    d = _member_dir(workdir, i)
    history = rrm_logging.read_metrics(os.path.join(d, "metrics.jsonl"))
    report = rrm_report.feedback_efficiency(
        history, m.config.report.baseline_return, m.config.report.threshold)
    if primary:
      with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    results.append(results_row(m, i, report, history, diverged.get(i), wall,
                               sweep.size))
  if not stopped and primary:
    with open(os.path.join(workdir, "results.jsonl"), "w") as f:
      for row in results:
        f.write(json.dumps(row, sort_keys=True, default=_json_default) + "\n")
  multihost.barrier("sweep_done")
  return {"states": states, "results": results, "stopped": stopped,
          "iteration": it, "sweep": sweep}
