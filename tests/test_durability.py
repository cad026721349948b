"""Durable runs: preemption, kill -9, non-finite values, full disks, --fresh.

The subprocess test runs the real launcher three times (SIGTERM, kill -9,
completion) and compares the outcome with an uninterrupted in-process run of
the same config. The launches share a persistent compilation cache, so only
the first one compiles.
"""

import dataclasses
import errno
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_equal
from conftest import launcher_env
from rrm import checkpoint
from rrm import logging as rrm_logging
from rrm import loop as rrm_loop
from rrm import workdir as rrm_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _without_time(history):
  return [{k: v for k, v in m.items() if not k.startswith("time/")}
          for m in history]


def _lines(path):
  try:
    with open(path) as f:
      return sum(1 for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return 0


def _wait_for_lines(proc, path, n, timeout=600):
  deadline = time.time() + timeout
  while _lines(path) < n:
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, f"no {n} metric lines in {timeout}s"
    time.sleep(0.02)


def _restore_final(workdir, train):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  step, state, _ = ckpt.restore_latest(train.init)
  ckpt.close()
  return step, state


def test_sigterm_then_kill9_then_resume_equals_an_uninterrupted_run(
    smoke, tmp_path):
  overrides = {"num_iterations": 8, "checkpoint_every": 3, "eval_every": 2}
  cfg = dataclasses.replace(smoke.config, **overrides)
  reference = str(tmp_path / "reference")
  t0 = time.time()
  rrm_loop.run(cfg, reference, progress=None, train=smoke)
  print(f"reference {time.time() - t0:.1f}s")

  workdir = str(tmp_path / "interrupted")
  metrics = os.path.join(workdir, "metrics.jsonl")
  cmd = [sys.executable, "-m", "launch.train",
         "--config=experiments/configs/inverted_pendulum.py:smoke",
         f"--workdir={workdir}"] + [
             f"--config.{k}={v}" for k, v in overrides.items()]
  env = launcher_env()

  def launch():
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  # 1. Preempted: SIGTERM once iteration 2 is done -> checkpoint, exit 0.
  t0 = time.time()
  proc = launch()
  _wait_for_lines(proc, metrics, 2)
  print(f"first launch to 2 lines {time.time() - t0:.1f}s")
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "done: stopped by SIGTERM at iteration" in out, out
  stopped_at = int(out.split("stopped by SIGTERM at iteration ")[1].split(";")[0])
  assert stopped_at >= 2
  assert stopped_at in checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints")).all_steps()
  assert _lines(metrics) == stopped_at

  # 2. Resumed, then killed with SIGKILL at a random later iteration: no
  # chance to save; maybe mid-save.
  kill_after = random.Random(1234).randint(stopped_at + 1, 7)
  t0 = time.time()
  proc = launch()
  _wait_for_lines(proc, metrics, kill_after)
  print(f"second launch to {kill_after} lines {time.time() - t0:.1f}s")
  proc.kill()
  proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL

  # 3. Resumed to the end.
  t0 = time.time()
  proc = launch()
  out, err = proc.communicate(timeout=600)
  print(f"third launch {time.time() - t0:.1f}s")
  assert proc.returncode == 0, err[-3000:]
  assert "resumed from" in out and "done: eval true return" in out

  # Bit-identical to the uninterrupted run: state, labels, metrics.
  step_a, final_a = _restore_final(workdir, smoke)
  step_b, final_b = _restore_final(reference, smoke)
  assert step_a == step_b == 8
  assert_trees_equal(final_a, final_b)
  labels_a = np.load(os.path.join(workdir, "labels.npz"))
  labels_b = np.load(os.path.join(reference, "labels.npz"))
  assert sorted(labels_a.files) == sorted(labels_b.files)
  for k in labels_b.files:
    np.testing.assert_array_equal(labels_a[k], labels_b[k])
  metrics_a = rrm_logging.read_metrics(metrics)
  metrics_b = rrm_logging.read_metrics(os.path.join(reference,
                                                    "metrics.jsonl"))
  assert [m["iteration"] for m in metrics_a] == list(range(1, 9))
  assert _without_time(metrics_a) == _without_time(metrics_b)


def _poison_before(train, iteration):
  """`train` whose reward-model parameters turn to nan before `iteration`."""

  def poisoned(state):
    if int(state.iteration) == iteration - 1:
      params = jax.tree.map(lambda x: x * jnp.nan, state.reward.params)
      state = state.replace(reward=state.reward.replace(params=params))
    return train.iteration(state)

  return train._replace(iteration=poisoned)


def test_nonfinite_values_stop_the_run_and_keep_the_last_good_checkpoint(
    smoke, tmp_path):
  cfg = dataclasses.replace(smoke.config, checkpoint_every=2)
  workdir = str(tmp_path / "run")
  with pytest.raises(FloatingPointError) as raised:
    rrm_loop.run(cfg, workdir, progress=None,
                  train=_poison_before(smoke, 4))
  message = str(raised.value)
  assert message.startswith("iteration 4: non-finite")
  assert "rollout/learned_reward=nan" in message
  assert "health/nonfinite_reward_model" in message
  assert "last good checkpoint (iteration 2)" in message
  # The last good checkpoint is intact and finite; iteration 4 was not saved.
  step, state = _restore_final(workdir, smoke)
  assert step == 2
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.reward)
             if np.issubdtype(x.dtype, np.floating))
  # The labels asked for up to iteration 4 were exported all the same.
  fb = cfg.feedback
  assert np.load(os.path.join(workdir, "labels.npz"))["label"].shape == (
      fb.initial_labels + 4 * fb.labels_per_round,)

  # Resuming (with the fault gone) continues from iteration 2; the exported
  # labels the checkpoint lacks are kept aside, not overwritten.
  result = rrm_loop.run(cfg, workdir, progress=None, train=smoke)
  assert [m["iteration"] for m in result["metrics"]] == [3, 4, 5, 6]
  kept = glob.glob(os.path.join(workdir, "labels.after_2_*.npz"))
  assert len(kept) == 1 and np.load(kept[0])["label"].shape == (120,)
  assert [m["iteration"] for m in rrm_logging.read_metrics(
      os.path.join(workdir, "metrics.jsonl"))] == list(range(1, 7))


def test_a_full_disk_is_reported_with_the_last_complete_checkpoint(
    smoke, tmp_path, monkeypatch):
  cfg = dataclasses.replace(smoke.config, checkpoint_every=2,
                            num_iterations=3)
  write = rrm_logging.MetricWriter.write

  def full_at_3(self, metrics):
    if metrics["iteration"] == 3:
      raise OSError(errno.ENOSPC, "No space left on device")
    write(self, metrics)

  monkeypatch.setattr(rrm_logging.MetricWriter, "write", full_at_3)
  with pytest.raises(rrm_workdir.WorkdirError) as raised:
    rrm_loop.run(cfg, str(tmp_path / "run"), progress=None, train=smoke)
  assert "failed at iteration 3" in str(raised.value)
  assert "No space left on device" in str(raised.value)
  assert "last complete checkpoint is iteration 2" in str(raised.value)
  step, _ = _restore_final(str(tmp_path / "run"), smoke)
  assert step == 2


def test_fresh_refuses_to_discard_a_run_without_overwrite(smoke, tmp_path):
  cfg = dataclasses.replace(smoke.config, num_iterations=2)
  workdir = str(tmp_path / "run")
  rrm_loop.run(cfg, workdir, progress=None, train=smoke)
  with pytest.raises(FileExistsError, match="Add --overwrite"):
    rrm_loop.run(cfg, workdir, progress=None, train=smoke, fresh=True)
  result = rrm_loop.run(cfg, workdir, progress=None, train=smoke, fresh=True,
                         overwrite=True)
  assert [m["iteration"] for m in result["metrics"]] == [1, 2]
  assert len(glob.glob(os.path.join(workdir, "labels.discarded_*.npz"))) == 1
  assert [m["iteration"] for m in rrm_logging.read_metrics(
      os.path.join(workdir, "metrics.jsonl"))] == [1, 2]


def test_stop_request_saves_a_checkpoint_and_resume_continues(smoke,
                                                              tmp_path):
  """The in-process side of preemption: stop() after iteration 2."""
  cfg = smoke.config
  workdir = str(tmp_path / "run")
  calls = []

  def stop():
    calls.append(1)
    return "SIGTERM" if len(calls) >= 3 else None  # 1st poll: after init

  result = rrm_loop.run(cfg, workdir, progress=None, train=smoke, stop=stop)
  assert result["stopped"] == "SIGTERM" and result["iteration"] == 2
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  assert ckpt.all_steps() == [2]
  ckpt.close()
  result = rrm_loop.run(cfg, workdir, progress=None, train=smoke)
  assert [m["iteration"] for m in result["metrics"]] == [3, 4, 5, 6]
  assert json.load(open(os.path.join(workdir, "config.json")))["seed"] == 0
