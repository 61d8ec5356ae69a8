"""Scaled dot-product attention behind one function with a backend switch.

Legend: B batch, L query tokens, S key tokens, N heads, D head_dim.
Backends:
  "xla"     any platform; fp32 logits and softmax. Builds the full [B, N, L, S] logits: fine for text
            cross-attention and short clips, not for 98K-token self-attention (its logits alone are ~460 GB).
  "cudnn"   fused flash attention on NVIDIA GPUs (`jax.nn.dot_product_attention`), in bf16 as the original's
            FlashAttention runs.
  "splash"  the Pallas splash-attention kernel on TPU; on other platforms it runs in Pallas interpret mode
            (slow, for tests). Sequences are padded to the block size, padded keys masked out by segment ids.
  "auto"    (`resolve_backend`) splash on TPU, cudnn on GPU under bf16 compute, xla otherwise.
No masks: Wan attends to every key, padding included. Sequence parallelism (all-to-all over heads) wraps these
per-device kernels in `camclone_jax.sharding.sequence_parallel`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

BACKENDS = ("auto", "xla", "cudnn", "splash")
SPLASH_BLOCK = 512  # the kernel's q / kv block; shorter sequences use one block rounded up to 128


def resolve_backend(backend: str, dtype=jnp.float32) -> str:
    """"auto" -> the fastest exact-enough kernel of the default platform; other names pass through."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    platform = jax.devices()[0].platform
    if platform == "tpu":
        return "splash"
    if platform == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"  # cudnn runs in half precision only; fp32 compute (parity runs) keeps exact XLA
    return "xla"


def dot_product_attention(q: Float[Array, "B L N D"], k: Float[Array, "B S N D"], v: Float[Array, "B S N D"],
                          backend: str = "xla") -> Float[Array, "B L N D"]:
    """softmax(q k^T / sqrt(D)) v per head; output in q's dtype."""
    backend = resolve_backend(backend, q.dtype)
    if backend == "xla":
        scale = q.shape[-1] ** -0.5
        logits = jnp.einsum("BLND,BSND->BNLS", q, k, preferred_element_type=jnp.float32) * scale
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        return jnp.einsum("BNLS,BSND->BLND", weights, v).astype(q.dtype)
    if backend == "cudnn":
        dtype = q.dtype
        half = jnp.bfloat16 if dtype == jnp.float32 else dtype
        out = jax.nn.dot_product_attention(q.astype(half), k.astype(half), v.astype(half), implementation="cudnn")
        return out.astype(dtype)
    return _splash(q, k, v)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _splash_block(length: int) -> int:
    return SPLASH_BLOCK if length >= SPLASH_BLOCK else _round_up(length, 128)


@functools.lru_cache(maxsize=32)
def _splash_kernel(heads: int, q_len: int, kv_len: int, block_q: int, block_kv: int, interpret: bool, mesh):
    del mesh  # part of the cache key only: the kernel's mask tables belong to the mesh they were built under
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    mask = sm.MultiHeadMask([sm.FullMask((q_len, kv_len)) for _ in range(heads)])
    sizes = sk.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv, block_q_dkv=block_q,
                          block_kv_dkv=block_kv, block_kv_dkv_compute=block_kv, block_q_dq=block_q,
                          block_kv_dq=block_kv)
    # The kernel holds its block-mask tables as arrays: made concrete, so that the cache outlives any trace.
    with jax.ensure_compile_time_eval():
        return sk.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def _splash(q, k, v):
    b, length, heads, d = q.shape
    keys = k.shape[1]
    block_q, block_kv = _splash_block(length), _splash_block(keys)
    q_len, kv_len = _round_up(length, block_q), _round_up(keys, block_kv)
    kernel = _splash_kernel(heads, q_len, kv_len, block_q, block_kv, jax.devices()[0].platform != "tpu",
                            jax.sharding.get_abstract_mesh())
    from jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel import SegmentIds

    # Padded keys get segment 1, every query segment 0: they never enter a softmax. Padded queries are cut off.
    segments = SegmentIds(q=jnp.zeros((q_len,), jnp.int32), kv=jnp.asarray(np.arange(kv_len) >= keys, jnp.int32))

    def heads_first(x, n):  # [L, N, D] -> [N, n, D], zero-padded
        return jnp.pad(jnp.swapaxes(x, 0, 1), ((0, 0), (0, n - x.shape[0]), (0, 0)))

    def one(q, k, v):  # the kernel leaves the 1/sqrt(D) scale to the caller
        out = kernel(heads_first(q * d ** -0.5, q_len), heads_first(k, kv_len), heads_first(v, kv_len),
                     segment_ids=segments)
        return jnp.swapaxes(out[:, :length], 0, 1)

    return jax.vmap(one)(q, k, v).astype(q.dtype)
