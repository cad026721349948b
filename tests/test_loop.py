"""The host loop (rrm.loop) on hand-built programs: one loop for runs and
sweeps, tested without compiling a training program.

A fake program's state holds what the loop reads of a real one: the root's
labels, the teacher, the helpers' labels (a depth-3 task tree's plan) and an
iteration counter. Each iteration adds one label to the root and one to
every helper, and reports the metrics the loop checks.
"""

import dataclasses
import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import point_hazard
from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import config_parse
from rrm import feedback
from rrm import logging as rrm_logging
from rrm import loop as rrm_loop
from rrm import oracle
from rrm import segments
from rrm import state as rrm_state
from rrm import train as rrm_train

ITERATIONS = 4


@flax.struct.dataclass
class FakeState:
  labels: feedback.LabelDataset
  teacher: oracle.TeacherParams
  helpers: rrm_state.HelperState
  iteration: jax.Array


def _config(**changes):
  cd = point_hazard.get_config("smoke")
  cd.recursive.tree = point_hazard.TREE_DEPTH3
  cd.recursive.level_fractions = (0.4, 0.3, 0.3)
  config = config_parse.from_config_dict(cd)
  return dataclasses.replace(config, num_iterations=ITERATIONS,
                             checkpoint_every=2, eval_every=2, **changes)


CONFIG = _config()
PLAN = rrm_train.make_plan(CONFIG)
HN = PLAN.num_helpers


def _segment(value):
  return segments.Segments(observation=jnp.full((1, 2, 1), value),
                           action=jnp.zeros((1, 2, 1)),
                           next_observation=jnp.zeros((1, 2, 1)),
                           true_reward=jnp.zeros((1, 2)))


def _add(labels, it, node):
  return feedback.add_labels(labels, _segment(it), _segment(100.0 * node),
                             jnp.ones((1,)), jnp.ones((1,), bool),
                             jnp.int32(it))


def _init():
  labels = feedback.init_labels(8, 2, 1, 1)
  helpers = jax.tree.map(lambda x: jnp.stack([x] * HN), labels)
  return FakeState(labels=labels, teacher=oracle.make_teacher(),
                   helpers=rrm_state.HelperState(reward=None, labels=helpers),
                   iteration=jnp.zeros((), jnp.int32))


def _iteration(state, root_error=0.0, loss=1.0):
  it = state.iteration
  helpers = jax.vmap(lambda d, h: _add(d, it, h))(
      state.helpers.labels, jnp.arange(1, HN + 1))
  state = state.replace(labels=_add(state.labels, it, 0),
                        helpers=state.helpers.replace(labels=helpers),
                        iteration=it + 1)
  return state, {"ppo/total_loss": jnp.float32(loss),
                 "oracle/labels_this_iteration": jnp.int32(1),
                 "recursive/root_error": jnp.float32(root_error)}


def _run_program(**kw):
  iteration = kw.pop("iteration", _iteration)
  return rrm_loop.Program(
      configs=(kw.pop("config", CONFIG),), plan=PLAN, init=_init,
      iteration=iteration,
      evaluate=lambda s, it: {"eval/true_return": jnp.float32(it)},
      restore_init=lambda _: _init(), member=lambda tree, _: tree)


def _member(tree, i):
  return jax.tree.map(lambda x: x[i], tree)


def _sweep_program(size=2, iteration=_iteration):
  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  configs = tuple(dataclasses.replace(CONFIG, seed=i) for i in range(size))
  return rrm_loop.Program(
      configs=configs, plan=PLAN, init=lambda: stack([_init()] * size),
      iteration=lambda s: jax.vmap(iteration)(s),
      evaluate=lambda s, it: {"eval/true_return": jnp.full((size,), it,
                                                           jnp.float32)},
      restore_init=lambda _: stack([_init()] * size), member=_member,
      is_sweep=True, overrides=tuple({"seed": i} for i in range(size)))


def _metrics(directory):
  return rrm_logging.read_metrics(os.path.join(directory, "metrics.jsonl"))


def test_a_sweep_exports_every_nodes_labels_for_every_member(tmp_path):
  out = rrm_loop.run_program(_sweep_program(), str(tmp_path), progress=None)
  assert out.stopped is None and out.iteration == ITERATIONS
  for i in range(2):
    d = tmp_path / "members" / f"{i:03d}"
    assert rrm_checkpoint.load_labels(str(d / "labels.npz")).size == (
        ITERATIONS)
    for h, node in enumerate(PLAN.helpers):
      lf = rrm_checkpoint.load_labels(str(d / f"labels.{node.name}.npz"))
      assert lf.size == ITERATIONS
      # The node's own labels (its second segments carry its index).
      np.testing.assert_array_equal(lf.second.observation[:, 0, 0],
                                    100.0 * (h + 1))
    assert [m["iteration"] for m in _metrics(d)] == list(
        range(1, ITERATIONS + 1))
    assert "final_return" in json.loads((d / "report.json").read_text())


def test_a_run_exports_the_same_files_at_the_top(tmp_path):
  rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  names = sorted(p.name for p in tmp_path.iterdir())
  assert "labels.npz" in names and "config.json" in names
  assert {f"labels.{n.name}.npz" for n in PLAN.helpers} <= set(names)
  assert not (tmp_path / "members").exists()


@pytest.mark.parametrize("make", [_run_program, _sweep_program])
def test_the_tree_check_applies_to_runs_and_sweeps(make, tmp_path):
  bad = lambda s: _iteration(s, root_error=1e-2)
  program = (make(iteration=bad))
  with pytest.raises(rrm_config.ConfigError, match="does not reproduce"):
    rrm_loop.run_program(program, str(tmp_path), progress=None)


def test_a_run_stops_on_nonfinite_values_with_its_labels_exported(tmp_path):
  def poisoned(s):
    return _iteration(s, loss=jnp.where(s.iteration == 2, jnp.nan, 1.0))
  with pytest.raises(FloatingPointError, match="iteration 3: non-finite "
                     "ppo/total_loss.*iteration 2.*labels are exported"):
    rrm_loop.run_program(_run_program(iteration=poisoned), str(tmp_path),
                         progress=None)
  # Iteration 3's labels (3 of them) are on disk though its state is not.
  assert rrm_checkpoint.load_labels(str(tmp_path / "labels.npz")).size == 3
  # The failing row is kept for diagnosis; a resume truncates it.
  assert [m["iteration"] for m in _metrics(tmp_path)] == [1, 2, 3]


def test_a_sweep_reports_a_diverging_member_and_goes_on(tmp_path):
  def poisoned(s):  # both members diverge at iteration 2
    return _iteration(s, loss=jnp.where(s.labels.count >= 1, jnp.nan, 1.0))
  program = _sweep_program(iteration=poisoned)
  out = rrm_loop.run_program(program, str(tmp_path), progress=None)
  assert out.iteration == ITERATIONS
  assert set(out.diverged) == {0, 1}
  assert out.diverged[0].startswith("iteration 2: non-finite ppo/total_loss")


def test_stop_then_relaunch_completes_with_every_iteration_once(tmp_path):
  asked = iter([None, None, "SIGTERM"])  # before the loop, it 1, it 2
  stop = lambda: next(asked, None)
  reference = rrm_loop.run_program(_sweep_program(), str(tmp_path / "a"),
                                  progress=None).states
  stopped = rrm_loop.run_program(_sweep_program(), str(tmp_path / "c"),
                                 progress=None, stop=stop)
  assert stopped.stopped == "SIGTERM" and stopped.iteration == 2
  resumed = rrm_loop.run_program(_sweep_program(), str(tmp_path / "c"),
                                 progress=None)
  assert resumed.stopped is None and resumed.iteration == ITERATIONS
  assert rrm_checkpoint.state_digest(resumed.states) == (
      rrm_checkpoint.state_digest(reference))
  for i in range(2):
    d = tmp_path / "c" / "members" / f"{i:03d}"
    assert [m["iteration"] for m in _metrics(d)] == list(
        range(1, ITERATIONS + 1))


def test_a_stop_at_the_last_iteration_completes(tmp_path):
  calls = []

  def stop():
    calls.append(1)
    return "SIGTERM" if len(calls) > ITERATIONS else None  # 1st: pre-loop

  out = rrm_loop.run_program(_run_program(), str(tmp_path), progress=None,
                             stop=stop)
  assert out.stopped is None and out.iteration == ITERATIONS


def test_a_resume_with_another_config_is_refused(tmp_path):
  rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  other = _run_program(config=dataclasses.replace(CONFIG, seed=7))
  with pytest.raises(rrm_config.ConfigError, match="seed: saved 0, now 7"):
    rrm_loop.run_program(other, str(tmp_path), progress=None)
  # Resumable fields may change: more iterations continue the run.
  more = _run_program(config=dataclasses.replace(
      CONFIG, num_iterations=ITERATIONS + 2))
  out = rrm_loop.run_program(more, str(tmp_path), progress=None)
  assert out.iteration == ITERATIONS + 2
  assert [m["iteration"] for m in _metrics(tmp_path)] == list(
      range(1, ITERATIONS + 3))


def test_progress_reports_compile_time_apart_and_rates(tmp_path):
  lines = []
  out = rrm_loop.run_program(_run_program(), str(tmp_path),
                             progress=lines.append)
  assert lines[0].startswith("init (compile + 300 initial labels)")
  assert "first iteration (incl. compile)" in lines[1]
  assert "steps/s" in lines[-1] and "ETA" in lines[-1]
  rows = out.histories[0]
  assert np.isnan(rows[0]["time/steps_per_s"]) and rows[-1][
      "time/steps_per_s"] > 0
