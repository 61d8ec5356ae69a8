"""Scaled dot-product attention behind one function with a backend switch.

Legend: B batch, L query tokens, S key tokens, N heads, D head_dim.
Backends:
  "xla"     any platform; fp32 logits and softmax. Short sequences build the full [B, N, L, S] logits; when
            those exceed XLA_LOGITS_BUDGET elements, query blocks run one after another (`lax.map`) with a
            flash-style backward that recomputes each block's softmax from its saved log-sum-exp, so memory is
            O(block x S), not O(L x S) (98K-token self-attention logits alone would be ~460 GB), and XLA:CPU's
            backward runs ~2x faster than through the whole logits.
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
XLA_LOGITS_BUDGET = 2**24  # fp32 logits per query block (64 MiB): measured best of 2^22..2^26 on a 2-core CPU
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
        return _xla_attention(q, k, v)
    if backend == "cudnn":
        dtype = q.dtype
        half = jnp.bfloat16 if dtype == jnp.float32 else dtype
        out = jax.nn.dot_product_attention(q.astype(half), k.astype(half), v.astype(half), implementation="cudnn")
        return out.astype(dtype)
    return _splash(q, k, v)


def _xla_attention(q: Float[Array, "B L N D"], k: Float[Array, "B S N D"],
                   v: Float[Array, "B S N D"]) -> Float[Array, "B L N D"]:
    # Both paths run heads-major ([B, N, L, D]), so that each product is a plain batched matmul: left to itself,
    # XLA:CPU's layout assignment transposes the [N, L, S] weights between the two (at L=192, S=512: 2.3x slower
    # forward, 3x slower gradient). The 1/sqrt(D) scale goes on q (L x D), not on the logits that the max and
    # the exp both read, and the softmax is normalised on the [L, D] result, as flash attention does.
    b, length, heads, _ = q.shape
    dtype = q.dtype
    q = q * jnp.asarray(q.shape[-1] ** -0.5, dtype)
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    block = query_block(b * heads, length, k.shape[2])
    out = blockwise_attention(q, k, v, block) if block < length else _softmax_product(q, k, v)[0]
    return jnp.swapaxes(out, 1, 2).astype(dtype)


def _softmax_product(q: Float[Array, "B N L D"], k: Float[Array, "B N S D"], v: Float[Array, "B N S D"]):
    """-> (softmax(q k^T) v in q's dtype, log-sum-exp [B, N, L]); q comes pre-scaled."""
    logits = jnp.einsum("BNLD,BNSD->BNLS", q, k, preferred_element_type=jnp.float32)
    peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))  # exact: the shift cancels
    p = jnp.exp(logits - peak)
    total = jnp.sum(p, axis=-1, keepdims=True)
    out = jnp.einsum("BNLS,BNSD->BNLD", p.astype(v.dtype), v, preferred_element_type=jnp.float32) / total
    return out.astype(q.dtype), (peak + jnp.log(total))[..., 0]


def query_block(rows: int, length: int, keys: int, budget: int | None = None) -> int:
    """Query tokens per block so that a block's logits (rows = B x N, times keys) stay within `budget`, the
    blocks as even as that allows: 1,440 queries under a 1,024 cap run as 2 x 720, not 2 x 1,024 with 608 of
    padding."""
    budget = XLA_LOGITS_BUDGET if budget is None else budget
    most = max(8, budget // max(rows * keys, 1))
    if most >= length:
        return length
    return max(8, -(-length // -(-length // most)))


def _to_blocks(x: Array, block: int) -> Array:
    """[B, N, L, ...] -> [L / block, B, N, block, ...], zero-padded to whole blocks."""
    length = x.shape[2]
    n = -(-length // block)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, n * block - length)) + ((0, 0),) * (x.ndim - 3))
    return jnp.moveaxis(x.reshape(*x.shape[:2], n, block, *x.shape[3:]), 2, 0)


def _from_blocks(x: Array, length: int) -> Array:
    n, b, heads, block = x.shape[:4]
    return jnp.moveaxis(x, 0, 2).reshape(b, heads, n * block, *x.shape[4:])[:, :, :length]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def blockwise_attention(q: Float[Array, "B N L D"], k: Float[Array, "B N S D"], v: Float[Array, "B N S D"],
                        block: int) -> Float[Array, "B N L D"]:
    """The heads-major XLA attention (q pre-scaled) over query blocks of `block` tokens (every block sees all
    keys, so no online softmax is needed); equal to the one-shot path to fp32 rounding, forward and backward."""
    return _blockwise_forward(q, k, v, block)[0]


def _blockwise_forward(q, k, v, block):
    out, lse = jax.lax.map(lambda q_block: _softmax_product(q_block, k, v), _to_blocks(q, block))
    out = _from_blocks(out, q.shape[2])
    return out, (q, k, v, out, lse)


def _blockwise_backward(block, residuals, d_out):
    q, k, v, out, lse = residuals
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)  # [B, N, L]

    def one(carry, xs):
        dk, dv = carry
        q_block, d_block, lse_block, delta_block = xs
        logits = jnp.einsum("BNLD,BNSD->BNLS", q_block, k, preferred_element_type=jnp.float32)
        p = jnp.exp(logits - lse_block[..., None])
        dv = dv + jnp.einsum("BNLS,BNLD->BNSD", p.astype(v.dtype), d_block, preferred_element_type=jnp.float32)
        dp = jnp.einsum("BNLD,BNSD->BNLS", d_block, v, preferred_element_type=jnp.float32)
        ds = p * (dp - delta_block[..., None])
        dq = jnp.einsum("BNLS,BNSD->BNLD", ds.astype(k.dtype), k, preferred_element_type=jnp.float32)
        dk = dk + jnp.einsum("BNLS,BNLD->BNSD", ds.astype(q.dtype), q_block, preferred_element_type=jnp.float32)
        return (dk, dv), dq.astype(q.dtype)

    zeros = jnp.zeros(k.shape, jnp.float32)
    blocks = (_to_blocks(q, block), _to_blocks(d_out, block), lse, _to_blocks(delta, block))
    (dk, dv), dq = jax.lax.scan(one, (zeros, zeros), blocks)
    return _from_blocks(dq, q.shape[2]), dk.astype(k.dtype), dv.astype(v.dtype)


blockwise_attention.defvjp(lambda q, k, v, block: _blockwise_forward(q, k, v, block), _blockwise_backward)


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
