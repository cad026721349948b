"""The host loop: one for single runs and sweeps alike.

A `Program` is what runs: `init`, `iteration` and `evaluate` of one run
(rrm.train, `program_of_run`) or of a sweep's members stacked on a leading
axis (rrm.sweep). `run_program` drives it and owns everything on the host:

  open      the workdir: resume from the latest valid checkpoint (the config
            must match but for RESUMABLE_CHANGES), truncate metrics written
            after it, set aside labels the restored state lacks;
  iterate   run, evaluate every `eval_every`, write one metrics row per
            member, check each row (non-finite values: a run stops with
            FloatingPointError, a sweep's member is reported as diverged;
            a task tree must reproduce the env's reward; the reward-hacking
            detector's hacking/* keys, rrm.report.HackingWatch);
  save      every `checkpoint_every`, at the end and on a stop request: the
            complete state, and every node's labels of every member
            (labels.npz, labels.<node>.npz; rrm.workdir.export_labels);
  report    feedback efficiency, reward hacking and the reward-result gap
            per member (report.json), and the run certificate (report.md
            with PNG figures, rrm.certificate).

`run(config, workdir)` is a single run through it.

Why one module of ~660 lines: the host loop's parts (resume, rows and
checks, saving and what a failed save rescues, the report, the compile
ahead) share one workdir's state and are read as one sequence; split, a
reader would follow it across files. `_CompileAhead` is the first piece to
move out if it grows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import threading
import time
from typing import Any, Callable, NamedTuple

from absl import logging
import jax

from rrm import certificate
from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import diagnostics
from rrm import logging as rrm_logging
from rrm import multihost
from rrm import recursive as rrm_recursive
from rrm import report as rrm_report
from rrm import safety as rrm_safety
from rrm import state as rrm_state
from rrm import train as rrm_train
from rrm import video as rrm_video
from rrm import workdir as rrm_workdir

# Largest relative error of the tree's root against the env's reward that is
# float rounding (sums of float32 components in another order).
TREE_TOLERANCE = 1e-4
UNSAFE = rrm_report.UNSAFE  # an iteration's unsafe events (rrm.safety)


class Program(NamedTuple):
  """What the host loop runs (see the module docstring).

  `member(tree, i)` is member i of a tree of states or metrics (the tree
  itself for a single run); `restore_init` and `sharding` describe the state
  a checkpoint restores onto, `shard` places a restored host state where the
  program runs. A single run's files are at the workdir's top and its
  non-finite values stop it; a sweep's members have their own directories
  and a diverging member is a result.
  """
  configs: tuple[rrm_config.TrainConfig, ...]
  plan: rrm_recursive.Plan
  init: Callable[[], Any]
  iteration: Callable[[Any], tuple[Any, dict[str, Any]]]
  evaluate: Callable[[Any, int], dict[str, Any]]
  restore_init: Callable[[jax.Array], Any]
  member: Callable[[Any, int], Any]
  is_sweep: bool = False
  overrides: tuple[dict[str, Any], ...] = ()
  sharding: Any = None
  shard: Callable[[Any], Any] = lambda x: x
  # (states, member, iteration) -> rrm.video.Episode, for evaluation videos.
  record_episode: Callable[[Any, int, int], Any] | None = None

  @property
  def size(self) -> int:
    return len(self.configs)


def program_of_run(train: rrm_train.Train) -> Program:
  """A single run's program: `train`'s init, iteration and evaluation with
  the keys of the config's seed (rrm.state.run_keys)."""
  seed_key, key_eval = rrm_state.run_keys(train.config.seed)
  return Program(
      configs=(train.config,), plan=train.plan,
      init=lambda: train.init(seed_key), iteration=train.iteration,
      evaluate=lambda state, it: train.evaluate(
          state, jax.random.fold_in(key_eval, it)),
      restore_init=train.init, member=lambda tree, _: tree,
      record_episode=lambda state, _, it: train.record_episode(
          state, jax.random.fold_in(key_eval, it)))


@dataclasses.dataclass
class Outcome:
  """What `run_program` returns."""
  states: Any
  histories: list[list[dict[str, Any]]]  # this call's rows, per member
  reports: list[dict[str, Any]]  # over the whole run, per member
  stopped: str | None
  iteration: int
  checkpoint_seconds: float  # time the loop was blocked saving
  diverged: dict[int, str]
  wall_s: float


def member_dirs(program: Program, workdir: str) -> list[str]:
  if not program.is_sweep:
    return [workdir]
  return [os.path.join(workdir, "members", f"{i:03d}")
          for i in range(program.size)]


class _CompileAhead:
  """Compiles the program's iteration in a thread while `init` runs.

  XLA compiles release the GIL, so on a fresh start the iteration's compile
  overlaps init's compile and its initial label round instead of following
  them. The ahead-of-time executable is the one jit would build (same
  program, same options); a state it does not fit (any other layout) goes
  through the jitted function as before.
  """

  def __init__(self, program: Program):
    self._fn = program.iteration
    self._compiled = None
    self._thread = None
    # Only a jitted function this process has not compiled yet: one that
    # has (a reused `Train`) runs from jit's own cache at no compile cost.
    cache_size = getattr(self._fn, "_cache_size", None)
    # Single runs only: a sweep's state is sharded over the member mesh, and
    # an executable lowered from its abstract shardings need not be the one
    # the jitted call would pick.
    if (not program.is_sweep and hasattr(self._fn, "lower")
        and cache_size is not None and cache_size() == 0):
      self._thread = threading.Thread(target=self._compile, args=(program,),
                                      name="rrm-compile-ahead", daemon=True)
      self._thread.start()

  def _compile(self, program: Program) -> None:
    try:
      self._compiled = self._fn.lower(jax.eval_shape(program.init)).compile()
    except Exception:  # pylint: disable=broad-except
      logging.exception("compiling the iteration ahead failed; it compiles "
                        "on its first call instead")

  def __call__(self, states):
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self._compiled is not None:
      try:
        return self._compiled(states)
      except (TypeError, ValueError):  # another layout than init's
        self._compiled = None
    return self._fn(states)


class _Loop:
  """One call of `run_program`: its files, checkpointer and bookkeeping."""

  def __init__(self, program: Program, workdir: str | None, progress,
               stop):
    self.p, self.workdir, self.stop = program, workdir, stop
    self.c0 = program.configs[0]
    self.primary = multihost.is_primary()
    self.say = progress if self.primary else None
    self.dirs = member_dirs(program, workdir) if workdir else []
    self.checkpointer = None
    self.writers: list[rrm_logging.MetricWriter] = []
    self.start, self.last_saved, self.diverged = 0, None, {}
    self.it = 0  # the last completed iteration
    self.states = None  # the latest state: whose labels a failure rescues
    self.save_in_flight = False
    self.checkpoint_seconds = 0.0
    self.histories = [[] for _ in range(program.size)]
    self.watches = None  # per member: rrm_report.HackingWatch, from rows()
    self.unsafe_totals = None  # per member: unsafe events so far, from rows()
    self.videos = rrm_video.EvalVideos(
        program.configs, self.dirs if self.primary else [],
        program.record_episode)

  def open(self) -> Any:
    """Opens the workdir; the restored state, or None to start afresh."""
    if self.workdir is None:
      return None
    rrm_workdir.check_writable(self.workdir)
    state = None
    if self.c0.checkpoint_every:
      self.checkpointer = rrm_checkpoint.Checkpointer(
          os.path.join(self.workdir, "checkpoints"), self.c0.keep_checkpoints)
      state = self._resume()
    if state is None:
      self._orphan_metrics()
      if self.primary:  # labels of a run killed before its first checkpoint
        for d in self.dirs:
          rrm_workdir.keep_unsaved_labels(d, {}, 0)
    if self.primary:
      self._open_files()
    return state

  def _resume(self) -> Any:
    step = self.checkpointer.latest_step()
    if step is None:
      return None
    saved = rrm_workdir.read_record(self.workdir, self.p.is_sweep)
    if saved is None and not self.p.is_sweep:
      saved = self.checkpointer.metadata(step).get("config", {})
    rrm_workdir.check_same_configs(self.workdir, saved, self._record(),
                                   self.p.is_sweep)
    restored = self.checkpointer.restore_latest(self.p.restore_init,
                                                self.p.sharding)
    if restored is None:
      return None
    self.start, host_state, metadata = restored
    self.last_saved = self.start
    self.diverged = {int(k): v for k, v in metadata.get("diverged",
                                                        {}).items()}
    if self.primary:
      for i, d in enumerate(self.dirs):
        rrm_workdir.truncate_metrics(os.path.join(d, "metrics.jsonl"),
                                     self.start)
        rrm_workdir.keep_unsaved_labels(
            d, rrm_workdir.restored_counts(self.p.member(host_state, i),
                                           self.p.plan), self.start)
    if self.say:
      what = (f"sweep of {self.p.size} " if self.p.is_sweep else "")
      self.say(f"resumed {what}from {self.checkpointer.directory} at "
               f"iteration {self.start}")
    return self.p.shard(host_state)

  def _record(self) -> Any:
    """What the workdir records of the program's configs."""
    if not self.p.is_sweep:
      return rrm_config.to_dict(self.c0)
    return [{"overrides": dict(o), "config": rrm_config.to_dict(c)}
            for o, c in zip(self.p.overrides, self.p.configs)]

  def _orphan_metrics(self) -> None:
    """Metrics without a checkpoint: a run's are refused, a sweep's (it
    never reached one) are removed."""
    for d in self.dirs:
      path = os.path.join(d, "metrics.jsonl")
      if not os.path.exists(path):
        continue
      if not self.p.is_sweep and rrm_logging.read_metrics(path):
        raise FileExistsError(
            f"{self.workdir} already holds a run (metrics.jsonl) without a "
            "checkpoint to resume from; choose a new workdir, or start "
            "afresh with --fresh --overwrite.")
      if self.primary:
        os.remove(path)

  def _open_files(self) -> None:
    rrm_workdir.write_record(self.workdir, self._record(), self.p.is_sweep)
    for c, d in zip(self.p.configs, self.dirs):
      os.makedirs(d, exist_ok=True)
      if self.p.is_sweep:
        with open(os.path.join(d, "config.json"), "w") as f:
          json.dump(rrm_config.to_dict(c), f, indent=2, sort_keys=True)
      self.writers.append(rrm_logging.MetricWriter(
          d, tensorboard=c.log.tensorboard, wandb_mode=c.log.wandb,
          wandb_project=c.log.wandb_project, config=rrm_config.to_dict(c)))

  def export_labels(self, host_view) -> None:
    """Writes every member's labels (every node's) from a host view."""
    if not (self.c0.learned_reward and self.primary and self.dirs):
      return
    for i, (c, d) in enumerate(zip(self.p.configs, self.dirs)):
      rrm_workdir.export_labels(self.p.member(host_view, i), d, c, self.p.plan)

  def save(self, it: int, states) -> None:
    t0 = time.perf_counter()
    meta = {"iteration": it, "members": self.p.size,
            "diverged": {str(k): v for k, v in self.diverged.items()},
            "config": rrm_config.to_dict(self.c0)}
    if multihost.is_multiprocess():
      # Orbax saves global arrays shard by shard (every process its own);
      # the labels are gathered for process 0 to write.
      self.checkpointer.save(it, states, meta)
      view = multihost.fetch(rrm_workdir.labels_view(states)) if (
          self.c0.learned_reward) else None
    else:
      host = jax.device_get(states)  # the next iteration donates `states`
      if not self.p.is_sweep:
        meta["labels_spent"] = int(host.labels.spent)
      view = rrm_workdir.labels_view(host)
      # Labels first: written in a moment, they outlive a kill during the
      # checkpoint's save (a resume from an older one keeps them aside).
      self.export_labels(view)
      self.checkpointer.save(it, host, meta)
      view = None
    if view is not None:
      self.export_labels(view)
    self.last_saved = it
    self.save_in_flight = True
    self.checkpoint_seconds += time.perf_counter() - t0

  def wait_for_save(self) -> None:
    """Blocks until the save in flight is written, before the next
    iteration pays labels: a save that failed in the background (a full
    disk) stops the loop there, not an iteration later."""
    if not self.save_in_flight:
      return
    t0 = time.perf_counter()
    self.save_in_flight = False
    try:
      self.checkpointer.wait()
    except rrm_checkpoint.CheckpointError as e:
      self.last_saved = self._previous_complete()
      raise OSError(f"a checkpoint save failed in the background ({e})"
                    ) from e
    finally:
      self.checkpoint_seconds += time.perf_counter() - t0

  def _previous_complete(self) -> int | None:
    try:
      steps = [s for s in self.checkpointer.all_steps()
               if s != self.last_saved]
    except Exception:  # pylint: disable=broad-except
      return None
    return max(steps) if steps else None

  def rescue_labels(self) -> list[str]:
    """After a failed write: every member's labels in memory, written to the
    workdir if it still takes them, else to the first place that does
    (the temporary directory, home, the current directory). Their paths."""
    if not (self.c0.learned_reward and self.primary and self.dirs
            and self.states is not None):
      return []
    try:
      view = jax.device_get(rrm_workdir.labels_view(self.states))
    except Exception:  # pylint: disable=broad-except
      return []  # the state's buffers are gone (donated to a failed call)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    places = [None, tempfile.gettempdir(), os.path.expanduser("~"),
              os.getcwd()]
    for place in places:
      written = []
      try:
        for i, (c, d) in enumerate(zip(self.p.configs, self.dirs)):
          if place is not None:
            d = os.path.normpath(os.path.join(
                place, f"rrm-labels-{stamp}-{os.getpid()}",
                os.path.relpath(d, self.workdir)))
            os.makedirs(d, exist_ok=True)
          rrm_workdir.export_labels(self.p.member(view, i), d, c, self.p.plan)
          written.append(os.path.join(d, "labels.npz"))
        return written
      except OSError:
        continue
    return []

  def rows(self, metrics, it: int, t_start: float, rates: dict[str, float]
           ) -> list[dict[str, float]]:
    """One flat row of floats per member, with the host's progress keys,
    the reward-hacking detector's and the cumulative unsafe events."""
    if self.watches is None:
      pasts = [self._past(i) for i in range(self.p.size)]
      self.watches = [rrm_report.HackingWatch(
          c.report.hacking_window, c.report.hacking_threshold, past,
          c.report.hacking_signal)
                      for c, past in zip(self.p.configs, pasts)]
      self.unsafe_totals = [rrm_report.unsafe_total(past) for past in pasts]
    out = []
    for i in range(self.p.size):
      row = {k: float(v) for k, v in self.p.member(metrics, i).items()}
      row.update(self.watches[i].observe(row))
      if UNSAFE in row:
        self.unsafe_totals[i] += row[UNSAFE]
        row[UNSAFE + "_total"] = self.unsafe_totals[i]
      row.update({"iteration": it,
                  "env_steps": it * self.c0.env_steps_per_iteration,
                  "time/elapsed_s": time.time() - t_start,
                  "time/checkpoint_s": self.checkpoint_seconds, **rates})
      out.append(row)
    return out

  def _past(self, i: int) -> list[dict[str, Any]]:
    """The rows member i's resumed run already wrote (metrics.jsonl,
    truncated to the restored step): the detector and the cumulative
    counts go on from them as the uninterrupted run's would."""
    path = os.path.join(self.dirs[i], "metrics.jsonl") if self.dirs else ""
    return (rrm_logging.read_metrics(path) if self.start and path
            and os.path.exists(path) else [])

  def check(self, i: int, row: dict[str, float], it: int, states) -> None:
    """Non-finite values and the tree's fit, for member i's row."""
    config = self.p.configs[i]
    problem = diagnostics.nonfinite_problem(row, config)
    if problem and not self.p.is_sweep:
      self._stop_nonfinite(row, it, problem, states)
    if problem and i not in self.diverged:
      self.diverged[i] = f"iteration {it}: {problem}"
      if self.primary:
        logging.warning("sweep member %d %s diverged at %s", i,
                        dict(self.p.overrides[i]), self.diverged[i])
    tree_error = row.get("recursive/root_error", 0.0)
    if tree_error > TREE_TOLERANCE:
      raise rrm_config.ConfigError(
          f"iteration {it}: the task tree's root does not reproduce the "
          f"env's reward (max |weighted aspects - reward| = "
          f"{tree_error:.3g} of the largest reward on the rollout): check "
          f"config.recursive.tree's aspects and weights against "
          f"{config.env.name!r}'s reward components")

  def _stop_nonfinite(self, row, it: int, problem: str, states) -> None:
    """A single run stops on non-finite values, its labels exported."""
    kept = ""
    if self.writers:
      self.writers[0].write(row)  # for diagnosis; a resume truncates it
    if self.dirs and self.c0.learned_reward:
      self.export_labels(jax.device_get(rrm_workdir.labels_view(states)))
      kept = (" Its labels are exported to "
              f"{os.path.join(self.dirs[0], 'labels.npz')}.")
    where = (f"the last good checkpoint (iteration {self.last_saved}) in "
             f"{self.checkpointer.directory} is intact"
             if self.last_saved is not None
             else "no checkpoint was saved before it")
    raise FloatingPointError(
        f"iteration {it}: {problem}. The run stopped without saving this "
        f"state; {where}.{kept}")

  def close(self, completed: bool) -> None:
    self.videos.close()
    for w in self.writers:
      w.close()
    if any(c.log.wandb != "off" for c in self.p.configs) and self.writers:
      rrm_logging.flush_wandb()
    if self.checkpointer:
      t0 = time.perf_counter()
      try:
        self.checkpointer.close()
      except rrm_checkpoint.CheckpointError as e:
        if completed:
          raise
        logging.warning("while stopping on an error, a checkpoint save "
                        "failed too: %s", e)
      self.checkpoint_seconds += time.perf_counter() - t0

  def reports(self) -> list[dict[str, Any]]:
    """Feedback efficiency, the reward-hacking detector and the
    reward-result gap per member over the whole run (all of metrics.jsonl
    after a resume), written to report.json, with the certificate."""
    multihost.barrier("loop_written")  # the others read process 0's files
    out = []
    for i, c in enumerate(self.p.configs):
      path = os.path.join(self.dirs[i], "metrics.jsonl") if self.dirs else ""
      history = (rrm_logging.read_metrics(path) if path and os.path.exists(
          path) else self.histories[i])
      report = rrm_report.feedback_efficiency(
          history, c.report.baseline_return, c.report.threshold)
      report["reward_hacking"] = rrm_report.reward_hacking(
          history, c.report.hacking_window, c.report.hacking_threshold,
          c.report.hacking_signal)
      report["reward_result_gap"] = rrm_report.reward_result_gap(
          history, c.report.baseline_aspects)
      report["reward_epic"] = rrm_report.reward_epic(history)
      report["unacceptable_outcomes"] = rrm_report.unacceptable_outcomes(
          history, rrm_safety.event_name(c.env))
      if self.dirs and self.primary:
        with open(os.path.join(self.dirs[i], "report.json"), "w") as f:
          json.dump(report, f, indent=2, sort_keys=True)
        if c.report.certificate:
          self._certify(self.dirs[i], history, report, c)
      out.append(report)
    return out

  def _certify(self, directory: str, history, report, config) -> None:
    """report.md and its figures; a failure to draw is a warning, never the
    run's end (its labels and report.json are written already)."""
    step = self.last_saved
    digest = (self.checkpointer.digests.get(step) if self.checkpointer
              and step is not None else None)
    try:
      certificate.write(directory, history, report,
                        rrm_config.to_dict(config),
                        {"step": step, "state_sha256": digest}
                        if digest else None)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("could not write the run certificate in %s: %s: %s",
                      directory, type(e).__name__, e)


def _iterate(loop: _Loop, states, bar: rrm_logging.Progress, t_start: float):
  """The iterations from `loop.start`; returns (states, it, stop reason)."""
  p, c0 = loop.p, loop.c0
  it = loop.start
  for i in range(loop.start, c0.num_iterations):
    if loop.checkpointer:
      loop.wait_for_save()
    states, metrics = p.iteration(states)
    loop.states = states
    it = loop.it = i + 1
    if it % c0.eval_every == 0 or it == c0.num_iterations:
      metrics = {**metrics, **p.evaluate(states, it)}
    metrics = multihost.fetch(metrics)
    bar.update(it, p.member(metrics, 0) if not p.is_sweep else {
        k: v[:p.size] for k, v in metrics.items()})
    for j, row in enumerate(loop.rows(metrics, it, t_start,
                                      bar.rate_metrics())):
      loop.check(j, row, it, states)
      loop.histories[j].append(row)
      if loop.writers:
        loop.writers[j].write(row)
    loop.videos.write(states, it, skip=loop.diverged,
                      say=bar.write if loop.say else None)
    requested = loop.stop() if loop.stop else None
    if multihost.any_process(requested is not None):
      # Every process stops (and saves) at the same iteration.
      requested = requested or "a stop requested in another process"
    if loop.checkpointer and (it % c0.checkpoint_every == 0
                              or it == c0.num_iterations or requested):
      loop.save(it, states)
    if requested and it < c0.num_iterations:
      return states, it, requested
  return states, it, None


def run_program(program: Program, workdir: str | None,
                progress: Callable[[str], None] | None = print,
                stop: Callable[[], str | None] | None = None) -> Outcome:
  """Runs `program` to `num_iterations` (see the module docstring).

  `stop` (e.g. rrm.preemption.StopOnSignals) is polled after every
  iteration: when it returns a reason, the loop saves a checkpoint, waits
  for it and returns early with `stopped` set to that reason (a request at
  the last iteration completes the run). Writing to the workdir failing
  raises rrm.workdir.WorkdirError naming the last complete checkpoint.
  """
  held = (rrm_workdir.lock(workdir) if workdir and multihost.is_primary()
          else contextlib.nullcontext())
  with held:
    return _run_program(program, workdir, progress, stop)


def _run_program(program: Program, workdir: str | None, progress,
                 stop) -> Outcome:
  t_start = time.time()
  loop = _Loop(program, workdir, progress, stop)
  c0 = program.configs[0]
  states, it, stopped, completed, bar = None, 0, None, False, None
  try:
    states = loop.open()
    it = loop.it = loop.start
    bar = rrm_logging.Progress(
        c0.num_iterations, c0.env_steps_per_iteration, members=program.size,
        first_iteration=loop.start, print_every=c0.log.print_every,
        # print: a live bar on a terminal, plain lines elsewhere.
        out=(lambda _: None) if loop.say is None else (
            None if loop.say is print else loop.say))
    resumed = states is not None
    if not resumed:
      program = program._replace(iteration=_CompileAhead(program))
      loop.p = program
      # No label is paid before init returns: a stop request during its
      # compile ends the process at once (rrm.preemption.exit_at_once).
      at_once = getattr(stop, "exit_at_once", None)
      with (at_once("init was compiling") if at_once
            else contextlib.nullcontext()):
        states = program.init()
      if loop.checkpointer:
        # The initial labels are paid: a kill before the first iteration's
        # checkpoint must not lose them, and a relaunch resumes from here.
        loop.save(0, states)
    loop.states = states
    if loop.say and not resumed:
      initial = c0.feedback.initial_labels if c0.learned_reward else 0
      who = f" of {program.size} members" if program.is_sweep else ""
      bar.write(f"init{who} (compile + {initial} initial labels): "
                f"{time.time() - t_start:.1f}s")
    bar.start()
    stopped = stop() if stop else None  # asked to stop before iterating
    if stopped:
      if loop.checkpointer and loop.last_saved != loop.start:
        loop.save(loop.start, states)
    else:
      states, it, stopped = _iterate(loop, states, bar, t_start)
    if loop.checkpointer:
      loop.wait_for_save()  # the last save failing is reported as any other
    completed = True
  except OSError as e:
    if isinstance(e, rrm_workdir.WorkdirError):
      raise
    rescued = loop.rescue_labels()
    raise rrm_workdir.WorkdirError(
        f"writing to {workdir} failed at iteration {loop.it}: {e}. "
        + (f"The last complete checkpoint is iteration {loop.last_saved}."
           if loop.last_saved is not None else "No checkpoint was completed.")
        + (" The run stopped before paying another label; the labels held "
           f"in memory are written to {', '.join(rescued)}" if rescued
           else "")
    ) from e
  finally:
    if bar is not None:
      bar.close()
    loop.close(completed)
  reports = loop.reports()
  if stopped and loop.say:
    loop.say(f"stopped ({stopped}) after iteration {it}: "
             + (f"checkpoint saved in {loop.checkpointer.directory}; launch "
                "the same command again to resume" if loop.checkpointer else
                "no checkpoint (checkpoint_every=0)"))
  return Outcome(states=states, histories=loop.histories, reports=reports,
                 stopped=stopped, iteration=it,
                 checkpoint_seconds=loop.checkpoint_seconds,
                 diverged=loop.diverged, wall_s=time.time() - t_start)


def run(config: rrm_config.TrainConfig, workdir: str | None = None,
        progress: Callable[[str], None] | None = print,
        train: rrm_train.Train | None = None,
        stop: Callable[[], str | None] | None = None,
        fresh: bool = False, overwrite: bool = False) -> dict[str, Any]:
  """One run: trains for `config.num_iterations` (see the module docstring).

  With a `workdir`: config.json, metrics.jsonl (and TensorBoard events if
  asked), checkpoints/ of the complete state with every node's labels
  exported, report.json. A workdir that holds a checkpoint is resumed from
  its latest valid one (bit-exactly on CPU; damaged ones are set aside, see
  rrm.checkpoint). With `fresh`, a workdir that holds a run is refused
  unless `overwrite` is also set, which removes that run's outputs but
  keeps its labels (`labels.discarded_<time>.npz`).

  A non-finite observation, loss, reward, parameter or optimiser state stops
  the run with FloatingPointError naming the iteration and the metric; the
  failing state is not saved (the last good checkpoint stays the latest),
  but its labels are exported, so none is lost.

  `train`, if given, is a `make_train(config)` to reuse. Returns {"state",
  "metrics" (this call's list), "final", "train", "stopped", "iteration",
  "report", "checkpoint_seconds"}.
  """
  # The workdir is held first: a second launch on it is refused at once,
  # before it builds anything.
  held = (rrm_workdir.lock(workdir) if workdir is not None
          else contextlib.nullcontext())
  with held:
    if train is None:
      train = rrm_train.make_train(config)
    elif rrm_workdir.config_differences(rrm_config.to_dict(train.config),
                                        rrm_config.to_dict(config)):
      raise ValueError("`train` was built for another config")
    else:
      train = train._replace(config=config)  # resumable fields may differ
    if workdir is not None and fresh:
      rrm_workdir.prepare_fresh(workdir, overwrite)
    out = run_program(program_of_run(train), workdir, progress, stop)
  history = out.histories[0]
  return {"state": out.states, "metrics": history,
          "final": history[-1] if history else None, "train": train,
          "stopped": out.stopped, "iteration": out.iteration,
          "report": out.reports[0],
          "checkpoint_seconds": out.checkpoint_seconds}

