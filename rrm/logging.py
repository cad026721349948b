"""Metric writers: JSONL always, TensorBoard optionally; progress lines."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping


def _json_value(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return None  # JSON has no nan/inf; null means "undefined this iteration"
  return v


class MetricWriter:
  """Appends one JSON object per iteration to `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str, tensorboard: bool = False):
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, metrics: Mapping[str, Any]) -> None:
    self._file.write(json.dumps({k: _json_value(v) for k, v in
                                 metrics.items()}, sort_keys=True) + "\n")
    self._file.flush()
    if self._tb is not None:
      step = int(metrics.get("env_steps", metrics.get("iteration", 0)))
      for k, v in metrics.items():
        if isinstance(v, (int, float)) and math.isfinite(v):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: str) -> list[dict[str, Any]]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def progress_line(metrics: Mapping[str, Any], num_iterations: int,
                  t_loop_start: float, first_iteration: int = 0) -> str:
  """One human line: iteration, steps/s, ETA, returns, labels."""
  it = metrics["iteration"]
  elapsed = time.time() - t_loop_start
  eta = elapsed / max(it - first_iteration, 1) * (num_iterations - it)

  def fmt(key, spec=".1f"):
    v = metrics.get(key)
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else format(v, spec)

  parts = [f"it {it}/{num_iterations}",
           f"steps {metrics['env_steps']:,}",
           f"{metrics['time/steps_per_s']:,.0f} steps/s",
           f"ETA {eta:.0f}s",
           f"train true return {fmt('rollout/true_episode_return')}"]
  if "oracle/labels" in metrics:
    parts += [f"labels {int(metrics['oracle/labels'])}",
              f"corr {fmt('reward/correlation', '.2f')}",
              f"heldout acc {fmt('reward/heldout_accuracy', '.2f')}"]
  if "eval/true_return" in metrics:
    parts.append(f"EVAL true return {fmt('eval/true_return')}")
  return " | ".join(parts)
