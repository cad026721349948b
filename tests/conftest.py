"""Shared test setup: CPU only, repo root importable (experiments/, launch/)."""

import atexit
import contextlib
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# One persistent compilation cache for the session, shared with the
# launcher subprocesses some tests start (`launcher_env`) and, under
# pytest-xdist (`make test` runs two workers), with the other worker: a
# program compiled once is loaded, not recompiled, by another process running
# the same config. It lives in a temporary directory made by the first
# process (xdist's controller, whose environment the workers inherit): tests
# never touch the user's.
_CACHE = os.environ.get("RRM_TEST_JAX_CACHE")
if not _CACHE:
  _CACHE = tempfile.mkdtemp(prefix="rrm-test-jax-cache-")
  os.environ["RRM_TEST_JAX_CACHE"] = _CACHE
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def _enable_cache():
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", _CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


_enable_cache()


@contextlib.contextmanager
def fast_compile():
  """XLA with most optimisations off, for the programs compiled inside.

  For tests that compile a program of their own (a config no other test
  shares), run it a few tiny iterations and compare it with nothing
  compiled outside: compiling unoptimised takes about half as long on the
  CPU, and such runs are too short for the slower code to matter.
  """
  import jax  # pylint: disable=g-import-not-at-top
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", old)


def launcher_env(**extra):
  """Environment for `python -m launch.*` subprocesses: the session cache."""
  return {**os.environ, "RRM_COMPILATION_CACHE": _CACHE, **extra}


def assert_trees_equal(a, b):
  """Same structure, dtypes and bit-identical leaves (typed keys included)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert jax.tree.structure(a) == jax.tree.structure(b)

  def host(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return np.asarray(jax.random.key_data(x))
    return np.asarray(x)

  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(host(x), host(y))


@pytest.fixture(scope="session")
def smoke():
  """The inverted_pendulum smoke `Train`, compiled once for the whole session.

  CPU compiles dominate the suite's time; every test that can runs on this
  one (tests that change shapes build their own).
  """
  from experiments.configs import inverted_pendulum  # pylint: disable=g-import-not-at-top
  from rrm import config_parse  # pylint: disable=g-import-not-at-top
  from rrm import train as rrm_train  # pylint: disable=g-import-not-at-top
  config = config_parse.from_config_dict(inverted_pendulum.get_config("smoke"))
  return rrm_train.make_train(config)
