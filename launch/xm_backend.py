"""launch/sweep.py --backend=xmanager: the units as one XManager experiment.

  pip install -e '.[xmanager]'
  python -m launch.sweep --sweep=experiments/sweeps/queries.py \
      --workdir=runs/queries --backend=xmanager

One experiment (title `--xmanager_experiment_title`, recorded in
XManager's local database, ~/.xmanager/experiments.sqlite3 by default), one
work unit per pending rrm unit, each a job on XManager's local executor
(`xm_local.Local`) running the unit's worker command (`python -m
launch.sweep ... --unit=NAME`) as a local binary: no Docker, no Bazel, no
cloud. All units start at once
(XManager's local executor has no queue); each one's output goes to
`--workdir/<unit>.log`. A unit is finished when its results.jsonl exists,
as for the other backends, so a relaunch skips it and resumes the others.

Other XManager executors (Vertex AI, Kubernetes) need the code packaged as a
container image; that is not done here.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from typing import Callable, Sequence


def run(units: Sequence, workdir: str, worker_argv: Callable[[str], list[str]],
        title: str) -> tuple[list[str], list[str]]:
  """Runs `units` as the work units of one experiment; waits for all.

  Args:
    units: rrm.sweep.Unit's to run (the pending ones).
    workdir: the sweep's --workdir (unit logs go there).
    worker_argv: unit name -> the worker command line.
    title: the experiment's title.

  Returns:
    (failed, stopped) unit descriptions, as launch.sweep.run_local's.

  Raises:
    ImportError: xmanager is not installed.
  """
  # Imported here: xmanager is an optional extra, and importing it defines
  # its absl flags (they keep their defaults; ours are parsed by then).
  from xmanager import xm  # pylint: disable=g-import-not-at-top
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top

  logs = {u.name: os.path.join(workdir, f"{u.name}.log") for u in units}

  async def launch() -> dict[str, str | None]:
    outcomes: dict[str, str | None] = {}
    try:
      async with xm_local.create_experiment(experiment_title=title) as exp:
        # The worker is run by a shell only to send its output to the unit's
        # log (xm_local otherwise interleaves every unit on our stdout).
        [shell] = exp.package([xm.Packageable(
            executable_spec=xm.Binary(path="/bin/sh"),
            executor_spec=xm_local.Local.Spec())])
        work_units = []
        for unit in units:
          command = (f"exec {shlex.join(worker_argv(unit.name))} "
                     f">> {shlex.quote(logs[unit.name])} 2>&1")
          work_units.append(await exp.add(xm.Job(
              executable=shell, executor=xm_local.Local(),
              args=["-c", command])))
        print(f"XManager experiment {exp.experiment_id} ({title!r}): "
              f"{len(work_units)} work units", flush=True)

        async def wait(unit, work_unit):
          try:
            await work_unit.wait_until_complete()
            outcomes[unit.name] = None
          except xm.ExperimentUnitError as e:
            outcomes[unit.name] = f"{e.__cause__ or e}"

        await asyncio.gather(*[wait(u, w) for u, w in zip(units, work_units)])
    except RuntimeError as e:
      # On leaving the experiment, xm_local raises the first failed job's
      # error again; each unit's outcome is already recorded.
      if not any(outcomes.values()):
        raise
      del e
    return outcomes

  outcomes = asyncio.run(launch())
  failed, stopped = [], []
  for unit in units:
    with open(logs[unit.name]) as f:
      tail = (f.read().strip().splitlines()[-1:] or [""])[0]
    error = outcomes.get(unit.name)
    print(f"{unit.name}: {'failed' if error else 'exit 0'}: {tail}",
          flush=True)
    if error:
      failed.append(f"{unit.name} ({error}; log {logs[unit.name]})")
    elif not os.path.exists(os.path.join(workdir, unit.name,
                                         "results.jsonl")):
      stopped.append(unit.name)
  return failed, stopped
