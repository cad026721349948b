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
import tempfile

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
from rrm import workdir as rrm_workdir

ITERATIONS = 4


@flax.struct.dataclass
class FakeState:
  labels: feedback.LabelDataset
  teacher: oracle.TeacherParams
  helpers: rrm_state.HelperState
  iteration: jax.Array
  safety: None = None  # no unacceptable flags (rrm.flags)
  ratings: None = None  # no ratings (rrm.ratings)


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


# -- faults (issue: a run interrupted anywhere continues) -------------------


class Killed(BaseException):
  """Stands in for kill -9: nothing of the loop's error handling catches it
  (only `finally` blocks run, as they would not after a real kill)."""


def _init_with_labels():
  state = _init()
  return state.replace(labels=_add(state.labels, -1, 0))  # initial labels


def _killed_in_first_iteration(state):
  raise Killed()


def test_a_kill_before_the_first_iteration_keeps_the_initial_labels(tmp_path):
  """The initial labels are paid by `init`: the state is saved (and its
  labels exported) before the first iteration, and the same command
  resumes from it instead of refusing the workdir as a foreign run."""
  program = _run_program(iteration=_killed_in_first_iteration)._replace(
      init=_init_with_labels)
  with pytest.raises(Killed):
    rrm_loop.run_program(program, str(tmp_path), progress=None)
  assert rrm_checkpoint.load_labels(str(tmp_path / "labels.npz")).size == 1
  assert rrm_checkpoint.Checkpointer(
      str(tmp_path / "checkpoints")).all_steps() == [0]
  lines = []
  out = rrm_loop.run_program(_run_program()._replace(init=_init_with_labels),
                             str(tmp_path), progress=lines.append)
  assert out.iteration == ITERATIONS and out.stopped is None
  assert any("resumed from" in l and "iteration 0" in l for l in lines)
  assert int(out.states.labels.count) == 1 + ITERATIONS
  assert [m["iteration"] for m in _metrics(tmp_path)] == list(
      range(1, ITERATIONS + 1))


def test_a_workdir_without_a_complete_iteration_is_not_a_foreign_run(
    tmp_path):
  """A kill during init leaves config.json and an empty (or cut) metrics
  file: not a run to protect, the same command starts it."""
  rrm_loop.run_program(_run_program(), str(tmp_path / "ref"), progress=None)
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "metrics.jsonl").write_text('{"iteration": 1, "ppo/')
  out = rrm_loop.run_program(_run_program(), str(tmp_path / "w"),
                             progress=None)
  assert out.iteration == ITERATIONS
  assert [m["iteration"] for m in _metrics(tmp_path / "w")] == list(
      range(1, ITERATIONS + 1))


_HOLD = """
import sys, time
from rrm import workdir
with workdir.lock(sys.argv[1]):
  print("holding", flush=True)
  time.sleep(600)
"""


def test_one_process_per_workdir_and_a_dead_holder_blocks_nothing(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)],
                            cwd=root, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(rrm_workdir.WorkdirBusyError) as e:
      rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
    message = str(e.value)
    assert f"pid {holder.pid} on " in message and "started" in message
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing touched
    with pytest.raises(rrm_workdir.WorkdirBusyError):  # --fresh as well
      rrm_workdir.lock(str(tmp_path)).__enter__()
  finally:
    holder.kill()  # kill -9: the lock file stays, the lock does not
    holder.wait()
  assert (tmp_path / rrm_workdir.LOCK_FILE).exists()
  out = rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  assert out.iteration == ITERATIONS


def _counting(calls):
  def iteration(state):
    calls.append(1)
    return _iteration(state)
  return iteration


def test_a_save_failing_in_the_background_stops_before_more_labels(
    tmp_path, monkeypatch):
  """Checkpoint 2's background write fails (a full disk): the loop learns it
  before iteration 3 pays a label, stops, and says where the labels are."""
  saved, wait = [], rrm_checkpoint.Checkpointer.wait
  save = rrm_checkpoint.Checkpointer.save

  def recording_save(self, step, state, metadata):
    save(self, step, state, metadata)
    saved.append(step)  # scheduled; written in the background

  def failing_wait(self):
    wait(self)
    if saved and saved[-1] == 2:
      raise rrm_checkpoint.CheckpointError(
          "writing a checkpoint failed: [Errno 28] No space left on device")

  monkeypatch.setattr(rrm_checkpoint.Checkpointer, "save", recording_save)
  monkeypatch.setattr(rrm_checkpoint.Checkpointer, "wait", failing_wait)
  calls = []
  with pytest.raises(rrm_workdir.WorkdirError) as e:
    rrm_loop.run_program(_run_program(iteration=_counting(calls)),
                         str(tmp_path), progress=None)
  message = str(e.value)
  assert len(calls) == 2  # iteration 3 never ran
  assert "failed in the background" in message and "No space left" in message
  assert "last complete checkpoint is iteration 0" in message
  assert f"written to {tmp_path / 'labels.npz'}" in message
  assert rrm_checkpoint.load_labels(str(tmp_path / "labels.npz")).size == 2


def test_labels_that_the_workdir_refuses_are_written_elsewhere(
    tmp_path, monkeypatch):
  """The disk under the workdir is full when iteration 2's labels are
  exported: they are written to the temporary directory, the message names
  the file, and no half-written labels file is left in the workdir."""
  workdir, elsewhere = tmp_path / "run", tmp_path / "tmp"
  elsewhere.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
  export = rrm_checkpoint.export_labels
  state = {"full": False}

  def export_on_a_filling_disk(dataset, teacher, path, env_name="",
                               flags=None, ratings=None):
    if path.startswith(str(workdir)) and state["full"]:
      open(path + ".tmp.npz", "wb").close()  # what a full disk leaves
      os.remove(path + ".tmp.npz")
      raise OSError(28, "No space left on device")
    return export(dataset, teacher, path, env_name, flags, ratings)

  def iteration(s):
    state["full"] = True  # from iteration 1 on
    return _iteration(s)

  monkeypatch.setattr(rrm_checkpoint, "export_labels",
                      export_on_a_filling_disk)
  with pytest.raises(rrm_workdir.WorkdirError) as e:
    rrm_loop.run_program(_run_program(iteration=iteration), str(workdir),
                         progress=None)
  message = str(e.value)
  assert "failed at iteration 2" in message and "No space left" in message
  rescued = [p for p in message.split("written to ")[1].split(", ")]
  assert rescued[0].startswith(str(elsewhere)) and rescued[0].endswith(
      "labels.npz")
  assert rrm_checkpoint.load_labels(rescued[0]).size == 2
  assert not [n for n in os.listdir(workdir) if ".tmp" in n]


def test_labels_of_a_run_killed_before_its_first_checkpoint_are_kept(
    tmp_path):
  """Killed while its first checkpoint was being written: the labels it
  exported first are set aside when the relaunch starts afresh, not
  overwritten."""
  program = _run_program(iteration=_killed_in_first_iteration)._replace(
      init=_init_with_labels)
  with pytest.raises(Killed):
    rrm_loop.run_program(program, str(tmp_path), progress=None)
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / "checkpoints")  # as if the save never finished
  rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  kept = sorted(tmp_path.glob("labels.after_0_*.npz"))
  assert [p.name.split(".")[-2] if p.name.count(".") > 2 else "" for p in
          kept].count("") == 1  # the root's; the helpers' beside it
  root = [p for p in kept if p.name.count(".") == 2][0]
  assert rrm_checkpoint.load_labels(str(root)).size == 1
  assert rrm_checkpoint.load_labels(str(tmp_path / "labels.npz")).size == (
      ITERATIONS)


def _hacking_iteration(state):
  """Learned episode return rising from iteration 3 on, true one falling;
  unsafe events in iterations 3 and 6 (3 and 6 of them)."""
  state, metrics = _iteration(state)
  it = state.iteration.astype(jnp.float32)
  late = jnp.maximum(it - 2.0, 0.0)
  return state, {**metrics, "rollout/learned_episode_return": 10.0 * late,
                 "rollout/true_episode_return": 5.0 - 2.0 * late,
                 "safety/unsafe_events": jnp.where(
                     state.iteration % 3 == 0, it, 0.0)}


def _hacking_config():
  return dataclasses.replace(
      CONFIG, num_iterations=7,
      report=dataclasses.replace(CONFIG.report, hacking_window=4,
                                 hacking_threshold=0.6))


def test_report_flags_the_iterations_where_the_learned_return_is_hacked(
    tmp_path):
  program = _run_program(config=_hacking_config(),
                         iteration=_hacking_iteration)
  rrm_loop.run_program(program, str(tmp_path / "a"), progress=None)
  got = json.loads((tmp_path / "a" / "report.json").read_text())[
      "reward_hacking"]
  # Windows of 4 ending at iterations 4..7: learned 0,0,10,20 | 0,10,20,30
  # ...; tau of (0, 0, 10, 20) is 5/6 >= 0.6 and the true one -5/6: every
  # window from iteration 4 on flags.
  assert got["flagged_iterations"] == [4, 5, 6, 7] and got["first_flagged"] == 4
  assert got["learned_trend"] == 1.0 and got["true_trend"] == -1.0
  assert "off" not in got
  # The same decisions in metrics.jsonl, one iteration at a time.
  rows = _metrics(tmp_path / "a")
  assert [m.get("hacking/flag") for m in rows] == [None] * 3 + [1.0] * 4
  assert rows[3]["hacking/learned_trend"] == pytest.approx(5 / 6)
  assert [m["safety/unsafe_events_total"] for m in rows] == [
      0, 0, 3, 3, 3, 9, 9]
  # Stopped after iteration 4 and resumed: the detector's window and the
  # cumulative unsafe events hold the iterations written before the stop,
  # and every row is as uninterrupted.
  asked = iter([None, None, None, None, "SIGTERM"])
  rrm_loop.run_program(program, str(tmp_path / "b"), progress=None,
                       stop=lambda: next(asked, None))
  rrm_loop.run_program(program, str(tmp_path / "b"), progress=None)
  strip = lambda ms: [{k: v for k, v in m.items()
                       if not k.startswith("time/")} for m in ms]
  assert strip(_metrics(tmp_path / "b")) == strip(rows)


def test_report_says_why_the_detector_is_off(tmp_path):
  rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  report = json.loads((tmp_path / "report.json").read_text())
  got = report["reward_hacking"]
  assert got["flagged_iterations"] == [] and "off" in got, got
  assert report["reward_result_gap"] == {} and report["final_aspects"] == {}


def test_report_gives_the_reward_result_gap_per_component(tmp_path):
  config = dataclasses.replace(CONFIG, report=dataclasses.replace(
      CONFIG.report, baseline_aspects=(("reward_goal", 8.0),)))
  program = _run_program(config=config)
  program = program._replace(evaluate=lambda s, it: {
      "eval/true_return": jnp.float32(it),
      "eval/reward_goal": jnp.float32(2.0 * it)})
  rrm_loop.run_program(program, str(tmp_path), progress=None)
  report = json.loads((tmp_path / "report.json").read_text())
  # The last evaluation is at iteration 4: reward_goal 8 of the baseline's 8.
  assert report["reward_result_gap"] == {
      "reward_goal": {"final": 8.0, "baseline": 8.0, "share": 1.0}}
  assert report["final_aspects"] == {"reward_goal": 8.0}


def test_every_run_writes_a_certificate_with_real_figures(tmp_path):
  """report.md with the report's numbers, provenance and PNG figures (the
  reward-result gap's too, with baseline aspects); a sweep member's too."""
  config = dataclasses.replace(_hacking_config(), report=dataclasses.replace(
      _hacking_config().report, baseline_aspects=(("reward_goal", 8.0),)))
  program = _run_program(config=config, iteration=_hacking_iteration)
  program = program._replace(evaluate=lambda s, it: {
      "eval/true_return": jnp.float32(it),
      "eval/reward_goal": jnp.float32(2.0 * it)})
  rrm_loop.run_program(program, str(tmp_path / "run"), progress=None)
  md = (tmp_path / "run" / "report.md").read_text()
  for fragment in ("# Run certificate", "| labels_spent |",
                   "| reward_hacking.flagged_iterations | `[4, 5, 6, 7]` |",
                   "| reward_result_gap.reward_goal.share | 1.75 |", "| jax | ",
                   "config SHA-256", "state SHA-256",
                   "![certificate_returns.png](certificate_returns.png)",
                   "![certificate_gap.png](certificate_gap.png)",
                   "| unacceptable_outcomes.total | 9 |",
                   "![certificate_unsafe.png](certificate_unsafe.png)"):
    assert fragment in md, (fragment, md)
  for name in ("certificate_returns.png", "certificate_feedback.png",
               "certificate_gap.png", "certificate_unsafe.png"):
    data = (tmp_path / "run" / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
  rrm_loop.run_program(_sweep_program(), str(tmp_path / "sweep"),
                       progress=None)
  member = tmp_path / "sweep" / "members" / "001"
  assert (member / "report.md").exists()
  assert (member / "certificate_feedback.png").read_bytes()[:4] == b"\x89PNG"
  assert not (member / "certificate_gap.png").exists()  # no baseline aspects


def test_a_certificate_that_cannot_be_drawn_is_a_warning(tmp_path,
                                                         monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError("no fonts")

  monkeypatch.setattr(rrm_loop.certificate, "write", broken)
  out = rrm_loop.run_program(_run_program(), str(tmp_path), progress=None)
  assert out.iteration == ITERATIONS
  assert (tmp_path / "report.json").exists()
  assert not (tmp_path / "report.md").exists()
  config = dataclasses.replace(CONFIG, report=dataclasses.replace(
      CONFIG.report, certificate=False))
  monkeypatch.undo()
  rrm_loop.run_program(_run_program(config=config), str(tmp_path / "off"),
                       progress=None)
  assert not (tmp_path / "off" / "report.md").exists()
