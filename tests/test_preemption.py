"""StopOnSignals: SIGTERM / SIGINT become a stop request (real signals)."""

import os
import signal
import threading
import time

import pytest

from rrm import preemption


@pytest.fixture(autouse=True)
def sentinel_handlers():
  """Installs recording handlers for SIGTERM/SIGINT around each test.

  They stand for whatever was there before the run (pytest's own, the
  default that would kill the test process), are what `__exit__` must put
  back, and are removed again afterwards.
  """
  received = []
  sentinel = lambda signum, frame: received.append(signum)
  saved = {s: signal.signal(s, sentinel)
           for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
  try:
    yield sentinel, received
  finally:
    for s, handler in saved.items():
      signal.signal(s, handler)


def _send(signum):
  """Sends `signum` to this process and lets its Python handler run.

  CPython runs handlers on the main thread between bytecodes, so the handler
  has normally run by the time os.kill returns; the short sleep only makes
  sure of it.
  """
  os.kill(os.getpid(), signum)
  time.sleep(0.01)


def test_no_signal_means_no_stop():
  with preemption.StopOnSignals() as stop:
    assert stop() is None
  assert stop() is None


def test_sigterm_requests_a_stop_with_its_name(sentinel_handlers):
  _, received = sentinel_handlers
  with preemption.StopOnSignals() as stop:
    assert stop() is None
    _send(signal.SIGTERM)
    assert stop() == "SIGTERM"
  # Handled by StopOnSignals, not passed on to the previous handler; the
  # request outlives the block (the trainer reads it after the loop).
  assert received == []
  assert stop() == "SIGTERM"


def test_sigint_requests_a_stop_instead_of_keyboard_interrupt():
  with preemption.StopOnSignals() as stop:
    _send(signal.SIGINT)  # would raise KeyboardInterrupt by default
    assert stop() == "SIGINT"


def test_handlers_are_restored_on_exit(sentinel_handlers):
  sentinel, received = sentinel_handlers
  ctx = preemption.StopOnSignals()
  with ctx as stop:
    assert stop is ctx
    for s in (signal.SIGTERM, signal.SIGINT):
      assert signal.getsignal(s) not in (sentinel, signal.SIG_DFL)
  for s in (signal.SIGTERM, signal.SIGINT):
    assert signal.getsignal(s) is sentinel
  # After the block a signal reaches the previous handler again and is no
  # longer a stop request.
  _send(signal.SIGTERM)
  assert received == [signal.SIGTERM]
  assert stop() is None


def test_handlers_are_restored_when_the_block_raises(sentinel_handlers):
  sentinel, _ = sentinel_handlers
  with pytest.raises(RuntimeError, match="boom"):
    with preemption.StopOnSignals():
      raise RuntimeError("boom")
  assert signal.getsignal(signal.SIGTERM) is sentinel
  assert signal.getsignal(signal.SIGINT) is sentinel


def test_second_sigint_raises_keyboard_interrupt_if_asked(sentinel_handlers):
  sentinel, _ = sentinel_handlers
  with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
    with preemption.StopOnSignals(second_sigint="raise") as stop:
      _send(signal.SIGINT)
      assert stop() == "SIGINT"
      _send(signal.SIGINT)  # the user insists
      pytest.fail("a second SIGINT must interrupt")
  assert stop() == "SIGINT"
  assert signal.getsignal(signal.SIGINT) is sentinel  # restored on the way out


def test_sigint_after_sigterm_still_interrupts():
  with pytest.raises(KeyboardInterrupt):
    with preemption.StopOnSignals(second_sigint="raise") as stop:
      _send(signal.SIGTERM)
      _send(signal.SIGINT)
  assert stop() == "SIGTERM"  # the first signal is the one reported


def test_second_sigterm_is_ignored(sentinel_handlers):
  sentinel, received = sentinel_handlers
  finished = False
  with preemption.StopOnSignals() as stop:
    _send(signal.SIGTERM)
    _send(signal.SIGTERM)  # no exception: the save goes on
    _send(signal.SIGTERM)
    assert stop() == "SIGTERM"
    finished = True
  assert finished and received == []
  assert signal.getsignal(signal.SIGTERM) is sentinel


def test_sigterm_after_sigint_is_ignored():
  with preemption.StopOnSignals() as stop:
    _send(signal.SIGINT)
    _send(signal.SIGTERM)
    assert stop() == "SIGINT"  # the first signal is the one reported


def test_only_the_given_signals_are_caught(sentinel_handlers):
  sentinel, received = sentinel_handlers
  with preemption.StopOnSignals(signals=(signal.SIGUSR1,)) as stop:
    assert signal.getsignal(signal.SIGTERM) is sentinel
    _send(signal.SIGTERM)  # not ours: the previous handler gets it
    assert received == [signal.SIGTERM] and stop() is None
    _send(signal.SIGUSR1)
    assert stop() == "SIGUSR1"
  assert signal.getsignal(signal.SIGUSR1) is sentinel


def test_outside_the_main_thread_installs_nothing(sentinel_handlers):
  # signal.signal only works on the main thread; there the context manager
  # is a no-op that never requests a stop.
  sentinel, _ = sentinel_handlers
  seen = {}

  def body():
    with preemption.StopOnSignals() as stop:
      seen["handler"] = signal.getsignal(signal.SIGTERM)
      seen["stop"] = stop()

  thread = threading.Thread(target=body)
  thread.start()
  thread.join()
  assert seen == {"handler": sentinel, "stop": None}


# -- in a process of its own: the watchdog ends it -------------------------

_SCRIPT = """
import sys, time
from rrm import preemption
with preemption.StopOnSignals() as stop:
  print("ready", flush=True)
  if sys.argv[1] == "compiling":
    with stop.exit_at_once("compiling init"):
      time.sleep(120)  # stands for the initial compile
  deadline = time.time() + 120
  while stop() is None and time.time() < deadline:
    time.sleep(0.05)  # an iteration
  print("stop requested:", stop(), flush=True)
  time.sleep(120)  # stands for a save that hangs (Orbax's thread start-up)
  print("saved", flush=True)
"""


def _start(mode):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, mode], cwd=root,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "ready"
  return proc


def test_a_second_ctrl_c_ends_the_process_within_seconds():
  """Ctrl-C twice, 50 ms apart, while the stop's save hangs: the process is
  gone within seconds (status 130), not after Orbax's 300 s timeout."""
  proc = _start("running")
  try:
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "stop requested: SIGINT"
    time.sleep(0.05)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=10)
    assert code == 130 and time.time() - t0 < 5
    assert "second SIGINT: exiting now" in proc.stderr.read()
  finally:
    proc.kill()
    proc.wait()


def test_one_sigterm_waits_for_the_save_a_second_is_ignored():
  proc = _start("running")
  try:
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().strip() == "stop requested: SIGTERM"
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert proc.poll() is None  # still saving
  finally:
    proc.kill()
    proc.wait()


def test_sigterm_while_nothing_is_saved_yet_ends_the_process_at_once():
  """SIGTERM during the initial compile: exit 0 at once, not after it."""
  proc = _start("compiling")
  try:
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0 and time.time() - t0 < 5
    assert "SIGTERM while compiling init: nothing to save yet" in (
        proc.stderr.read())
  finally:
    proc.kill()
    proc.wait()
