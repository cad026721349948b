"""The kill-anywhere harness: the real launcher, interrupted and relaunched.

Shared by tests/test_durability.py (PPO) and tests/test_sac.py (SAC with
its replay): `Relauncher` starts `python -m launch.train` on one workdir,
kills it at chosen moments (SIGKILL, or SIGTERM for a clean stop) and
relaunches it with the same command; `assert_equal_runs` compares the
outcome with an uninterrupted run's workdir: final state, every array of
labels.npz and metrics.jsonl.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import assert_trees_equal
from conftest import launcher_env
from rrm import checkpoint
from rrm import logging as rrm_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOMENTS = ("during init", "after init", "sigterm", "after an iteration",
           "at a random time")


def without_time(history):
  return [{k: v for k, v in m.items() if not k.startswith("time/")}
          for m in history]


def lines(path):
  try:
    with open(path) as f:
      return sum(1 for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return 0


def read(path):
  try:
    with open(path) as f:
      return f.read()
  except FileNotFoundError:
    return ""


def restore_final(workdir, train):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  step, state, _ = ckpt.restore_latest(train.init)
  ckpt.close()
  return step, state


def wait_for(proc, predicate, what, timeout=600):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, f"exited {proc.returncode} before {what}"
    assert time.time() < deadline, f"no {what} in {timeout}s"
    time.sleep(0.01)


class Relauncher:
  """Launches of one command on one workdir, logs kept under `log_dir`."""

  def __init__(self, config: str, workdir: str, overrides: dict, log_dir):
    self.workdir = workdir
    self.metrics = os.path.join(workdir, "metrics.jsonl")
    self.num_iterations = overrides["num_iterations"]
    self.cmd = [sys.executable, "-m", "launch.train", f"--config={config}",
                f"--workdir={workdir}"] + [
                    f"--config.{k}={v}" for k, v in overrides.items()]
    self.log_dir = log_dir
    self.logs = []

  def launch(self):
    self.logs.append(os.path.join(self.log_dir, f"launch{len(self.logs)}.out"))
    out = open(self.logs[-1], "w")
    return subprocess.Popen(self.cmd, cwd=ROOT, env=launcher_env(),
                            stdout=out, stderr=subprocess.STDOUT, text=True)

  def interrupt(self, moments, rng) -> tuple[int, bool]:
    """One launch per moment, each interrupted then; (kills, finished)."""
    initialised = lambda: "init (compile" in read(self.logs[-1])
    started = lambda: any(m in read(self.logs[-1]) for m in (
        "init (compile", "resumed from"))
    kills = 0
    for moment in moments:
      assert moment in MOMENTS, moment
      before = lines(self.metrics)
      proc = self.launch()
      if before >= self.num_iterations - 1 and moment != "sigterm":
        proc.wait(timeout=600)
        return kills, True  # too close to the end for another interruption
      if moment == "during init":  # config.json is written just before init
        wait_for(proc, lambda: os.path.exists(os.path.join(
            self.workdir, "config.json")), "config.json")
        time.sleep(rng.uniform(0.0, 2.0))  # tracing, cache loads, labels
        assert not initialised()
      elif moment == "after init":
        wait_for(proc, initialised, "init line")
      elif moment == "sigterm":
        wait_for(proc, lambda: lines(self.metrics) >= before + 1,
                 "an iteration")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == 0, read(self.logs[-1])[-3000:]
        assert "done: stopped by SIGTERM at iteration" in read(self.logs[-1])
        continue
      elif moment == "after an iteration":
        target = before + rng.randint(1, 2)
        wait_for(proc, lambda: lines(self.metrics) >= target,
                 f"{target} lines")
      else:  # the first iteration's trace and cache load take seconds
        wait_for(proc, started, "init or resume line")
        time.sleep(rng.uniform(0.0, 3.0))
      if proc.poll() is not None:  # it finished first
        return kills, True
      proc.kill()
      proc.wait(timeout=60)
      kills += 1
    return kills, False


def assert_equal_runs(workdir, reference, train, num_iterations):
  """Same final state, labels.npz arrays and metrics (time aside)."""
  step_a, final_a = restore_final(workdir, train)
  step_b, final_b = restore_final(reference, train)
  assert step_a == step_b == num_iterations
  assert_trees_equal(final_a, final_b)
  labels_a = np.load(os.path.join(workdir, "labels.npz"))
  labels_b = np.load(os.path.join(reference, "labels.npz"))
  assert sorted(labels_a.files) == sorted(labels_b.files)
  for k in labels_b.files:
    np.testing.assert_array_equal(labels_a[k], labels_b[k])
  metrics_a = rrm_logging.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  metrics_b = rrm_logging.read_metrics(os.path.join(reference,
                                                    "metrics.jsonl"))
  assert [m["iteration"] for m in metrics_a] == list(
      range(1, num_iterations + 1))
  assert without_time(metrics_a) == without_time(metrics_b)
