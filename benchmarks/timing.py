"""Shared timing of the benchmarks that compare two configs' iterations."""

from __future__ import annotations

import time

import jax

from rrm import config_parse
from rrm import train as rrm_train


def seconds_per_iteration(cd, iterations: int) -> float:
  """Mean wall seconds of `iterations` iterations of config dict `cd`, after
  one warm-up iteration (its compile excluded); the metrics are fetched to
  the host each time, as the host loop does."""
  config = config_parse.from_config_dict(cd)
  train = rrm_train.make_train(config)
  state = train.init(jax.random.key(0))
  state, metrics = train.iteration(state)  # compiles
  jax.device_get(metrics)
  start = time.perf_counter()
  for _ in range(iterations):
    state, metrics = train.iteration(state)
    jax.device_get(metrics)
  return (time.perf_counter() - start) / iterations


def print_ratio(without_name: str, without: float, with_name: str,
                with_: float, detail: str) -> None:
  """The two timings, per iteration, and their ratio (with / without)."""
  width = max(len(without_name), len(with_name)) + 1
  print(f"{without_name + ':':<{width}} {without:.3f} s/iteration")
  print(f"{with_name + ':':<{width}} {with_:.3f} s/iteration ({detail})")
  print(f"ratio with/without: {with_ / without:.2f}")
