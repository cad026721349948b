"""Bad configs are refused with the field, the value and what is allowed."""

import json
import os
import subprocess
import sys

import pytest

from experiments.configs import ant
from experiments.configs import halfcheetah
from experiments.configs import hopper
from experiments.configs import inverted_pendulum
from rrm import config_parse
from rrm import config as rrm_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke():
  return inverted_pendulum.get_config("smoke")


@pytest.mark.parametrize("module", [inverted_pendulum, hopper, halfcheetah,
                                    ant])
@pytest.mark.parametrize("variant", ["", "smoke"])
def test_shipped_configs_are_valid(module, variant):
  cfg = config_parse.from_config_dict(module.get_config(variant))
  assert cfg.env.name == module.__name__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("field, value, message", [
    ("env.name", "pendulum", "known envs are"),
    ("env.backend", "physx", "allowed values are"),
    ("env.on_failure", "explode", "allowed values are"),
    ("env.num_envs", 0, "positive integer"),
    ("ppo.learning_rate", 0.0, "positive"),
    ("ppo.learning_rate", -1e-3, "positive"),
    ("reward.learning_rate", 0.0, "positive"),
    ("reward.ensemble_size", 0, "positive integer"),
    ("reward.source", "oracle", "allowed values are"),
    ("reward.input", "pixels", "allowed values are"),
    ("reward.heldout_every", 1, "0 (no held-out labels) or >= 2"),
    ("oracle.beta", -1.0, "non-negative"),
    ("oracle.teacher", "human", "allowed values are"),
    ("feedback.schedule", "linear", "allowed values are"),
    ("feedback.schedule_horizon", 0, "positive integer"),
    ("oracle.mistake", 1.5, "in [0, 1]"),
    ("oracle.gamma", -0.1, "in [0, 1]"),
    ("ppo.discounting", 1.5, "[0, 1]"),
    ("feedback.query_selector", "psychic", "allowed values are"),
    ("log.wandb", "cloud", "allowed values are 'off', 'offline', 'online'"),
    ("log.wandb_project", "", "non-empty string"),
    ("log.videos_every", -1, "non-negative integer"),
    ("log.video_format", "avi", "allowed values are 'gif', 'mp4', 'webm'"),
])
def test_single_field_errors_name_field_value_and_allowed(field, value,
                                                          message):
  cd = _smoke()
  section, name = field.split(".")
  cd[section][name] = value
  with pytest.raises(rrm_config.ConfigError) as e:
    config_parse.from_config_dict(cd)
  text = str(e.value)
  assert f"config.{field}={value!r}" in text and message in text


def _expect(cd, *fragments):
  with pytest.raises(rrm_config.ConfigError) as e:
    config_parse.from_config_dict(cd)
  for f in fragments:
    assert f in str(e.value), (f, str(e.value))


def test_budget_smaller_than_initial_batch():
  cd = _smoke()
  cd.feedback.budget = 10
  cd.feedback.initial_labels = 20
  _expect(cd, "config.feedback.budget=10", "initial_labels=20")


def test_segment_longer_than_episode():
  cd = _smoke()
  cd.env.episode_length = 8
  cd.feedback.segment_length = 10
  _expect(cd, "config.feedback.segment_length=10", "episode_length=8")


def test_segment_longer_than_iteration_rollout():
  cd = _smoke()
  cd.feedback.segment_length = 50  # smoke: 16 * 4 / 16 * 5 = 20 steps
  _expect(cd, "segment_length=50", "20 steps each env takes")


def test_rollout_not_divisible_by_envs():
  cd = _smoke()
  cd.ppo.batch_size = 6  # 6 * 4 = 24 unrolls over 32 envs
  _expect(cd, "= 24 must be a multiple of config.env.num_envs=32")


def test_pool_and_segments_per_iteration():
  cd = _smoke()
  cd.feedback.segments_per_iteration = 1000
  _expect(cd, "segments_per_iteration=1000", "segments one iteration's")
  cd = _smoke()
  cd.feedback.pool_size = 8
  _expect(cd, "segments_per_iteration=32", "pool_size=8")


def test_initial_batch_must_leave_a_heldout_label():
  cd = _smoke()
  cd.feedback.initial_labels = 5
  cd.reward.heldout_every = 10
  _expect(cd, "initial_labels=5", "heldout_every=10")


def test_true_reward_runs_ignore_label_budget_checks():
  cd = _smoke()
  cd.reward.source = "true"
  cd.feedback.budget = 1
  cd.feedback.initial_labels = 5
  assert config_parse.from_config_dict(cd).reward.source == "true"


def _sac(**changes):
  cd = inverted_pendulum.get_config("sac_smoke")
  for k, v in changes.items():
    section, name = k.split(".") if "." in k else (None, k)
    (cd[section] if section else cd)[name] = v
  return cd


@pytest.mark.parametrize("changes, fragments", [
    ({"rl.algorithm": "dqn"}, ["config.rl.algorithm='dqn'", "'ppo', 'sac'"]),
    ({"sac.grad_updates_per_step": 0},
     ["config.sac.grad_updates_per_step=0", "positive integer"]),
    ({"sac.grad_updates_per_step": -2},
     ["config.sac.grad_updates_per_step=-2", "positive integer"]),
    ({"sac.replay_capacity": 32},
     ["config.sac.replay_capacity=32", "at least one batch",
      "sac.batch_size=64"]),
    ({"sac.min_replay_size": 16},
     ["config.sac.min_replay_size=16", "sac.batch_size=64"]),
    ({"sac.min_replay_size": 8192},
     ["config.sac.min_replay_size=8192", "sac.replay_capacity=4096"]),
    ({"sac.pretrain_iterations": 6},
     ["config.sac.pretrain_iterations=6", "num_iterations=6"]),
    ({"sac.pretrain_iterations": 2, "reward.source": "true"},
     ["config.sac.pretrain_iterations=2", "true-reward run"]),
    ({"sac.entropy_k": 64}, ["config.sac.entropy_k=64", "smaller"]),
    ({"sac.tau": 1.5}, ["config.sac.tau=1.5", "[0, 1]"]),
    ({"sac.steps_per_iteration": 5},
     ["segment_length=10", "sac.steps_per_iteration"]),
    ({"feedback.query_selector": "recent", "feedback.recent_segments": 1},
     ["config.feedback.recent_segments=1", "between 2 and"]),
    ({"feedback.query_selector": "recent", "feedback.recent_segments": 500},
     ["config.feedback.recent_segments=500", "pool_size=128"]),
])
def test_sac_and_query_settings_are_refused_with_the_field(changes,
                                                           fragments):
  _expect(_sac(**changes), *fragments)


def test_sac_configs_parse_and_ppo_runs_have_no_sac_section():
  cfg = config_parse.from_config_dict(_sac())
  assert cfg.rl.algorithm == "sac" and cfg.steps_per_env_per_iteration == 20
  assert cfg.sac.pretrain_iterations == 2
  ppo = config_parse.from_config_dict(_smoke())
  assert ppo.rl.algorithm == "ppo" and ppo.sac is None
  # SAC's array-valued fields are sweepable: one program for both.
  other = config_parse.from_config_dict(_sac(**{"sac.learning_rate": 1e-3,
                                                "sac.tau": 0.01}))
  assert rrm_config.program_key(other) == rrm_config.program_key(cfg)
  assert rrm_config.program_key(config_parse.from_config_dict(
      _sac(**{"sac.batch_size": 32}))) != rrm_config.program_key(cfg)


def test_a_workdir_written_before_sac_existed_resumes_unchanged():
  """config.json files of older runs lack rl, sac, feedback.recent_segments."""
  from rrm import workdir as rrm_workdir  # pylint: disable=g-import-not-at-top
  now = rrm_config.to_dict(config_parse.from_config_dict(_smoke()))
  saved = json.loads(json.dumps(now))
  del saved["rl"], saved["sac"], saved["feedback"]["recent_segments"]
  assert rrm_workdir.config_differences(saved, now) == []
  sac_now = rrm_config.to_dict(config_parse.from_config_dict(_sac()))
  assert any(d.startswith("rl.algorithm: saved 'ppo', now 'sac'")
             for d in rrm_workdir.config_differences(saved, sac_now))


def test_launcher_refuses_bad_config_before_compiling(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       f"--config={ROOT}/experiments/configs/inverted_pendulum.py:smoke",
       "--config.env.name=pendulum", f"--workdir={tmp_path}/w"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "config.env.name='pendulum' is invalid" in proc.stderr
  assert not os.path.exists(tmp_path / "w")  # nothing ran, nothing written
  # Unknown fields are refused by the locked ConfigDict.
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       f"--config={ROOT}/experiments/configs/inverted_pendulum.py:smoke",
       "--config.reward.ensemble=3", f"--workdir={tmp_path}/w"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "ensemble" in proc.stderr


_UNPARSABLE = [
    ("def get_config(:\n  pass\n", [], "SyntaxError in"),
    ("def get_config():\n  return 1 / 0\n", [], "ZeroDivisionError"),
    (None, [], "No such file or directory"),
    ("from experiments.configs.inverted_pendulum import get_config\n",
     ["--config.feedback.no_such_field=1"], "no config field 'no_such_field'"),
    ("from experiments.configs.inverted_pendulum import get_config\n",
     ["--config.ppo.learnig_rate=1e-3"],
     "no config field 'learnig_rate' (in --config.ppo.learnig_rate); did "
     'you mean "learning_rate" instead of "learnig_rate"?'),
]


def test_launcher_reports_an_unparsable_config_without_traceback(tmp_path):
  """Each case in a launcher process of its own, all at once (each pays the
  imports, nothing compiles)."""
  procs = []
  for i, (source, overrides, _) in enumerate(_UNPARSABLE):
    path = tmp_path / f"cfg{i}.py"
    if source is not None:
      path.write_text(source)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "launch.train", f"--config={path}",
         *overrides, f"--workdir={tmp_path}/w{i}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for proc, (_, _, message) in zip(procs, _UNPARSABLE):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert "error: could not parse the config" in err
    assert message in err, err[-2000:]
    assert "Traceback" not in err and "\\n" not in err


def test_launcher_reports_an_unwritable_workdir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       f"--config={ROOT}/experiments/configs/inverted_pendulum.py:smoke",
       f"--workdir={blocker}/run"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "RRM_COMPILATION_CACHE": "off"})
  assert proc.returncode == 1
  assert f"error: workdir {blocker}/run is not writable" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_launcher_refuses_labels_of_another_env_before_compiling(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  n, length = 3, 10
  arrays = {"format": np.asarray("rrm.labels.v1"), "env": np.asarray("hopper"),
            "label": np.ones(n, np.float32),
            "iteration": np.zeros(n, np.int32), "spent": np.asarray(n)}
  for side in ("first", "second"):
    arrays[f"{side}_observation"] = np.zeros((n, length, 11), np.float32)
    arrays[f"{side}_action"] = np.zeros((n, length, 3), np.float32)
    arrays[f"{side}_next_observation"] = np.zeros((n, length, 11), np.float32)
    arrays[f"{side}_true_reward"] = np.zeros((n, length), np.float32)
  np.savez(tmp_path / "labels.npz", **arrays)
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       f"--config={ROOT}/experiments/configs/inverted_pendulum.py:smoke",
       f"--labels={tmp_path}/labels.npz", f"--workdir={tmp_path}/w"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert ("holds labels of env 'hopper', this run trains 'inverted_pendulum'"
          in proc.stderr)
  assert not os.path.exists(tmp_path / "w")


# -- edge cases of the recursive section -------------------------------------


def _point_hazard(**recursive):
  from experiments.configs import point_hazard  # pylint: disable=g-import-not-at-top
  cd = point_hazard.get_config("smoke")
  for k, v in recursive.items():
    cd.recursive[k] = v
  return cd


def test_a_tree_that_contains_itself_is_refused_in_one_line():
  tree = {"name": "loop", "children": [{"name": "goal",
                                        "aspect": "reward_goal"}]}
  tree["children"].append(tree)
  with pytest.raises(rrm_config.ConfigError) as e:
    config_parse.from_config_dict(_point_hazard(tree=tree))
  assert "config.recursive.tree contains itself" in str(e.value)
  assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("fractions, sums", [((0.9, 0.9), "1.8"),
                                             ((0.4, 0.4), "0.8"),
                                             ((1.5, -0.5), "1")])
def test_level_fractions_must_be_shares_that_sum_to_one(fractions, sums):
  with pytest.raises(rrm_config.ConfigError,
                     match=r"recursive\.level_fractions.*summing to 1 "
                     rf"\(they sum to {sums}\)"):
    config_parse.from_config_dict(_point_hazard(level_fractions=fractions))
  config_parse.from_config_dict(_point_hazard(level_fractions=(0.7, 0.3)))


def test_the_tree_can_be_given_as_json_text():
  text = json.dumps({"name": "r", "children": [
      {"name": "goal", "aspect": "reward_goal"},
      {"name": "rest", "children": [
          {"name": "hazard", "aspect": "reward_hazard"},
          {"name": "effort", "aspect": "reward_ctrl"}]}]})
  config = config_parse.from_config_dict(_point_hazard(
      tree=text, level_fractions=(0.4, 0.3, 0.3)))
  assert json.loads(config.recursive.tree) == json.loads(text)


def test_launcher_takes_a_tree_override_from_the_command_line(tmp_path):
  """--config.recursive.tree=<JSON>: parsed, then checked against the env
  (here refused for an aspect the env lacks, before compiling)."""
  tree = ('{"name": "r", "children": [{"name": "a", "aspect": '
          '"reward_goal"}, {"name": "b", "aspect": "no_such_aspect"}]}')
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train",
       f"--config={ROOT}/experiments/configs/point_hazard.py:smoke",
       f"--config.recursive.tree={tree}", f"--workdir={tmp_path}/w"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "no_such_aspect" in proc.stderr and "Traceback" not in proc.stderr


def test_hacking_detector_window_defaults_and_refusals():
  cd = _smoke()  # a run shorter than the default window: it never fills
  assert cd.num_iterations < 10
  assert config_parse.from_config_dict(cd).report.hacking_window == 10
  cd.num_iterations = 30
  assert config_parse.from_config_dict(cd).report.hacking_window == 10
  cd.report.hacking_window = 40
  _expect(cd, "config.report.hacking_window=40",
          "at most the run's num_iterations=30")
  cd.report.hacking_window = 2
  _expect(cd, "config.report.hacking_window=2", "0 (off) or an integer >= 3")
  cd.report.hacking_window = 5
  cd.report.hacking_threshold = 0.0
  _expect(cd, "config.report.hacking_threshold=0.0", "(0, 1]")
  cd.report.hacking_threshold = 0.8
  report_config = config_parse.from_config_dict(cd).report
  assert (report_config.hacking_window, report_config.hacking_threshold) == (
      5, 0.8)


def test_baseline_aspects_are_the_envs_components_as_dict_or_json():
  from experiments.configs import point_hazard  # pylint: disable=g-import-not-at-top
  cd = point_hazard.get_config("smoke")
  cd.report.baseline_aspects = '{"reward_goal": -20.5, "reward_ctrl": -3}'
  assert config_parse.from_config_dict(cd).report.baseline_aspects == (
      ("reward_ctrl", -3.0), ("reward_goal", -20.5))
  cd.report.baseline_aspects = {"reward_forward": 1.0}
  _expect(cd, "config.report.baseline_aspects=", "'reward_forward' not among",
          "'reward_goal'")
  cd.report.baseline_aspects = {"reward_goal": 0}
  _expect(cd, "'reward_goal': 0 must be a finite, non-zero number")
  cd.report.baseline_aspects = "[1, 2"
  _expect(cd, "config.report.baseline_aspects='[1, 2'", "not valid JSON")
  cd.report.baseline_aspects = [1, 2]
  _expect(cd, "must map reward components")


def test_an_unknown_hacking_signal_is_refused_naming_the_field():
  cd = inverted_pendulum.get_config("smoke")
  cd.report.hacking_signal = "steps"
  with pytest.raises(rrm_config.ConfigError,
                     match="config.report.hacking_signal"):
    config_parse.from_config_dict(cd)
  cd.report.hacking_signal = "step"
  assert config_parse.from_config_dict(cd).report.hacking_signal == "step"


def test_mjx_warp_is_kept_out_unless_asked(monkeypatch):
  """MJX's Warp backend is opt-in: a launcher process starts without
  importing warp (as if it were not installed), and a config that asks for
  it without RRM_MJX_WARP=1 is refused naming the field and the variable."""
  import rrm  # pylint: disable=g-import-not-at-top
  proc = subprocess.run(
      [sys.executable, "-c", "import sys, launch.train, rrm; "
       "print(repr(sys.modules['warp']), rrm.mjx_warp_enabled())"],
      capture_output=True, text=True, timeout=120,
      env={k: v for k, v in os.environ.items() if k != rrm.MJX_WARP_ENV},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["None", "False"], proc.stdout
  monkeypatch.delenv(rrm.MJX_WARP_ENV, raising=False)
  monkeypatch.setitem(sys.modules, "warp", None)
  cd = hopper.get_config("smoke")
  cd.env.backend = "mjx"
  cd.env.kwargs = {"impl": "warp"}
  with pytest.raises(rrm_config.ConfigError,
                     match=r"env\.kwargs\.impl='warp'.*RRM_MJX_WARP=1"):
    config_parse.from_config_dict(cd)
  monkeypatch.setenv(rrm.MJX_WARP_ENV, "1")
  assert rrm.mjx_warp_enabled()
  cd.env.kwargs = {"impl": "jax"}
  config_parse.from_config_dict(cd)  # the check is on "warp" alone
