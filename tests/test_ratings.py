"""Scalar ratings of single segments (rrm/ratings.py): the teacher, the
ordinal loss, the joint update, one budget with the other kinds, the labels
file and the checkpoint."""

import dataclasses
import functools
import math
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_compile
from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import checkpoint as rrm_checkpoint
from rrm import config as rrm_config
from rrm import config_parse
from rrm import feedback as rrm_feedback
from rrm import oracle
from rrm import ratings as rrm_ratings
from rrm import reward as rrm_reward
from rrm import segments as rrm_segments
from rrm import state as rrm_state
from rrm import train as rrm_train
from rrm import workdir as rrm_workdir

# One worker builds the module's compiled `mixed` run.
pytestmark = pytest.mark.xdist_group("ratings_mixed")


def _segments(obs, true_reward):
  obs = jnp.asarray(obs, jnp.float32)
  return rrm_segments.Segments(
      observation=obs, action=jnp.zeros(obs.shape[:-1] + (1,)),
      next_observation=obs, true_reward=jnp.asarray(true_reward, jnp.float32))


def _pool(returns, valid):
  """A pool of 1-step segments whose true return is `returns` and whose
  observation is the slot's index."""
  n = len(returns)
  segs = _segments(np.arange(n, dtype=np.float32)[:, None, None]
                   * np.ones((n, 1, 2)), np.asarray(returns)[:, None])
  return rrm_segments.SegmentPool(segments=segs, valid=jnp.asarray(valid),
                                  cursor=jnp.int32(0),
                                  aspects=jnp.zeros((n, 1, 0)))


def test_the_ordinal_loss_and_expected_rating_by_hand():
  """K = 3, thresholds (0, 1), slope 1, predicted return 0.5: the logits
  are (0.5, -0.5). Rating 2 says "above 1, not above 2": both terms are
  log(1 + e^-0.5); rating 3 says above both; rating 1 above neither. The
  expected rating is 1 + sigmoid(0.5) + sigmoid(-0.5) = 2."""
  theta, log_a = jnp.asarray([0.0, 1.0]), jnp.float32(0.0)
  r = jnp.full((3,), 0.5)
  loss = np.asarray(rrm_ratings.ordinal_loss(r, jnp.asarray([2, 3, 1]),
                                             theta, log_a))
  lo, hi = math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.5))
  np.testing.assert_allclose(loss, [lo, (lo + hi) / 2, (hi + lo) / 2],
                             rtol=1e-6)
  np.testing.assert_allclose(
      rrm_ratings.expected_rating(jnp.float32(0.5), theta, log_a), 2.0,
      rtol=1e-6)
  # The slope scales the return: a = 2 makes the logits (1, 0).
  np.testing.assert_allclose(
      rrm_ratings.ordinal_loss(jnp.float32(0.5), jnp.int32(1), theta,
                               jnp.float32(math.log(2.0))),
      (math.log1p(math.exp(1.0)) + math.log(2.0)) / 2, rtol=1e-6)


def test_the_teacher_maps_returns_onto_its_own_scale():
  """Anchors (0, 9) on 1..10: R = lo is 1, R = hi is 10, in between by
  rounding, outside clipped; noise moves ratings, the scale's ends hold."""
  anchors = jnp.asarray([0.0, 9.0])
  r = jnp.asarray([0.0, 9.0, 4.4, 4.6, -3.0, 20.0])
  out = rrm_ratings.teacher_rating(r, anchors, 10, 0.0, jax.random.key(0))
  np.testing.assert_array_equal(out, [1, 10, 5, 6, 1, 10])
  assert out.dtype == jnp.int32
  noisy = rrm_ratings.teacher_rating(jnp.full((500,), 4.5), anchors, 10, 1.0,
                                     jax.random.key(1))
  assert 1 <= int(noisy.min()) and int(noisy.max()) <= 10
  assert len(np.unique(noisy)) >= 4
  assert abs(float(jnp.mean(noisy)) - 5.5) < 0.2


def test_the_teachers_anchors_come_from_the_valid_pool():
  """Returns 1, 5, 3 valid and 100 not: lo = 1, hi = 1 + headroom x 4."""
  pool = _pool([1.0, 5.0, 3.0, 100.0], [True, True, True, False])
  np.testing.assert_allclose(rrm_ratings.teacher_anchors(pool, 2.0),
                             [1.0, 9.0])


def test_a_rating_round_rates_distinct_valid_pool_segments():
  """Six slots, two invalid; four shown, three asked: three distinct valid
  segments stored after the one already there, each rated from its hidden
  return, stamped with the iteration; the capacity holds."""
  pool = _pool([0.0, 9.0, 3.0, 6.0, 1.0, 2.0],
               [True, True, False, True, True, False])
  ratings = rrm_ratings.init_ratings(5, 1, 2, 1)
  ratings = ratings.replace(count=jnp.int32(1),
                            rating=ratings.rating.at[0].set(7))
  anchors = jnp.asarray([0.0, 9.0])
  out = rrm_ratings.rating_round(ratings, pool, anchors, 4, jnp.int32(3), 10,
                                 0.0, jnp.int32(5), jax.random.key(0))
  assert int(out.count) == 4 and int(out.rating[0]) == 7
  slots = np.asarray(out.segments.observation[1:4, 0, 0]).astype(int)
  assert len(set(slots)) == 3 and set(slots) <= {0, 1, 3, 4}
  returns = np.asarray([0.0, 9.0, 3.0, 6.0, 1.0, 2.0])[slots]
  np.testing.assert_array_equal(out.rating[1:4], np.round(1 + returns))
  np.testing.assert_array_equal(out.iteration[1:4], 5)
  assert int(out.iteration[4]) == -1
  full = rrm_ratings.rating_round(out, pool, anchors, 4, jnp.int32(4), 10,
                                  0.0, jnp.int32(6), jax.random.key(1))
  assert int(full.count) == 5


def test_the_disagreement_selector_rates_what_the_members_disagree_on():
  """Scores (the members' spread of predicted returns) pick the top valid
  slots: slot 2 scores highest but is invalid, so 4 and 1 are rated."""
  pool = _pool([0.0, 9.0, 3.0, 6.0, 1.0, 2.0],
               [True, True, False, True, True, False])
  ratings = rrm_ratings.init_ratings(4, 1, 2, 1)
  scores = jnp.asarray([0.1, 0.5, 9.0, 0.2, 0.8, 7.0])
  out = rrm_ratings.rating_round(ratings, pool, jnp.asarray([0.0, 9.0]), 2,
                                 jnp.int32(2), 10, 0.0, jnp.int32(0),
                                 jax.random.key(0), scores)
  np.testing.assert_array_equal(out.segments.observation[:2, 0, 0], [4, 1])
  returns = jnp.stack([jnp.zeros(6), scores])  # [M = 2, P]: std = scores / 2
  cd = _ratings_cd(ratings=8, selector="disagreement")
  config = config_parse.from_config_dict(cd)
  model = rrm_reward.make_reward_model("obs", (4,), 2, 1)
  bound = rrm_ratings.make_ratings(config.ratings, model,
                                   rrm_reward.make_optimizer(1e-3, 0.0),
                                   config.reward)
  state = rrm_ratings.RatingState(params=None, opt_state=None,
                                  anchors=jnp.asarray([0.0, 9.0]),
                                  ratings=ratings)
  again = bound.round(state, pool, 2, jnp.int32(2), jnp.int32(0),
                      jax.random.key(0), returns)
  np.testing.assert_array_equal(again.ratings.segments.observation[:2, 0, 0],
                                [4, 1])


def test_ratings_are_due_at_label_rounds_until_spent():
  ratings = rrm_ratings.init_ratings(10, 1, 2, 1)
  due = lambda i, n: int(rrm_ratings.ratings_due(
      jnp.int32(i), ratings.replace(count=jnp.int32(n)), 4, 2))
  assert [due(0, 0), due(1, 0), due(2, 4), due(4, 8), due(6, 10)] == [
      4, 0, 4, 2, 0]


_ORDER_CONFIG = rrm_config.RatingsConfig(
    ratings=256, rating_cost=0.5, initial=0, per_round=0, levels=10,
    noise=0.3, headroom=1.0, weight=1.0, learning_rate=3e-2, batch_size=64)


def _fit_ratings(anchors, key, n=256):
  """A reward model fitted to ratings alone of 3-step segments whose hidden
  per-step reward is the observation's first coordinate; returns Spearman's
  rho of its predicted against the true return on fresh segments. One
  compiled update serves every call (same shapes)."""
  config = _ORDER_CONFIG
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(n, 3, 2)).astype(np.float32)
  segs = _segments(obs, obs[..., 0])
  model, update = _order_update()
  reward = rrm_reward.init_reward_state(
      model, rrm_reward.make_optimizer(3e-3, 0.0), jax.random.key(0), 2)
  reward = reward.replace(input_normalizer=rrm_reward.fit_input_normalizer(
      model, segs, jnp.ones(n, bool)))
  rated = rrm_ratings.teacher_rating(jnp.sum(segs.true_reward, -1),
                                     jnp.asarray(anchors), config.levels,
                                     config.noise, key)
  params = rrm_ratings.init_scale_params(2, config.levels)
  optimizer = rrm_ratings.make_optimizer(config)
  state = rrm_ratings.RatingState(
      params=params, opt_state=jax.vmap(optimizer.init)(params),
      anchors=jnp.asarray(anchors),
      ratings=rrm_ratings.RatingDataset(
          segments=segs, rating=rated, iteration=jnp.zeros(n, jnp.int32),
          count=jnp.int32(n)))
  labels = rrm_feedback.init_labels(1, 3, 2, 1)  # no preference at all
  reward, state, m = update(reward, labels, state, key)
  assert np.isnan(m["reward/loss"]) and np.isfinite(m["ratings/loss"])
  test = rng.normal(size=(200, 3, 2)).astype(np.float32)
  predicted = jnp.mean(rrm_reward.member_returns(
      model, reward.params, reward.input_normalizer,
      _segments(test, test[..., 0])), axis=0)
  return float(rrm_ratings.rank_correlation(
      predicted, jnp.asarray(test[..., 0].sum(-1)), jnp.ones(200, bool)))


@functools.lru_cache(maxsize=None)
def _order_update():
  model = rrm_reward.make_reward_model("obs", (32,), 2, 1)
  return model, jax.jit(rrm_ratings.make_joint_update(
      model, rrm_reward.make_optimizer(3e-3, 0.0), _ORDER_CONFIG, 32, 400, 0))


def test_ratings_on_a_scale_the_learner_does_not_know_recover_the_order():
  """Two teachers, one generous (the returns' range spread over 1..10) and
  one that crowds every segment into 4..6 of its scale: the learner, never
  told either scale, orders unseen segments by their hidden return."""
  with fast_compile():
    generous = _fit_ratings([-3.0, 3.0], jax.random.key(1))
    crowded = _fit_ratings([-20.0, 22.0], jax.random.key(2))
  # Measured: 0.9996 and 0.994.
  assert generous > 0.95, generous
  assert crowded > 0.95, crowded


def test_the_joint_update_does_nothing_without_feedback():
  model = rrm_reward.make_reward_model("obs", (8,), 2, 1)
  opt = rrm_reward.make_optimizer(1e-2, 0.0)
  reward = rrm_reward.init_reward_state(model, opt, jax.random.key(0), 2)
  config = rrm_config.RatingsConfig(
      ratings=4, rating_cost=0.5, initial=0, per_round=0, levels=5,
      noise=0.0, headroom=1.0, weight=1.0, learning_rate=1e-2, batch_size=4)
  params = rrm_ratings.init_scale_params(2, 5)
  state = rrm_ratings.RatingState(
      params=params,
      opt_state=jax.vmap(rrm_ratings.make_optimizer(config).init)(params),
      anchors=jnp.zeros(2), ratings=rrm_ratings.init_ratings(4, 3, 2, 1))
  update = rrm_ratings.make_joint_update(model, opt, config, 4, 3, 0)
  new_reward, new_state, _ = update(reward, rrm_feedback.init_labels(
      2, 3, 2, 1), state, jax.random.key(1))
  assert rrm_checkpoint.state_digest((new_reward, new_state)) == (
      rrm_checkpoint.state_digest((reward, state)))


def test_rank_correlation():
  a = jnp.asarray([1.0, 2.0, 3.0, 4.0, 99.0])
  m = jnp.asarray([True, True, True, True, False])
  np.testing.assert_allclose(rrm_ratings.rank_correlation(a, a, m), 1.0)
  np.testing.assert_allclose(rrm_ratings.rank_correlation(a, -a, m), -1.0)
  assert np.isnan(rrm_ratings.rank_correlation(a, a, m & (a < 2)))


def _ratings_cd(base="point_hazard", **ratings):
  cd = (point_hazard.get_config("smoke") if base == "point_hazard"
        else inverted_pendulum.get_config("smoke"))
  cd.recursive.user = "none"
  for k, v in ratings.items():
    cd.ratings[k] = v
  return cd


def test_ratings_cost_budget_units():
  cd = _ratings_cd(ratings=40, rating_cost=0.5, initial=8, per_round=8)
  config = config_parse.from_config_dict(cd)
  assert config.ratings.budget_units == 20
  assert config.preference_budget == cd.feedback.budget - 20
  assert rrm_train.make_plan(config).root.budget == config.preference_budget
  cd.safety.flags, cd.safety.flags_per_round = 16, 8
  both = config_parse.from_config_dict(cd)
  assert both.preference_budget == cd.feedback.budget - 20 - 8
  assert config_parse.from_config_dict(_ratings_cd()).ratings is None


@pytest.mark.parametrize("change, field, words", [
    ({"ratings": 8, "rating_cost": 0.0}, "ratings.rating_cost", "positive"),
    ({"ratings": 8, "levels": 1}, "ratings.levels", "at least 2"),
    ({"ratings": 8, "initial": 9}, "ratings.initial",
     "more than the run's ratings.ratings=8"),
    ({"ratings": 8, "per_round": 300}, "ratings.per_round",
     "feedback.pool_size=256"),
    ({"ratings": 4000}, "ratings.ratings", "more than the"),
    ({"ratings": 8, "noise": -1.0}, "ratings.noise", ""),
    ({"ratings": -2}, "ratings.ratings", ""),
    ({"ratings": 8, "selector": "entropy"}, "ratings.selector",
     "'uniform', 'disagreement'"),
])
def test_bad_ratings_configs_are_refused_naming_the_field(change, field,
                                                          words):
  with pytest.raises(rrm_config.ConfigError) as e:
    config_parse.from_config_dict(_ratings_cd(**change))
  assert f"config.{field}" in str(e.value) and words in str(e.value)


def test_ratings_need_a_learned_reward_ppo_a_plain_run_and_a_first_fit():
  for change, field, words in [
      ({"reward.source": "true"}, "ratings.ratings", "reward.source='true'"),
      ({"rl.algorithm": "sac"}, "ratings.ratings", "rl.algorithm='ppo' only"),
      ({"recursive.user": "limited"}, "ratings.ratings", "plain run's user"),
      ({"feedback.initial_labels": 0}, "feedback.initial_labels",
       "ratings.initial=0 too")]:
    cd = (inverted_pendulum.get_config("sac_smoke") if "rl.algorithm" in change
          else point_hazard.get_config("smoke"))
    if "recursive.user" not in change:
      cd.recursive.user = "none"
    cd.ratings.ratings, cd.ratings.initial = 8, 0
    for k, v in change.items():
      section, name = k.split(".")
      cd[section][name] = v
    with pytest.raises(rrm_config.ConfigError) as e:
      config_parse.from_config_dict(cd)
    assert f"config.{field}" in str(e.value) and words in str(e.value)
  # Without ratings, a run with no initial labels is refused as well.
  cd = _ratings_cd()
  cd.feedback.initial_labels = 0
  with pytest.raises(rrm_config.ConfigError, match="initial_labels=0"):
    config_parse.from_config_dict(cd)
  # Ratings alone: no preference budget, the initial ratings fit first.
  cd = _ratings_cd(ratings=40, initial=16, per_round=8)
  cd.feedback.initial_labels, cd.feedback.budget = 0, 20
  assert config_parse.from_config_dict(cd).preference_budget == 0


def _rating_state(n, capacity=6, length=3, obs=2, act=1, levels=7):
  params = rrm_ratings.init_scale_params(2, levels)
  ratings = rrm_ratings.init_ratings(capacity, length, obs, act)
  ratings = ratings.replace(
      rating=ratings.rating.at[:n].set(jnp.arange(n) % levels + 1),
      iteration=ratings.iteration.at[:n].set(4), count=jnp.int32(n))
  return rrm_ratings.RatingState(params=params, opt_state=None,
                                 anchors=jnp.asarray([1.0, 5.0]),
                                 ratings=ratings)


def test_ratings_round_trip_labels_npz_and_v2_files_still_load(tmp_path):
  labels = rrm_feedback.init_labels(3, 3, 2, 1)
  labels = labels.replace(count=jnp.int32(3), spent=jnp.int32(3),
                          label=jnp.ones(3))
  path = str(tmp_path / "labels.npz")
  rrm_checkpoint.export_labels(labels, oracle.make_teacher(), path,
                               "point_hazard", None, _rating_state(5))
  lf = rrm_checkpoint.load_labels(path)
  assert lf.size == 3 and lf.flags is None and lf.ratings.size == 5
  np.testing.assert_array_equal(lf.ratings.rating, [1, 2, 3, 4, 5])
  np.testing.assert_array_equal(lf.ratings.iteration, 4)
  assert lf.ratings.levels == 7 and lf.ratings.segments.action.shape == (
      5, 3, 1)
  np.testing.assert_allclose(lf.ratings.anchors, [1.0, 5.0])
  with np.load(path) as data:
    assert str(data["format"]) == "rrm.labels.v3"
    v2 = {k: data[k] for k in data.files if not k.startswith("rating")}
  v2["format"] = np.asarray("rrm.labels.v2")
  np.savez(str(tmp_path / "v2.npz"), **v2)
  old = rrm_checkpoint.load_labels(str(tmp_path / "v2.npz"))
  assert old.size == 3 and old.ratings is None
  for change, words in [({"rating": np.asarray([1, 2, 3, 4, 8])},
                         "rating must lie in 1..rating_levels=7"),
                        ({"rating_action": np.zeros((5, 2, 1))},
                         "rating_action has shape"),
                        ({"rating_levels": None}, "lacks rating_levels")]:
    bad = dict(np.load(path))
    for k, v in change.items():
      if v is None:
        del bad[k]
      else:
        bad[k] = v
    np.savez(str(tmp_path / "bad.npz"), **bad)
    with pytest.raises(rrm_checkpoint.LabelsFileError, match=words):
      rrm_checkpoint.load_labels(str(tmp_path / "bad.npz"))


def test_a_state_with_flags_and_no_ratings_keeps_the_flags_layout():
  """TrainState.ratings (added after .safety) is left out of the layout
  when None: a state with flags has the layout it had before ratings
  existed, so checkpoints of runs with flags restore."""
  @flax.struct.dataclass
  class TrainState:  # the class as it was before `ratings`
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
    safety: object = None

  leaves = [jnp.zeros((i + 1,)) for i in range(10)]
  flags = {"flags": jnp.zeros((3,))}
  now = rrm_state.TrainState(*leaves, safety=flags)
  assert rrm_checkpoint.state_layout(now) == rrm_checkpoint.state_layout(
      TrainState(*leaves, safety=flags))
  assert rrm_checkpoint.state_layout(now) != rrm_checkpoint.state_layout(
      now.replace(ratings={"r": jnp.zeros(2)}))
  # On disk, the None field is left out of the tree Orbax writes.
  on_disk = rrm_checkpoint._on_disk(now)  # pylint: disable=protected-access
  assert set(on_disk) == {f.name for f in dataclasses.fields(TrainState)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
  """point_hazard smoke with all three kinds in one budget of 100 units:
  16 flags (8 units), 24 ratings (12 units), 80 preferences (40 initial,
  two rounds of 20); two iterations spend it all."""
  cd = _ratings_cd(ratings=24, rating_cost=0.5, initial=8, per_round=8)
  cd.feedback.budget, cd.feedback.initial_labels = 100, 40
  cd.feedback.labels_per_round = 20
  cd.safety.flags, cd.safety.flags_per_round = 16, 8
  config = config_parse.from_config_dict(cd)
  with fast_compile():
    t = rrm_train.make_train(config)
    state = t.init(jax.random.key(0))
    first = jax.device_get(state)
    metrics = []
    for _ in range(3):
      state, m = t.iteration(state)
      metrics.append(jax.device_get(m))
  return config, t, first, jax.device_get(state), metrics, (
      tmp_path_factory.mktemp("mixed"))


def test_a_mixed_run_spends_its_budget_exactly_across_kinds(mixed):
  config, _, first, state, metrics, _ = mixed
  assert int(first.ratings.ratings.count) == 8  # the initial ratings
  spent = [float(m["feedback/budget_spent"]) for m in metrics]
  assert spent == [40 + 20 + 0.5 * 8 + 0.5 * 16, 100.0, 100.0]
  assert [int(m["ratings/this_iteration"]) for m in metrics] == [8, 8, 0]
  assert int(state.ratings.ratings.count) == 24
  assert int(state.labels.spent) == config.preference_budget == 80
  assert int(state.safety.flags.count) == 16
  assert [int(m["safety/flags_spent"]) for m in metrics] == [8, 16, 16]
  assert 0 <= float(metrics[-1]["safety/flags_positive"]) <= 16
  assert int(metrics[-1]["safety/flag_errors"]) == 0
  # Every flag is the hidden truth of a segment of the run's rollouts.
  np.testing.assert_array_equal(state.safety.flags.flag,
                                state.safety.flags.truth)
  assert all(np.isfinite(m["ratings/loss"]) for m in metrics[:2])
  assert np.isnan(metrics[2]["ratings/loss"])  # nothing new: no refit
  # Every rating is the teacher's, on its hidden scale, of a pool segment.
  r = state.ratings
  truth = rrm_ratings.teacher_rating(
      jnp.sum(r.ratings.segments.true_reward, -1), r.anchors,
      config.ratings.levels, 0.0, jax.random.key(0))
  assert np.mean(np.abs(np.asarray(truth) - r.ratings.rating)) < 1.0
  assert -1.0 <= float(metrics[1]["ratings/order_on_rated"]) <= 1.0


def test_a_mixed_run_exports_and_restores_every_kind(mixed):
  config, t, _, state, _, tmp = mixed
  rrm_workdir.export_labels(rrm_workdir.labels_view(state), str(tmp), config,
                            t.plan)
  lf = rrm_checkpoint.load_labels(os.path.join(tmp, "labels.npz"))
  assert (lf.size, lf.flags.size, lf.ratings.size) == (80, 16, 24)
  np.testing.assert_array_equal(lf.ratings.rating, state.ratings.ratings.rating)
  assert rrm_workdir.restored_counts(state, t.plan)["labels.npz"] == 120
  ckpt = rrm_checkpoint.Checkpointer(str(tmp / "checkpoints"))
  ckpt.save(3, state, {})
  ckpt.wait()
  _, restored, _ = ckpt.restore_latest(t.init)
  ckpt.close()
  assert rrm_checkpoint.state_digest(restored) == rrm_checkpoint.state_digest(
      state)
  assert int(restored.safety.flags.count) == 16
  assert int(restored.ratings.ratings.count) == 24


def test_a_warm_start_imports_the_files_ratings_and_checks_them(mixed):
  """The mixed run's labels.npz into a run with ratings: its 24 ratings
  first (stamp -2, counted against ratings.ratings), then as many initial
  ratings as the run's leave; a file of another scale or more ratings than
  the run's is refused before anything compiles."""
  config, t, _, state, _, tmp = mixed
  path = os.path.join(tmp, "warm", "labels.npz")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rrm_workdir.export_labels(rrm_workdir.labels_view(state),
                            os.path.dirname(path), config, t.plan)
  cd = _ratings_cd(ratings=28, initial=8, per_round=8)
  cd.feedback.warm_start_labels = path
  cd.feedback.warm_start_extra = True
  for change, words in [({"levels": 5}, "scale of 1..10"),
                        ({"ratings": 20, "initial": 8},
                         "more than config.ratings.ratings=20")]:
    bad = _ratings_cd(**{"ratings": 28, "initial": 8, "per_round": 8,
                         **change})
    bad.feedback.warm_start_labels = path
    bad.feedback.warm_start_extra = True
    with pytest.raises(rrm_config.ConfigError, match=words):
      rrm_train.make_train(config_parse.from_config_dict(bad))
  with fast_compile():
    warm = rrm_train.make_train(config_parse.from_config_dict(cd))
    first = jax.device_get(warm.init(jax.random.key(1)))
  r = first.ratings.ratings
  assert int(r.count) == 28  # 24 imported, then 4 of the 8 initial
  np.testing.assert_array_equal(r.rating[:24], state.ratings.ratings.rating)
  np.testing.assert_array_equal(r.iteration[:24], -2)
  np.testing.assert_array_equal(r.iteration[24:], -1)


@pytest.mark.parametrize("name", ["inverted_pendulum", "point_hazard:smoke"])
def test_the_feedback_kinds_sweep_spends_one_budget_on_one_schedule(name):
  """Preferences, ratings and mixed arms: each parses, spends exactly the
  env's budget (comparisons + 0.5 x ratings) and starts with the same
  units (initial labels + 0.5 x initial ratings); the plot tells the arms
  apart from the members' configs."""
  from experiments import feedback_kinds  # pylint: disable=g-import-not-at-top
  from experiments import plot_feedback_kinds  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  sd = feedback_kinds.get_sweep(name)
  configs = [config_parse.from_config_dict(rrm_sweep.apply_overrides(
      sd.base, dict(m))) for m in sd.members]
  budget, start = set(), set()
  arms = []
  for c in configs:
    rt = c.ratings
    units = rt.budget_units if rt else 0
    budget.add(c.preference_budget + units)
    assert c.preference_budget + units == c.feedback.budget
    start.add(c.feedback.initial_labels + (rt.initial * rt.rating_cost
                                           if rt else 0))
    arms.append(plot_feedback_kinds.arm_of(rrm_config.to_dict(c)))
  assert len(budget) == 1 and len(start) == 1
  assert sorted(set(arms)) == sorted(feedback_kinds.ARMS)
  assert all(arms.count(a) == len(configs) // 3 for a in feedback_kinds.ARMS)
  with pytest.raises(ValueError, match="name an env"):
    feedback_kinds.get_sweep("walker2d")


def test_a_file_of_ratings_alone_trains_a_reward_model_offline():
  """launch.train_reward's library call on a labels file that holds ratings
  and no comparison: every 4th rating held out, the model's predicted
  return correlates with the held-out ratings and the output normaliser is
  fitted on the rated segments."""
  from rrm import labels_file  # pylint: disable=g-import-not-at-top
  from rrm.reward import offline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  obs = rng.normal(size=(128, 3, 2)).astype(np.float32)
  truth = obs[..., 0]
  rating = np.asarray(rrm_ratings.teacher_rating(
      jnp.asarray(truth.sum(-1)), jnp.asarray([-4.0, 4.0]), 10, 0.3,
      jax.random.key(3)))
  segs = rrm_segments.Segments(obs, np.zeros((128, 3, 1), np.float32), obs,
                               truth)
  record = labels_file.RatingRecord(
      segments=segs, rating=rating, iteration=np.zeros(128, np.int32),
      levels=10, anchors=np.asarray([-4.0, 4.0], np.float32))
  empty = jax.tree.map(lambda x: x[:0], segs)
  rc = dataclasses.replace(
      config_parse.from_config_dict(inverted_pendulum.get_config(
          "smoke")).reward, input="obs", hidden_layer_sizes=(32,),
      ensemble_size=2, heldout_every=4)
  with fast_compile():
    _, state, history = offline.train_offline(
        empty, empty, np.zeros((0,), np.float32), rc, num_steps=300,
        eval_every=300, key=jax.random.key(0), ratings=record)
  final = history[-1]
  assert np.isnan(final["reward/loss"]) and np.isfinite(final["ratings/loss"])
  assert final["ratings/heldout_correlation"] > 0.8, final
  assert np.isfinite(float(state.normalizer.std))
  assert float(state.normalizer.std) > 0
