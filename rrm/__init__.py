"""rrm: reward modeling and recursive reward modeling in JAX.

Leike et al. 2018, "Scalable agent alignment via reward modeling"
(arXiv:1811.07871). The library is pure-functional: every update is a function
of pytrees, and `rrm.train.make_train` builds the one jitted iteration.
"""

import contextlib
import io
import os
import sys
import warnings

__version__ = "0.1.0"


# MJX's NVIDIA Warp backend (`impl="warp"`, GPU only) is opt-in: set
# RRM_MJX_WARP=1 to use it. Otherwise rrm keeps `warp` from being imported,
# as if it were not installed (Python's `sys.modules[name] = None`): mujoco.mjx
# imports it, and the ~700 Warp kernels of mujoco_warp it defines, whenever
# it is installed (MuJoCo Playground requires it), which cost every process
# ~2.4 s of its start-up (measured: `import rrm` 5.0 s -> 2.6 s) for a
# backend rrm's envs never use unless asked (they run MJX's "jax" impl).
# A `warp` the process imported before rrm is left as it is.
MJX_WARP_ENV = "RRM_MJX_WARP"


def mjx_warp_enabled() -> bool:
  """Whether MJX's Warp backend can be used in this process."""
  return sys.modules.get("warp", None) is not None or os.environ.get(
      MJX_WARP_ENV, "") == "1"


def _import_brax_quietly() -> None:
  """Imports brax with MuJoCo's optional-backend chatter kept off stdout.

  mujoco.mjx prints "Failed to import warp: ..." with `print` when the optional
  NVIDIA Warp backend is absent (or kept out: `MJX_WARP_ENV`); brax imports it
  on `import brax.envs`. That line is noise in every run log, so the first
  import happens here with stdout captured. Real import errors still raise.
  """
  if not mjx_warp_enabled():
    sys.modules.setdefault("warp", None)
  # MuJoCo picks its OpenGL backend when imported (brax imports it): on
  # Linux, offscreen EGL (rrm.video's clips; Mesa renders on a CPU) unless
  # MUJOCO_GL says otherwise. Its default, GLFW, needs a display.
  if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")
  # Brax also warns, once per env construction, that it is in maintenance
  # mode in favour of MJX; rrm has chosen brax deliberately.
  warnings.filterwarnings("ignore", message="Brax System, piplines")
  with contextlib.redirect_stdout(io.StringIO()):
    import brax.envs  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import


_import_brax_quietly()
