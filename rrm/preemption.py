"""Stopping a run cleanly on SIGTERM / SIGINT.

Schedulers (Slurm, Kubernetes, preemptible cloud VMs) announce preemption
with SIGTERM and a grace period; a user presses Ctrl-C. Either way the run
should finish the iteration in flight, save a checkpoint, wait for the save
and exit 0, so that relaunching the same command resumes it.

    with preemption.StopOnSignals() as stop:
      result = loop.run(config, workdir, stop=stop)

`stop()` returns the name of the first signal received, or None. A second
SIGINT while the first is being handled raises KeyboardInterrupt (the user
insists); a second SIGTERM is ignored, the save goes on.
"""

from __future__ import annotations

import signal
import threading
from typing import Sequence

from absl import logging


class StopOnSignals:
  """Context manager: turns `signals` into a stop request (see module doc)."""

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM,
                                               signal.SIGINT)):
    self._signals = tuple(signals)
    self._previous = {}
    self._received: str | None = None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    if self._received is not None:
      if signum == signal.SIGINT:
        raise KeyboardInterrupt(f"second {name} while stopping")
      return
    self._received = name
    logging.warning("received %s: stopping after this iteration, with a "
                    "checkpoint", name)

  def __enter__(self) -> "StopOnSignals":
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()

  def __call__(self) -> str | None:
    return self._received
