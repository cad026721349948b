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


# Opt-in: RRM_TEST_COMPILE_LOG=path makes every test append one JSON line
# to `path` with the seconds it spent tracing, lowering and compiling JAX
# programs (setup, call and teardown together) and its persistent-cache hits:
# where the suite's time goes, for keeping `make test` short.
_COMPILE_LOG = os.environ.get("RRM_TEST_COMPILE_LOG")
_COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",
}
_compile_totals = {}


def _on_duration(event, seconds, **_):
  key = _COMPILE_EVENTS.get(event)
  if key:
    _compile_totals[key] = _compile_totals.get(key, 0.0) + seconds
    if key == "compile_s":
      _compile_totals["compiles"] = _compile_totals.get("compiles", 0) + 1


def _on_event(event, **_):
  if event == "/jax/compilation_cache/cache_hits":
    _compile_totals["cache_hits"] = _compile_totals.get("cache_hits", 0) + 1


if _COMPILE_LOG:
  import jax.monitoring  # pylint: disable=g-import-not-at-top
  jax.monitoring.register_event_duration_secs_listener(_on_duration)
  jax.monitoring.register_event_listener(_on_event)

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):
    del nextitem
    import json  # pylint: disable=g-import-not-at-top
    import time  # pylint: disable=g-import-not-at-top
    _compile_totals.clear()
    start = time.perf_counter()
    yield
    row = {"test": item.nodeid, "wall_s": round(time.perf_counter() - start, 2),
           "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
           **{k: round(v, 2) for k, v in _compile_totals.items()}}
    with open(_COMPILE_LOG, "a") as f:
      f.write(json.dumps(row) + "\n")


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



def pytest_configure(config):
  """Refuses a pytest that ignores `xdist_group` under `--dist loadgroup`.

  xdist 3.8 keeps a group on one worker by rewriting the test's node id on
  the worker ("test@group"); pytest 9.2 made node ids read-only, the
  rewrite silently does nothing and every worker builds the session-scoped
  compiled fixtures (measured: ~10 minutes of the suite). Better to stop
  than to double the suite's time unnoticed.
  """
  if config.getvalue("dist") != "loadgroup" or hasattr(config, "workerinput"):
    return
  version = tuple(int(p) for p in pytest.__version__.split(".")[:2])
  if version >= (9, 2):
    raise pytest.UsageError(
        f"pytest {pytest.__version__} breaks pytest-xdist's --dist loadgroup "
        "(node ids became read-only in pytest 9.2, so xdist_group marks are "
        "ignored). Install the pins of setup.py's [test] extra: "
        "pip install -e '.[test]'.")
