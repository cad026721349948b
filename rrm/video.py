"""Videos of what a policy does: evaluation episodes rendered to clips.

Three pieces, used by the host loop (`log.videos_every`) and usable alone:

  * `make_record_episode(envs.eval, make_policy, inference_params, T)`: a
    pure, jittable `record(state, key) -> Episode`, the deterministic policy
    for `T` steps on one evaluation env (the standard task, as
    `rollout.make_evaluate`), keeping each step's positions (brax's and
    MJX's generalized coordinates `q` / `qpos`; point_hazard's 2-D position)
    and whether the episode had ended. `train.record_episode` is this one
    bound to a run.
  * `make_renderer(env_config)`: positions -> RGB frames. MuJoCo-based envs
    (Brax's and Playground's) go through MuJoCo's own `Renderer` on the
    env's `mj_model`, offscreen with EGL (Mesa's software rasteriser on a
    CPU: rrm sets MUJOCO_GL=egl unless it is set), a camera tracking the
    first body; point_hazard is drawn in 2-D with matplotlib (goal, hazard
    disc, the path so far).
  * `write_clip(frames, path, fps)`: GIF (Pillow, which matplotlib brings),
    MP4 (H.264) or WebM (VP9) through PyAV (FFmpeg's libraries in its
    wheels; the [video] extra), by the path's extension, written atomically.

`write_episode_video(...)` chains them. Frames from the step that ended
the episode on (the eval env resets itself there) are dropped.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rrm import config as rrm_config

# Frame size (height, width) of every clip, and frames per second.
FRAME_SIZE = (240, 320)
FPS = 30


class Episode(NamedTuple):
  """One recorded evaluation episode (arrays over its `T` steps)."""
  positions: jax.Array  # [T + 1, D]: the reset state, then after each step
  done: jax.Array  # [T + 1] bool: the episode had ended at that step
  reward: jax.Array  # [T] true reward of each step


def positions(pipeline_state: Any) -> jax.Array:
  """A pipeline state's positions: brax `q`, MJX `qpos`, point_hazard's
  (pos, vel) tuple's pos."""
  if isinstance(pipeline_state, tuple):
    return pipeline_state[0]
  for name in ("q", "qpos"):
    if hasattr(pipeline_state, name):
      return getattr(pipeline_state, name)
  raise TypeError(f"no positions in a {type(pipeline_state).__name__} "
                  "pipeline state (expected q, qpos or (pos, vel))")


def make_record_episode(eval_env, make_policy: Callable,
                        inference_params: Callable, episode_length: int
                        ) -> Callable[[Any, jax.Array], Episode]:
  """`record(state, key) -> Episode`: one deterministic evaluation episode
  of `episode_length` steps on the batched `eval_env` (one env)."""

  def record(state, key: jax.Array) -> Episode:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)  # brax takes raw keys
    # A stream of its own, apart from `evaluate`'s use of the same key.
    key_reset, key_act = jax.random.split(jax.random.fold_in(key, 0x766964))
    policy = make_policy(inference_params(state.policy), deterministic=True)
    env_state = eval_env.reset(key_reset[None])

    def step(carry, step_key):
      env_state, ended = carry
      action, _ = policy(env_state.obs, step_key)
      env_state = eval_env.step(env_state, action)
      ended = ended | (env_state.done[0] > 0)
      return (env_state, ended), (positions(env_state.pipeline_state)[0],
                                  ended, env_state.reward[0])

    keys = jax.random.split(key_act, episode_length)
    _, (pos, done, reward) = jax.lax.scan(
        step, (env_state, jnp.zeros((), bool)), keys)
    first = positions(env_state.pipeline_state)[0]
    return Episode(positions=jnp.concatenate([first[None], pos]),
                   done=jnp.concatenate([jnp.zeros((1,), bool), done]),
                   reward=reward)

  return record


def frames_of(episode: Episode) -> tuple[np.ndarray, int]:
  """(positions to draw, steps the episode took). The eval env resets
  itself on the step that ends an episode, so the state after that step is
  the next episode's start: frames stop at the state before it."""
  pos, done = np.asarray(episode.positions), np.asarray(episode.done)
  ended = np.flatnonzero(done)
  if ended.size == 0:
    return pos, len(pos) - 1
  return pos[:ended[0]], int(ended[0])


def mj_model_of(env) -> Any:
  """The MuJoCo model under an env's wrappers (Brax: `sys.mj_model`;
  Playground: `mj_model`), or None (point_hazard)."""
  while env is not None:
    sys_ = getattr(env, "sys", None)
    if sys_ is not None and hasattr(sys_, "mj_model"):
      return sys_.mj_model
    model = getattr(env, "mj_model", None)
    if model is not None:
      return model
    env = (getattr(env, "env", None) or getattr(env, "_env", None)
           or getattr(env, "playground_env", None))
  return None


class MujocoRenderer:
  """Frames of a MuJoCo model at given positions (offscreen, EGL)."""

  def __init__(self, model, size: tuple[int, int] = FRAME_SIZE):
    import mujoco  # pylint: disable=g-import-not-at-top
    self._mujoco = mujoco
    self._model = _lit(model)
    self._data = mujoco.MjData(self._model)
    height, width = size
    self._model.vis.global_.offwidth = max(self._model.vis.global_.offwidth,
                                           width)
    self._model.vis.global_.offheight = max(
        self._model.vis.global_.offheight, height)
    try:
      self._renderer = mujoco.Renderer(self._model, height, width)
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          f"MuJoCo cannot render offscreen here (MUJOCO_GL="
          f"{os.environ.get('MUJOCO_GL', '')!r}): {type(e).__name__}: {e}. "
          "On Linux without a display rrm uses EGL: install Mesa's EGL "
          "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri)") from e
    self._camera = mujoco.MjvCamera()
    self._camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    self._camera.trackbodyid = 1 if self._model.nbody > 1 else 0
    # Near enough to see a walker's limbs, far enough for the pendulum's rail.
    self._camera.distance = min(1.6 * float(self._model.stat.extent), 5.0)
    self._camera.elevation = -15.0
    self._camera.azimuth = 90.0

  def __call__(self, qpos: np.ndarray) -> np.ndarray:
    frames = []
    for q in np.asarray(qpos, np.float64):
      self._data.qpos[:] = q[:self._model.nq]
      self._mujoco.mj_forward(self._model, self._data)
      self._renderer.update_scene(self._data, camera=self._camera)
      frames.append(self._renderer.render().copy())
    return np.stack(frames)

  def close(self) -> None:
    self._renderer.close()


def _lit(model):
  """A copy of `model` with a headlight bright enough to see by (some of
  Brax's models turn it down to almost nothing)."""
  model = copy.deepcopy(model)
  model.vis.headlight.active = 1
  model.vis.headlight.ambient[:] = np.maximum(model.vis.headlight.ambient, 0.4)
  model.vis.headlight.diffuse[:] = np.maximum(model.vis.headlight.diffuse, 0.6)
  return model


class PointHazardRenderer:
  """2-D frames of point_hazard: the goal, the hazard disc, the path."""

  def __init__(self, env, size: tuple[int, int] = FRAME_SIZE):
    self._env, self._size = env, size

  def __call__(self, pos: np.ndarray) -> np.ndarray:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import figure  # pylint: disable=g-import-not-at-top
    from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
    geo, pos = self._env.geometry, np.asarray(pos, np.float64)
    height, width = self._size
    fig = figure.Figure(figsize=(width / 80, height / 80), dpi=80)
    canvas = backend_agg.FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96))
    points = np.concatenate([pos, np.asarray([geo["goal"], geo["start"]])])
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    centre, half = (lo + hi) / 2, max(hi - lo) / 2 * np.array(
        [width / height, 1.0])
    ax.set_xlim(centre[0] - half[0], centre[0] + half[0])
    ax.set_ylim(centre[1] - half[1], centre[1] + half[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.add_patch(matplotlib.patches.Circle(
        tuple(geo["hazard_center"]), geo["hazard_radius"], color="tab:red",
        alpha=0.35))
    ax.plot(*geo["goal"], marker="*", markersize=16, color="tab:green")
    path, = ax.plot([], [], color="0.5", linewidth=1)
    agent, = ax.plot([], [], marker="o", markersize=8, color="tab:blue")
    frames = []
    for t in range(len(pos)):
      path.set_data(pos[:t + 1, 0], pos[:t + 1, 1])
      agent.set_data(pos[t:t + 1, 0], pos[t:t + 1, 1])
      canvas.draw()
      frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return np.stack(frames)

  def close(self) -> None:
    pass


def make_renderer(env_config: rrm_config.EnvConfig,
                  size: tuple[int, int] = FRAME_SIZE):
  """positions [T, D] -> frames [T, H, W, 3] uint8 for the config's env."""
  from rrm import envs as rrm_envs  # pylint: disable=g-import-not-at-top
  env = rrm_envs.make_base_env(env_config, fixed_horizon=False)
  model = mj_model_of(env)
  if model is not None:
    return MujocoRenderer(model, size)
  base = env
  while not isinstance(base, rrm_envs.PointHazard):
    base = getattr(base, "env", None)
    if base is None:
      raise ValueError(f"env {env_config.name!r} has no renderer: neither a "
                       "MuJoCo model nor point_hazard")
  return PointHazardRenderer(base, size)


# Clip formats (`log.video_format`): GIF by Pillow (matplotlib brings it);
# MP4 (H.264) and WebM (VP9) by PyAV, FFmpeg's bindings (the [video] extra,
# in [test]; its wheels carry FFmpeg's libraries: nothing to install).
FORMATS = ("gif", "mp4", "webm")
_AV_CODECS = {"mp4": ("libx264", {}),
              "webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"})}
AV_INSTALL = "pip install -e '.[video]'"


def format_problem(fmt: str) -> str | None:
  """Why clips cannot be written in `fmt` here, or None."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  if fmt not in FORMATS:
    return f"allowed values are {', '.join(map(repr, FORMATS))}"
  if fmt in _AV_CODECS and importlib.util.find_spec("av") is None:
    return f"{fmt} clips need PyAV: {AV_INSTALL} (or use 'gif')"
  return None


def write_clip(frames: np.ndarray, path: str, fps: int = FPS) -> str:
  """Writes [T, H, W, 3] uint8 frames to `path` (atomically), in the format
  its extension names (`FORMATS`); GIFs loop."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
    raise ValueError(f"frames of shape {frames.shape}: expected [T, H, W, 3]")
  fmt = os.path.splitext(path)[1].lstrip(".").lower()
  problem = format_problem(fmt)
  if problem:
    raise ValueError(f"clip {path}: format {fmt!r}: {problem}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.{fmt}"
  try:
    if fmt == "gif":
      _write_gif(frames.astype(np.uint8), tmp, fps)
    else:
      _write_av(frames.astype(np.uint8), tmp, fps, fmt)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _write_gif(frames: np.ndarray, path: str, fps: int) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = [Image.fromarray(f) for f in frames]
  images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                 loop=0, duration=max(1, round(1000 / fps)), optimize=False)


def _write_av(frames: np.ndarray, path: str, fps: int, fmt: str) -> None:
  import av  # pylint: disable=g-import-not-at-top
  codec, options = _AV_CODECS[fmt]
  # 4:2:0 chroma needs even sides: pad the last row / column if odd.
  pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
  frames = np.pad(frames, pad, mode="edge")
  with av.open(path, mode="w", format=fmt) as container:
    stream = container.add_stream(codec, rate=fps, options=options)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(
          frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_episode_video(renderer, episode: Episode, path: str,
                        fps: int = FPS) -> dict[str, Any]:
  """Renders `episode` with `renderer` to `path`; returns what was drawn."""
  pos, steps = frames_of(jax.device_get(episode))
  t0 = time.perf_counter()
  write_clip(renderer(pos), path, fps)
  return {"path": path, "steps": steps,
          "true_return": float(np.sum(np.asarray(episode.reward)[:steps])),
          "seconds": time.perf_counter() - t0}


class EvalVideos:
  """The host loop's evaluation videos (`log.videos_every`).

  At every `videos_every`-th iteration and the last, each member's
  evaluation episode (`record(states, member, iteration)`, the program's
  `record_episode`) is rendered to `<member dir>/videos/eval_<it>.<fmt>`
  (`log.video_format`).
  Rendering runs on the host between iterations; a video that cannot be
  made (no EGL, say) is a warning, never the run's end.
  """

  def __init__(self, configs, dirs, record: Callable | None):
    self._configs, self._dirs, self._record = configs, dirs, record
    self._renderers: dict[str, Any] = {}
    self._failed = False

  def due(self, it: int) -> bool:
    every = self._configs[0].log.videos_every
    return bool(every and self._dirs and self._record is not None
                and not self._failed
                and (it % every == 0 or it == self._configs[0].num_iterations))

  def write(self, states, it: int, skip=(), say=None) -> list[dict[str, Any]]:
    """The due iteration's videos, one per member but those in `skip`
    (diverged members); `say` reports the first. Empty if none is due."""
    if not self.due(it):
      return []
    import logging  # pylint: disable=g-import-not-at-top
    written = []
    for j, (config, directory) in enumerate(zip(self._configs, self._dirs)):
      if j in skip:
        continue
      path = os.path.join(directory, "videos",
                          f"eval_{it:06d}.{config.log.video_format}")
      try:
        key = repr(config.env)
        if key not in self._renderers:
          self._renderers[key] = make_renderer(config.env)
        written.append(write_episode_video(
            self._renderers[key], self._record(states, j, it), path))
      except Exception as e:  # pylint: disable=broad-except
        self._failed = True  # once: the same cause would repeat every time
        logging.warning("no evaluation video (%s): %s: %s; the run goes on "
                        "without videos", path, type(e).__name__, e)
        return written
    if say and written:
      say(f"video: {written[0]['path']} ({written[0]['steps']} steps, "
          f"true return {written[0]['true_return']:.1f}, drawn in "
          f"{written[0]['seconds']:.1f}s)"
          + (f" and {len(written) - 1} more" if len(written) > 1 else ""))
    return written

  def close(self) -> None:
    for renderer in self._renderers.values():
      renderer.close()
    self._renderers.clear()
