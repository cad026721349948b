"""Evaluation videos (rrm.video): recording, rendering, GIF, the loop's."""

import dataclasses
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import config_parse
from rrm import loop as rrm_loop
from rrm import video

_BLUE = np.array([31, 119, 180])  # matplotlib's tab:blue: the agent


def _config(module, variant="smoke"):
  return config_parse.from_config_dict(module.get_config(variant))


def _agent_x(frame):
  """Mean column of the agent's (tab:blue) pixels."""
  near = np.abs(frame.astype(int) - _BLUE).sum(-1) < 30
  assert near.any()
  return np.nonzero(near)[1].mean()


def test_point_hazard_frames_follow_the_agent_along_its_path():
  config = _config(point_hazard)
  renderer = video.make_renderer(config.env)
  assert isinstance(renderer, video.PointHazardRenderer)
  geo = renderer._env.geometry  # pylint: disable=protected-access
  path = np.linspace(geo["start"], geo["goal"], 6)
  frames = renderer(path)
  assert frames.shape == (6, *video.FRAME_SIZE, 3) and frames.dtype == np.uint8
  xs = [_agent_x(f) for f in frames]
  # The goal lies to the right of the start: the agent moves right.
  assert geo["goal"][0] > geo["start"][0]
  assert all(b > a for a, b in zip(xs, xs[1:])), xs


def test_mujoco_frames_show_the_pole_where_the_positions_put_it():
  renderer = video.make_renderer(_config(inverted_pendulum).env)
  assert isinstance(renderer, video.MujocoRenderer)
  try:
    upright, tilted, again = renderer(np.array([[0.0, 0.0], [0.0, 1.0],
                                                [0.0, 0.0]]))
  finally:
    renderer.close()
  assert upright.max() > 100  # lit, not a black frame
  assert np.array_equal(upright, again)  # a function of the positions
  assert np.abs(upright.astype(int) - tilted).sum(-1).astype(bool).mean() > 0.005


def test_playground_and_brax_locomotion_models_render():
  """Brax's hopper (its `sys.mj_model`) and, with Playground, walker_walk
  (its `mj_model`): lit frames that change with the positions."""
  from experiments.configs import hopper  # pylint: disable=g-import-not-at-top
  modules = [hopper]
  if importlib.util.find_spec("mujoco_playground"):
    from experiments.configs import walker_walk  # pylint: disable=g-import-not-at-top
    modules.append(walker_walk)
  for module in modules:
    renderer = video.make_renderer(_config(module).env)
    try:
      q0 = np.asarray(renderer._model.qpos0)  # pylint: disable=protected-access
      bent = q0.copy()
      bent[-1] += 0.8  # the last joint: a foot
      a, b = renderer(np.stack([q0, bent]))
    finally:
      renderer.close()
    assert a.max() > 100 and not np.array_equal(a, b), module.__name__


def test_gif_holds_every_frame_and_bad_frames_are_refused(tmp_path):
  frames = np.zeros((5, 24, 32, 3), np.uint8)
  frames[:, :, :, 0] = np.arange(5)[:, None, None] * 50
  path = video.write_clip(frames, str(tmp_path / "v" / "clip.gif"), fps=10)
  with Image.open(path) as im:
    assert im.n_frames == 5 and im.size == (32, 24)
    assert im.info["loop"] == 0 and im.info["duration"] == 100
  assert os.listdir(tmp_path / "v") == ["clip.gif"]  # no temporary left
  with pytest.raises(ValueError, match=r"expected \[T, H, W, 3\]"):
    video.write_clip(np.zeros((0, 4, 4, 3)), str(tmp_path / "empty.gif"))


def test_mp4_and_webm_clips_decode_to_every_frame(tmp_path, monkeypatch):
  """PyAV's H.264 and VP9: every frame back, odd sides padded to even, the
  duration the frame rate gives; without PyAV both are refused by name."""
  av = pytest.importorskip("av")
  frames = np.zeros((6, 25, 33, 3), np.uint8)
  for t in range(6):
    frames[t, :, 5 * t:5 * t + 5] = 255  # a bar moving right
  for fmt in ("mp4", "webm"):
    path = video.write_clip(frames, str(tmp_path / f"clip.{fmt}"), fps=12)
    with av.open(path) as container:
      stream = container.streams.video[0]
      decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 6 and decoded[0].shape == (26, 34, 3), fmt
    # The bar is where it was drawn (lossy: compare columns' brightness).
    assert [int(np.argmax(f[:25, :33].mean((0, 2)))) // 5 for f in decoded] == [
        0, 1, 2, 3, 4, 5], fmt
  assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "clip.webm"]
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "av" else real(name, *a))
  assert "pip install -e '.[video]'" in video.format_problem("mp4")
  assert video.format_problem("gif") is None
  with pytest.raises(ValueError, match="need PyAV"):
    video.write_clip(frames, str(tmp_path / "x.webm"))


def test_frames_stop_where_the_episode_ended():
  pos = jnp.arange(12.0).reshape(6, 2)
  # Ended by step 3, whose state is already the next episode's start (the
  # eval env resets itself): the reset state and the states after steps 1-2.
  ended = video.Episode(pos, jnp.array([0, 0, 0, 1, 1, 0], bool), jnp.ones(5))
  frames, steps = video.frames_of(ended)
  np.testing.assert_array_equal(frames, pos[:3])
  assert steps == 3
  whole = video.Episode(pos, jnp.zeros(6, bool), jnp.ones(5))
  frames, steps = video.frames_of(whole)
  assert len(frames) == 6 and steps == 5
  assert video.positions((jnp.ones(2), jnp.zeros(2))).tolist() == [1.0, 1.0]
  with pytest.raises(TypeError, match="no positions"):
    video.positions(object())


def test_runs_write_evaluation_videos_that_a_resume_reproduces(smoke,
                                                               tmp_path):
  cfg = dataclasses.replace(
      smoke.config, num_iterations=2, eval_every=2, checkpoint_every=1,
      log=dataclasses.replace(smoke.config.log, videos_every=1))
  whole, part = tmp_path / "whole", tmp_path / "part"
  rrm_loop.run(cfg, str(whole), progress=None, train=smoke)
  names = sorted(os.listdir(whole / "videos"))
  assert names == ["eval_000001.gif", "eval_000002.gif"]
  with Image.open(whole / "videos" / names[-1]) as im:
    frames = im.n_frames
  assert 2 <= frames <= cfg.env.eval_episode_length + 1  # (equal ones merge)
  # Interrupted after iteration 1 and resumed: the same episode, bit for bit
  # (no certificate: its figures are not what this compares).
  quiet = dataclasses.replace(cfg, report=dataclasses.replace(
      cfg.report, certificate=False))
  rrm_loop.run(dataclasses.replace(quiet, num_iterations=1), str(part),
               progress=None, train=smoke)
  rrm_loop.run(quiet, str(part), progress=None, train=smoke)
  for name in names:
    assert (part / "videos" / name).read_bytes() == (
        whole / "videos" / name).read_bytes(), name
  # The run certificate shows the last one.
  assert "![eval_000002.gif](videos/eval_000002.gif)" in (
      whole / "report.md").read_text()
  # Off by default; when on, at every videos_every-th iteration and the last.
  assert smoke.config.log.videos_every == 0
  never = video.EvalVideos([smoke.config], [str(tmp_path)], smoke.record_episode)
  assert not any(never.due(it) for it in range(1, 100))
  every3 = dataclasses.replace(cfg, num_iterations=10, log=dataclasses.replace(
      cfg.log, videos_every=3))
  due = video.EvalVideos([every3], [str(tmp_path)], smoke.record_episode).due
  assert [it for it in range(1, 11) if due(it)] == [3, 6, 9, 10]


def test_a_sweep_records_each_member_with_its_solo_runs_key():
  """sweep.program's record_episode: member j's state, and the key the
  member's own run would record with (its seed's eval key, the iteration)."""
  import types  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from rrm import state as rrm_state  # pylint: disable=g-import-not-at-top
  from rrm import sweep as rrm_sweep  # pylint: disable=g-import-not-at-top
  fake = types.SimpleNamespace(train=types.SimpleNamespace(
      record_episode=lambda state, key: (state, key)))
  members = [types.SimpleNamespace(config=types.SimpleNamespace(seed=s))
             for s in (4, 7)]
  states = {"w": np.array([[1.0, 2.0], [3.0, 4.0]])}
  state, key = rrm_sweep._record_member(fake, members, states, 1, 5)  # pylint: disable=protected-access
  np.testing.assert_array_equal(state["w"], [3.0, 4.0])
  want = jax.random.fold_in(rrm_state.run_keys(7)[1], 5)
  np.testing.assert_array_equal(jax.random.key_data(key),
                                jax.random.key_data(want))
