"""Reward model: Bradley–Terry loss, ensemble, update, held-out split."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rrm import feedback
from rrm import reward
from rrm import segments


def test_bradley_terry_loss_hand_computed():
  # Returns (R1, R2, y): loss = -[y log s(R2-R1) + (1-y) log s(R1-R2)].
  # (0, 0, 1): -log(0.5) = 0.693147
  # (0, 2, 1): -log(s(2)) = log(1 + e^-2) = 0.126928
  # (0, 2, 0): -log(s(-2)) = log(1 + e^2) = 2.126928
  # (1, 3, .5): 0.5 * (0.126928 + 2.126928) = 1.126928
  r1 = jnp.array([0.0, 0.0, 0.0, 1.0])
  r2 = jnp.array([0.0, 2.0, 2.0, 3.0])
  y = jnp.array([1.0, 1.0, 0.0, 0.5])
  np.testing.assert_allclose(reward.bradley_terry_loss(r1, r2, y),
                             [0.693147, 0.126928, 2.126928, 1.126928],
                             atol=1e-5)


def test_heldout_mask_and_train_indices_partition_the_labels():
  mask = np.asarray(reward.heldout_mask(20, 4))
  np.testing.assert_array_equal(np.where(mask)[0], [3, 7, 11, 15, 19])
  from rrm.reward import update as ru  # private helpers, checked directly
  count = 14
  n_train = int(ru.num_train(jnp.int32(count), 4))
  idx = np.asarray(ru._train_index(jnp.arange(n_train), 4))
  expected = [i for i in range(count) if not mask[i]]
  np.testing.assert_array_equal(idx, expected)


def _toy_dataset(n, length=4, obs_size=3, seed=0):
  """Pairs labelled by a hidden reward r(s) = s[0] (perfect teacher)."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  obs1 = jax.random.normal(k1, (n, length, obs_size))
  obs2 = jax.random.normal(k2, (n, length, obs_size))
  seg = lambda o: segments.Segments(o, jnp.zeros(o.shape[:-1] + (1,)), o,
                                    o[..., 0])
  label = (obs2[..., 0].sum(-1) > obs1[..., 0].sum(-1)).astype(jnp.float32)
  ds = feedback.init_labels(n, length, obs_size, 1)
  return feedback.add_labels(ds, seg(obs1), seg(obs2), label,
                             jnp.ones(n, bool), jnp.int32(0))


def test_update_learns_a_hidden_reward_and_members_differ():
  model = reward.make_reward_model("obs", (32,), 3, 1)
  opt = optax.adam(1e-2)
  state = reward.init_reward_state(model, opt, jax.random.PRNGKey(1), 3)
  ds = _toy_dataset(200)
  heldout = reward.heldout_mask(200, 5)
  before = float(reward.label_accuracy(model, state, ds, heldout))
  update = jax.jit(reward.make_reward_update(model, opt, batch_size=32,
                                             num_steps=300, heldout_every=5))
  state, metrics = update(state, ds, jax.random.PRNGKey(2))
  after = float(reward.label_accuracy(model, state, ds, heldout))
  assert after > 0.9 and after > before + 0.2, (before, after)
  assert float(metrics["reward/loss"]) < 0.4
  # Each member has its own bootstrap: parameters differ between members.
  w = jax.tree.leaves(state.params)[0]
  assert not np.allclose(w[0], w[1])
  # The learned per-step reward correlates with the hidden one.
  obs = jax.random.normal(jax.random.PRNGKey(3), (500, 3))
  pred = reward.predict(model, state.params, state.input_normalizer, obs,
                        jnp.zeros((500, 1)), obs)
  assert np.corrcoef(np.asarray(pred.mean(0)), np.asarray(obs[:, 0]))[0, 1] > 0.9


def test_update_without_labels_is_a_noop_and_heldout_never_trained():
  model = reward.make_reward_model("obs", (8,), 3, 1)
  opt = optax.adam(1e-2)
  state = reward.init_reward_state(model, opt, jax.random.PRNGKey(0), 2)
  empty = feedback.init_labels(10, 4, 3, 1)
  update = reward.make_reward_update(model, opt, 4, 5, heldout_every=2)
  new, _ = update(state, empty, jax.random.PRNGKey(1))
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  # One label only, and it is... index 0, a training label (held out: 1, 3,
  # ...). With heldout_every=2 and count=1 there is 1 training label.
  one = _toy_dataset(1)
  grads_seen = update(state, one, jax.random.PRNGKey(1))[0]
  assert not np.allclose(jax.tree.leaves(grads_seen.params)[0],
                         jax.tree.leaves(state.params)[0])


def test_learned_reward_is_normalised_on_the_labelled_segments():
  model = reward.make_reward_model("obs_action", (8,), 3, 1)
  state = reward.init_reward_state(model, optax.adam(1e-3),
                                   jax.random.PRNGKey(0), 2)
  ds = _toy_dataset(16, length=5)
  ds = ds.replace(count=jnp.int32(12))  # the last 4 rows are not labels
  state = reward.refit_normalizer(model, state, ds)
  segs = jax.tree.map(lambda a, b: jnp.concatenate([a[:12], b[:12]]),
                      ds.first, ds.second)
  r = reward.learned_reward(model, state, segs.observation, segs.action,
                            segs.next_observation)
  np.testing.assert_allclose(float(r.mean()), 0.0, atol=1e-4)
  np.testing.assert_allclose(float(r.std()), 1.0, atol=1e-3)


def test_input_normalizer_standardises_valid_segment_inputs():
  model = reward.make_reward_model("obs_action", (8,), 2, 1)
  key = jax.random.PRNGKey(0)
  obs = jax.random.normal(key, (6, 5, 2)) * jnp.array([0.1, 5.0]) + 3.0
  act = jnp.ones((6, 5, 1)) * 2.0
  segs = segments.Segments(obs, act, obs, jnp.zeros((6, 5)))
  valid = jnp.array([True] * 4 + [False] * 2)
  stats = reward.fit_input_normalizer(model, segs, valid)
  x = jnp.concatenate([obs[:4], act[:4]], -1).reshape(-1, 3)
  np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(stats.std[:2], x.std(0)[:2], rtol=1e-4)
