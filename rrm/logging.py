"""Metric writers: JSONL always, TensorBoard and W&B optionally; progress.

Weights & Biases (`log.wandb="offline"` or `"online"`, the `[wandb]` extra):
one W&B run per workdir (per sweep member), its id derived from the
workdir's real path, so a resumed run continues the same W&B run; files go
to `workdir/wandb`. Offline mode needs no server or account (`wandb sync
DIR/wandb/offline-run-*` uploads later). The W&B step is the iteration: a
resumed run re-logs the iterations after its checkpoint with the same values
(resume is exact), and W&B keeps the first copy of each step.

`Progress` reports what the host loop is really doing: the first iteration
after `start()` (which includes XLA's compile) is reported on its own, and the
rate and ETA are measured over a window of the latest iterations without it,
so one 30 s compile does not turn a 1 s/iteration loop into a wrong ETA.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, TextIO

import numpy as np


def _json_value(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return None  # JSON has no nan/inf; null means "undefined this iteration"
  return v


WANDB_MODES = ("off", "offline", "online")


def wandb_run_id(workdir: str) -> str:
  """The W&B run id of a workdir: stable across resumes of the same path."""
  path = os.path.realpath(workdir)
  return "rrm-" + hashlib.sha256(path.encode()).hexdigest()[:16]


def _wandb_run(workdir: str, mode: str, project: str,
               config: Mapping[str, Any] | None):
  import wandb  # pylint: disable=g-import-not-at-top
  return wandb.init(
      project=project, dir=workdir, mode=mode, id=wandb_run_id(workdir),
      resume="allow", name=os.path.basename(os.path.realpath(workdir)),
      config=dict(config or {}), reinit="create_new",
      # The progress line owns the terminal: no console capture, no banner.
      settings=wandb.Settings(console="off", silent=True))


class MetricWriter:
  """Appends one JSON object per iteration to `workdir/metrics.jsonl`, and
  the finite numbers among them to TensorBoard and W&B where enabled."""

  def __init__(self, workdir: str, tensorboard: bool = False,
               wandb_mode: str = "off", wandb_project: str = "rrm",
               config: Mapping[str, Any] | None = None):
    if wandb_mode not in WANDB_MODES:
      raise ValueError(f"log.wandb={wandb_mode!r}: must be one of "
                       f"{', '.join(WANDB_MODES)}")
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._wandb = None
    if wandb_mode != "off":
      self._wandb = _wandb_run(workdir, wandb_mode, wandb_project, config)

  def write(self, metrics: Mapping[str, Any]) -> None:
    self._file.write(json.dumps({k: _json_value(v) for k, v in
                                 metrics.items()}, sort_keys=True) + "\n")
    self._file.flush()
    numbers = {k: v for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)}
    if self._tb is not None:
      step = int(metrics.get("env_steps", metrics.get("iteration", 0)))
      for k, v in numbers.items():
        self._tb.add_scalar(k, v, step)
    if self._wandb is not None:
      self._wandb.log(numbers, step=int(metrics.get("iteration", 0)))

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


def flush_wandb() -> None:
  """Waits until W&B's service has written every finished run to disk.

  `run.finish()` returns once the run's exit is acknowledged; the service
  closes the run's transaction log (`run-*.wandb`) afterwards, so a reader
  straight after `finish` (`wandb sync`, a test) may miss the last rows.
  Tearing the service down closes every log; a later `wandb.init` starts a
  new service. A no-op where W&B was never imported."""
  wandb = sys.modules.get("wandb")
  if wandb is not None:
    wandb.teardown()


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The rows of a metrics.jsonl; a line cut short (a kill while writing it)
  is not a row."""
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows


def _fmt_value(v: Any, spec: str = ".1f") -> str:
  """`v` formatted, "-" when missing or non-finite; arrays (a sweep's
  per-member values) as space-separated values."""
  if v is None:
    return "-"
  a = np.asarray(v, dtype=float)
  if a.ndim:
    return " ".join(_fmt_value(x, spec) for x in a.ravel()) or "-"
  return format(float(a), spec) if math.isfinite(a) else "-"


def format_duration(seconds: float) -> str:
  """26.1s under a minute, 19m19s under an hour, 2h05m above."""
  if seconds is None or not math.isfinite(seconds):
    return "-"
  if seconds < 59.95:
    return f"{max(seconds, 0.0):.1f}s"
  s = int(round(seconds))
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


def metric_parts(metrics: Mapping[str, Any]) -> list[str]:
  """The learning part of a progress line: returns, labels, reward quality."""
  parts = [f"train true return "
           f"{_fmt_value(metrics.get('rollout/true_episode_return'))}"]
  if "oracle/labels" in metrics:
    parts.append(f"labels {_fmt_value(metrics['oracle/labels'], '.0f')}")
    for key, name in (("safety/flags_spent", "flags"),
                      ("ratings/spent", "ratings"),
                      ("feedback/budget_spent", "budget")):
      if key in metrics:  # other kinds of feedback, and all at their cost
        parts.append(f"{name} {_fmt_value(metrics[key], '.0f')}")
    parts += [f"corr {_fmt_value(metrics.get('reward/correlation'), '.2f')}",
              f"heldout acc "
              f"{_fmt_value(metrics.get('reward/heldout_accuracy'), '.2f')}"]
  if "eval/true_return" in metrics:
    parts.append(f"EVAL true return {_fmt_value(metrics['eval/true_return'])}")
  return parts


def progress_line(metrics: Mapping[str, Any], num_iterations: int,
                  t_loop_start: float, first_iteration: int = 0) -> str:
  """One human line: iteration, steps/s, ETA, returns, labels.

  Deprecated: its rate and ETA are averaged since `t_loop_start` (a
  `time.time()`), so they include the first iteration's compile and are
  wrong early in a run. Use `Progress`.
  """
  it = metrics["iteration"]
  elapsed = time.time() - t_loop_start
  eta = elapsed / max(it - first_iteration, 1) * (num_iterations - it)
  return " | ".join([f"it {it}/{num_iterations}",
                     f"steps {metrics['env_steps']:,}",
                     f"{metrics['time/steps_per_s']:,.0f} steps/s",
                     f"ETA {eta:.0f}s"] + metric_parts(metrics))


class Progress:
  """Progress of the host training loop, with a rate and ETA that hold.

  Usage (`it` counts completed iterations, `first_iteration` of them done
  before this call, e.g. on a resume):

      progress = Progress(num_iterations, steps_per_iteration,
                          first_iteration=start)
      progress.start()                  # after init, before the first iteration
      for i in range(start, num_iterations):
        metrics = ...                   # run iteration i + 1
        progress.update(i + 1, metrics)
        metrics.update(progress.rate_metrics())
      progress.close()

  Timing: `compile_s` is the wall time of the first iteration after
  `start()`, which includes its XLA compile; it is reported alone and kept
  out of the rate. With t_k the clock at `update(k)`, over the last `window`
  iterations [a, b] (never reaching back before the first one's end):

      seconds/iteration = (t_b - t_a) / (b - a)
      steps_per_s = (b - a) * steps_per_iteration * members / (t_b - t_a)
      eta_s = (num_iterations - b) * seconds/iteration

  Output: with `out=None` and a TTY `stream`, a live tqdm bar on `stream`
  with the line as postfix (and the first iteration's line kept above it);
  otherwise plain lines through `out` (default: print to `stream`), at the
  first iteration after `start()` (it holds the compile time), every
  `print_every`-th iteration and at the last one.
  """

  def __init__(self, num_iterations: int, steps_per_iteration: int, *,
               first_iteration: int = 0, members: int = 1,
               out: Callable[[str], None] | None = None,
               print_every: int = 1, window: int = 10,
               clock: Callable[[], float] = time.perf_counter,
               stream: TextIO | None = None):
    """Args:

      num_iterations: the loop's last iteration.
      steps_per_iteration: env steps per iteration of one member.
      first_iteration: iterations completed before this loop (a resume).
      members: runs trained together (a sweep); the rate counts all of them.
      out: where plain lines go; given, it is used even on a TTY (no bar).
      print_every: iterations between plain lines.
      window: iterations the rate and ETA are averaged over.
      clock: seconds, monotonic; inject a fake one in tests.
      stream: checked for a TTY and written to by the bar or the default
        `out`; sys.stdout when None.
    """
    for name, value, low in (("num_iterations", num_iterations, 1),
                             ("steps_per_iteration", steps_per_iteration, 1),
                             ("first_iteration", first_iteration, 0),
                             ("members", members, 1),
                             ("print_every", print_every, 1),
                             ("window", window, 1)):
      if not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Progress: {name} must be an integer >= {low}, "
                         f"got {value!r}")
    if first_iteration > num_iterations:
      raise ValueError(f"Progress: first_iteration ({first_iteration}) is "
                       f"past num_iterations ({num_iterations})")
    self.num_iterations = int(num_iterations)
    self.steps_per_iteration = int(steps_per_iteration)
    self.first_iteration = int(first_iteration)
    self.members = int(members)
    self.print_every = int(print_every)
    self._clock = clock
    self._stream = stream if stream is not None else sys.stdout
    self._out = out
    # (iteration, clock) at the end of each recent iteration, from the first
    # one's end on: window + 1 points span `window` iterations.
    self._points: collections.deque[tuple[int, float]] = collections.deque(
        maxlen=window + 1)
    self._t_start: float | None = None
    self._last_it: int | None = None
    self._bar = None
    self.compile_s: float | None = None

  def start(self) -> None:
    """Marks the loop's start: the first iteration is timed from here."""
    self._t_start = self._clock()
    self._points.clear()
    self._last_it, self.compile_s = None, None
    isatty = getattr(self._stream, "isatty", None)
    if self._out is None and isatty is not None and isatty():
      try:
        import tqdm  # pylint: disable=g-import-not-at-top
      except ImportError:  # without it: plain lines, as when not on a TTY
        tqdm = None
      if tqdm is not None:
        self._bar = tqdm.tqdm(
            total=self.num_iterations, initial=self.first_iteration,
            file=self._stream, dynamic_ncols=True, unit="it",
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    if self._bar is None and self._out is None:
      self._out = lambda s: print(s, file=self._stream, flush=True)

  def __enter__(self) -> "Progress":
    self.start()
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, it: int, metrics: Mapping[str, Any] | None = None) -> None:
    """Records that iteration `it` has completed, and reports it."""
    now = self._clock()
    if self._t_start is None:
      raise RuntimeError("Progress.update called before Progress.start()")
    previous = self.first_iteration if self._last_it is None else self._last_it
    if not previous < it <= self.num_iterations:
      raise ValueError(f"Progress.update: iteration {it} must be after "
                       f"{previous} and at most {self.num_iterations}")
    if self.compile_s is None:
      self.compile_s = now - self._t_start
    self._points.append((it, now))
    first = self._last_it is None
    self._last_it = it
    metrics = metrics or {}
    if self._bar is not None:
      if first:  # the compile time stays on screen; the bar moves on
        self._bar.write(self.line(it, metrics), file=self._stream)
      self._bar.update(it - self._bar.n)
      self._bar.set_postfix_str(" | ".join(self._parts(it, metrics)[1:]))
    elif (first or it % self.print_every == 0 or it == self.num_iterations):
      self._out(self.line(it, metrics))

  def write(self, message: str) -> None:
    """Prints `message` without breaking the bar (or through `out`)."""
    if self._bar is not None:
      self._bar.write(message, file=self._stream)
    elif self._out is not None:
      self._out(message)
    else:
      print(message, file=self._stream, flush=True)

  def close(self) -> None:
    """Ends the bar, if any; safe to call twice."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def _span(self) -> tuple[int, float] | None:
    """(iterations, seconds) over the window, the first iteration left out."""
    if len(self._points) < 2:
      return None
    (a, t_a), (b, t_b) = self._points[0], self._points[-1]
    return b - a, t_b - t_a

  @property
  def seconds_per_iteration(self) -> float | None:
    """Mean wall time of the recent iterations; None until 2 completed."""
    span = self._span()
    return None if span is None else span[1] / span[0]

  @property
  def steps_per_s(self) -> float | None:
    """Env steps per second of all members, recent iterations only."""
    span = self._span()
    if span is None:
      return None
    n, seconds = span
    steps = n * self.steps_per_iteration * self.members
    return steps / seconds if seconds > 0 else math.inf

  @property
  def eta_s(self) -> float | None:
    """Seconds to `num_iterations` at the recent pace; None until known."""
    spi = self.seconds_per_iteration
    if spi is None:
      return None
    return (self.num_iterations - self._last_it) * spi

  def rate_metrics(self) -> dict[str, float]:
    """{"time/steps_per_s", "time/compile_s"} for the metrics row; nan
    until known."""
    rate = self.steps_per_s
    return {"time/steps_per_s": math.nan if rate is None else float(rate),
            "time/compile_s": (math.nan if self.compile_s is None
                               else float(self.compile_s))}

  def _parts(self, it: int, metrics: Mapping[str, Any]) -> list[str]:
    parts = [f"it {it}/{self.num_iterations}"]
    if self.members > 1:
      parts.append(f"{self.members} members")
    spi = self.seconds_per_iteration
    if spi is not None:
      rate = self.steps_per_s
      parts += [f"{rate:,.0f} steps/s" + (" in all" if self.members > 1
                                          else ""),
                f"ETA {format_duration((self.num_iterations - it) * spi)}"]
    elif self.compile_s is not None:
      parts.append(f"first iteration (incl. compile) "
                   f"{format_duration(self.compile_s)}")
    steps = metrics.get("env_steps", it * self.steps_per_iteration)
    parts.append(f"steps {_fmt_value(steps, ',.0f')}")
    return parts + metric_parts(metrics)

  def line(self, it: int, metrics: Mapping[str, Any] | None = None) -> str:
    """The human line for iteration `it`: rate and ETA, or on the first
    iteration the compile time; then steps, returns, labels."""
    return " | ".join(self._parts(it, metrics or {}))
