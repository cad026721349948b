"""Checkpoint faults a run meets in the field, each reported in a line or two.

A damaged checkpoint read, a write the filesystem refuses (a full disk) and a
step directory this user cannot read: the run goes on from the last good
checkpoint (or stops naming it), never in hundreds of library tracebacks.
"""

import errno
import logging
import os
import stat
import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import launcher_env

from rrm import checkpoint

# Orbax and TensorStore, without our filters: a damaged step's restore printed
# 116 lines here (37 "Event loop is closed"), a refused write 63.
_FAULTS = textwrap.dedent("""
    import os, resource, signal, sys
    import jax
    from rrm import checkpoint

    def init(key):
      ks = jax.random.split(jax.random.key(7), 40)
      leaves = {f"w{i}": jax.random.normal(k, (256, 1024))
                for i, k in enumerate(ks)}
      return leaves | {"key": key}

    d = sys.argv[1]
    c = checkpoint.Checkpointer(os.path.join(d, "checkpoints"))
    c.save(1, init(jax.random.key(0)), {})
    c.save(2, init(jax.random.key(1)), {})
    c.close()
    data = os.path.join(d, "checkpoints", "2", "state", "d")
    for name in os.listdir(data):
      with open(os.path.join(data, name), "r+b") as f:
        f.truncate(100)
    c = checkpoint.Checkpointer(os.path.join(d, "checkpoints"))
    step, _, _ = c.restore_latest(init)
    c.close()
    print("restored", step, flush=True)

    c = checkpoint.Checkpointer(os.path.join(d, "refused"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
      c.save(1, init(jax.random.key(0)), {})
      c.wait()
    except checkpoint.CheckpointError as e:
      print("refused:", str(e).splitlines()[0][:200], flush=True)
""")


def test_a_damaged_read_and_a_refused_write_print_a_line_each(tmp_path):
  script = tmp_path / "faults.py"
  script.write_text(_FAULTS)
  done = subprocess.run(
      [sys.executable, str(script), str(tmp_path)], cwd=ROOT,
      env=launcher_env(PYTHONPATH=ROOT), capture_output=True, text=True,
      timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "restored 1" in done.stdout, (done.stdout, done.stderr[-3000:])
  assert "refused: writing a checkpoint to" in done.stdout or (
      "refused: saving checkpoint" in done.stdout), done.stdout
  err = done.stderr.splitlines()
  assert "Event loop is closed" not in done.stderr, done.stderr[-3000:]
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  # Our one warning for the damaged step (one line, the library's multi-line
  # TensorStore spec folded), and what Orbax warns of, not its errors.
  skipped = [line for line in err if "skipping checkpoint" in line]
  assert len(skipped) == 1, err
  assert os.path.join(str(tmp_path), "checkpoints", "2") in skipped[0]
  assert len(err) <= 6, err
  assert os.path.isdir(tmp_path / "checkpoints_damaged" / "2")


def test_abandoned_reads_are_dropped_and_every_other_report_kept():
  seen = []
  hook = checkpoint._without_abandoned_reads(seen.append)  # pylint: disable=protected-access

  def report(value):
    return types.SimpleNamespace(exc_type=type(value), exc_value=value,
                                 exc_traceback=None, err_msg=None, object=None)

  hook(report(RuntimeError("Event loop is closed")))
  hook(report(ValueError("Encountered error while reading array index (0)")))
  kept = [report(RuntimeError("Event loop is closed, and more")),
          report(ValueError("something else")),
          report(KeyError("Event loop is closed"))]
  for r in kept:
    hook(r)
  assert seen == kept


def _record(level, pathname, exc_info=None):
  return logging.LogRecord("absl", level, pathname, 1, "message", (),
                           exc_info)


def _raised_in(filename):
  code = compile("raise OSError(28, 'No space left on device')", filename,
                 "exec")
  try:
    exec(code, {})  # pylint: disable=exec-used
  except OSError:
    return sys.exc_info()
  raise AssertionError("did not raise")


def test_orbax_error_records_are_dropped_its_warnings_and_others_kept():
  quiet = checkpoint._OrbaxFailureLog()  # pylint: disable=protected-access
  orbax = os.path.join(os.sep, "venv", "site-packages", "orbax", "checkpoint",
                       "async_checkpointer.py")
  ours = os.path.join(ROOT, "rrm", "loop.py")
  assert not quiet.filter(_record(logging.ERROR, orbax))
  assert quiet.filter(_record(logging.WARNING, orbax))
  assert quiet.filter(_record(logging.ERROR, ours))
  # asyncio's "Task exception was never retrieved" carries the traceback of
  # the failed Orbax write; a traceback elsewhere is kept.
  asyncio_file = os.path.join(os.sep, "usr", "lib", "asyncio", "base_events.py")
  assert not quiet.filter(_record(logging.ERROR, asyncio_file,
                                  _raised_in(orbax)))
  assert quiet.filter(_record(logging.ERROR, asyncio_file, _raised_in(ours)))
  # A TensorStore future Orbax abandoned: the traceback is asyncio's alone,
  # the error names its TensorStore spec.
  try:
    raise ValueError('OUT_OF_RANGE: Error reading "w14/.zarray" '
                     "[tensorstore_spec='{}']")
  except ValueError:
    abandoned = sys.exc_info()
  assert not quiet.filter(_record(logging.ERROR, asyncio_file, abandoned))


# -- a step directory this user cannot read ----------------------------------


def _posix_rename(monkeypatch):
  """os.rename, enforcing what the kernel does for a non-root user.

  Root passes permission checks, so on a root CI machine the rule is
  emulated: moving a directory to another parent needs write permission on
  the directory itself (its ".." changes), and `refuse_chmod` makes os.chmod
  fail as on a directory of another owner.
  """
  real_rename, real_chmod = os.rename, os.chmod
  refused = set()

  def rename(source, target):
    if (os.path.isdir(source)
        and os.path.dirname(os.path.abspath(source))
        != os.path.dirname(os.path.abspath(target))
        and not os.stat(source).st_mode & stat.S_IWUSR):
      raise PermissionError(errno.EACCES, "Permission denied", source)
    real_rename(source, target)

  def chmod(path, mode):
    if os.path.abspath(path) in refused:
      raise PermissionError(errno.EPERM, "Operation not permitted", path)
    real_chmod(path, mode)

  monkeypatch.setattr(os, "rename", rename)
  monkeypatch.setattr(os, "chmod", chmod)
  return refused


def _tiny(key):
  return {"w": jax.numpy.arange(6.0).reshape(2, 3), "key": key}


def _two_steps(ckpt_dir):
  ckpt = checkpoint.Checkpointer(ckpt_dir)
  ckpt.save(1, _tiny(jax.random.key(0)), {})
  ckpt.save(2, _tiny(jax.random.key(1)), {})
  ckpt.close()
  return os.path.join(ckpt_dir, "2")


def test_an_unreadable_step_is_moved_aside_with_its_mode_kept(monkeypatch,
                                                              tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  step2 = _two_steps(ckpt_dir)
  _posix_rename(monkeypatch)
  os.chmod(step2, 0)
  target = str(tmp_path / "checkpoints_damaged" / "2")
  os.makedirs(os.path.dirname(target))
  try:
    moved = checkpoint._move_aside(step2, target)  # pylint: disable=protected-access
    assert moved == target
    assert stat.S_IMODE(os.stat(target).st_mode) == 0  # as it was found
    assert not os.path.exists(step2)
  finally:
    os.chmod(target if os.path.exists(target) else step2, 0o755)


def test_a_step_of_another_owner_is_renamed_beside_and_no_longer_listed(
    monkeypatch, tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  step2 = _two_steps(ckpt_dir)
  refused = _posix_rename(monkeypatch)
  os.chmod(step2, 0)
  refused.add(os.path.abspath(step2))
  target = str(tmp_path / "checkpoints_damaged" / "2")
  os.makedirs(os.path.dirname(target))
  try:
    moved = checkpoint._move_aside(step2, target)  # pylint: disable=protected-access
    assert os.path.dirname(moved) == ckpt_dir
    assert os.path.basename(moved).startswith("2.set_aside.")
    refused.clear()
    monkeypatch.undo()
    os.chmod(moved, 0o755)
    ckpt = checkpoint.Checkpointer(ckpt_dir)
    assert ckpt.all_steps() == [1]
    step, restored, _ = ckpt.restore_latest(_tiny)
    ckpt.close()
    assert step == 1
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3))
  finally:
    for p in (step2, target):
      if os.path.exists(p):
        os.chmod(p, 0o755)


def test_a_step_that_cannot_move_names_itself(monkeypatch, tmp_path):
  step2 = _two_steps(str(tmp_path / "checkpoints"))
  monkeypatch.setattr(os, "rename", _refuse)
  monkeypatch.setattr(os, "chmod", _refuse)
  with pytest.raises(checkpoint.CheckpointError,
                     match=f"checkpoint {step2} cannot be read and cannot be "
                     "moved aside"):
    checkpoint._move_aside(step2, str(tmp_path / "elsewhere"))  # pylint: disable=protected-access
  assert os.path.isdir(step2)


def _refuse(path, *unused):
  raise PermissionError(errno.EACCES, "Permission denied", path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 "
                    "directory; the emulated tests above cover root")
def test_a_mode_000_step_is_skipped_and_the_previous_restores(tmp_path,
                                                              caplog):
  ckpt_dir = str(tmp_path / "checkpoints")
  step2 = _two_steps(ckpt_dir)
  os.chmod(step2, 0)
  caplog.set_level(logging.WARNING)
  try:
    ckpt = checkpoint.Checkpointer(ckpt_dir)
    step, _, _ = ckpt.restore_latest(_tiny)
    ckpt.close()
  finally:
    for p in (step2, ckpt_dir + "_damaged/2"):
      if os.path.exists(p):
        os.chmod(p, 0o755)
  assert step == 1
  assert any(f"skipping checkpoint {step2}" in r.getMessage()
             for r in caplog.records)
  assert os.path.isdir(ckpt_dir + "_damaged/2")
