"""Golden values: state digests and metrics that no restructuring may change.

Recorded on the code before a restructuring (`RRM_RECORD_GOLDEN=1 pytest
tests/test_golden.py tests/test_sweep.py::test_golden_sweep
tests/test_recursive_run.py::test_golden_assisted_depth3` writes
tests/golden/values.json) and compared bit for bit afterwards: a state's
SHA-256 over every leaf (rrm.checkpoint.state_digest) after `init` and after
3 iterations, and every metric of those iterations as float32 bits.

They hold for this machine's kind (x86-64 CPU, the versions pinned in
setup.py); XLA may pick other kernels on another CPU or version, and then
every value differs: re-record them there on the commit that recorded these
before trusting a comparison.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from rrm import checkpoint as rrm_checkpoint

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                    "values.json")
RECORD = os.environ.get("RRM_RECORD_GOLDEN") == "1"


def _bits(v: Any) -> Any:
  """A metric as the hex of its float32 bits (exact, nan-safe) per element."""
  a = np.asarray(jax.device_get(v))
  if a.dtype.kind in "fc":
    a = a.astype(np.float32)
    return [format(int(x), "08x") for x in a.reshape(-1).view(np.uint32)]
  return [repr(x) for x in a.reshape(-1).tolist()]


def summarise(states: Sequence[Any], metrics: Sequence[Mapping[str, Any]]
              ) -> dict[str, Any]:
  """{"digests": [one per state], "metrics": [{key: bits} per iteration]}."""
  return {
      "digests": [rrm_checkpoint.state_digest(jax.device_get(s))
                  for s in states],
      "metrics": [{k: _bits(v) for k, v in sorted(m.items())}
                  for m in metrics],
  }


def _load() -> dict[str, Any]:
  if not os.path.exists(PATH):
    return {}
  with open(PATH) as f:
    return json.load(f)


def check(name: str, states: Sequence[Any],
          metrics: Sequence[Mapping[str, Any]]) -> None:
  """Asserts `name`'s digests and metrics equal the recorded ones."""
  now = summarise(states, metrics)
  if RECORD:
    values = _load()
    values[name] = now
    with open(PATH, "w") as f:
      json.dump(values, f, indent=1, sort_keys=True)
    return
  golden = _load().get(name)
  assert golden is not None, f"no golden values recorded for {name!r}"
  problems = []
  for i, (a, b) in enumerate(zip(golden["digests"], now["digests"])):
    if a != b:
      problems.append(f"state {i}: digest {b[:12]} != golden {a[:12]}")
  for i, (a, b) in enumerate(zip(golden["metrics"], now["metrics"])):
    if set(a) != set(b):
      problems.append(f"iteration {i + 1}: metric keys differ: only golden "
                      f"{sorted(set(a) - set(b))}, only now "
                      f"{sorted(set(b) - set(a))}")
    for k in sorted(set(a) & set(b)):
      if a[k] != b[k]:
        problems.append(f"iteration {i + 1}: {k} bits {b[k]} != golden "
                        f"{a[k]}")
  if len(golden["metrics"]) != len(now["metrics"]):
    problems.append("number of iterations differs")
  assert not problems, f"{name}: " + "; ".join(problems[:20])



def metric(name: str, iteration: int, key: str) -> np.ndarray:
  """A recorded metric's values (float32; one per sweep member) at
  `iteration` (1-based), for tests that compare to rounding, not bits."""
  values = _load()[name]["metrics"][iteration - 1][key]
  if all(len(v) == 8 for v in values):  # float32 bits (see `_bits`)
    return np.array([int(b, 16) for b in values],
                    np.uint32).view(np.float32)
  return np.array([float(v) for v in values], np.float32)  # integers' repr
