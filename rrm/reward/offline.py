"""Training a reward model offline, from a labels file alone.

The labels a run collected (its `labels.npz`) are enough to train a new
reward model, with another architecture or hyperparameters, without the env
or the policy: this is what `python -m launch.train_reward` does. The
held-out labels (every k-th, as in the trainer) measure label accuracy, and
since the file carries the segments' hidden true rewards, the correlation of
predicted and true segment returns on the held-out pairs is reported too.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rrm import config as rrm_config
from rrm import diagnostics
from rrm import feedback as rrm_feedback
from rrm.reward import model as rrm_model
from rrm.reward import update as rrm_update


def dataset_from_arrays(first, second, label) -> rrm_feedback.LabelDataset:
  """A full LabelDataset (capacity = count = N) from [N, ...] arrays."""
  first = jax.tree.map(jnp.asarray, first)
  second = jax.tree.map(jnp.asarray, second)
  n = int(label.shape[0])
  return rrm_feedback.LabelDataset(
      first=first, second=second, label=jnp.asarray(label, jnp.float32),
      iteration=jnp.full((n,), -2, jnp.int32), count=jnp.int32(n),
      spent=jnp.int32(n))


def train_offline(
    first, second, label, reward_config: rrm_config.RewardConfig,
    num_steps: int, eval_every: int, key: jax.Array,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> tuple[rrm_model.RewardModel, rrm_update.RewardState,
           list[dict[str, float]]]:
  """Fits a reward ensemble to N labelled pairs for `num_steps` SGD steps.

  Inputs are standardised on all labelled segments; every
  `reward_config.heldout_every`-th label is held out. Returns the model, the
  trained state (output normalisation fitted on the labelled segments, as in
  the trainer) and one metrics dict per `eval_every` steps.
  """
  rc = reward_config
  dataset = dataset_from_arrays(first, second, label)
  n = dataset.capacity
  obs_size = dataset.first.observation.shape[-1]
  act_size = dataset.first.action.shape[-1]
  model = rrm_model.make_reward_model(rc.input, rc.hidden_layer_sizes,
                                      obs_size, act_size)
  optimizer = rrm_update.make_optimizer(rc.learning_rate, rc.weight_decay)
  key_init, key_train = jax.random.split(key)
  state = rrm_update.init_reward_state(model, optimizer, key_init,
                                       rc.ensemble_size)
  both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), dataset.first,
                      dataset.second)
  state = state.replace(input_normalizer=rrm_model.fit_input_normalizer(
      model, both, jnp.ones((2 * n,), bool)))
  chunk = min(eval_every, num_steps)
  update = jax.jit(rrm_update.make_reward_update(
      model, optimizer, rc.batch_size, chunk, rc.heldout_every))
  heldout = rrm_update.heldout_mask(n, rc.heldout_every)

  @jax.jit
  def evaluate(state):
    r1 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                  dataset.first).mean(0)
    r2 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                  dataset.second).mean(0)
    true1 = dataset.first.true_reward.sum(-1)
    true2 = dataset.second.true_reward.sum(-1)
    mask = jnp.concatenate([heldout, heldout])
    return {
        "reward/train_accuracy": rrm_update.label_accuracy(
            model, state, dataset, ~heldout),
        "reward/heldout_accuracy": rrm_update.label_accuracy(
            model, state, dataset, heldout),
        "reward/heldout_return_correlation": diagnostics.pearson(
            jnp.concatenate([r1, r2]), jnp.concatenate([true1, true2]), mask),
    }

  history = []
  steps = 0
  while steps < num_steps:
    this = min(chunk, num_steps - steps)
    if this != chunk:  # a last, shorter chunk compiles its own update
      update = jax.jit(rrm_update.make_reward_update(
          model, optimizer, rc.batch_size, this, rc.heldout_every))
    state, m = update(state, dataset, jax.random.fold_in(key_train, steps))
    steps += this
    metrics = {"step": steps, **{k: float(v) for k, v in jax.device_get(
        {**m, **evaluate(state)}).items()}}
    if not np.isfinite(metrics["reward/loss"]):
      raise FloatingPointError(f"step {steps}: non-finite reward/loss "
                               f"({metrics['reward/loss']})")
    history.append(metrics)
    if progress:
      progress(metrics)
  state = rrm_update.refit_normalizer(model, state, dataset,
                                      rc.uncertainty_penalty)
  return model, state, history


def describe(model: rrm_model.RewardModel,
             reward_config: rrm_config.RewardConfig) -> dict[str, Any]:
  """What it takes to rebuild the model around saved parameters."""
  return {"input": reward_config.input,
          "hidden_layer_sizes": list(reward_config.hidden_layer_sizes),
          "ensemble_size": reward_config.ensemble_size,
          "input_size": model.input_size}
