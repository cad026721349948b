"""Preference losses."""

from __future__ import annotations

import jax
import optax


def bradley_terry_loss(return_1: jax.Array, return_2: jax.Array,
                       label: jax.Array) -> jax.Array:
  """Bradley–Terry (Christiano et al. 2017) loss on predicted segment returns.

  P(segment 2 preferred) = sigmoid(R̂_2 - R̂_1), and the loss is the cross
  entropy with the (possibly soft) label y = P(2 preferred):

    loss = -[y log sigmoid(R̂_2 - R̂_1) + (1 - y) log sigmoid(R̂_1 - R̂_2)].

  A tie (y = 0.5) pulls the two returns together.

  Args:
    return_1: [...] predicted returns of the first segments.
    return_2: [...] predicted returns of the second segments.
    label: [...] P(second preferred) in [0, 1].

  Returns:
    [...] per-pair loss.
  """
  return optax.sigmoid_binary_cross_entropy(return_2 - return_1, label)
