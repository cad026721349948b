"""The unacceptable flag: a feedback kind, a safety classifier, a penalty.

Leike et al. (2018, section 4) ask that an agent learning from a user avoid
*unacceptable outcomes* while it learns. A comparison of two segments tells
the reward model what the user prefers; it says little about a rare event
the user will not accept even once. Here the user may also mark a single
segment *unacceptable*, and what they mark trains a classifier of unsafe
steps that the policy's reward is penalised with.

Protocol, at every label round (iterations t with t % feedback.round_every
== 0) until `safety.flags` are spent:

  1. candidates: the iteration's training rollout cut into length-L segments
     (every segment, across episode boundaries too: a flag judges what
     happened in a clip, and each transition's outcome is the step's own,
     before any reset);
  2. the user is shown `safety.flags_per_round` of them, drawn uniformly,
     and flags those that hold an unsafe event; the synthetic teacher sees
     the hidden per-step events (rrm.safety.make_unsafe) and errs with
     probability `safety.mistake` (B-Pref's "mistake" teacher: the answer
     flipped);
  3. each flag asked costs `safety.flag_cost` units of feedback.budget: the
     preference labels get what the flags leave (TrainConfig.
     preference_budget), so a run with flags and one without spend the same
     user effort;
  4. the classifier c(s, a, s') = P(the step is unsafe) is fitted to the
     flags by noisy-OR multiple-instance learning: a segment is unsafe iff
     one of its steps is, P(flag) = 1 - prod_t (1 - c_t), and the loss is
     the binary cross-entropy of that, the two classes weighted equally in
     each minibatch (flags of unsafe segments are rare). Its logit starts at
     a prior of 1 % (PRIOR_LOGIT) so that an untrained classifier costs the
     policy nearly nothing;
  5. RL maximises r - lambda * c (lambda = `safety.penalty`, per step, in
     units of the learned reward's per-step standard deviation, which
     rrm.reward normalises to 1): a fixed penalty, not a Lagrangian
     constraint on the expected unsafe rate. A fixed lambda is one number a
     sweep can vary and adds no dual variable with its own learning rate;
     the constraint is the natural next step.

The flags are stored in a fixed-capacity `FlagDataset` (capacity: the
run's flags) in the state (`TrainState.safety`) and exported in labels.npz
beside the preferences (rrm.checkpoint, schema v2). A run without flags has
`safety=None`: its state, checkpoints and results are those of a run
written before flags existed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from brax.training import networks
from brax.training.acme import running_statistics
import flax
from flax import linen
import jax
import jax.numpy as jnp
import optax

from rrm import config as rrm_config
from rrm import segments as rrm_segments

PRIOR_LOGIT = -4.59512  # log(0.01 / 0.99): P(unsafe step) before any flag


@flax.struct.dataclass
class FlagDataset:
  """The user's flags: segments shown, [F] capacity (the run's flags)."""
  segments: rrm_segments.Segments  # [F, L, ...] what the user was shown
  flag: jax.Array  # [F] float32: 1 flagged unacceptable, 0 not
  # [F] float32, hidden from the learner: whether the segment held an unsafe
  # event (the teacher's mistakes are where flag != truth).
  truth: jax.Array
  iteration: jax.Array  # [F] int32, the iteration that asked
  count: jax.Array  # [] int32 flags stored (each one asked and paid for)

  @property
  def capacity(self) -> int:
    return self.flag.shape[0]

  @property
  def mask(self) -> jax.Array:
    return jnp.arange(self.capacity) < self.count


@flax.struct.dataclass
class SafetyState:
  """The safety classifier and its flags (`TrainState.safety`)."""
  params: Any
  opt_state: Any
  # Standardisation of the classifier's inputs, fitted once on the initial
  # random-policy pool (as rrm.reward.fit_input_normalizer).
  input_normalizer: running_statistics.RunningStatisticsState
  flags: FlagDataset


class Classifier(NamedTuple):
  """c(s, a, s'): the logit of P(a step is unsafe), an MLP on the step."""
  network: linen.Module
  input_size: int

  @staticmethod
  def inputs(observation, action, next_observation):
    return jnp.concatenate([observation, action, next_observation], axis=-1)


def make_classifier(config: rrm_config.SafetyConfig, obs_size: int,
                    action_size: int) -> Classifier:
  return Classifier(
      network=networks.MLP(layer_sizes=tuple(config.hidden_layer_sizes)
                           + (1,), activation=linen.swish),
      input_size=2 * obs_size + action_size)


def make_optimizer(config: rrm_config.SafetyConfig
                   ) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


def logits(classifier: Classifier, params: Any,
           input_normalizer: running_statistics.NestedMeanStd,
           observation: jax.Array, action: jax.Array,
           next_observation: jax.Array) -> jax.Array:
  """[...] logits of P(unsafe) for steps [..., features]."""
  x = running_statistics.normalize(
      classifier.inputs(observation, action, next_observation),
      input_normalizer, max_abs_value=10.0)
  flat = x.reshape((-1, x.shape[-1]))
  out = classifier.network.apply(params, flat)[..., 0] + PRIOR_LOGIT
  return out.reshape(x.shape[:-1])


def unsafe_probability(classifier: Classifier, state: SafetyState,
                       observation: jax.Array, action: jax.Array,
                       next_observation: jax.Array) -> jax.Array:
  """[...] c(s, a, s'): the classifier's P(the step is unsafe)."""
  return jax.nn.sigmoid(logits(classifier, state.params,
                               state.input_normalizer, observation, action,
                               next_observation))


def init_flags(capacity: int, length: int, obs_size: int,
               action_size: int) -> FlagDataset:
  return FlagDataset(
      segments=rrm_segments.zeros(capacity, length, obs_size, action_size),
      flag=jnp.zeros((capacity,)), truth=jnp.zeros((capacity,)),
      iteration=jnp.full((capacity,), -1, jnp.int32),
      count=jnp.zeros((), jnp.int32))


def init_safety_state(classifier: Classifier,
                      optimizer: optax.GradientTransformation, key: jax.Array,
                      capacity: int, pool: rrm_segments.SegmentPool
                      ) -> SafetyState:
  """An untrained classifier, its inputs standardised on the pool's valid
  segments, and no flags."""
  params = classifier.network.init(key, jnp.zeros((1, classifier.input_size)))
  segs = pool.segments
  x = classifier.inputs(segs.observation, segs.action, segs.next_observation)
  weights = jnp.broadcast_to(pool.valid[:, None], x.shape[:2]).astype(
      jnp.float32)
  normalizer = running_statistics.update(
      running_statistics.init_state(jnp.zeros((classifier.input_size,))), x,
      weights=weights, std_min_value=1e-3)
  length, obs = segs.observation.shape[1:]
  return SafetyState(params=params, opt_state=optimizer.init(params),
                     input_normalizer=normalizer,
                     flags=init_flags(capacity, length, obs,
                                      segs.action.shape[-1]))


def import_flags(flags: FlagDataset, segments: rrm_segments.Segments,
                 flag: jax.Array, truth: jax.Array) -> FlagDataset:
  """Puts F flags of an earlier run's labels file at the front of an empty
  dataset (capacity >= F, checked by rrm.workdir.load_warm_start); they
  count against the run's flags and carry iteration stamp -2."""
  n = flag.shape[0]
  put = lambda buf, new: buf.at[:n].set(new.astype(buf.dtype))
  return flags.replace(
      segments=jax.tree.map(put, flags.segments, segments),
      flag=put(flags.flag, flag), truth=put(flags.truth, truth),
      iteration=flags.iteration.at[:n].set(-2), count=jnp.int32(n))


def flags_due(iteration: jax.Array, flags: FlagDataset, per_round: int,
              round_every: int) -> jax.Array:
  """[] int32 flags to ask at `iteration`: `per_round` at each label round
  until the capacity (the run's flags) is spent."""
  remaining = flags.capacity - flags.count
  due = jnp.where(iteration % round_every == 0, per_round, 0)
  return jnp.minimum(due, remaining).astype(jnp.int32)


def flag_round(flags: FlagDataset, segments: rrm_segments.Segments,
               unsafe: jax.Array, num: int, due: jax.Array, mistake: float,
               iteration: jax.Array, key: jax.Array) -> FlagDataset:
  """The user flags `due` (<= num, static) of the candidate segments.

  Args:
    flags: the dataset the flags join.
    segments: [S, L, ...] candidates (an iteration's rollout, cut).
    unsafe: [S, L] the hidden per-step unsafe events (1.0 where one was).
    num: static number of segments shown per round (the round's shape).
    due: [] int32 how many of them are asked and paid for.
    mistake: probability a flag is wrong (flipped).
    iteration: stamped on each flag.
    key: PRNG key (the choice, then the mistakes).
  """
  key_pick, key_err = jax.random.split(key)
  _, chosen = jax.lax.top_k(jax.random.uniform(key_pick, unsafe.shape[:1]),
                            num)
  shown = jax.tree.map(lambda x: x[chosen], segments)
  truth = jnp.any(unsafe[chosen] > 0, axis=-1).astype(jnp.float32)
  wrong = jax.random.uniform(key_err, (num,)) < mistake
  flag = jnp.where(wrong, 1.0 - truth, truth)
  active = jnp.arange(num) < due
  rows = jnp.where(active, flags.count + jnp.arange(num), flags.capacity)
  put = lambda buf, new: buf.at[rows].set(new.astype(buf.dtype), mode="drop")
  return flags.replace(
      segments=jax.tree.map(put, flags.segments, shown),
      flag=put(flags.flag, flag), truth=put(flags.truth, truth),
      iteration=put(flags.iteration, jnp.full((num,), iteration, jnp.int32)),
      count=jnp.minimum(flags.count + due, flags.capacity))


def segment_nll(step_logits: jax.Array, flag: jax.Array) -> jax.Array:
  """[N] -log P(flag | segment) under noisy-OR over the steps' logits [N, L].

  log P(safe) = sum_t log(1 - c_t) = sum_t log_sigmoid(-z_t), and
  log P(unsafe) = log(1 - P(safe)) = log(-expm1(log P(safe))).
  """
  log_safe = jnp.sum(jax.nn.log_sigmoid(-step_logits), axis=-1)
  log_unsafe = jnp.log(-jnp.expm1(jnp.minimum(log_safe, -1e-6)))
  return -(flag * log_unsafe + (1.0 - flag) * log_safe)


def balanced_loss(step_logits: jax.Array, flag: jax.Array) -> jax.Array:
  """Mean of `segment_nll` with flagged and unflagged segments weighted
  equally (each class half the loss when both are present)."""
  pos = flag > 0.5
  n_pos, n_neg = jnp.sum(pos), jnp.sum(~pos)
  both = (n_pos > 0) & (n_neg > 0)
  w_pos = jnp.where(both, 0.5 / jnp.maximum(n_pos, 1), 1.0 / flag.shape[0])
  w_neg = jnp.where(both, 0.5 / jnp.maximum(n_neg, 1), 1.0 / flag.shape[0])
  return jnp.sum(segment_nll(step_logits, flag)
                 * jnp.where(pos, w_pos, w_neg))


def make_update(classifier: Classifier,
                optimizer: optax.GradientTransformation, batch_size: int,
                num_steps: int) -> Callable:
  """`update(state, key) -> (state, metrics)`: `num_steps` Adam steps on
  minibatches of `batch_size` stored flags (drawn with replacement); a
  no-op while no flag is stored."""

  def loss_fn(params, normalizer, segs, flag):
    z = logits(classifier, params, normalizer, segs.observation, segs.action,
               segs.next_observation)
    return balanced_loss(z, flag)

  grad_fn = jax.value_and_grad(loss_fn)

  def update(state: SafetyState, key: jax.Array):
    flags = state.flags

    def step(carry, k):
      params, opt_state = carry
      idx = jax.random.randint(k, (batch_size,), 0,
                               jnp.maximum(flags.count, 1))
      loss, grads = grad_fn(params, state.input_normalizer,
                            jax.tree.map(lambda x: x[idx], flags.segments),
                            flags.flag[idx])
      updates, new_opt = optimizer.update(grads, opt_state, params)
      new = (optax.apply_updates(params, updates), new_opt)
      keep = flags.count == 0
      new = jax.tree.map(lambda a, b: jnp.where(keep, a, b),
                         (params, opt_state), new)
      return new, loss

    (params, opt_state), loss = jax.lax.scan(
        step, (state.params, state.opt_state),
        jax.random.split(key, num_steps))
    return (state.replace(params=params, opt_state=opt_state),
            {"safety/classifier_loss": loss[-1]})

  return update


def penalised(reward_fn: Callable, classifier: Classifier, state: SafetyState,
              penalty: float) -> Callable:
  """r(s, a, s') - penalty * c(s, a, s'): the reward RL maximises."""
  if not penalty:
    return reward_fn
  return lambda obs, action, outcome: reward_fn(obs, action, outcome) - (
      penalty * unsafe_probability(classifier, state, obs, action, outcome))


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  n = jnp.sum(mask)
  return jnp.where(n > 0, jnp.sum(jnp.where(mask, x, 0.0))
                   / jnp.maximum(n, 1), jnp.nan)


def metrics(flags: FlagDataset, due: jax.Array, probability: jax.Array,
            unsafe: jax.Array, penalty: float, labels_spent: jax.Array,
            flag_cost: float) -> dict[str, jax.Array]:
  """The iteration's safety metrics.

  Args:
    flags: the dataset after the round.
    due: flags asked this iteration.
    probability: [T, B] the classifier's c on the rollout's steps (the one
      RL was penalised with).
    unsafe: [T, B] the rollout's hidden unsafe events.
    penalty: lambda.
    labels_spent: preference labels paid for so far.
    flag_cost: budget units per flag.
  """
  m = flags.mask
  hit = unsafe > 0
  return {
      "safety/flags_this_iteration": due,
      "safety/flags_spent": flags.count,
      "safety/flags_positive": jnp.sum(jnp.where(m, flags.flag, 0.0)),
      "safety/flag_errors": jnp.sum(m & (flags.flag != flags.truth)),
      # Mean c on the rollout's unsafe steps (nan: none) and on its others:
      # how well the classifier the policy was penalised with sees them.
      "safety/classifier_on_unsafe": _masked_mean(probability, hit),
      "safety/classifier_on_safe": _masked_mean(probability, ~hit),
      "safety/penalty": penalty * jnp.mean(probability),
      # The user's effort so far, in budget units (preferences + flags).
      "feedback/budget_spent": (labels_spent.astype(jnp.float32)
                                + flag_cost * flags.count),
  }


class Safety(NamedTuple):
  """The flags' pieces bound to a run's config (rrm.train's `_Parts`).

  `step(state, iteration, observation, action, outcome, true_reward, unsafe,
  labels_spent, key) -> (state, metrics)` is an iteration's part: the flag
  round on its rollout ([T, B, ...] arrays; `unsafe` the hidden events),
  then the classifier's fit when flags arrived.
  """
  config: rrm_config.SafetyConfig
  classifier: Classifier
  optimizer: optax.GradientTransformation
  update: Callable
  step: Callable


def make_safety(config: rrm_config.SafetyConfig, obs_size: int,
                action_size: int, segment_length: int,
                round_every: int) -> Safety:
  classifier = make_classifier(config, obs_size, action_size)
  optimizer = make_optimizer(config)
  update = make_update(classifier, optimizer, config.batch_size,
                       config.num_steps)
  nan = {"safety/classifier_loss": jnp.float32(jnp.nan)}

  def step(state: SafetyState, iteration, observation, action, outcome,
           true_reward, unsafe, labels_spent, key):
    split = lambda x: rrm_segments.split_time(x, segment_length)
    segments = rrm_segments.Segments(split(observation), split(action),
                                     split(outcome), split(true_reward))
    due = flags_due(iteration, state.flags, config.flags_per_round,
                    round_every)
    key_round, key_fit = jax.random.split(key)
    flags = flag_round(state.flags, segments, split(unsafe),
                       config.flags_per_round, due, config.mistake,
                       iteration, key_round)
    new, m = jax.lax.cond(due > 0, lambda s: update(s, key_fit),
                          lambda s: (s, nan), state.replace(flags=flags))
    # The classifier RL was penalised with in this rollout.
    probability = unsafe_probability(classifier, state, observation, action,
                                     outcome)
    m.update(metrics(flags, due, probability, unsafe, config.penalty,
                     labels_spent, config.flag_cost))
    return new, m

  return Safety(config=config, classifier=classifier, optimizer=optimizer,
                update=update, step=step)
