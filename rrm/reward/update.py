"""Reward-model state, its update step, accuracy and output normalisation."""

from __future__ import annotations

import functools
from typing import Any, Callable

from brax.training.acme import running_statistics
import flax
import jax
import jax.numpy as jnp
import optax

from rrm import feedback as rrm_feedback
from rrm.reward import losses
from rrm.reward import model as rrm_model


@flax.struct.dataclass
class RewardState:
  params: Any  # ensemble parameters, leading member axis [M]
  opt_state: Any  # per-member optimiser state, leading axis [M]
  # Standardisation of the per-step inputs (fixed after init; see
  # model.fit_input_normalizer).
  input_normalizer: running_statistics.RunningStatisticsState
  # Statistics of the ensemble-mean per-step prediction on the segment pool,
  # refitted after every update (see `refit_normalizer`).
  normalizer: running_statistics.RunningStatisticsState


def make_optimizer(learning_rate: float | jax.Array,
                   weight_decay: float | jax.Array
                   ) -> optax.GradientTransformation:
  """The reward models' optimiser: AdamW (one definition for every caller;
  array arguments keep one compiled program for any values, rrm.state.Hyper).
  """
  return optax.adamw(learning_rate, weight_decay=weight_decay)


def init_reward_state(model: rrm_model.RewardModel,
                      optimizer: optax.GradientTransformation, key: jax.Array,
                      ensemble_size: int) -> RewardState:
  params = rrm_model.init_ensemble(model, key, ensemble_size)
  return RewardState(params=params,
                     opt_state=jax.vmap(optimizer.init)(params),
                     input_normalizer=running_statistics.init_state(
                         jnp.zeros((model.input_size,), jnp.float32)),
                     normalizer=running_statistics.init_state(
                         jnp.zeros((), jnp.float32)))


def heldout_mask(capacity: int, heldout_every: int) -> jax.Array:
  """[N] bool: label i is held out iff i % k == k - 1 (k = heldout_every)."""
  if heldout_every == 0:
    return jnp.zeros((capacity,), bool)
  return jnp.arange(capacity) % heldout_every == heldout_every - 1


def _train_index(j: jax.Array, heldout_every: int) -> jax.Array:
  """The j-th training label's index, skipping every k-th (held-out) one."""
  if heldout_every == 0:
    return j
  return j + j // (heldout_every - 1)


def num_train(count: jax.Array, heldout_every: int) -> jax.Array:
  """Training labels among the first `count` (held-out ones excluded)."""
  if heldout_every == 0:
    return count
  return count - count // heldout_every


def bootstrap_rows(key: jax.Array, n_train: jax.Array, batch_size: int,
                   heldout_every: int) -> jax.Array:
  """[batch_size] indices of training labels, drawn with replacement (row 0
  while there are none: the caller then discards the step)."""
  j = jax.random.randint(key, (batch_size,), 0, jnp.maximum(n_train, 1))
  return _train_index(j, heldout_every)


def preference_loss(model: rrm_model.RewardModel, params: Any,
                    input_normalizer, first, second, label
                    ) -> tuple[jax.Array, jax.Array]:
  """One member's (params without the member axis) mean Bradley-Terry loss
  on a batch of pairs, and its accuracy on the decided ones."""
  one = jax.tree.map(lambda x: x[None], params)  # a 1-member ensemble
  r1 = rrm_model.member_returns(model, one, input_normalizer, first)[0]
  r2 = rrm_model.member_returns(model, one, input_normalizer, second)[0]
  loss = jnp.mean(losses.bradley_terry_loss(r1, r2, label))
  decided = label != 0.5
  correct = ((r2 > r1) == (label > 0.5)) & decided
  accuracy = jnp.sum(correct) / jnp.maximum(jnp.sum(decided), 1)
  return loss, accuracy


def make_reward_update(
    model: rrm_model.RewardModel, optimizer: optax.GradientTransformation,
    batch_size: int, num_steps: int, heldout_every: int
) -> Callable[[RewardState, rrm_feedback.LabelDataset, jax.Array],
              tuple[RewardState, dict[str, jax.Array]]]:
  """Builds `update(state, dataset, key, optimizer=None) -> (state, metrics)`.

  `optimizer`, if given, replaces the one given here for that call: one
  with the same state structure but other (possibly traced) hyperparameters,
  e.g. a swept learning rate.

  Each of `num_steps` steps gives every ensemble member its own minibatch of
  `batch_size` training labels drawn with replacement (a bootstrap, so members
  see different data orders and weights) and one optimiser step on the
  Bradley–Terry loss. Held-out labels are never trained on. With no training
  labels yet the update is a no-op.
  """

  grad_fn = jax.value_and_grad(
      functools.partial(preference_loss, model), has_aux=True)

  def member_step(params, opt_state, input_normalizer, dataset, n_train, key,
                  optimizer):
    idx = bootstrap_rows(key, n_train, batch_size, heldout_every)
    take = lambda x: x[idx]
    (loss, accuracy), grads = grad_fn(
        params, input_normalizer, jax.tree.map(take, dataset.first),
        jax.tree.map(take, dataset.second), dataset.label[idx])
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    # No training labels: keep everything as it was.
    keep = n_train == 0
    new_params, new_opt_state = jax.tree.map(
        lambda old, new: jnp.where(keep, old, new), (params, opt_state),
        (new_params, new_opt_state))
    return new_params, new_opt_state, loss, accuracy

  default_optimizer = optimizer

  def update(state: RewardState, dataset: rrm_feedback.LabelDataset,
             key: jax.Array, optimizer: optax.GradientTransformation | None = None
             ) -> tuple[RewardState, dict[str, jax.Array]]:
    if optimizer is None:
      optimizer = default_optimizer
    n_train = num_train(dataset.count, heldout_every)
    ensemble_size = jax.tree.leaves(state.params)[0].shape[0]

    def step(carry, step_key):
      params, opt_state = carry
      keys = jax.random.split(step_key, ensemble_size)
      params, opt_state, loss, accuracy = jax.vmap(
          functools.partial(member_step, optimizer=optimizer),
          in_axes=(0, 0, None, None, None, 0))(
              params, opt_state, state.input_normalizer, dataset, n_train,
              keys)
      return (params, opt_state), (loss, accuracy)

    (params, opt_state), (loss, accuracy) = jax.lax.scan(
        step, (state.params, state.opt_state), jax.random.split(key, num_steps))
    metrics = {"reward/loss": jnp.mean(loss[-1]),
               "reward/train_accuracy": jnp.mean(accuracy[-1])}
    return state.replace(params=params, opt_state=opt_state), metrics

  return update


def label_accuracy(model: rrm_model.RewardModel, state: RewardState,
                   dataset: rrm_feedback.LabelDataset,
                   mask: jax.Array) -> jax.Array:
  """Fraction of decided labels (not 0.5) under `mask` the ensemble gets right.

  The ensemble's preference is the member-mean of sigmoid(R̂_2 - R̂_1).
  Returns nan when `mask` selects no decided label.
  """
  r1 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                dataset.first)  # [M, N]
  r2 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                dataset.second)
  p = jnp.mean(jax.nn.sigmoid(r2 - r1), axis=0)
  decided = mask & dataset.mask & (dataset.label != 0.5)
  correct = ((p > 0.5) == (dataset.label > 0.5)) & decided
  n = jnp.sum(decided)
  return jnp.where(n > 0, jnp.sum(correct) / jnp.maximum(n, 1), jnp.nan)


def _ensemble_reward(member_rewards: jax.Array,
                     uncertainty_penalty: float | jax.Array) -> jax.Array:
  """mean_m r̂_m - lambda * std_m r̂_m over the member axis (axis 0).

  lambda may be a traced array (a swept hyperparameter); a Python 0 skips
  the std.
  """
  r = jnp.mean(member_rewards, axis=0)
  if isinstance(uncertainty_penalty, (int, float)) and not uncertainty_penalty:
    return r
  return r - uncertainty_penalty * jnp.std(member_rewards, axis=0)


def refit_normalizer(model: rrm_model.RewardModel, state: RewardState,
                     dataset: rrm_feedback.LabelDataset,
                     uncertainty_penalty: float | jax.Array = 0.0,
                     extra: tuple | None = None) -> RewardState:
  """Refits output normalisation to the current model on the labelled segments.

  The learned reward handed to PPO is (mean_m r̂_m(x) - mu) / sigma, with mu
  and sigma the statistics (brax running_statistics) of the ensemble-mean
  per-step prediction over every segment in the label dataset. The reward
  model is defined only up to an additive constant and a scale, and this fixes
  both. Refitting only when the model changes keeps the reward stationary
  between updates. The labelled segments are the reference because they span
  the behaviours seen so far (random and on-policy, good and bad) and only
  grow. `extra` = (segments [E, L, ...], mask [E]) adds the segments of
  other feedback (rated ones, rrm.ratings) to that reference. The
  recent-segment pool was tried first: as the policy improves it
  becomes homogeneous, sigma shrinks, and each refit inflated the reward's
  scale, amplifying spurious structure (measured on inverted_pendulum: eval
  return fell from about 1000 to about 150 with labels spread over training).
  """
  both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), dataset.first,
                      dataset.second)
  mask = jnp.concatenate([dataset.mask, dataset.mask])
  if extra is not None:  # other feedback's segments, e.g. rated ones
    segments, extra_mask = extra
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), both, segments)
    mask = jnp.concatenate([mask, extra_mask])
  rewards = _ensemble_reward(
      rrm_model.predict(model, state.params, state.input_normalizer,
                        both.observation, both.action, both.next_observation),
      uncertainty_penalty)  # [2N (+ extra), L]
  weights = jnp.broadcast_to(mask[:, None], rewards.shape).astype(jnp.float32)
  stats = running_statistics.update(
      running_statistics.init_state(jnp.zeros((), jnp.float32)),
      rewards, weights=weights)
  return state.replace(normalizer=stats)


def learned_reward(model: rrm_model.RewardModel, state: RewardState,
                   observation: jax.Array, action: jax.Array,
                   next_observation: jax.Array,
                   uncertainty_penalty: float | jax.Array = 0.0) -> jax.Array:
  """The reward PPO maximises, [...] for transitions [..., features].

  (mean_m r̂_m - lambda std_m r̂_m - mu) / sigma: the ensemble mean, minus
  `uncertainty_penalty` (lambda) times the members' disagreement, normalised
  (see `refit_normalizer`, which must be given the same lambda). The penalty
  is conservative: where the labels said nothing the members disagree, and a
  policy gains nothing by going there. Against over-optimisation of a frozen
  learned reward, see Coste et al. 2023, "Reward model ensembles help mitigate
  overoptimization".
  """
  raw = _ensemble_reward(
      rrm_model.predict(model, state.params, state.input_normalizer,
                        observation, action, next_observation),
      uncertainty_penalty)
  return running_statistics.normalize(raw, state.normalizer)
