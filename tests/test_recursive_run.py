"""Recursive reward modeling in the training loop (rrm/train.py + recursive).

One compiled depth-3 assisted run on point_hazard (rrm's small pure-JAX
task) serves every test that needs a trained state; config refusals need
no compile.
"""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import point_hazard
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import envs as rrm_envs
from rrm import oracle
from rrm import recursive as rec
from rrm import loop as rrm_loop
from rrm import train as rrm_train
from conftest import assert_trees_equal
from conftest import fast_compile

# pytest-xdist: the tests of this module's compiled fixture share a worker.
pytestmark = pytest.mark.xdist_group("recursive_depth3")

ITERATIONS = 12
FRACTIONS = (0.4, 0.3, 0.3)


def _config(**changes):
  cd = point_hazard.get_config("smoke")
  # The hazard on the path: at this size a hazard beside the goal is too
  # rarely visited for its helper to learn it (measured, seeds 0/1/2: hazard
  # helper 1.0/0.80/0.51, root model 0.80/0.51/0.51).
  cd.env.kwargs.update(point_hazard.ON_PATH)
  cd.recursive.tree = point_hazard.TREE_DEPTH3
  cd.recursive.level_fractions = FRACTIONS
  cd.num_iterations = ITERATIONS
  cd.eval_every = ITERATIONS
  cd.checkpoint_every = ITERATIONS
  for k, v in changes.items():
    section = cd
    *path, last = k.split(".")
    for p in path:
      section = section[p]
    section[last] = v
  return cd


def _copy(state):
  """A fresh copy (`iteration` donates its argument)."""
  return jax.tree.map(lambda x: x.copy(), state)


@pytest.fixture(scope="session")  # kept: xdist interleaves modules
def depth3(tmp_path_factory):
  """A depth-3 assisted run: 12 iterations, budget spent, checkpointed.

  Compiled unoptimised (conftest.fast_compile): no other test shares its
  program, and jit keeps the executables for the tests below.
  """
  config = config_parse.from_config_dict(_config())
  train = rrm_train.make_train(config)
  workdir = str(tmp_path_factory.mktemp("recursive"))
  with fast_compile():
    initial = jax.device_get(train.init(jax.random.key(config.seed)))
    out = rrm_loop.run(config, workdir, progress=None, train=train)
  return config, train, workdir, initial, out


def test_point_hazard_reward_is_the_sum_of_its_components():
  env = rrm_envs.PointHazard()
  state = env.reset(jax.random.PRNGKey(0))
  step = jax.jit(env.step)
  key = jax.random.PRNGKey(1)
  hazard = 0
  for _ in range(40):
    key, k = jax.random.split(key)
    # Head for the goal through the hazard, with noise.
    a = np.clip([1.0, 0.0] + 0.5 * np.asarray(jax.random.normal(k, (2,))),
                -1, 1)
    state = step(state, a)
    m = state.metrics
    np.testing.assert_allclose(
        float(state.reward), float(m["reward_goal"] + m["reward_hazard"]
                                   + m["reward_ctrl"]), rtol=1e-6)
    hazard += float(m["reward_hazard"]) < 0
  assert hazard > 0  # the straight line crosses the hazard
  cfg = config_parse.from_config_dict(_config()).env
  assert rrm_envs.reward_components(cfg) == (
      "reward_ctrl", "reward_goal", "reward_hazard")


def test_point_hazard_beside_the_goal_prices_sitting_on_the_goal():
  """The default geometry: the disc covers the goal, not its near side."""
  kwargs = dict(point_hazard.get_config().env.kwargs)
  env = rrm_envs.PointHazard(**kwargs)
  metrics = jax.jit(env._metrics)  # pylint: disable=protected-access
  no_action = np.zeros(2, np.float32)
  at_goal = metrics(np.array([1.0, 0.0], np.float32), no_action)
  at_edge = metrics(np.array([0.75, 0.0], np.float32), no_action)
  on_the_way = metrics(np.array([0.0, 0.0], np.float32), no_action)
  assert float(at_goal["reward_hazard"]) == -kwargs["hazard_cost"]
  assert float(at_edge["reward_hazard"]) == 0.0
  assert float(on_the_way["reward_hazard"]) == 0.0
  # The best place to wait is the edge: its total beats the goal's.
  total = lambda m: float(m["reward_goal"] + m["reward_hazard"])
  assert total(at_edge) > total(at_goal)


def test_point_hazard_refuses_a_bad_geometry_before_compiling():
  with pytest.raises(ValueError, match="hazard_radius=-0.5 must be >= 0"):
    rrm_envs.PointHazard(hazard_radius=-0.5)
  with pytest.raises(ValueError, match=r"hazard_center=\(1.0,\) must be"):
    rrm_envs.PointHazard(hazard_center=(1.0,))
  cd = _config()
  cd.env.kwargs.hazard_cost = float("nan")
  with pytest.raises(ValueError, match="hazard_cost=nan"):
    config_parse.from_config_dict(cd)


def test_depth_3_budget_accounting_is_exact(depth3):
  config, train, _, _, out = depth3
  plan = train.plan
  budgets = rec.node_budgets(plan.tree, config.feedback.budget, FRACTIONS)
  assert sum(budgets.values()) == config.feedback.budget == 600
  state = out["state"]
  assert int(state.labels.spent) == budgets[plan.tree.name] == plan.root.budget
  spent = np.asarray(state.helpers.labels.spent)
  for h, node in enumerate(plan.helpers):
    assert spent[h] == budgets[node.name] == plan.helper_schedules[h].budget
  history = out["metrics"]
  total = [m["oracle/labels"] for m in history]
  assert total[-1] == config.feedback.budget
  assert all(a <= b for a, b in zip(total, total[1:]))
  last = history[-1]
  for d, level in enumerate(rec.levels(plan.tree)):
    assert last[f"recursive/level{d}/labels"] == sum(
        budgets[n.name] for n in level)
  for node in rec.nodes(plan.tree):
    assert last[f"recursive/node/{node.name}/labels"] == budgets[node.name]
  # The challenges' telemetry in every iteration of a point_hazard run.
  epic = [float(m["reward/epic"]) for m in history]
  assert all(0.0 <= e <= 1.0 for e in epic), epic
  assert all(float(m["safety/unsafe_events"]) >= 0 for m in history)


def test_leaf_training_does_not_read_the_roots_labels(depth3):
  _, train, _, initial, _ = depth3
  # Iteration 0 asks both the helpers and the root for labels and fits
  # both. Garbling every root label must change the root's model only.
  garbled = initial.replace(labels=initial.labels.replace(
      label=1.0 - initial.labels.label))
  a, _ = train.iteration(_copy(initial))
  b, _ = train.iteration(_copy(garbled))
  assert int(a.helpers.labels.spent.sum()) > int(
      initial.helpers.labels.spent.sum())
  assert_trees_equal(a.helpers, b.helpers)
  diff = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))),
                      a.reward.params, b.reward.params)
  assert max(jax.tree.leaves(diff)) > 0


def test_recursive_run_learns(depth3):
  """Leaf helpers learn their aspects from the user's labels, the assisted
  user's view orders pool outcomes better than chance (0.5), and the root's
  reward model, trained only on assisted labels, orders them by the hidden
  true reward well above chance.

  Measured on this config, seeds 0/1/2: leaves 0.77-1.0, the user's view
  0.64/0.93/0.91, the root's model 0.81/0.90/0.73. Not asserted: the inner
  node's helper ("safety" = hazard + effort) stays near chance (0.40-0.54)
  with this config's 90 labels for its level; with the default config's
  4000 labels it reaches 0.86 by iteration 10.
  """
  _, train, _, _, out = depth3
  last = out["metrics"][-1]
  for name in ("goal", "effort"):
    acc = last[f"recursive/node/{name}/accuracy"]
    assert acc > 0.7, (name, acc)
  assert last["recursive/user_view_accuracy"] > 0.6
  assert last["recursive/level0/accuracy"] > 0.65
  # Every level's labels were paid for, and the root's are all spent.
  assert last["oracle/labels"] == train.config.feedback.budget
  # The evaluation reports the true return's components (the tree's leaves).
  parts = [last[f"eval/{a}"] for a in train.plan.aspects]
  np.testing.assert_allclose(sum(parts), last["eval/true_return"], rtol=1e-4)


def test_perfect_helpers_make_the_assisted_user_the_full_view_oracle(depth3):
  _, train, _, _, out = depth3
  pool = out["state"].pool
  plan = train.plan
  import dataclasses  # pylint: disable=g-import-not-at-top
  perfect = dataclasses.replace(plan, perfect_helpers=True)
  full = dataclasses.replace(plan, user="full_view")
  teacher = oracle.preset("oracle")
  assessed, _ = rec.assessments(perfect, None, pool.aspects, pool.valid)
  assisted, _ = rec.root_perceived(perfect, pool.aspects, assessed, teacher)
  truth, _ = rec.root_perceived(full, pool.aspects, None, teacher)
  np.testing.assert_allclose(assisted, truth, atol=1e-5)
  np.testing.assert_allclose(truth, pool.segments.true_reward, atol=1e-5)
  n = pool.valid.shape[0] // 2
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  label = jax.vmap(oracle.label_pair, in_axes=(None, 0, 0, 0, None))
  a = label(teacher, assisted[:n], assisted[n:], keys, 1.0)[0]
  b = label(teacher, truth[:n], truth[n:], keys, 1.0)[0]
  np.testing.assert_array_equal(a, b)


def test_every_nodes_labels_are_exported_and_the_state_resumes(depth3):
  config, train, workdir, _, out = depth3
  state = out["state"]
  root = rrm_checkpoint.load_labels(os.path.join(workdir, "labels.npz"))
  assert root.size == int(state.labels.count)
  for h, node in enumerate(train.plan.helpers):
    lf = rrm_checkpoint.load_labels(
        os.path.join(workdir, f"labels.{node.name}.npz"))
    assert lf.size == int(state.helpers.labels.count[h]) > 0
  step, restored, _ = rrm_checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints")).restore_latest(train.init)
  assert step == ITERATIONS
  assert_trees_equal(restored, jax.device_get(state))
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert json.loads(saved["recursive"]["tree"])["name"] == "reach_safely"


@pytest.mark.parametrize("change, match", [
    ({"recursive.visible": ("reward_speed",)}, "reward_speed"),
    ({"recursive.level_fractions": (0.5, 0.5)}, "3 levels"),
    ({"recursive.tree": {"name": "r", "children": [
        {"name": "g", "aspect": "reward_goal"},
        {"name": "s", "aspect": "reward_speed"}]}}, "reward_speed"),
    ({"recursive.tree": {"name": "r/x", "children": [
        {"name": "g", "aspect": "reward_goal"}]}}, "may hold only"),
    ({"recursive.user": "assisted", "reward.source": "true"}, "source"),
    ({"recursive.user": "oracle"}, "recursive.user"),
])
def test_bad_recursive_configs_are_refused_before_compiling(change, match):
  cd = _config(**change)
  if "recursive.visible" in change:
    cd.recursive.user = "limited"
  with pytest.raises(rrm_config.ConfigError, match=match):
    config_parse.from_config_dict(cd)


def test_a_tree_on_a_failure_priced_env_needs_on_failure_continue():
  from experiments.configs import hopper  # pylint: disable=g-import-not-at-top
  cd = hopper.get_config("smoke")
  cd.recursive.user = "full_view"
  cd.recursive.tree = {"name": "hop", "children": [
      {"name": "f", "aspect": "reward_forward"},
      {"name": "h", "aspect": "reward_healthy"},
      {"name": "c", "aspect": "reward_ctrl"}]}
  with pytest.raises(rrm_config.ConfigError, match="continue"):
    config_parse.from_config_dict(cd)
  cd.env.on_failure = "continue"
  assert config_parse.from_config_dict(cd).recursive.user == "full_view"


def test_golden_assisted_depth3(depth3):
  """init + 3 iterations of the depth-3 assisted run equal the golden
  values (tests/golden_values.py), on the fixture's compiled program."""
  import golden_values  # pylint: disable=g-import-not-at-top
  config, train, _, initial, _ = depth3
  state = _copy(initial)
  metrics = []
  with fast_compile():
    for _ in range(3):
      state, m = train.iteration(state)
      metrics.append(jax.device_get(m))
  golden_values.check("point_hazard_assisted_depth3",
                      [initial, jax.device_get(state)], metrics)
