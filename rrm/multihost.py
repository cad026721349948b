"""Several processes (hosts) running one program: global arrays and host I/O.

After `jax.distributed.initialize()`, every process runs the same Python
program (multi-controller JAX): `jax.devices()` lists the devices of all
processes, an array sharded over them is *global* (each process holds only
its addressable shards), and every jitted call, collective and checkpoint
save must be made by every process in the same order. These helpers put
host values on a global sharding, fetch global values back to every host,
and decide who writes files. With one process they reduce to
`jax.device_put` / `jax.device_get`, so single-host code paths are unchanged.

Timing. A cross-process collective waits only so long for its peers (on
CPU, Gloo gives up after 30 s), while processes reach it at different times:
one loads a program from the compilation cache that another compiles for a
minute, or its devices are still running the iteration dispatched before
(dispatch is asynchronous). So every collective here is compiled first,
and entered once its inputs are computed and every process has reached a
barrier of the coordination service (`barrier`, an hour of patience). The
members' own programs hold no collectives at all (members never
communicate).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

# How long a barrier waits for the slowest process (compiling, restoring a
# checkpoint, ...). A process that dies is noticed sooner: the coordination
# service's heartbeats end the others.
BARRIER_TIMEOUT_S = 3600

_barrier_count = itertools.count()


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def is_primary() -> bool:
  """Whether this process writes the files that are written once (process 0)."""
  return jax.process_index() == 0


def barrier(name: str, wait_for: Any = None,
            timeout_s: int = BARRIER_TIMEOUT_S) -> None:
  """Returns once every process has reached `barrier(name)` (no collective).

  Every process must make the same sequence of calls (the keys are made
  unique by counting them). `wait_for`: arrays to compute first.
  """
  if not is_multiprocess():
    return
  jax.block_until_ready(wait_for)
  # Orbax's public wrapper of the JAX distributed client's barrier.
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  key = f"rrm_{name}_{next(_barrier_count)}"
  ocp.multihost.get_barrier_sync_fn()(key=key, timeout_ms=timeout_s * 1000)


def _is_key(x: Any) -> bool:
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def put_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """`tree` placed on `sharding`, which may span every process's devices.

  Every process must pass the same values (they are the global value, not
  a per-process part); each places its own shards, with no communication.
  Leaves already on `sharding` are kept; typed PRNG keys go through their
  key data (`jax.random.key_data`).
  """
  if not is_multiprocess():
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if _is_key(x):
      impl = jax.random.key_impl(x)
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=impl)
    # A committed jax.Array cannot go onto other processes' devices; its
    # numpy value (the same on every process) can.
    value = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(value.shape, sharding,
                                        lambda index: value[index])

  return jax.tree.map(put, tree)


@functools.lru_cache(maxsize=64)
def _compiled_gather(avals: tuple[tuple[Any, Any, Any], ...]):
  """The all-gather of leaves with these (shape, dtype, sharding), compiled."""
  args = [jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
          for shape, dtype, sharding in avals]
  replicated = [s.update(spec=jax.sharding.PartitionSpec())
                for _, _, s in avals]
  return jax.jit(lambda xs: xs, out_shardings=replicated).lower(args).compile()


def fetch(tree: Any) -> Any:
  """A host copy of `tree` on every process (a collective: all must call).

  Leaves become numpy arrays, except typed PRNG keys, which stay key arrays
  on a local device (as `jax.device_get` leaves them). Global arrays are
  gathered by one compiled all-gather per tree layout, entered by all
  processes together (see the module docstring).
  """
  if not is_multiprocess():
    return jax.device_get(tree)
  leaves, treedef = jax.tree.flatten(tree)
  gathered = [i for i, x in enumerate(leaves)
              if isinstance(x, jax.Array) and not x.is_fully_addressable]
  if gathered:
    for i in gathered:
      if not isinstance(leaves[i].sharding, jax.sharding.NamedSharding):
        raise TypeError(f"fetch gathers NamedSharding arrays; leaf {i} has "
                        f"{leaves[i].sharding}")
    gather = _compiled_gather(tuple(
        (leaves[i].shape, leaves[i].dtype, leaves[i].sharding)
        for i in gathered))
    inputs = [leaves[i] for i in gathered]
    barrier("fetch", wait_for=inputs)
    out = gather(inputs)
    for i, x in zip(gathered, out):
      leaves[i] = x.addressable_data(0)
  return jax.device_get(jax.tree.unflatten(treedef, leaves))


def any_process(flag: bool) -> bool:
  """Whether `flag` is true on any process (a collective: all must call).

  Decisions that change which collectives run next (stop and save, say)
  must be the same on every process, or the processes deadlock.
  """
  if not is_multiprocess():
    return bool(flag)
  barrier("any_process")
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def place_mjx_models_locally() -> None:
  """Makes `mujoco.mjx.put_model` default to this process's first device.

  MJX places a model on `jax.devices()[0]` unless told otherwise, and brax
  (`brax.io.mjcf.load_model`) and MuJoCo Playground do not tell it. With
  several processes that is process 0's device: every other process gets
  an env whose constants it cannot read ("Closing over jax.Array that spans
  non-addressable devices" when the program is traced). Idempotent; only
  the default of `device` changes, and only for the JAX implementation.
  """
  try:
    from mujoco import mjx  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  original = mjx.put_model
  if getattr(original, "_rrm_local_device", False):
    return

  @functools.wraps(original)
  def put_model(m, device=None, impl=None, **kwargs):
    if device is None and (impl is None or str(getattr(impl, "value", impl))
                           .lower() == "jax"):
      device = jax.local_devices()[0]
    return original(m, device=device, impl=impl, **kwargs)

  put_model._rrm_local_device = True  # pylint: disable=protected-access
  mjx.put_model = put_model
