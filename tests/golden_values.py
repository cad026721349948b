"""Golden values: state digests and metrics that no restructuring may change.

Recorded on the code before a restructuring and compared bit for bit
afterwards: a state's SHA-256 over every leaf (rrm.checkpoint.state_digest)
after `init` and after 3 iterations, and every recorded metric of those
iterations as float32 bits (metrics added later are new outputs and pass).

Bits depend on the machine's kind as well as the code: XLA's CPU kernels
differ between CPUs (measured: every value differs between the machine that
recorded the first set and an AVX-512 AMD EPYC, for the old code and the new
alike), so tests/golden/values.json holds one set per kind of machine, each
recorded there on the code before the restructuring (commit 72edd36:
c3b2c9d plus this recorder), and a value passes when it equals that of a
recorded kind. Kinds whose float ISA (`_FLOAT_ISA`) is the same share a
set. On a kind of machine with neither, the comparison fails with the
recipe; to add one, on that machine:

  git worktree add /tmp/old 72edd36 && cd /tmp/old
  sed -i 's/pytest==9.2.0/pytest==9.1.1/' setup.py && make install
  RRM_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py \
      tests/test_sweep.py::test_golden_sweep \
      tests/test_recursive_run.py::test_golden_assisted_depth3
  .venv/bin/python /path/to/rrm/tests/golden/continue_c3b2c9d.py \
      /path/to/rrm/tests/golden/checkpoint_c3b2c9d
  # then put that worktree's tests/golden/values.json entries, and the two
  # digests printed as "checkpoint_c3b2c9d_continued", in this values.json
  # under "kinds" / this machine's `kind()` / "values"

Never record on the code being checked: that guards nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from rrm import checkpoint as rrm_checkpoint

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                    "values.json")
RECORD = os.environ.get("RRM_RECORD_GOLDEN") == "1"
# The CPU features XLA's code generation and kernels depend on.
_ISA_PREFIXES = ("sse4", "avx", "fma", "f16c", "amx", "bmi")
# Of those, the ones that decide float32 results: vector width and fused
# multiply-add. Integer-only extensions (VNNI, VP2INTERSECT, BITALG, ...) do
# not. Measured: a Zen 4 EPYC (kind 814758f5, no avx_vnni/vp2intersect)
# reproduces every value recorded on the Zen 5 EPYC of kind 337a14e9 bit for
# bit, and differs from the AVX2-only first set.
_FLOAT_ISA = frozenset(("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
                        "avx512f", "avx512dq", "avx512bw", "avx512vl",
                        "avx512cd", "avx512_bf16", "avx512_fp16"))


def _cpu() -> tuple[str, list[str]]:
  """This CPU's model name and its ISA flags (from /proc/cpuinfo)."""
  model, flags = platform.processor() or platform.machine(), []
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags = sorted(x for x in value.split()
                         if x.startswith(_ISA_PREFIXES))
          break
  except OSError:
    pass
  return model, flags


def kind() -> str:
  """This machine's kind: architecture and a hash of its ISA flags."""
  _, flags = _cpu()
  h = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:8]
  return f"{platform.machine()}-{h}"


def _float_isa(flags) -> tuple[str, ...] | None:
  return None if flags is None else tuple(sorted(_FLOAT_ISA & set(flags)))


def _same_numerics() -> list[str]:
  """Recorded kinds whose float ISA is this machine's: this kind first."""
  here, mine = kind(), _float_isa(_cpu()[1])
  kinds = _kinds()
  same = [k for k, v in kinds.items()
          if k != here and _float_isa(v["isa"]) == mine]
  return ([here] if here in kinds else []) + same


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


def _kinds() -> dict[str, Any]:
  if not os.path.exists(PATH):
    return {}
  with open(PATH) as f:
    return json.load(f)["kinds"]


def _problems(golden: Mapping[str, Any], now: Mapping[str, Any]
              ) -> list[str]:
  problems = []
  for i, (a, b) in enumerate(zip(golden["digests"], now["digests"])):
    if a != b:
      problems.append(f"state {i}: digest {b[:12]} != golden {a[:12]}")
  for i, (a, b) in enumerate(zip(golden["metrics"], now["metrics"])):
    # Metrics added since the recording are new outputs, not changes;
    # every recorded one must still be there, bit for bit.
    if set(a) - set(b):
      problems.append(f"iteration {i + 1}: recorded metrics missing now: "
                      f"{sorted(set(a) - set(b))}")
    for k in sorted(set(a) & set(b)):
      if a[k] != b[k]:
        problems.append(f"iteration {i + 1}: {k} bits {b[k]} != golden "
                        f"{a[k]}")
  if len(golden["metrics"]) != len(now["metrics"]):
    problems.append("number of iterations differs")
  return problems


def _record(name: str, now: Mapping[str, Any]) -> None:
  values = json.load(open(PATH)) if os.path.exists(PATH) else {"kinds": {}}
  model, flags = _cpu()
  entry = values["kinds"].setdefault(
      kind(), {"cpu": model, "isa": flags, "values": {}})
  entry["values"][name] = now
  with open(PATH, "w") as f:
    json.dump(values, f, indent=1, sort_keys=True)


def check(name: str, states: Sequence[Any],
          metrics: Sequence[Mapping[str, Any]]) -> None:
  """Asserts `name`'s digests and metrics equal a recorded kind's."""
  check_summary(name, summarise(states, metrics))


def check_summary(name: str, now: Mapping[str, Any]) -> None:
  if RECORD:
    _record(name, now)
    return
  recorded = {k: v["values"][name] for k, v in _kinds().items()
              if name in v["values"]}
  assert recorded, f"no golden values recorded for {name!r}"
  problems = {k: _problems(golden, now) for k, golden in recorded.items()}
  if any(not p for p in problems.values()):
    return
  here = kind()
  same = [k for k in _same_numerics() if k in problems]
  if same:  # a kind with this machine's numerics is recorded: a real change
    raise AssertionError(f"{name} (machine kind {here}, compared with "
                         f"{same[0]}): " + "; ".join(problems[same[0]][:20]))
  model, flags = _cpu()
  nearest = min(problems, key=lambda k: len(problems[k]))
  raise AssertionError(
      f"{name}: equal to no recorded kind's values, and this machine's kind "
      f"{here} ({model}; {' '.join(flags)}) has none recorded: XLA may "
      "compute other bits here. Record this kind's on the old code (the "
      "recipe in tests/golden_values.py) before trusting the comparison. "
      f"Against {nearest}: " + "; ".join(problems[nearest][:8]))


def metric(name: str, iteration: int, key: str) -> np.ndarray:
  """A recorded metric's values (float32; one per sweep member) at
  `iteration` (1-based), for tests that compare to rounding, not bits: this
  machine kind's (or one with its float ISA), else the first set's
  (recorded on a machine whose flags were not noted)."""
  kinds, same = _kinds(), _same_numerics()
  entry = kinds[same[0]] if same else next(
      v for v in kinds.values() if v["isa"] is None)
  values = entry["values"][name]["metrics"][iteration - 1][key]
  if all(len(v) == 8 for v in values):  # float32 bits (see `_bits`)
    return np.array([int(b, 16) for b in values],
                    np.uint32).view(np.float32)
  return np.array([float(v) for v in values], np.float32)  # integers' repr


def recorded_here(name: str) -> Mapping[str, Any] | None:
  """The recorded summary of `name` of this machine's kind, or of a kind
  with its float ISA, if one has it."""
  kinds = _kinds()
  for k in _same_numerics():
    if name in kinds[k]["values"]:
      return kinds[k]["values"][name]
  return None
