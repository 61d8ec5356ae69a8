"""Building blocks of the Wan DiT: Linear with logical axes, RMSNorm, LayerNorm, the timestep sinusoid and the
3D rotary embedding.

Legend: B batch, L tokens, N heads, D head_dim, E model width, K sinusoid width (freq_dim).
Norms, the sinusoid and RoPE compute in fp32 whatever the compute dtype, as Wan's original does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def param(rngs: nnx.Rngs, init: Initializer, shape: Sequence[int], names: Sequence[str | None], dtype) -> nnx.Param:
    """A parameter annotated with logical axis names. Sharding is applied by `camclone_jax.sharding`, never
    eagerly at construction, so models build the same way with or without a mesh."""
    return nnx.Param(init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(names), eager_sharding=False)


xavier = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()


def identity_init(key, shape, dtype):
    del key
    return jnp.eye(*shape, dtype=dtype)


class Linear(nnx.Module):
    """y = x @ kernel + bias with kernel [in, out]; matmul in `dtype`."""

    def __init__(self, in_features: int, out_features: int, names: tuple[str | None, str | None], *,
                 rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32,
                 kernel_init: Initializer = xavier, bias_init: Initializer = zeros):
        self.kernel = param(rngs, kernel_init, (in_features, out_features), names, param_dtype)
        self.bias = param(rngs, bias_init, (out_features,), names[1:], param_dtype)
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        return y + self.bias[...].astype(self.dtype)


class RMSNorm(nnx.Module):
    """Wan's RMSNorm: normalise in fp32, round to the input dtype, then multiply by the weight."""

    def __init__(self, dim: int, name: str | None, *, rngs: nnx.Rngs, eps: float = 1e-6, param_dtype=jnp.float32):
        self.scale = param(rngs, ones, (dim,), (name,), param_dtype)
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return y.astype(x.dtype) * self.scale[...].astype(jnp.float32)


def layer_norm(x: Array, eps: float) -> Float[Array, "..."]:
    """LayerNorm without affine parameters, in fp32 (Wan's norm1 / norm2 / head norm / norm_mvs)."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


class LayerNorm(nnx.Module):
    """LayerNorm with weight and bias, computed in fp32."""

    def __init__(self, dim: int, name: str | None, *, rngs: nnx.Rngs, eps: float, param_dtype=jnp.float32):
        self.scale = param(rngs, ones, (dim,), (name,), param_dtype)
        self.bias = param(rngs, zeros, (dim,), (name,), param_dtype)
        self.eps = eps

    def __call__(self, x: Array) -> Float[Array, "..."]:
        return layer_norm(x, self.eps) * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)


# Timestep sinusoid ------------------------------------------------------------------------------------------
# Timesteps reach 1000, where an fp32 product t*w is off by up to 6e-5 rad. The references compute the angle
# in float64, so the integer part of t is looked up in a float64-built table and only the fractional part
# (|angle| < 1) is rotated in fp32: cos(n w + r w) by the angle-addition formula, exact to ~1e-7.
_SINUSOID_TABLE_MAX_T = 1024


@functools.lru_cache(maxsize=8)
def _sinusoid_tables(freq_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    half = freq_dim // 2
    omega = np.power(10000.0, -np.arange(half, dtype=np.float64) / half)
    angles = np.arange(_SINUSOID_TABLE_MAX_T + 1, dtype=np.float64)[:, None] * omega[None]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32), omega.astype(np.float32)


def timestep_sinusoid(t: Float[Array, "B"], freq_dim: int) -> Float[Array, "B K"]:
    """[cos(t w_k), sin(t w_k)] with w_k = 10000^(-k / (K/2)) (cos block first), for 0 <= t <= 1024."""
    cos_table, sin_table, omega = _sinusoid_tables(freq_dim)
    t = jnp.asarray(t, jnp.float32)
    n = jnp.clip(jnp.floor(t), 0, _SINUSOID_TABLE_MAX_T)
    r = (t - n)[:, None] * omega[None]
    n = n.astype(jnp.int32)
    cos_n, sin_n = jnp.asarray(cos_table)[n], jnp.asarray(sin_table)[n]
    cos = cos_n * jnp.cos(r) - sin_n * jnp.sin(r)
    sin = sin_n * jnp.cos(r) + cos_n * jnp.sin(r)
    return jnp.concatenate([cos, sin], axis=-1)


# 3D rotary embedding -----------------------------------------------------------------------------------------
def rope_band_sizes(head_dim: int) -> tuple[int, int, int]:
    """Channels of the (frame, height, width) bands: head_dim - 4*(head_dim//6), then 2*(head_dim//6) twice."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def apply_rope(x: Float[Array, "B L N D"], cos: Float[Array, "L P"], sin: Float[Array, "L P"]) -> Array:
    """Rotates interleaved channel pairs (2p, 2p+1) in fp32 and returns x's dtype."""
    xf = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    even, odd = xf[..., 0], xf[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    out = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)
