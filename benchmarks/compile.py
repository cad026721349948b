"""Time to the first iteration, cold and warm, as a share of the run's wall time.

Runs the launcher (`python -m launch.train`) twice on one config, each in a
fresh process and workdir: first with an empty persistent compilation cache
(cold: every program compiled), then with the cache the first run filled
(warm: programs loaded). From the launcher's own progress lines it reads
the init time (compile + initial labels) and the first iteration's time
(incl. its compile), and reports them with the whole process's wall time.

  python -m benchmarks.compile                       # make run's config
  python -m benchmarks.compile --config=experiments/configs/inverted_pendulum.py:smoke
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_CONFIG = flags.DEFINE_string(
    "config", "experiments/configs/inverted_pendulum.py",
    "config file (and variant) to launch")
_ITERATIONS = flags.DEFINE_integer(
    "iterations", 3, "iterations per run (the first includes its compile)")

_INIT = re.compile(r"init.*: ([0-9.]+)s")
_FIRST = re.compile(r"first iteration \(incl\. compile\) ([0-9.hms]+)")


def _seconds(text: str) -> float:
  """'26.1s', '1m05s' -> seconds."""
  m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([0-9.]+)s)?", text)
  if not m:
    return float("nan")
  h, mi, s = (float(x) if x else 0.0 for x in m.groups())
  return 3600 * h + 60 * mi + s


def _launch(cache: str, workdir: str) -> dict[str, float]:
  cmd = [sys.executable, "-m", "launch.train", f"--config={_CONFIG.value}",
         f"--workdir={workdir}", f"--config.num_iterations={_ITERATIONS.value}",
         f"--config.eval_every={_ITERATIONS.value}"]
  env = {**os.environ, "RRM_COMPILATION_CACHE": cache, "JAX_PLATFORMS":
         os.environ.get("JAX_PLATFORMS", "cpu")}
  t0 = time.perf_counter()
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       check=True).stdout
  wall = time.perf_counter() - t0
  init = _INIT.search(out)
  first = _FIRST.search(out)
  init_s = float(init.group(1)) if init else float("nan")
  first_s = _seconds(first.group(1)) if first else float("nan")
  return {"wall_s": wall, "init_s": init_s, "first_iteration_s": first_s,
          "to_first_s": init_s + first_s}


def main(argv):
  del argv
  root = tempfile.mkdtemp(prefix="rrm-bench-compile-")
  try:
    cache = os.path.join(root, "cache")
    cold = _launch(cache, os.path.join(root, "cold"))
    warm = _launch(cache, os.path.join(root, "warm"))
  finally:
    shutil.rmtree(root, ignore_errors=True)
  print(f"config {_CONFIG.value}, {_ITERATIONS.value} iterations; whole-process"
        " timings")
  print(f"{'':6} {'init s':>8} {'1st it s':>9} {'to 1st s':>9} {'wall s':>8}"
        f" {'to 1st / wall':>14}")
  for name, r in (("cold", cold), ("warm", warm)):
    print(f"{name:6} {r['init_s']:8.1f} {r['first_iteration_s']:9.1f} "
          f"{r['to_first_s']:9.1f} {r['wall_s']:8.1f} "
          f"{r['to_first_s'] / r['wall_s']:14.2f}")
  print(f"warm / cold time to the first iteration: "
        f"{warm['to_first_s'] / cold['to_first_s']:.2f}")


if __name__ == "__main__":
  app.run(main)
