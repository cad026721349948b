"""Diagnostics of the learned reward against the hidden true reward."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pearson(x: jax.Array, y: jax.Array,
            mask: jax.Array | None = None) -> jax.Array:
  """Pearson correlation of x and y over all elements (where `mask`).

  Returns nan when either side is constant: correlation is undefined there
  (e.g. a perfect policy whose true reward is 1 on every step).
  """
  x = x.reshape(-1).astype(jnp.float32)
  y = y.reshape(-1).astype(jnp.float32)
  w = (jnp.ones_like(x) if mask is None else
       jnp.broadcast_to(mask, x.shape).reshape(-1).astype(jnp.float32))
  n = jnp.maximum(jnp.sum(w), 1.0)
  mx, my = jnp.sum(w * x) / n, jnp.sum(w * y) / n
  dx, dy = x - mx, y - my
  cov = jnp.sum(w * dx * dy)
  vx, vy = jnp.sum(w * dx * dx), jnp.sum(w * dy * dy)
  defined = (vx > 1e-12) & (vy > 1e-12)
  return jnp.where(defined, cov / jnp.sqrt(jnp.where(defined, vx * vy, 1.0)),
                   jnp.nan)
