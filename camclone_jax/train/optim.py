"""The trained subset of a DiT and its optimiser: path-substring masks, AdamW with warm-up, clipping,
gradient accumulation and an optional EMA, all over the trainable leaves only.

The model is split once into `trainable` and `frozen` parameter states (`nnx.split` with a path filter), so the
optimiser state, gradients and EMA exist for the trainable leaves alone and the frozen ones are never touched.
A parameter is trainable iff its path ("blocks/self_attn/q/kernel") contains one of the configured substrings,
as upstream's `any(k in name for k in trainable_names)`; an empty list trains everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def path_string(path) -> str:
    return "/".join(str(getattr(p, "key", p)) for p in path)


def trainable_filter(names: Sequence[str]):
    """An nnx filter selecting the Params whose path contains any of `names` (all Params when empty)."""
    names = tuple(names)

    def is_trainable(path, value) -> bool:
        return not names or any(n in path_string(path) for n in names)

    return nnx.All(nnx.Param, is_trainable)


def split_trainable(model: nnx.Module, names: Sequence[str]):
    """-> (graphdef, trainable state, frozen state). Raises if `names` select nothing (a typo would otherwise
    train nothing and report a flat loss)."""
    graphdef, trainable, frozen = nnx.split(model, trainable_filter(names), ...)
    if not jax.tree.leaves(trainable):
        raise ValueError(f"optimizer.trainable={tuple(names)} matches no parameter of the "
                         f"{getattr(model, 'config', None) and model.config.variant!r} DiT")
    return graphdef, trainable, frozen


def learning_rate(cfg) -> optax.Schedule:
    """Linear warm-up from 0 over `warmup_steps`, then constant (upstream: constant, no warm-up) or cosine."""
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"optimizer.schedule must be 'constant' or 'cosine', got {cfg.schedule!r}")
    warmup = max(int(cfg.warmup_steps), 0)
    decay_steps = int(cfg.get("decay_steps", 0) or 0)
    if cfg.schedule == "cosine":
        if decay_steps <= warmup:
            raise ValueError("optimizer.schedule='cosine' needs optimizer.decay_steps > warmup_steps")
        return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(warmup, 1), decay_steps)
    if warmup == 0:
        return optax.constant_schedule(cfg.lr)
    return optax.linear_schedule(0.0, cfg.lr, warmup)


def make_optimizer(cfg) -> optax.GradientTransformation:
    """AdamW (torch defaults unless configured), optional global-norm clipping, optional accumulation of
    `accumulate_steps` micro-batches (optax.MultiSteps: the update is applied every k-th call)."""
    parts = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(optax.adamw(learning_rate(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    tx = optax.chain(*parts)
    accumulate = int(cfg.get("accumulate_steps", 1) or 1)
    return optax.MultiSteps(tx, every_k_schedule=accumulate) if accumulate > 1 else tx


def ema_update(ema, params, decay: float):
    """ema ← decay·ema + (1 − decay)·params, in the EMA's dtype (fp32)."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype), ema, params)


def global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))
