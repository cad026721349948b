"""Many runs in one compiled program: seeds x hyperparameters, vmapped.

A sweep's members are full run configs that differ only in
`config.SWEEPABLE` fields (seed, learning rates, loss coefficients, the
teacher). Those enter the state as arrays (`state.Hyper`,
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
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rrm import config_parse
from rrm import config as rrm_config
from rrm import logging as rrm_logging
from rrm import loop as rrm_loop
from rrm import multihost
from rrm import state as rrm_state
from rrm import train as rrm_train
from rrm import workdir as rrm_workdir

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
      config = config_parse.from_config_dict(
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
  init: Callable[[], rrm_state.TrainState]
  iteration: Callable[[rrm_state.TrainState],
                      tuple[rrm_state.TrainState, dict[str, jax.Array]]]
  evaluate: Callable[[rrm_state.TrainState, int], dict[str, jax.Array]]
  shard: Callable[[Any], Any]


def check_members(configs: Sequence[rrm_config.TrainConfig]) -> None:
  """Raises ConfigError unless one program can run every config."""
  if not configs:
    raise rrm_config.ConfigError("a sweep needs at least one member")
  key = rrm_config.program_key(configs[0])
  for i, c in enumerate(configs[1:], 1):
    if rrm_config.program_key(c) != key:
      diffs = [d for d in rrm_workdir.config_differences(
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
  keys = [rrm_state.run_keys(c.seed) for c in members]
  put = functools.partial(multihost.put_global, sharding=sharding)
  seed_keys = put(jnp.stack([k[0] for k in keys]))
  eval_keys = put(jnp.stack([k[1] for k in keys]))
  hypers = put(_stack([rrm_state.make_hyper(c) for c in members]))
  teachers = put(_stack([rrm_state.make_teacher(c) for c in members]))

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
  """Member i's state (or metrics), out of a stacked (host or device) tree."""
  return jax.tree.map(lambda x: x[i], states)


def program(sweep: Sweep, members: Sequence[Member]) -> rrm_loop.Program:
  """The host loop's view of a sweep (rrm.loop.run_program).

  The members' configs may differ from those the sweep was built with in
  host-loop fields (rrm.workdir.RESUMABLE_CHANGES: iterations, cadences).
  """
  return rrm_loop.Program(
      configs=tuple(m.config for m in members), plan=sweep.train.plan,
      init=sweep.init,
      iteration=sweep.iteration, evaluate=sweep.evaluate,
      restore_init=lambda _: sweep.init(), member=member_state,
      is_sweep=True, overrides=tuple(dict(m.overrides) for m in members),
      sharding=sweep.sharding, shard=sweep.shard,
      record_episode=functools.partial(_record_member, sweep, members))


def _record_member(sweep: Sweep, members: Sequence[Member], states,
                   j: int, it: int):
  """Member j's evaluation episode at iteration `it` (rrm.video), with the
  key its solo run's videos use."""
  key_eval = rrm_state.run_keys(members[j].config.seed)[1]
  return sweep.train.record_episode(
      jax.device_get(member_state(states, j)),
      jax.random.fold_in(key_eval, it))


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
      # Every kind at its cost, in feedback.budget units (rrm.report).
      "budget_to_threshold": report.get("budget_to_threshold"),
      "budget_spent": report.get("budget_spent"),
      # The challenges' measures (rrm.report): unsafe events in training,
      # the last EPIC distance of learned and true reward (None: absent).
      "unsafe_events": (report.get("unacceptable_outcomes") or {}).get(
          "total"),
      "final_epic": (report.get("reward_epic") or {}).get("final"),
      # The reward-hacking detector's score (rrm.report.reward_hacking).
      "hacking_score": (report.get("reward_hacking") or {}).get("score"),
      # The user's unacceptable flags (rrm.flags; None: the run had none).
      "flags_spent": ((report.get("unacceptable_outcomes") or {}).get(
          "flags") or {}).get("spent"),
      "iterations": last.get("iteration", 0),
      "env_steps": last.get("env_steps", 0),
      "wall_s": wall_s, "members_in_program": size,
      "diverged": diverged,
  }


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
                            labels.npz (and labels.<node>.npz of a recursive
                            run), report.json (as a solo run's workdir)
    results.jsonl           one row per member (see `results_row`)

  The host loop is a single run's (rrm.loop.run_program). A member whose
  values stop being finite is reported as diverged (the iteration and what
  was not finite) and the others go on: a diverging learning rate is a
  result of a sweep, not an error. Relaunching on the same workdir resumes
  from the latest checkpoint (the members must be the same). Returns
  {"states", "results", "stopped", "iteration", "sweep"}.

  With several processes (see the module docstring) every process calls
  this with the same members; process 0 writes the files and prints
  progress, all take part in the checkpoints, a stop requested in any
  process stops all of them at the same iteration, and every process
  returns the same results (read back from process 0's files).
  """
  members = list(members)
  check_members([m.config for m in members])
  rrm_workdir.check_writable(workdir)
  if sweep is None:
    sweep = make_sweep([m.config for m in members], devices)
  out = rrm_loop.run_program(program(sweep, members), workdir, progress,
                             stop)
  results = [results_row(m, i, out.reports[i], _history(workdir, i, out),
                         out.diverged.get(i), out.wall_s, sweep.size)
             for i, m in enumerate(members)]
  if not out.stopped and multihost.is_primary():
    with open(os.path.join(workdir, "results.jsonl"), "w") as f:
      for row in results:
        f.write(json.dumps(row, sort_keys=True,
                           default=rrm_workdir.json_default) + "\n")
  multihost.barrier("sweep_done")
  return {"states": out.states, "results": results, "stopped": out.stopped,
          "iteration": out.iteration, "sweep": sweep}


def _history(workdir: str, i: int, out: rrm_loop.Outcome):
  """Member i's metrics over the whole unit (all of them after a resume)."""
  path = os.path.join(workdir, "members", f"{i:03d}", "metrics.jsonl")
  if os.path.exists(path):
    return rrm_logging.read_metrics(path)
  return out.histories[i]
