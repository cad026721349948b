"""rrm: reward modeling and recursive reward modeling in JAX.

Leike et al. 2018, "Scalable agent alignment via reward modeling"
(arXiv:1811.07871). The library is pure-functional: every update is a function
of pytrees, and `rrm.train.make_train` builds the one jitted iteration.
"""

import contextlib
import io
import warnings

__version__ = "0.1.0"


def _import_brax_quietly() -> None:
  """Imports brax with MuJoCo's optional-backend chatter kept off stdout.

  mujoco.mjx prints "Failed to import warp: ..." with `print` when the optional
  NVIDIA Warp backend is absent; brax imports it on `import brax.envs`. That
  line is noise in every run log, so the first import happens here with stdout
  captured. Real import errors still raise.
  """
  # Brax also warns, once per env construction, that it is in maintenance
  # mode in favour of MJX; rrm has chosen brax deliberately.
  warnings.filterwarnings("ignore", message="Brax System, piplines")
  with contextlib.redirect_stdout(io.StringIO()):
    import brax.envs  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import


_import_brax_quietly()
