"""Training a reward model offline, from a labels file alone.

The labels a run collected (its `labels.npz`) are enough to train a new
reward model, with another architecture or hyperparameters, without the env
or the policy: this is what `python -m launch.train_reward` does. The
held-out labels (every k-th, as in the trainer) measure label accuracy, and
since the file carries the segments' hidden true rewards, the correlation of
predicted and true segment returns on the held-out pairs is reported too.

A file's ratings (rrm.ratings) train the same model jointly with its
comparisons (`ratings.make_joint_update`), every k-th rating held out too:
`ratings/heldout_correlation` is the correlation of the predicted return
and the user's rating on the held-out ones. A file of ratings alone (no comparison)
trains on them alone.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from rrm import config as rrm_config
from rrm import diagnostics
from rrm import feedback as rrm_feedback
from rrm import ratings as rrm_ratings
from rrm.reward import model as rrm_model
from rrm.reward import update as rrm_update


def dataset_from_arrays(first, second, label) -> rrm_feedback.LabelDataset:
  """A full LabelDataset (count = N, capacity N or 1 when N = 0: an empty
  row that nothing reads) from [N, ...] arrays."""
  n = int(label.shape[0])
  pad = lambda x: jnp.asarray(x if n else np.zeros((1,) + x.shape[1:],
                                                   np.float32))
  return rrm_feedback.LabelDataset(
      first=jax.tree.map(pad, first), second=jax.tree.map(pad, second),
      label=pad(np.asarray(label, np.float32)),
      iteration=jnp.full((max(n, 1),), -2, jnp.int32), count=jnp.int32(n),
      spent=jnp.int32(n))


def _rating_split(ratings, heldout_every: int):
  """(training, held-out) RatingDatasets of a file's RatingRecord: every
  k-th rating held out (k = heldout_every; none when 0)."""
  n = ratings.size
  held = (np.arange(n) % heldout_every == heldout_every - 1
          if heldout_every else np.zeros(n, bool))

  def dataset(rows):
    return rrm_ratings.RatingDataset(
        segments=jax.tree.map(lambda x: jnp.asarray(x[rows]),
                              ratings.segments),
        rating=jnp.asarray(ratings.rating[rows]),
        iteration=jnp.asarray(ratings.iteration[rows]),
        count=jnp.int32(int(rows.sum())))

  return dataset(~held), dataset(held)


def _ratings_config(ratings, config: rrm_config.RatingsConfig | None
                    ) -> rrm_config.RatingsConfig:
  """The learner's ratings settings: the config's ratings section (its
  loss weight, learning rate, batch size), on the file's scale."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  if config is None:
    config = rrm_config.RatingsConfig(
        ratings=ratings.size, rating_cost=0.5, initial=0, per_round=0,
        levels=ratings.levels, noise=0.0, headroom=1.0, weight=1.0,
        learning_rate=1e-2, batch_size=64)
  return dataclasses.replace(config, ratings=ratings.size,
                             levels=ratings.levels)


def train_offline(
    first, second, label, reward_config: rrm_config.RewardConfig,
    num_steps: int, eval_every: int, key: jax.Array,
    progress: Callable[[dict[str, float]], None] | None = None,
    ratings: Any = None,
    ratings_config: rrm_config.RatingsConfig | None = None,
) -> tuple[rrm_model.RewardModel, rrm_update.RewardState,
           list[dict[str, float]]]:
  """Fits a reward ensemble to N labelled pairs (and R ratings) for
  `num_steps` SGD steps.

  Inputs are standardised on all labelled (and rated) segments; every
  `reward_config.heldout_every`-th label (and rating) is held out.
  `ratings`: a labels file's RatingRecord or None; `ratings_config`: the
  loss weight, learning rate and batch size for them (defaults if None).
  Returns the model, the trained state (output normalisation fitted on the
  labelled and rated segments, as in the trainer) and one metrics dict per
  `eval_every` steps.
  """
  rc = reward_config
  dataset = dataset_from_arrays(first, second, label)
  n = int(dataset.count)
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
  mask = jnp.concatenate([dataset.mask, dataset.mask])
  rated = heldout_ratings = None
  if ratings is not None and ratings.size:
    rconfig, rated, heldout_ratings = _rating_learner(ratings,
                                                      ratings_config, rc)
    every = jax.tree.map(jnp.asarray, ratings.segments)
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), both, every)
    mask = jnp.concatenate([mask, jnp.ones((ratings.size,), bool)])
  state = state.replace(input_normalizer=rrm_model.fit_input_normalizer(
      model, both, mask))

  make_update = functools.partial(_make_update, model, optimizer, rc,
                                  None if rated is None else rconfig)
  chunk = min(eval_every, num_steps)
  update = make_update(chunk)
  heldout = rrm_update.heldout_mask(dataset.capacity, rc.heldout_every)
  evaluate = jax.jit(functools.partial(_evaluate, model, dataset, heldout,
                                       heldout_ratings))
  history = []
  steps = 0
  while steps < num_steps:
    this = min(chunk, num_steps - steps)
    if this != chunk:  # a last, shorter chunk compiles its own update
      update = make_update(this)
    step_key = jax.random.fold_in(key_train, steps)
    if rated is None:
      state, m = update(state, dataset, step_key)
    else:
      state, rated, m = update(state, dataset, step_key, rated)
    steps += this
    metrics = {"step": steps, **{k: float(v) for k, v in jax.device_get(
        {**m, **evaluate(state)}).items()}}
    losses = [metrics[k] for k in ("reward/loss", "ratings/loss")
              if k in metrics and not (k == "reward/loss" and not n)]
    if not all(np.isfinite(losses)):
      raise FloatingPointError(f"step {steps}: non-finite loss ({metrics})")
    history.append(metrics)
    if progress:
      progress(metrics)
  extra = None if rated is None else (
      jax.tree.map(jnp.asarray, ratings.segments),
      jnp.ones((ratings.size,), bool))
  state = rrm_update.refit_normalizer(model, state, dataset,
                                      rc.uncertainty_penalty, extra)
  return model, state, history


def _make_update(model, optimizer, rc, rconfig, steps):
  """The jitted update of `steps` SGD steps: on the comparisons alone, or
  (rconfig given) jointly with ratings, `(state, labels, key, ratings)`."""
  if rconfig is None:
    return jax.jit(rrm_update.make_reward_update(
        model, optimizer, rc.batch_size, steps, rc.heldout_every))
  joint = jax.jit(rrm_ratings.make_joint_update(
      model, optimizer, rconfig, rc.batch_size, steps, rc.heldout_every))
  return lambda state, labels, key, ratings: joint(state, labels, ratings,
                                                   key)


def _rating_learner(ratings, ratings_config, rc: rrm_config.RewardConfig):
  """(ratings config, the learner's RatingState on the training ratings,
  the held-out RatingDataset) for a file's RatingRecord."""
  rconfig = _ratings_config(ratings, ratings_config)
  train_ratings, heldout_ratings = _rating_split(ratings, rc.heldout_every)
  params = rrm_ratings.init_scale_params(rc.ensemble_size, rconfig.levels)
  rated = rrm_ratings.RatingState(
      params=params, opt_state=jax.vmap(rrm_ratings.make_optimizer(
          rconfig).init)(params), anchors=jnp.asarray(ratings.anchors),
      ratings=train_ratings)
  return rconfig, rated, heldout_ratings


def _evaluate(model, dataset, heldout, heldout_ratings, state):
  """Label accuracy (train, held out), the held-out pairs' return
  correlation with the hidden truth, and the held-out ratings'
  correlation with the predicted return."""
  r1 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                dataset.first).mean(0)
  r2 = rrm_model.member_returns(model, state.params, state.input_normalizer,
                                dataset.second).mean(0)
  true1 = dataset.first.true_reward.sum(-1)
  true2 = dataset.second.true_reward.sum(-1)
  held = heldout & dataset.mask
  out = {
      "reward/train_accuracy": rrm_update.label_accuracy(
          model, state, dataset, ~heldout),
      "reward/heldout_accuracy": rrm_update.label_accuracy(
          model, state, dataset, heldout),
      "reward/heldout_return_correlation": diagnostics.pearson(
          jnp.concatenate([r1, r2]), jnp.concatenate([true1, true2]),
          jnp.concatenate([held, held])),
  }
  if heldout_ratings is not None:
    predicted = rrm_model.member_returns(
        model, state.params, state.input_normalizer,
        heldout_ratings.segments).mean(0)
    # Pearson's, not Spearman's: ratings are coarse and tie often.
    out["ratings/heldout_correlation"] = diagnostics.pearson(
        predicted, heldout_ratings.rating.astype(jnp.float32),
        heldout_ratings.mask)
  return out


def describe(model: rrm_model.RewardModel,
             reward_config: rrm_config.RewardConfig) -> dict[str, Any]:
  """What it takes to rebuild the model around saved parameters."""
  return {"input": reward_config.input,
          "hidden_layer_sizes": list(reward_config.hidden_layer_sizes),
          "ensemble_size": reward_config.ensemble_size,
          "input_size": model.input_size}
