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
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rrm import checkpoint
from rrm import logging as rrm_logging
from rrm import loop as rrm_loop
from rrm import workdir as rrm_workdir
import relaunch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_restore_final = relaunch.restore_final
_read = relaunch.read


def test_killed_anywhere_relaunched_until_done_equals_an_uninterrupted_run(
    smoke, tmp_path):
  """The real launcher, killed with SIGKILL at 5 moments drawn at random
  (seeded), each kind of moment at least once: during init, right after it (its checkpoint being written),
  right after iterations (their saves in flight: checkpoint_every=1) and at
  random times; once stopped by SIGTERM instead (exit 0, a checkpoint).
  Relaunched with the same command each time; the last launch has a twin
  on the same workdir started with it, which is refused while the other
  completes: its state, every array of its labels.npz and its metrics
  equal an uninterrupted run's, each iteration in metrics.jsonl once.

  The launches share the session's compilation cache (the `smoke` fixture's
  programs), so each costs its start-up, not a compile.
  """
  # Each launch costs its start-up (~15 s), so every kind of moment once and
  # the commonest (a save in flight) twice: 5 kills, a SIGTERM, the pair.
  overrides = {"num_iterations": 24, "checkpoint_every": 1, "eval_every": 4}
  cfg = dataclasses.replace(smoke.config, **overrides)
  reference = str(tmp_path / "reference")
  rrm_loop.run(cfg, reference, progress=None, train=smoke)
  program = rrm_loop.program_of_run(smoke)  # evaluate as the loop calls it
  jax.block_until_ready(program.evaluate(program.init(), 1))

  workdir = str(tmp_path / "interrupted")
  runs = relaunch.Relauncher(
      "experiments/configs/inverted_pendulum.py:smoke", workdir, overrides,
      str(tmp_path))
  kills, done = runs.interrupt(
      ["during init", "after init", "sigterm", "after an iteration",
       "at a random time", "after an iteration"], random.Random(1234))
  assert not done and kills == 5, (done, kills)
  # The last launch, and at the same moment a second one on the same
  # workdir: one holds it and completes, the other is refused (naming the
  # holder) as soon as it gets there, before building anything.
  t0 = time.time()
  pair = [runs.launch(), runs.launch()]
  ended = [None, None]
  while None in ended:
    assert time.time() < t0 + 600, "the last launches did not end"
    for j, p in enumerate(pair):
      if ended[j] is None and p.poll() is not None:
        ended[j] = time.time() - t0
    time.sleep(0.05)
  codes = [p.returncode for p in pair]
  outs = [_read(log) for log in runs.logs[-2:]]
  assert sorted(codes) == [0, 1], outs
  winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
  assert "done: eval true return" in outs[winner], outs[winner][-3000:]
  assert (f"is in use by another rrm process (pid {pair[winner].pid} on"
          in outs[loser]), outs[loser][-3000:]
  assert ended[loser] < ended[winner]
  print(f"{len(runs.logs)} launches, {kills} killed; the concurrent launch "
        f"was refused {ended[loser]:.1f}s after its start (its imports), the "
        f"other completed after {ended[winner]:.1f}s")
  # Equal to the uninterrupted run: state, every labels array, metrics.
  relaunch.assert_equal_runs(workdir, reference, smoke, 24)


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
  assert ckpt.all_steps() == [0, 2]  # 0: saved right after init
  ckpt.close()
  result = rrm_loop.run(cfg, workdir, progress=None, train=smoke)
  assert [m["iteration"] for m in result["metrics"]] == [3, 4, 5, 6]
  assert json.load(open(os.path.join(workdir, "config.json")))["seed"] == 0
