"""The label dataset and the label schedule.

The dataset is a fixed-capacity buffer (capacity = label budget) of segment
pairs and their labels, with a count: its shapes never change, so the
iteration compiles once and runs can be vmapped and checkpointed. Labels are
never overwritten; once the budget is spent no more are added.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rrm import segments as rrm_segments


@flax.struct.dataclass
class LabelDataset:
  first: rrm_segments.Segments  # [N, L, ...]
  second: rrm_segments.Segments  # [N, L, ...]
  label: jax.Array  # [N] float, P(second preferred): 0, 0.5 or 1
  iteration: jax.Array  # [N] int32, iteration that asked (-1: initial batch)
  count: jax.Array  # [] int32, labels stored
  spent: jax.Array  # [] int32, queries paid for (skipped ones too)

  @property
  def capacity(self) -> int:
    return self.label.shape[0]

  @property
  def mask(self) -> jax.Array:
    """[N] bool, true for stored labels."""
    return jnp.arange(self.capacity) < self.count


def init_labels(capacity: int, length: int, obs_size: int,
                action_size: int) -> LabelDataset:
  empty = rrm_segments.zeros(capacity, length, obs_size, action_size)
  return LabelDataset(first=empty, second=empty,
                      label=jnp.zeros((capacity,)),
                      iteration=jnp.full((capacity,), -1, jnp.int32),
                      count=jnp.zeros((), jnp.int32),
                      spent=jnp.zeros((), jnp.int32))


def add_labels(dataset: LabelDataset, first: rrm_segments.Segments,
               second: rrm_segments.Segments, label: jax.Array,
               active: jax.Array, iteration: jax.Array,
               stored: jax.Array | None = None) -> LabelDataset:
  """Appends a query batch: pays for the asked rows, stores the answered ones.

  Args:
    dataset: the dataset.
    first, second: the queried segments, leading dim [Q].
    label: [Q] labels.
    active: [Q] bool, the rows asked (and paid for); a prefix mask (the first
      n rows), as the schedule produces.
    iteration: [] int32 iteration stamp of these labels.
    stored: [Q] bool, the asked rows that got an answer (a teacher may skip
      a query: it costs budget and adds no label); default: all active rows.

  Returns:
    The dataset with the stored rows at [count, count + m), in query order;
    `spent` grows by the active rows. Rows beyond capacity are dropped.
  """
  stored = active if stored is None else stored & active
  # Stored rows first, in their order (a stable sort of a fixed-size batch).
  order = jnp.argsort(jnp.logical_not(stored), stable=True)
  first = jax.tree.map(lambda x: x[order], first)
  second = jax.tree.map(lambda x: x[order], second)
  label, stored = label[order], stored[order]
  m = jnp.sum(stored.astype(jnp.int32))
  rows = jnp.where(stored, dataset.count + jnp.arange(stored.shape[0]),
                   dataset.capacity)  # out of range -> dropped

  def put(buf, new):
    return buf.at[rows].set(new, mode="drop")

  return dataset.replace(
      first=jax.tree.map(put, dataset.first, first),
      second=jax.tree.map(put, dataset.second, second),
      label=put(dataset.label, label),
      iteration=put(dataset.iteration,
                    jnp.full(stored.shape, iteration, jnp.int32)),
      count=jnp.minimum(dataset.count + m, dataset.capacity),
      spent=dataset.spent + jnp.sum(active.astype(jnp.int32)))


SCHEDULES = ("constant", "annealed", "hyperbolic", "inverse_quadratic")


def _cumulative_fraction(schedule: str, t: np.ndarray) -> np.ndarray:
  """F(t) on t in [0, 1], F(0) = 0, F(1) = 1: share of labels asked by t."""
  if schedule == "annealed":  # rate ∝ 0.01^t (rl-teacher's LabelAnnealer)
    return (1.0 - 0.01 ** t) / (1.0 - 0.01)
  if schedule == "hyperbolic":  # rate ∝ 1 / (1 + t) (imitation)
    return np.log1p(t) / np.log(2.0)
  if schedule == "inverse_quadratic":  # rate ∝ 1 / (1 + t^2) (imitation)
    return np.arctan(t) / np.arctan(1.0)
  raise ValueError(f"unknown label schedule {schedule!r}; known: "
                   f"{', '.join(SCHEDULES)}")


def label_quotas(schedule: str, budget: int, initial_labels: int,
                 labels_per_round: int, round_every: int,
                 horizon: int) -> np.ndarray:
  """[horizon] int32: labels to ask for at iterations 0 .. horizon - 1.

  The initial batch (asked by the trainer's `init`) is paid first; the rest,
  budget - initial_labels, is asked in rounds every `round_every`
  iterations:
    constant           `labels_per_round` per round until the budget is
                       spent (rl-teacher's and B-Pref's fixed rate);
    annealed           rate ∝ 0.01^(t/T) over the horizon T (rl-teacher's
                       LabelAnnealer, normalised so that the budget is spent
                       by T; rl-teacher's own reaches 99 % of it);
    hyperbolic         rate ∝ 1 / (1 + t/T) (imitation's hyperbolic
                       schedule);
    inverse_quadratic  rate ∝ 1 / (1 + (t/T)^2) (imitation's).
  Round r of R covers t/T in [r/R, (r+1)/R); its quota is
  round(rest * F((r+1)/R)) - round(rest * F(r/R)) with F the cumulative share,
  so the quotas sum to exactly the rest. Iterations from `horizon` on ask for
  nothing; horizon 0 (constant only) means as many rounds as the budget
  lasts.
  """
  rest = budget - initial_labels
  if horizon == 0:  # constant only: as many rounds as the budget lasts
    if schedule != "constant":
      raise ValueError(f"schedule {schedule!r} needs a horizon")
    horizon = max(-(-rest // labels_per_round), 1) * round_every
  quotas = np.zeros((horizon,), np.int32)
  rounds = np.arange(0, horizon, round_every)
  if schedule == "constant":
    per_round = np.minimum(
        labels_per_round,
        np.maximum(rest - labels_per_round * np.arange(len(rounds)), 0))
    quotas[rounds] = per_round
    return quotas
  n = len(rounds)
  cumulative = np.round(rest * _cumulative_fraction(
      schedule, np.arange(n + 1) / n)).astype(np.int64)
  quotas[rounds] = np.diff(cumulative)
  return quotas


def labels_due(iteration: jax.Array, spent: jax.Array, budget: int,
               quotas: np.ndarray) -> jax.Array:
  """Labels to ask for at `iteration`: its quota, never beyond the budget.

  Returns an int32 scalar in [0, max(quotas)]; 0 once the budget is spent
  and after the schedule's horizon.
  """
  quotas = jnp.asarray(quotas, jnp.int32)
  horizon = quotas.shape[0]
  quota = jnp.where(iteration < horizon,
                    quotas[jnp.clip(iteration, 0, horizon - 1)], 0)
  remaining = jnp.maximum(budget - spent, 0)
  return jnp.minimum(quota, remaining).astype(jnp.int32)


def import_labels(dataset: LabelDataset, first: rrm_segments.Segments,
                  second: rrm_segments.Segments, label: jax.Array,
                  counted: bool) -> LabelDataset:
  """Puts N labels from an earlier run at the front of an empty dataset.

  Args:
    dataset: an empty dataset with capacity >= N.
    first, second: [N, L, ...] segments; label: [N].
    counted: True if the imported labels count against this run's budget
      (`spent` = N), False if they are extra (stored, `spent` stays 0; the
      dataset's capacity must then be budget + N).

  Imported labels carry iteration stamp -2.
  """
  n = label.shape[0]
  put = lambda buf, new: buf.at[:n].set(new.astype(buf.dtype))
  return dataset.replace(
      first=jax.tree.map(put, dataset.first, first),
      second=jax.tree.map(put, dataset.second, second),
      label=put(dataset.label, label),
      iteration=dataset.iteration.at[:n].set(-2),
      count=jnp.int32(n),
      spent=jnp.int32(n if counted else 0))
