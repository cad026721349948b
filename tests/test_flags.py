"""The unacceptable flag, the safety classifier and its penalty (rrm/flags.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile
from experiments import safety as safety_sweep
from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import config_parse
from rrm import envs as rrm_envs
from rrm import flags as rrm_flags
from rrm import oracle
from rrm import segments as rrm_segments
from rrm import sweep as rrm_sweep
from rrm import train as rrm_train


def _segments(n, length=3, obs=2, act=1, fill=0.0):
  return rrm_segments.Segments(
      observation=jnp.full((n, length, obs), fill),
      action=jnp.zeros((n, length, act)),
      next_observation=jnp.full((n, length, obs), fill),
      true_reward=jnp.zeros((n, length)))


def test_segment_nll_is_noisy_or_over_the_steps():
  """Two steps with logit 0 each: P(step unsafe) = 1/2, so P(segment safe)
  = 1/2 * 1/2 = 1/4 and P(unsafe) = 3/4; a flagged segment costs -log 3/4,
  an unflagged one -log 1/4. One step at logit +inf-ish (20) makes the
  segment certainly unsafe: a flag costs ~0, no flag ~20."""
  z = jnp.asarray([[0.0, 0.0], [0.0, 0.0], [20.0, -20.0], [20.0, -20.0]])
  flag = jnp.asarray([1.0, 0.0, 1.0, 0.0])
  nll = np.asarray(rrm_flags.segment_nll(z, flag))
  np.testing.assert_allclose(nll[:2], [-math.log(0.75), -math.log(0.25)],
                             rtol=1e-6)
  assert nll[2] < 1e-6 and abs(nll[3] - 20.0) < 1e-3


def test_balanced_loss_weighs_the_two_classes_equally():
  """One flagged segment among four: it carries half the loss."""
  z = jnp.zeros((4, 2))
  flag = jnp.asarray([1.0, 0.0, 0.0, 0.0])
  expect = 0.5 * -math.log(0.75) + 0.5 * -math.log(0.25)
  np.testing.assert_allclose(rrm_flags.balanced_loss(z, flag), expect,
                             rtol=1e-6)
  # One class only: the plain mean.
  np.testing.assert_allclose(rrm_flags.balanced_loss(z, jnp.zeros(4)),
                             -math.log(0.25), rtol=1e-6)


def test_a_flag_round_flags_the_segments_with_an_unsafe_step():
  """Six candidate segments, events in segments 1 (step 2) and 4 (steps 0
  and 1); all six shown, four asked: the four stored are flagged exactly
  where they hold an event; a teacher that is always wrong flips them."""
  segs = _segments(6)._replace(observation=jnp.arange(6.0)[:, None, None]
                               * jnp.ones((6, 3, 2)))
  unsafe = jnp.zeros((6, 3)).at[1, 2].set(1.0).at[4, :2].set(1.0)
  flags = rrm_flags.init_flags(5, 3, 2, 1)
  out = rrm_flags.flag_round(flags, segs, unsafe, 6, jnp.int32(4), 0.0,
                             jnp.int32(7), jax.random.PRNGKey(0))
  assert int(out.count) == 4
  shown = np.asarray(out.segments.observation[:4, 0, 0]).astype(int)
  assert len(set(shown)) == 4  # four distinct segments
  np.testing.assert_array_equal(out.flag[:4], np.isin(shown, [1, 4]))
  np.testing.assert_array_equal(out.truth[:4], out.flag[:4])
  np.testing.assert_array_equal(out.iteration[:4], 7)
  assert float(out.flag[4]) == 0.0 and int(out.iteration[4]) == -1
  wrong = rrm_flags.flag_round(flags, segs, unsafe, 6, jnp.int32(4), 1.0,
                               jnp.int32(7), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(wrong.flag[:4], 1.0 - wrong.truth[:4])
  # The capacity (the run's flags) is never exceeded.
  full = rrm_flags.flag_round(out, segs, unsafe, 6, jnp.int32(4), 0.0,
                              jnp.int32(8), jax.random.PRNGKey(1))
  assert int(full.count) == 5


def test_flags_are_due_at_label_rounds_until_spent():
  flags = rrm_flags.init_flags(20, 3, 2, 1)
  due = [int(rrm_flags.flags_due(jnp.int32(i), flags, 8, 2))
         for i in range(4)]
  assert due == [8, 0, 8, 0]
  assert int(rrm_flags.flags_due(jnp.int32(0), flags.replace(
      count=jnp.int32(15)), 8, 2)) == 5


def _fixture_config(**safety):
  return rrm_config.SafetyConfig(
      **{"flags": 64, "flag_cost": 0.5, "flags_per_round": 16,
         "mistake": 0.0, "penalty": 2.0, "hidden_layer_sizes": (16,),
         "learning_rate": 1e-2, "batch_size": 32, "num_steps": 100,
         **safety})


def test_the_classifier_learns_which_step_made_a_segment_unsafe():
  """Segments of 3 steps whose observations are 0 except, in flagged
  ones, one step at 2.0 (the unsafe step). Fitted to the segment flags
  alone, the classifier rates that step unsafe and the others safe; the
  penalty is lambda times its probability."""
  config = _fixture_config()
  safety = rrm_flags.make_safety(config, 2, 1, 3, 1)
  rng = np.random.default_rng(0)
  n = 64
  obs = np.zeros((n, 3, 2), np.float32)
  flagged = np.arange(n) % 4 == 0
  where = rng.integers(0, 3, n)
  obs[flagged, where[flagged]] = 2.0
  obs += rng.normal(0, 0.05, obs.shape).astype(np.float32)
  segs = _segments(n)._replace(observation=jnp.asarray(obs),
                               next_observation=jnp.asarray(obs))
  pool = rrm_segments.SegmentPool(segments=segs, valid=jnp.ones(n, bool),
                                  cursor=jnp.int32(0),
                                  aspects=jnp.zeros((n, 3, 0)))
  with fast_compile():
    state = rrm_flags.init_safety_state(safety.classifier, safety.optimizer,
                                        jax.random.PRNGKey(0), n, pool)
    prior = rrm_flags.unsafe_probability(safety.classifier, state, *(
        jnp.zeros((1, 2)), jnp.zeros((1, 1)), jnp.zeros((1, 2))))
    np.testing.assert_allclose(prior, 0.01, atol=0.01)
    state = state.replace(flags=state.flags.replace(
        segments=segs, flag=jnp.asarray(flagged, jnp.float32),
        truth=jnp.asarray(flagged, jnp.float32), count=jnp.int32(n)))
    state, m = jax.jit(safety.update)(state, jax.random.PRNGKey(1))
    step = lambda x: rrm_flags.unsafe_probability(
        safety.classifier, state, jnp.full((1, 2), x), jnp.zeros((1, 1)),
        jnp.full((1, 2), x))[0]
    assert float(step(2.0)) > 0.9 and float(step(0.0)) < 0.1
    assert np.isfinite(m["safety/classifier_loss"])
    reward = rrm_flags.penalised(lambda o, a, n: jnp.ones(o.shape[:-1]),
                                 safety.classifier, state, 2.0)
    np.testing.assert_allclose(
        reward(jnp.full((1, 2), 2.0), jnp.zeros((1, 1)), jnp.full((1, 2), 2.0)),
        1.0 - 2.0 * step(2.0), rtol=1e-5)


def _point_hazard(**safety):
  cd = point_hazard.get_config("smoke")
  cd.recursive.user = "none"
  for k, v in safety.items():
    cd.safety[k] = v
  return cd


def test_flags_cost_budget_and_the_config_says_so():
  cd = _point_hazard(flags=64, flag_cost=0.5, penalty=1.0)
  config = config_parse.from_config_dict(cd)
  assert config.safety.budget_units == 32
  assert config.preference_budget == cd.feedback.budget - 32
  assert rrm_train.make_plan(config).root.budget == config.preference_budget
  off = config_parse.from_config_dict(_point_hazard())
  assert off.safety is None and off.preference_budget == cd.feedback.budget
  odd = config_parse.from_config_dict(_point_hazard(flags=3, flag_cost=0.5,
                                                     flags_per_round=3))
  assert odd.safety.budget_units == 2  # rounded up: the user's effort


@pytest.mark.parametrize("change, field, words", [
    ({"penalty": 1.0}, "safety.penalty", "safety.flags=0 budgets no flags"),
    ({"flags": 4000}, "safety.flags", "more than the"),
    ({"flags": 8, "flags_per_round": 16}, "safety.flags_per_round",
     "more than the run's safety.flags=8"),
    ({"flags": 8, "flag_cost": 0.0}, "safety.flag_cost", "positive"),
    ({"flags": 8, "mistake": 1.5}, "safety.mistake", ""),
    ({"flags": 500, "flags_per_round": 500}, "safety.flags_per_round",
     "segments one iteration's rollout holds"),
])
def test_bad_safety_configs_are_refused_naming_the_field(change, field,
                                                         words):
  with pytest.raises(rrm_config.ConfigError) as e:
    config_parse.from_config_dict(_point_hazard(**change))
  assert f"config.{field}" in str(e.value) and words in str(e.value)


def test_flags_need_a_learned_reward_ppo_and_an_unsafe_event():
  for change, words in [({"reward.source": "true"}, "reward.source='true'"),
                        ({"env.unsafe_event": "none"}, "declares nothing"),
                        ({"rl.algorithm": "sac"}, "rl.algorithm='ppo' only")]:
    cd = inverted_pendulum.get_config("sac_smoke" if "rl.algorithm" in change
                                      else "smoke")
    cd.safety.flags = 8
    cd.safety.flags_per_round = 8
    for k, v in change.items():
      section, name = k.split(".")
      cd[section][name] = v
    with pytest.raises(rrm_config.ConfigError) as e:
      config_parse.from_config_dict(cd)
    assert "config.safety.flags" in str(e.value) and words in str(e.value)


def _flag_dataset(n, obs=2, act=1, length=3):
  flags = rrm_flags.init_flags(n + 2, length, obs, act)
  return flags.replace(flag=flags.flag.at[:n].set(jnp.arange(n) % 2),
                       truth=flags.truth.at[:n].set(jnp.arange(n) % 2),
                       iteration=flags.iteration.at[:n].set(3),
                       count=jnp.int32(n))


def _labels(n, obs=2, act=1, length=3):
  from rrm import feedback  # pylint: disable=g-import-not-at-top
  labels = feedback.init_labels(n, length, obs, act)
  return labels.replace(count=jnp.int32(n), spent=jnp.int32(n),
                        label=jnp.ones(n))


def test_flags_are_exported_in_labels_npz_and_v1_files_still_load(tmp_path):
  path = str(tmp_path / "labels.npz")
  rrm_checkpoint.export_labels(_labels(3), oracle.make_teacher(), path,
                               "point_hazard", _flag_dataset(4))
  lf = rrm_checkpoint.load_labels(path)
  assert lf.size == 3 and lf.flags.size == 4
  np.testing.assert_array_equal(lf.flags.flag, [0, 1, 0, 1])
  np.testing.assert_array_equal(lf.flags.iteration, 3)
  assert lf.flags.segments.observation.shape == (4, 3, 2)
  with np.load(path) as data:
    assert str(data["format"]) == "rrm.labels.v3"
    v1 = {k: data[k] for k in data.files if not k.startswith("flag")}
  v1["format"] = np.asarray("rrm.labels.v1")
  old = str(tmp_path / "old.npz")
  np.savez(old, **v1)
  lf = rrm_checkpoint.load_labels(old)
  assert lf.size == 3 and lf.flags is None
  # A file whose flags do not fit is refused naming the field.
  bad = dict(np.load(path))
  bad["flag_observation"] = bad["flag_observation"][:, :2]
  np.savez(str(tmp_path / "bad.npz"), **bad)
  with pytest.raises(rrm_checkpoint.LabelsFileError, match="flag_observation"):
    rrm_checkpoint.load_labels(str(tmp_path / "bad.npz"))


# A run with flags, its budget, export and checkpoint: tests/test_ratings.py
# (`mixed`: flags, ratings and preferences in one compiled run).


def test_a_state_without_flags_keeps_the_layout_written_before_them(
    monkeypatch):
  """TrainState.safety (added later) is left out of the layout when None:
  a plain state's layout is that of the TrainState before the field (the
  same class name and fields up to `helpers`), so its checkpoints restore
  (tests/test_checkpoint.py restores one written at c3b2c9d)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  from rrm import state as rrm_state  # pylint: disable=g-import-not-at-top
  names = [f.name for f in dataclasses.fields(rrm_state.TrainState)]
  assert names[-3:] == ["helpers", "safety", "ratings"]

  @flax.struct.dataclass
  class TrainState:  # the layout's name is the class's
    policy: object
    reward: object
    pool: object
    labels: object
    teacher: object
    hyper: object
    env: object
    episodes: object
    key: object
    iteration: object
    helpers: object = None

  leaves = [jnp.zeros((i + 1,)) for i in range(10)]
  now = rrm_state.TrainState(*leaves)
  layout = rrm_checkpoint.state_layout(now)
  # What the code before the field computed: the structure as it prints.
  monkeypatch.setattr(rrm_checkpoint, "_without_added_none",
                      lambda s, count: s)
  assert layout == rrm_checkpoint.state_layout(TrainState(*leaves))
  monkeypatch.undo()
  assert rrm_checkpoint.state_layout(now.replace(
      safety=jnp.zeros(1))) != rrm_checkpoint.state_layout(now)


def test_the_safety_sweep_pairs_arms_at_the_same_budget():
  sd = safety_sweep.get_sweep("point_hazard:smoke")
  members = [dict(m) for m in sd.members]
  assert {(m["safety.flags"], m["safety.penalty"]) for m in members} == {
      (0, 0.0), (16, safety_sweep.PENALTY)}
  configs = [config_parse.from_config_dict(rrm_sweep.apply_overrides(
      sd.base, m)) for m in members]
  assert {c.feedback.budget for c in configs} == {sd.base.feedback.budget}
  assert all(c.recursive.user == "limited" for c in configs)
  with pytest.raises(ValueError, match="name an env"):
    safety_sweep.get_sweep("walker2d")
  alone = [dict(m) for m in safety_sweep.get_sweep(
      "hopper:penalty=50").members]
  assert {(m["safety.flags"], m["safety.penalty"]) for m in alone} == {
      (safety_sweep.FLAGS["hopper"], 50.0)} and len(alone) == 5


def test_the_report_counts_the_flags_beside_the_unsafe_events():
  from rrm import report as rrm_report  # pylint: disable=g-import-not-at-top
  rows = [{"iteration": i + 1, "env_steps": 100 * (i + 1),
           "safety/unsafe_events": e, "safety/flags_spent": 16 * (i + 1),
           "safety/flags_positive": f, "safety/flag_errors": 0,
           "feedback/budget_spent": 300.0 + 18 * (i + 1)}
          for i, (e, f) in enumerate([(5, 2), (3, 3), (0, 3)])]
  out = rrm_report.unacceptable_outcomes(rows, "hazard_entry")
  assert out["total"] == 8 and out["iterations_with_events"] == 2
  assert out["flags"] == {"spent": 48, "flagged": 3, "teacher_errors": 0,
                          "budget_spent": 354.0}
  plain = rrm_report.unacceptable_outcomes(
      [{k: v for k, v in r.items() if not k.startswith(("safety/f", "feed"))}
       for r in rows], "hazard_entry")
  assert "flags" not in plain


def test_a_warm_start_imports_the_files_flags_and_checks_them(tmp_path):
  """labels.npz of a run with flags warm-starts another: its preferences and
  its flags are imported (flags stamped -2, counted against safety.flags,
  the classifier fitted to them at init); more flags than the run has room
  for are refused before anything compiles."""
  config = config_parse.from_config_dict(_point_hazard(
      flags=32, flags_per_round=16, penalty=2.0))
  envs_ = rrm_envs.make_envs(config.env)
  obs, act = envs_.observation_size, envs_.action_size
  length = config.feedback.segment_length
  path = str(tmp_path / "labels.npz")
  rrm_checkpoint.export_labels(_labels(4, obs, act, length),
                               oracle.make_teacher(), path, "point_hazard",
                               _flag_dataset(6, obs, act, length))
  cd = _point_hazard(flags=32, flags_per_round=16, penalty=2.0)
  cd.feedback.warm_start_labels = path
  warm = config_parse.from_config_dict(cd)
  with fast_compile():
    state = rrm_train.make_train(warm).init(jax.random.key(0))
  assert int(state.safety.flags.count) == 6
  np.testing.assert_array_equal(state.safety.flags.iteration[:6], -2)
  np.testing.assert_array_equal(state.safety.flags.flag[:6], [0, 1] * 3)
  assert int(state.labels.count) >= 4
  small = _point_hazard(flags=4, flags_per_round=4, penalty=2.0)
  small.feedback.warm_start_labels = path
  with pytest.raises(rrm_config.ConfigError, match="config.safety.flags=4"):
    rrm_train.make_train(config_parse.from_config_dict(small))
