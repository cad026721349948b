"""Scalar ratings: the user scores single segments on a coarse scale.

A comparison asks "which of these two is better?"; a rating asks "how good
is this one, from 1 to K?" (Leike et al. 2018 list ratings among the ways a
user communicates intent; B-Pref and rl-teacher ask only comparisons). A
rating costs the user less than a comparison (one clip to watch, not two:
`ratings.rating_cost` units of feedback.budget, 0.5 by default) and says
something absolute, but on a scale the learner does not know: every person
maps "good" to numbers their own way.

Protocol:

  1. `ratings.initial` ratings before the first iteration, then
     `ratings.per_round` at every label round (t % feedback.round_every ==
     0) until `ratings.ratings` are spent; the segments rated are distinct
     valid pool segments (the pool holds the random policy's segments and
     the recent ones of the policy), drawn uniformly or, with
     `ratings.selector = "disagreement"`, those whose predicted return the
     ensemble members disagree on most (standard deviation over members);
  2. the synthetic teacher sees a segment's hidden true return R and
     answers clip(round(1 + (K - 1) (R - lo) / (hi - lo) + noise * eps), 1,
     K), eps ~ N(0, 1), with its own anchors [lo, hi] fixed when it first
     looks at the pool (lo: the lowest return there, hi: lo plus
     `ratings.headroom` times the pool's spread, so better behaviour to come
     still has higher numbers left). The anchors are the teacher's hidden
     scale (`RatingState.anchors`): the learner never sees them;
  3. the reward model learns from the ratings by ordinal regression with
     the all-threshold logistic loss (Rennie and Srebro 2005): with R^ the
     member's predicted segment return, a > 0 a learned slope and
     theta_1..theta_{K-1} learned thresholds (per ensemble member, in
     `RatingState.params`), the loss is the mean over k of the binary cross
     entropy of sigmoid(a R^ - theta_k) against [rating > k]. Any increasing
     map of R to the scale is matched by some (a, theta), so the unknown
     scale costs nothing but those K parameters. With preferences too, one
     objective sums the Bradley-Terry loss and `ratings.weight` x this one
     (`make_joint_update`), on bootstrap minibatches of each;
  4. the rated segments join the labelled ones as the reference of the
     learned reward's output normalisation (rrm.reward.refit_normalizer).

A run without ratings has `TrainState.ratings = None`: its state,
checkpoints and results are those of a run written before ratings existed.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax

from rrm import config as rrm_config
from rrm import segments as rrm_segments
from rrm.reward import model as rrm_model
from rrm.reward import update as rrm_update

SELECTORS = ("uniform", "disagreement")  # which pool segments are rated


@flax.struct.dataclass
class RatingDataset:
  """The user's ratings, [R] capacity (the run's ratings)."""
  segments: rrm_segments.Segments  # [R, L, ...] what the user rated
  rating: jax.Array  # [R] int32 in 1..K
  iteration: jax.Array  # [R] int32, the iteration that asked (-1: initial)
  count: jax.Array  # [] int32 ratings stored (each asked and paid for)

  @property
  def capacity(self) -> int:
    return self.rating.shape[0]

  @property
  def mask(self) -> jax.Array:
    return jnp.arange(self.capacity) < self.count


@flax.struct.dataclass
class RatingState:
  """`TrainState.ratings`: the dataset, the learner's scale, the teacher's."""
  # The learner's map of a predicted return to the scale, per member:
  # {"thresholds": [M, K-1], "log_slope": [M]}.
  params: Any
  opt_state: Any
  # [2] float32 (lo, hi): the synthetic teacher's hidden anchors of its
  # scale, fixed at init from the pool; the learner never reads them.
  anchors: jax.Array
  ratings: RatingDataset


def init_ratings(capacity: int, length: int, obs_size: int,
                 action_size: int) -> RatingDataset:
  return RatingDataset(
      segments=rrm_segments.zeros(capacity, length, obs_size, action_size),
      rating=jnp.zeros((capacity,), jnp.int32),
      iteration=jnp.full((capacity,), -1, jnp.int32),
      count=jnp.zeros((), jnp.int32))


def init_scale_params(ensemble_size: int, levels: int) -> dict[str, jax.Array]:
  """Thresholds spread evenly over [-2, 2], slope 1, for every member."""
  theta = jnp.linspace(-2.0, 2.0, levels - 1, dtype=jnp.float32)
  return {"thresholds": jnp.tile(theta, (ensemble_size, 1)),
          "log_slope": jnp.zeros((ensemble_size,), jnp.float32)}


def make_optimizer(config: rrm_config.RatingsConfig
                   ) -> optax.GradientTransformation:
  """Adam on the learner's scale (thresholds and slope)."""
  return optax.adam(config.learning_rate)


def teacher_anchors(pool: rrm_segments.SegmentPool,
                    headroom: float) -> jax.Array:
  """[2] (lo, hi) of the synthetic teacher's scale: the pool's lowest valid
  segment return, and that plus `headroom` x the pool's spread of returns."""
  returns = jnp.sum(pool.segments.true_reward, axis=-1)
  lo = jnp.min(jnp.where(pool.valid, returns, jnp.inf))
  hi = jnp.max(jnp.where(pool.valid, returns, -jnp.inf))
  spread = jnp.maximum(hi - lo, 1e-6)
  return jnp.stack([lo, lo + headroom * spread]).astype(jnp.float32)


def teacher_rating(true_return: jax.Array, anchors: jax.Array, levels: int,
                   noise: float, key: jax.Array) -> jax.Array:
  """[...] int32 ratings in 1..levels of segments with hidden returns [...]."""
  lo, hi = anchors[0], anchors[1]
  score = 1.0 + (levels - 1) * (true_return - lo) / jnp.maximum(hi - lo, 1e-6)
  score = score + noise * jax.random.normal(key, true_return.shape)
  return jnp.clip(jnp.round(score), 1, levels).astype(jnp.int32)


def ratings_due(iteration: jax.Array, ratings: RatingDataset, per_round: int,
                round_every: int) -> jax.Array:
  """[] int32 ratings to ask at `iteration`: `per_round` at each label round
  until the capacity (the run's ratings) is spent."""
  remaining = ratings.capacity - ratings.count
  due = jnp.where(iteration % round_every == 0, per_round, 0)
  return jnp.minimum(due, remaining).astype(jnp.int32)


def rating_round(ratings: RatingDataset, pool: rrm_segments.SegmentPool,
                 anchors: jax.Array, num: int, due: jax.Array, levels: int,
                 noise: float, iteration: jax.Array, key: jax.Array,
                 scores: jax.Array | None = None) -> RatingDataset:
  """The user rates `due` (<= num, static) segments drawn from the pool.

  The `num` shown are distinct valid pool segments (invalid slots only if
  fewer than `num` are valid): chosen uniformly, or the `num` of highest
  `scores` [P] (>= 0; ties broken at random); the first `due` are asked,
  paid for and stored after the `count` already there.
  """
  key_pick, key_noise = jax.random.split(key)
  u = jax.random.uniform(key_pick, pool.valid.shape)
  priority = u if scores is None else scores + 1e-6 * u
  _, chosen = jax.lax.top_k(jnp.where(pool.valid, priority, -1.0 - u), num)
  shown = jax.tree.map(lambda x: x[chosen], pool.segments)
  rating = teacher_rating(jnp.sum(shown.true_reward, axis=-1), anchors,
                          levels, noise, key_noise)
  active = jnp.arange(num) < due
  rows = jnp.where(active, ratings.count + jnp.arange(num), ratings.capacity)
  put = lambda buf, new: buf.at[rows].set(new.astype(buf.dtype), mode="drop")
  return ratings.replace(
      segments=jax.tree.map(put, ratings.segments, shown),
      rating=put(ratings.rating, rating),
      iteration=put(ratings.iteration, jnp.full((num,), iteration, jnp.int32)),
      count=jnp.minimum(ratings.count + due, ratings.capacity))


def ordinal_loss(predicted_return: jax.Array, rating: jax.Array,
                 thresholds: jax.Array, log_slope: jax.Array) -> jax.Array:
  """[...] all-threshold ordinal logistic loss of ratings [...] in 1..K.

  mean_k BCE(sigmoid(a R^ - theta_k), [rating > k]) over the K - 1
  thresholds, a = exp(log_slope).
  """
  z = (jnp.exp(log_slope) * predicted_return)[..., None] - thresholds
  k = jnp.arange(1, thresholds.shape[-1] + 1)
  above = (rating[..., None] > k).astype(jnp.float32)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(z, above), axis=-1)


def expected_rating(predicted_return: jax.Array, thresholds: jax.Array,
                    log_slope: jax.Array) -> jax.Array:
  """[...] the learner's expected rating 1 + sum_k P(rating > k)."""
  z = (jnp.exp(log_slope) * predicted_return)[..., None] - thresholds
  return 1.0 + jnp.sum(jax.nn.sigmoid(z), axis=-1)


def _member_rating_loss(model, params, scale, input_normalizer, segments,
                        rating):
  one = jax.tree.map(lambda x: x[None], params)
  r = rrm_model.member_returns(model, one, input_normalizer, segments)[0]
  return jnp.mean(ordinal_loss(r, rating, scale["thresholds"],
                               scale["log_slope"]))


def _joint_loss(model, config, batch_size, heldout_every, params, scale,
                input_normalizer, labels, n_pref, ratings, key):
  """One member's Bradley-Terry + weight x ordinal loss on bootstrap
  minibatches of each kind (a kind with nothing stored adds nothing), and
  (BT loss, BT accuracy, ordinal loss) for the metrics."""
  key_pref, key_rate = jax.random.split(key)
  idx = rrm_update.bootstrap_rows(key_pref, n_pref, batch_size, heldout_every)
  take = lambda x: x[idx]
  pref, accuracy = rrm_update.preference_loss(
      model, params, input_normalizer, jax.tree.map(take, labels.first),
      jax.tree.map(take, labels.second), labels.label[idx])
  jdx = jax.random.randint(key_rate, (config.batch_size,), 0,
                           jnp.maximum(ratings.count, 1))
  rate = _member_rating_loss(
      model, params, scale, input_normalizer,
      jax.tree.map(lambda x: x[jdx], ratings.segments), ratings.rating[jdx])
  total = (jnp.where(n_pref > 0, pref, 0.0)
           + config.weight * jnp.where(ratings.count > 0, rate, 0.0))
  return total, (pref, accuracy, rate)


def make_joint_update(model: rrm_model.RewardModel,
                      reward_optimizer: optax.GradientTransformation,
                      config: rrm_config.RatingsConfig, batch_size: int,
                      num_steps: int, heldout_every: int) -> Callable:
  """`update(reward_state, labels, rating_state, key, optimizer=None) ->
  (reward_state, rating_state, metrics)`.

  `num_steps` steps; in each, every member draws its own bootstrap
  minibatch of `batch_size` training preference labels (held-out ones
  excluded, as rrm.reward.make_reward_update) and of `config.batch_size`
  ratings, and takes one step of its optimiser on Bradley-Terry +
  `config.weight` x ordinal loss (a kind with nothing stored yet adds
  nothing); the members' scales take an Adam step on the ordinal loss. With
  neither kind stored the update is a no-op.
  """
  scale_optimizer = make_optimizer(config)
  loss_fn = functools.partial(_joint_loss, model, config, batch_size,
                              heldout_every)
  grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)

  def member_step(params, opt_state, scale, scale_opt, input_normalizer,
                  labels, n_pref, ratings, key, optimizer):
    (_, aux), (grads, scale_grads) = grad_fn(
        params, scale, input_normalizer, labels, n_pref, ratings, key)
    updates, new_opt = optimizer.update(grads, opt_state, params)
    scale_updates, new_scale_opt = scale_optimizer.update(
        scale_grads, scale_opt, scale)
    new = (optax.apply_updates(params, updates), new_opt,
           optax.apply_updates(scale, scale_updates), new_scale_opt)
    keep = (n_pref == 0) & (ratings.count == 0)
    new = jax.tree.map(lambda a, b: jnp.where(keep, a, b),
                       (params, opt_state, scale, scale_opt), new)
    return new, aux

  def update(reward_state, labels, rating_state: RatingState, key,
             optimizer: optax.GradientTransformation | None = None):
    optimizer = reward_optimizer if optimizer is None else optimizer
    n_pref = rrm_update.num_train(labels.count, heldout_every)
    members = jax.tree.leaves(reward_state.params)[0].shape[0]

    def step(carry, step_key):
      new, aux = jax.vmap(
          functools.partial(member_step, optimizer=optimizer),
          in_axes=(0, 0, 0, 0, None, None, None, None, 0))(
              *carry[:2], *carry[2:], reward_state.input_normalizer, labels,
              n_pref, rating_state.ratings, jax.random.split(step_key,
                                                             members))
      return new, aux

    carry = (reward_state.params, reward_state.opt_state,
             rating_state.params, rating_state.opt_state)
    (params, opt_state, scale, scale_opt), (pref, accuracy, rate) = (
        jax.lax.scan(step, carry, jax.random.split(key, num_steps)))
    nan = jnp.float32(jnp.nan)
    metrics = {
        "reward/loss": jnp.where(n_pref > 0, jnp.mean(pref[-1]), nan),
        "reward/train_accuracy": jnp.where(n_pref > 0,
                                           jnp.mean(accuracy[-1]), nan),
        "ratings/loss": jnp.where(rating_state.ratings.count > 0,
                                  jnp.mean(rate[-1]), nan)}
    return (reward_state.replace(params=params, opt_state=opt_state),
            rating_state.replace(params=scale, opt_state=scale_opt), metrics)

  return update


def normalizer_reference(state: RatingState) -> tuple:
  """(segments, mask) the rated segments add to the output normalisation's
  reference (rrm.reward.refit_normalizer's `extra`)."""
  return state.ratings.segments, state.ratings.mask


def _rank(x: jax.Array) -> jax.Array:
  return jnp.argsort(jnp.argsort(x)).astype(jnp.float32)


def rank_correlation(a: jax.Array, b: jax.Array,
                     mask: jax.Array) -> jax.Array:
  """Spearman's rho of a and b [N] over `mask` (ties broken by position;
  nan with fewer than 2 rows). Masked-out rows are ranked last in both."""
  big = jnp.finfo(jnp.float32).max
  ra = _rank(jnp.where(mask, a, big))
  rb = _rank(jnp.where(mask, b, big))
  n = jnp.sum(mask)
  w = mask.astype(jnp.float32)
  ma = jnp.sum(ra * w) / jnp.maximum(n, 1)
  mb = jnp.sum(rb * w) / jnp.maximum(n, 1)
  cov = jnp.sum((ra - ma) * (rb - mb) * w)
  var = jnp.sqrt(jnp.sum((ra - ma) ** 2 * w) * jnp.sum((rb - mb) ** 2 * w))
  return jnp.where(n > 1, cov / jnp.maximum(var, 1e-12), jnp.nan)


def metrics(state: RatingState, due: jax.Array,
            member_returns: jax.Array) -> dict[str, jax.Array]:
  """The iteration's ratings metrics.

  `member_returns`: [M, R] the updated ensemble's returns of the rated
  segments. `ratings/order_on_rated` is Spearman's rho of the ensemble-mean
  predicted return against the hidden true return on the rated segments:
  how much of the user's order the model has, whatever the user's scale.
  """
  r = state.ratings
  m = r.mask
  true_return = jnp.sum(r.segments.true_reward, axis=-1)
  return {
      "ratings/this_iteration": due,
      "ratings/spent": r.count,
      "ratings/mean": jnp.where(r.count > 0, jnp.sum(
          jnp.where(m, r.rating, 0)) / jnp.maximum(r.count, 1), jnp.nan),
      "ratings/order_on_rated": rank_correlation(
          jnp.mean(member_returns, axis=0), true_return, m),
  }


class Ratings(NamedTuple):
  """The ratings' pieces bound to a run's config (rrm.train's `_Parts`)."""
  config: rrm_config.RatingsConfig
  optimizer: optax.GradientTransformation
  update: Callable  # make_joint_update's, with reward.num_steps
  initial_update: Callable  # with reward.initial_num_steps
  # (state, pool, num, due, iteration, key, returns) -> state; returns:
  # [M, P] the ensemble's predicted returns of the pool (the selector's).
  round: Callable


def make_ratings(config: rrm_config.RatingsConfig, model: rrm_model.RewardModel,
                 reward_optimizer: optax.GradientTransformation,
                 reward_config: rrm_config.RewardConfig) -> Ratings:
  rc = reward_config
  joint = functools.partial(make_joint_update, model, reward_optimizer,
                            config, rc.batch_size,
                            heldout_every=rc.heldout_every)

  def round_(state: RatingState, pool, num, due, iteration, key, returns):
    scores = (jnp.std(returns, axis=0) if config.selector == "disagreement"
              else None)
    return state.replace(ratings=rating_round(
        state.ratings, pool, state.anchors, num, due, config.levels,
        config.noise, iteration, key, scores))

  return Ratings(config=config, optimizer=make_optimizer(config),
                 update=joint(num_steps=rc.num_steps),
                 initial_update=joint(num_steps=rc.initial_num_steps),
                 round=round_)


def import_ratings(ratings: RatingDataset, segments: rrm_segments.Segments,
                   rating: jax.Array) -> RatingDataset:
  """Puts R ratings of an earlier run's labels file at the front of an
  empty dataset (capacity >= R and the same scale, checked by
  rrm.workdir.load_warm_start); they count against the run's ratings and
  carry iteration stamp -2. They are taken to be the same user's, on the
  same scale as the ratings this run asks."""
  n = rating.shape[0]
  put = lambda buf, new: buf.at[:n].set(new.astype(buf.dtype))
  return ratings.replace(
      segments=jax.tree.map(put, ratings.segments, segments),
      rating=put(ratings.rating, rating),
      iteration=ratings.iteration.at[:n].set(-2), count=jnp.int32(n))


def init_rating_state(ratings: Ratings, pool: rrm_segments.SegmentPool,
                      returns: jax.Array, key: jax.Array,
                      warm: tuple | None = None) -> RatingState:
  """The state before the first iteration: the learner's scale at its
  prior, the teacher's anchors read off the (initial, random-policy) pool,
  the imported ratings (`warm`: (segments, rating) or None), then the
  teacher's `ratings.initial` ratings of the pool (iteration -1), as many
  as the run's ratings leave. `returns`: [M, P] the untrained ensemble's
  predicted returns of the pool (M is the ensemble's size)."""
  c = ratings.config
  segs = pool.segments
  length, obs = segs.observation.shape[1:]
  params = init_scale_params(returns.shape[0], c.levels)
  dataset = init_ratings(c.ratings, length, obs, segs.action.shape[-1])
  if warm is not None:
    dataset = import_ratings(dataset, *warm)
  state = RatingState(
      params=params, opt_state=jax.vmap(ratings.optimizer.init)(params),
      anchors=teacher_anchors(pool, c.headroom), ratings=dataset)
  if not c.initial:
    return state
  due = jnp.minimum(c.initial, c.ratings - dataset.count).astype(jnp.int32)
  return ratings.round(state, pool, c.initial, due, jnp.int32(-1), key,
                       returns)
