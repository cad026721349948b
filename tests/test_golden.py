"""Nothing may change numerically: golden state digests and metrics.

Each case is init + 3 iterations + one evaluation of a config, compared bit
for bit with values recorded on the code before the restructuring that
split rrm/train.py (tests/golden_values.py). The sweep and the assisted
depth-3 cases live beside their compiled fixtures (test_sweep.py,
test_recursive_run.py); the disagreement case runs on the session's smoke
program.
"""

import os
import shutil

import jax
import pytest

from experiments.configs import inverted_pendulum
from experiments.configs import point_hazard
from rrm import checkpoint as rrm_checkpoint
from rrm import config_parse
from rrm import config as rrm_config
from rrm import state as rrm_state
from rrm import train as rrm_train
import golden_values
from conftest import fast_compile

ITERATIONS = 3


def run_golden(train, seed: int = 0):
  """States after init and after `ITERATIONS`, and every metric on the way."""
  states, metrics, _ = _run_live(train, seed)
  return states, metrics


def _run_live(train, seed: int = 0):
  """`run_golden`'s values, and the final state itself (not donated)."""
  seed_key, key_eval = rrm_state.run_keys(seed)
  state = train.init(seed_key)
  states, metrics = [jax.device_get(state)], []
  for _ in range(ITERATIONS):
    state, m = train.iteration(state)
    metrics.append(jax.device_get(m))
  metrics[-1] = {**metrics[-1], **jax.device_get(train.evaluate(
      state, jax.random.fold_in(key_eval, ITERATIONS)))}
  states.append(jax.device_get(state))
  return states, metrics, state


def test_golden_disagreement_queries(smoke):
  golden_values.check("smoke_disagreement", *run_golden(smoke))


def _smoke(**changes):
  cd = inverted_pendulum.get_config("smoke")
  for k, v in changes.items():
    section, last = cd, k.split(".")
    for p in last[:-1]:
      section = section[p]
    section[last[-1]] = v
  return config_parse.from_config_dict(cd)


@pytest.mark.parametrize("name,config", [
    ("smoke_uniform", lambda: _smoke(**{"feedback.query_selector":
                                        "uniform"})),
    # The program test_train's true-reward test compiles (4 iterations).
    ("smoke_true_reward", lambda: _smoke(**{"reward.source": "true",
                                            "num_iterations": 4})),
])
def test_golden_plain(name, config):
  with fast_compile():
    golden_values.check(name, *run_golden(rrm_train.make_train(config())))


def test_golden_limited_user():
  cd = point_hazard.get_config("smoke")
  cd.recursive.user = "limited"
  config = config_parse.from_config_dict(cd)
  with fast_compile():
    golden_values.check("point_hazard_limited",
                        *run_golden(rrm_train.make_train(config)))


# A checkpoint written by the code before the restructuring (commit c3b2c9d):
# the smoke run's state after init + 3 iterations, seed 0.
OLD_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "golden", "checkpoint_c3b2c9d")
# Its state's digest (rrm.checkpoint.state_digest), as written.
WRITTEN_DIGEST = (
    "e9d2c2ee3757db5675c88b859a8dd4ec7bae2461a81152aa99f023e0c32a5417")


def test_checkpoint_from_before_the_restructuring_restores(smoke, tmp_path):
  """The old code's checkpoint restores with the digest it was written with
  and continues as the old code continues it: on this machine's kind, as
  recorded with tests/golden/continue_c3b2c9d.py on the old code; on the
  kind that wrote it (where the live run reproduces it), as the live run
  continues."""
  states, _, live = _run_live(smoke)
  if golden_values.RECORD:
    shutil.rmtree(OLD_CHECKPOINT, ignore_errors=True)
    ckpt = rrm_checkpoint.Checkpointer(OLD_CHECKPOINT)
    ckpt.save(ITERATIONS, states[1], {"iteration": ITERATIONS,
                                      "config": rrm_config.to_dict(
                                          smoke.config)})
    ckpt.close()
  directory = str(tmp_path / "checkpoints")
  shutil.copytree(OLD_CHECKPOINT, directory)
  ckpt = rrm_checkpoint.Checkpointer(directory)
  step, restored, _ = ckpt.restore_latest(smoke.init)
  ckpt.close()
  assert step == ITERATIONS
  digest = rrm_checkpoint.state_digest(restored)
  assert digest == WRITTEN_DIGEST  # also checked by restore, against its own
  a, _ = smoke.iteration(restored)
  recorded = golden_values.recorded_here("checkpoint_c3b2c9d_continued")
  if recorded is not None:
    assert recorded["digests"] == [digest, rrm_checkpoint.state_digest(a)]
    return
  # No continuation recorded for this kind: it must be the kind that wrote
  # the checkpoint, where it continues as the uninterrupted run does.
  assert rrm_checkpoint.state_digest(states[1]) == digest, (
      f"machine kind {golden_values.kind()} neither wrote the checkpoint nor "
      "has its continuation recorded (tests/golden_values.py's recipe)")
  # (The live state, not a host copy: a host copy's committed key array
  # would be another jit cache entry, i.e. a second compile.)
  b, _ = smoke.iteration(live)
  assert rrm_checkpoint.state_digest(a) == rrm_checkpoint.state_digest(b)
