"""Scaled dot-product attention behind one function with a backend switch.

Legend: B batch, L query tokens, S key tokens, N heads, D head_dim.
Backends: "xla" (any platform; fp32 logits and softmax) and "cudnn" (fused flash attention on NVIDIA GPUs;
runs in bf16, as the original's FlashAttention does). No masks: Wan attends to every key, padding included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def dot_product_attention(q: Float[Array, "B L N D"], k: Float[Array, "B S N D"], v: Float[Array, "B S N D"],
                          backend: str = "xla") -> Float[Array, "B L N D"]:
    """softmax(q k^T / sqrt(D)) v per head; output in q's dtype."""
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
    raise ValueError(f"unknown attention backend {backend!r}; expected 'xla' or 'cudnn'")
