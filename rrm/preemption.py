"""Stopping a run cleanly on SIGTERM / SIGINT.

Schedulers (Slurm, Kubernetes, preemptible cloud VMs) announce preemption
with SIGTERM and a grace period; a user presses Ctrl-C. Either way the run
should finish the iteration in flight, save a checkpoint, wait for the save
and exit 0, so that relaunching the same command resumes it.

    with preemption.StopOnSignals() as stop:
      result = loop.run(config, workdir, stop=stop)

`stop()` returns the name of the first signal received, or None. A second
SIGTERM is ignored: the save goes on. A second SIGINT (the user insists)
ends the process within moments with status 130, whatever the main thread
is doing (compiling, waiting for a save): a watchdog thread reads the
signals from a wakeup pipe, which the C-level handler writes at once, and
calls os._exit. Checkpoints are written to a temporary directory and renamed
when complete, so the last complete one is intact (the unfinished one is set
aside on resume). `second_sigint="raise"` raises KeyboardInterrupt in the
main thread instead (in-process use, tests).

While nothing is worth saving yet (the run's `init` compiling: no label is
paid before it returns), `exit_at_once(why)` makes the first signal end the
process at once too, with status 0: waiting for a compile to finish only to
exit would hold a preempted machine for its whole length.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Sequence

from absl import logging


class StopOnSignals:
  """Context manager: turns `signals` into a stop request (see module doc)."""

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM,
                                               signal.SIGINT),
               second_sigint: str = "exit"):
    if second_sigint not in ("exit", "raise"):
      raise ValueError(f"second_sigint={second_sigint!r}; 'exit' or 'raise'")
    self._signals = tuple(signals)
    self._second_sigint = second_sigint
    self._previous = {}
    self._received: str | None = None
    self._at_once: str | None = None
    self._pipe: tuple[int, int] | None = None
    self._previous_wakeup = -1
    self._watchdog: threading.Thread | None = None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    if self._received is not None:
      if signum == signal.SIGINT and self._second_sigint == "raise":
        raise KeyboardInterrupt(f"second {name} while stopping")
      return
    self._received = name
    logging.warning("received %s: stopping after this iteration, with a "
                    "checkpoint", name)

  def _watch(self, read_fd: int) -> None:
    """The watchdog: acts on signals the main thread may not reach soon."""
    seen = []
    while True:
      try:
        data = os.read(read_fd, 64)
      except OSError:
        return
      if not data:
        return  # the write end closed: the block ended
      for signum in data:
        if signum not in self._signals:
          continue
        seen.append(signum)
        name = signal.Signals(signum).name
        if self._at_once is not None:
          _exit_now(f"{name} while {self._at_once}: nothing to save yet; "
                    "launch the same command again to start", 0)
        if (len(seen) > 1 and signum == signal.SIGINT
            and self._second_sigint == "exit"):
          _exit_now(f"second {name}: exiting now; the last complete "
                    "checkpoint is intact (launch the same command again "
                    "to resume from it)", 128 + signum)

  @contextlib.contextmanager
  def exit_at_once(self, why: str) -> Iterator[None]:
    """Within the block, the first signal ends the process (status 0)."""
    if self._received is not None and self._watchdog is not None:
      _exit_now(f"{self._received} while {why}: nothing to save yet; launch "
                "the same command again to start", 0)
    self._at_once = why
    try:
      yield
    finally:
      self._at_once = None

  def __enter__(self) -> "StopOnSignals":
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        self._previous[s] = signal.signal(s, self._handle)
      if self._second_sigint == "exit":
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._previous_wakeup = signal.set_wakeup_fd(write_fd)
        self._watchdog = threading.Thread(
            target=self._watch, args=(read_fd,), name="rrm-signal-watchdog",
            daemon=True)
        self._watchdog.start()
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    if self._pipe is not None:
      signal.set_wakeup_fd(self._previous_wakeup)
      os.close(self._pipe[1])  # the watchdog reads EOF and ends
      self._watchdog.join(timeout=5)
      os.close(self._pipe[0])
      self._pipe, self._watchdog = None, None

  def __call__(self) -> str | None:
    return self._received


def _exit_now(message: str, status: int) -> None:
  try:
    os.write(sys.stderr.fileno(), f"{message}\n".encode())
  except OSError:
    pass
  os._exit(status)  # pylint: disable=protected-access
