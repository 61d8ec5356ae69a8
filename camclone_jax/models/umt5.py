"""The umT5-XXL text encoder of Wan2.1 (`wan/modules/t5.py`, encoder only), in Flax NNX.

Legend: B batch, S text tokens (queries), T text tokens (keys), N heads, D head_dim, E model width (`dim`),
F FFN width (`dim_ffn`), K relative-position buckets, V vocabulary.

    ids [B, S] -> token_embedding (no scaling) -> 24 x pre-norm block -> RMSNorm -> [B, S, E] fp32
    block: x += attn(norm1(x), mask, bias_layer);  x += ffn(norm2(x))

T5 specifics kept from the original: no biases anywhere, no 1/sqrt(D) logit scaling, a bidirectional relative
position bias table [K, N] in *every* block (umT5, unlike T5, shares none), masked keys filled with the most
negative finite value of the compute dtype, softmax in fp32, RMSNorm without mean subtraction computed in fp32
and cast to the weight dtype (bf16/fp16 weights) before the weight multiply, gated tanh-GELU FFN.
Blocks are stacked on a leading `layers` axis and run with `lax.scan`, as in `WanDiT`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from camclone_jax import axes
from camclone_jax.models.layers import ones, param
from camclone_jax.models.model_config import NamedConfig
from camclone_jax.sharding import constrain

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class UMT5Config(NamedConfig):
    MODEL: ClassVar[str] = "umt5"
    DESCRIPTION: ClassVar[str] = "umT5 text encoder"

    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096  # N * D
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32  # relative-position buckets, half per direction
    max_distance: int = 128  # distances >= this share the last bucket
    eps: float = 1e-6
    param_dtype: str = "float32"  # the released checkpoint is bf16
    dtype: str = "float32"  # compute dtype of matmuls and the residual stream; norms and softmax stay fp32

    def __post_init__(self):
        if self.dim_attn % self.num_heads:
            raise ValueError(f"UMT5Config.dim_attn={self.dim_attn} is not divisible by num_heads={self.num_heads}")
        if self.num_buckets % 4:
            raise ValueError(f"UMT5Config.num_buckets={self.num_buckets} must be a multiple of 4")

    @property
    def head_dim(self) -> int:
        return self.dim_attn // self.num_heads

    @property
    def jnp_param_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)


def umt5_xxl() -> UMT5Config:
    """google/umt5-xxl encoder as Wan2.1 ships it (`models_t5_umt5-xxl-enc-bf16.pth`): 5,680,910,336 params."""
    return UMT5Config()


def tiny_umt5() -> UMT5Config:
    """The same layout at width 64, for tests (vocab 512 covers the tests' small sentencepiece models)."""
    return UMT5Config(vocab_size=512, dim=64, dim_attn=64, dim_ffn=128, num_heads=4, num_layers=2)


def relative_position_buckets(length_q: int, length_k: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bidirectional T5 buckets [S, T] of r = key - query: |r| < K/4 exact, then log-spaced up to max_distance,
    +K/2 for r > 0. The log is taken in fp32 exactly as the torch original does (bucket edges at |r| = 16, 32,
    64 depend on its rounding)."""
    rel = np.arange(length_k)[None, :] - np.arange(length_q)[:, None]
    half = num_buckets // 2
    max_exact = half // 2
    n = np.abs(rel)
    ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
    ratio = ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = max_exact + ratio.astype(np.int64)
    bucket = np.where(n < max_exact, n, np.minimum(large, half - 1))
    return (bucket + (rel > 0) * half).astype(np.int32)


class Dense(nnx.Module):
    """Bias-free y = x @ kernel, kernel [in, out], matmul in `dtype`."""

    def __init__(self, in_features: int, out_features: int, names: tuple[str | None, str | None], *,
                 rngs: nnx.Rngs, param_dtype, dtype):
        init = nnx.initializers.normal(in_features**-0.5)
        self.kernel = param(rngs, init, (in_features, out_features), names, param_dtype)
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        return jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))


class T5RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps) in fp32, rounded to the weight dtype when that is half precision, times weight."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, eps: float, param_dtype):
        self.scale = param(rngs, ones, (dim,), (axes.EMBED,), param_dtype)
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(F32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        scale = self.scale[...]
        if scale.dtype in (jnp.bfloat16, jnp.float16):
            return scale * y.astype(scale.dtype)
        return scale.astype(F32) * y


class Attention(nnx.Module):
    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=cfg.jnp_param_dtype, dtype=cfg.jnp_dtype)
        self.q = Dense(cfg.dim, cfg.dim_attn, (axes.EMBED, axes.HEADS), **kw)
        self.k = Dense(cfg.dim, cfg.dim_attn, (axes.EMBED, axes.HEADS), **kw)
        self.v = Dense(cfg.dim, cfg.dim_attn, (axes.EMBED, axes.HEADS), **kw)
        self.o = Dense(cfg.dim_attn, cfg.dim, (axes.HEADS, axes.EMBED), **kw)
        self.num_heads, self.dtype = cfg.num_heads, cfg.jnp_dtype

    def __call__(self, x: Float[Array, "B S E"], bias: Float[Array, "B N S T"]) -> Float[Array, "B S E"]:
        split = lambda t: einops.rearrange(t, "B S (N D) -> B S N D", N=self.num_heads)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        logits = jnp.einsum("BSND,BTND->BNST", q, k) + bias.astype(self.dtype)  # T5: no 1/sqrt(D)
        weights = jax.nn.softmax(logits.astype(F32), axis=-1).astype(self.dtype)
        out = jnp.einsum("BNST,BTND->BSND", weights, v)
        return self.o(einops.rearrange(out, "B S N D -> B S (N D)"))


class FeedForward(nnx.Module):
    """fc2(fc1(x) * gelu_tanh(gate(x)))."""

    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=cfg.jnp_param_dtype, dtype=cfg.jnp_dtype)
        self.gate = Dense(cfg.dim, cfg.dim_ffn, (axes.EMBED, axes.MLP), **kw)
        self.fc1 = Dense(cfg.dim, cfg.dim_ffn, (axes.EMBED, axes.MLP), **kw)
        self.fc2 = Dense(cfg.dim_ffn, cfg.dim, (axes.MLP, axes.EMBED), **kw)

    def __call__(self, x: Float[Array, "B S E"]) -> Float[Array, "B S E"]:
        return self.fc2(self.fc1(x) * jax.nn.gelu(self.gate(x), approximate=True))


class Block(nnx.Module):
    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        pd = cfg.jnp_param_dtype
        init = nnx.initializers.normal((2 * cfg.num_buckets * cfg.num_heads) ** -0.5)
        self.pos_embedding = param(rngs, init, (cfg.num_buckets, cfg.num_heads), (None, None), pd)  # [K, N]
        self.norm1 = T5RMSNorm(cfg.dim, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.attn = Attention(cfg, rngs=rngs)
        self.norm2 = T5RMSNorm(cfg.dim, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.ffn = FeedForward(cfg, rngs=rngs)
        self.dtype = cfg.jnp_dtype

    def __call__(self, x: Float[Array, "B S E"], buckets: Int[Array, "S T"], key_mask: Array) -> Array:
        table = self.pos_embedding[...].astype(self.dtype)
        bias = einops.rearrange(table[buckets], "S T N -> 1 N S T")
        # Masked keys get the most negative finite value in place of their position bias (the original's
        # masked_fill on the bias); q.k is then added to it.
        bias = jnp.where(key_mask[:, None, None, :], bias, jnp.finfo(self.dtype).min)
        x = x + self.attn(self.norm1(x), bias).astype(self.dtype)
        return x + self.ffn(self.norm2(x)).astype(self.dtype)


class UMT5Encoder(nnx.Module):
    """umT5 encoder. `__call__(ids [B, S] int, mask [B, S]) -> [B, S, dim]` fp32; padded positions are computed
    too (they attend to the valid tokens); `text_prompts.encode_prompts` zeroes them."""

    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        self.config = cfg
        self.token_embedding = param(rngs, nnx.initializers.normal(1.0), (cfg.vocab_size, cfg.dim),
                                     (None, axes.EMBED), cfg.jnp_param_dtype)  # [V, E]

        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: axes.LAYERS})
        def make_blocks(rngs):
            return Block(cfg, rngs=rngs)

        self.blocks = make_blocks(rngs)
        self.norm = T5RMSNorm(cfg.dim, rngs=rngs, eps=cfg.eps, param_dtype=cfg.jnp_param_dtype)

    def __call__(self, ids: Int[Array, "B S"], mask: Int[Array, "B S"]) -> Float[Array, "B S E"]:
        cfg = self.config
        if ids.ndim != 2 or tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"ids and mask must both be [B, S], got {ids.shape} and {mask.shape}")
        length = ids.shape[1]
        buckets = jnp.asarray(relative_position_buckets(length, length, cfg.num_buckets, cfg.max_distance))
        key_mask = jnp.asarray(mask) != 0
        x = jnp.take(self.token_embedding[...], jnp.asarray(ids, jnp.int32), axis=0).astype(cfg.jnp_dtype)
        graphdef, stacked = nnx.split(self.blocks)

        def body(x, block_state):
            x = constrain(x, axes.BATCH, axes.CONTEXT, axes.EMBED)
            x = nnx.merge(graphdef, block_state)(x, buckets, key_mask)
            return constrain(x, axes.BATCH, axes.CONTEXT, axes.EMBED), None

        x, _ = jax.lax.scan(body, x, stacked)
        return self.norm(x).astype(F32)
