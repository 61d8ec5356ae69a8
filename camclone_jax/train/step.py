"""The rectified-flow train step: one pure function `train_step(state, batch, rng) -> (state, metrics)`, jitted
once with shardings over the mesh and the state donated.

Batch (latents, channels last; B samples, V views, F latent frames, S text tokens):
  latents          [B, F, h, w, 16]       clean target latents x₀ (syncam: [B, V, F, h, w, 16])
  text             [B, S, D]              umT5 features, zero past each prompt's length
  camclone: y [B, F, h, w, 20], clip_feature [B, 257, E], ref_latents / content_latents [B, F, h, w, 16]
  recam:    source_latents [B, F, h, w, 16], cam_emb [B, F, 12]
  syncam:   cam_emb [B, V, F, 12]         (views are folded into the DiT batch; the text is shared per sample)

Per step (camera_control.md 4.1, 5.7, 6.6, 7.5): draw t (flow.py), noise the target frames only, keep the
condition frames clean, predict, loss = mean over the target frames of (v̂ − (ε − x₀))² times the weight of t.
CamCloneMaster zeroes the content latents for the whole batch with probability `content_dropout` (one model
for I2V and V2V). Gradients are taken w.r.t. the trainable leaves only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from camclone_jax import sharding
from camclone_jax.train import flow
from camclone_jax.train.optim import ema_update, global_norm, make_optimizer, split_trainable


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    trainable: dict  # pure dict of the trained leaves (fp32 master weights)
    frozen: dict  # pure dict of everything else (never updated; may be stored in bf16)
    opt_state: Any
    ema: dict | None = None


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the step needs from the run config (hashable: it is a static argument of the jit)."""

    variant: str
    num_train_timesteps: int = 1000
    shift: float = 5.0
    weighting: bool = True
    per_sample_timesteps: bool = False
    timestep_sampling: str = "grid"
    bf16_timesteps: bool = True
    content_dropout: float = 0.0
    ema_decay: float = 0.0

    @classmethod
    def from_config(cls, config, variant: str) -> "StepConfig":
        f = config.flow
        return cls(variant=variant, num_train_timesteps=f.num_train_timesteps, shift=f.shift,
                   weighting=f.weighting != "none", per_sample_timesteps=f.get("per_sample_timesteps", False),
                   timestep_sampling=f.get("timestep_sampling", "grid"),
                   bf16_timesteps=f.get("bf16_timesteps", True),
                   content_dropout=config.input.get("content_dropout", 0.0),
                   ema_decay=config.optimizer.get("ema_decay", 0.0))


def init_state(model: nnx.Module, trainable_names, optimizer_cfg, *, frozen_dtype: str | None = None,
               ema: bool = False) -> tuple[nnx.GraphDef, TrainState]:
    """Splits `model` into trainable / frozen leaves and builds the optimiser state of the trainable ones."""
    graphdef, trainable, frozen = split_trainable(model, trainable_names)
    # Copies: the jitted step donates the state, which must not delete the arrays `model` still holds.
    trainable, frozen = (jax.tree.map(jnp.copy, s.to_pure_dict()) for s in (trainable, frozen))
    if frozen_dtype:
        frozen = jax.tree.map(lambda a: a.astype(frozen_dtype), frozen)
    tx = make_optimizer(optimizer_cfg)
    state = TrainState(step=jnp.zeros((), jnp.int32), trainable=trainable, frozen=frozen,
                       opt_state=tx.init(trainable), ema=jax.tree.map(jnp.copy, trainable) if ema else None)
    return graphdef, state


def _model_inputs(cfg: StepConfig, batch: dict, noisy: jax.Array, keep_content: jax.Array) -> dict:
    variant = cfg.variant
    kwargs = {}
    if variant in ("i2v", "camclone"):
        kwargs.update(y=batch["y"], clip_feature=batch["clip_feature"])
    if variant == "camclone":
        content = batch["content_latents"] * keep_content.astype(batch["content_latents"].dtype)
        kwargs["cond_latents"] = jnp.concatenate([batch["ref_latents"], content], axis=1)
    if variant == "recam":
        kwargs.update(cond_latents=batch["source_latents"], cam_emb=batch["cam_emb"])
    if variant == "syncam":
        kwargs.update(cam_emb=batch["cam_emb"].reshape((-1,) + batch["cam_emb"].shape[2:]),
                      num_views=batch["cam_emb"].shape[1])
    return kwargs


def loss_fn(trainable, frozen, graphdef, cfg: StepConfig, batch: dict, rng: jax.Array):
    """-> (weighted loss, aux metrics). Pure; `trainable` is the differentiated argument."""
    model = nnx.merge(graphdef, trainable, frozen)
    x0 = batch["latents"].astype(jnp.float32)
    views = x0.shape[1] if cfg.variant == "syncam" else 1
    x0 = x0.reshape((-1,) + x0.shape[-4:])  # syncam: (B, V) -> B·V, views of one sample adjacent
    batch_size = x0.shape[0] // views
    t_key, noise_key, drop_key = jax.random.split(rng, 3)
    grid = flow.training_grid(cfg.num_train_timesteps, cfg.shift)
    t, sigma, weight = flow.draw_timesteps(t_key, grid, batch_size, per_sample=cfg.per_sample_timesteps,
                                           sampling=cfg.timestep_sampling, bf16_timesteps=cfg.bf16_timesteps,
                                           weighting=cfg.weighting)
    t, sigma, weight = (jnp.repeat(a, views) for a in (t, sigma, weight))  # views share their sample's t
    noise = jax.random.normal(noise_key, x0.shape, jnp.float32)
    noisy = flow.add_noise(x0, noise, sigma)
    keep_content = jax.random.uniform(drop_key) >= cfg.content_dropout  # one coin for the batch, as upstream
    text = batch["text"]
    if views > 1:
        text = jnp.repeat(text, views, axis=0)
    pred = model(noisy, t, text, **_model_inputs(cfg, batch, noisy, keep_content))
    per_sample = jnp.mean(jnp.square(pred.astype(jnp.float32) - (noise - x0)), axis=(1, 2, 3, 4))
    loss = jnp.mean(per_sample)
    weighted = jnp.mean(per_sample * weight)
    return weighted, dict(loss=loss, weighted_loss=weighted, t=jnp.mean(t), content_kept=keep_content)


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, graphdef, cfg: StepConfig,
               tx: optax.GradientTransformation, lr_schedule) -> tuple[TrainState, dict]:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.trainable, state.frozen, graphdef, cfg, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    ema = state.ema if state.ema is None else ema_update(state.ema, trainable, cfg.ema_decay)
    metrics = dict(metrics, grad_norm=global_norm(grads), lr=lr_schedule(state.step),
                   finite=jnp.isfinite(metrics["weighted_loss"]))
    return TrainState(step=state.step + 1, trainable=trainable, frozen=state.frozen, opt_state=opt_state,
                      ema=ema), metrics


# Shardings ---------------------------------------------------------------------------------------------------
def state_shardings(graphdef, abstract_state: TrainState, mesh, rules=sharding.DIT_RULES) -> TrainState:
    """NamedShardings of a TrainState: parameters by their logical axes; optimiser moments like their
    parameters (matched by tree position); scalars replicated."""
    model = nnx.merge(graphdef, abstract_state.trainable, abstract_state.frozen)
    specs = sharding.param_specs(nnx.state(model, nnx.Param), rules)
    flat_specs = {_key(path): spec for path, spec in _flat(specs)}
    named = lambda spec: NamedSharding(mesh, spec)

    def like_params(tree):
        def one(path, leaf):
            key = _key(path)
            spec = flat_specs.get(key[-_depth(key, flat_specs):]) if key else None
            if spec is None or len(spec) > getattr(leaf, "ndim", 0):
                spec = PartitionSpec()
            return named(spec)
        return jax.tree_util.tree_map_with_path(one, tree)

    return TrainState(step=named(PartitionSpec()), trainable=like_params(abstract_state.trainable),
                      frozen=like_params(abstract_state.frozen), opt_state=like_params(abstract_state.opt_state),
                      ema=None if abstract_state.ema is None else like_params(abstract_state.ema))


def _key(path) -> tuple[str, ...]:
    return tuple(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def _flat(specs):
    return jax.tree_util.tree_flatten_with_path(
        specs, is_leaf=lambda s: isinstance(s, PartitionSpec))[0] if specs is not None else []


def _depth(key: tuple, flat_specs: dict) -> int:
    """Length of the longest suffix of `key` that names a parameter (optimiser states nest the param tree)."""
    for n in range(len(key), 0, -1):
        if key[-n:] in flat_specs:
            return n
    return len(key)


def batch_shardings(batch_like: dict, mesh) -> dict:
    """Samples over (data, fsdp); everything else replicated."""
    spec = sharding.logical_to_spec(("batch",), sharding.DIT_RULES)
    return {k: NamedSharding(mesh, PartitionSpec(*spec, *(None,) * (v.ndim - 1))) for k, v in batch_like.items()}


def jit_train_step(graphdef, cfg: StepConfig, optimizer_cfg, *, mesh=None, state_sharding=None,
                   batch_sharding=None, rules=sharding.DIT_RULES):
    """The step jitted once: static graph and config closed over, state donated, shardings when a mesh is
    given (the body runs under the mesh and the logical rules, so the model's constraints apply)."""
    from camclone_jax.train.optim import learning_rate

    step = functools.partial(train_step, graphdef=graphdef, cfg=cfg, tx=make_optimizer(optimizer_cfg),
                             lr_schedule=learning_rate(optimizer_cfg))
    if mesh is None:
        return jax.jit(step, donate_argnums=0)
    replicated = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(step, in_shardings=(state_sharding, batch_sharding, replicated),
                     out_shardings=(state_sharding, replicated), donate_argnums=0)

    def run(state, batch, rng):
        with sharding.use_mesh(mesh, rules):
            return jitted(state, batch, rng)

    return run
