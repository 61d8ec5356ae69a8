"""The Wan2.1 diffusion transformer and its camera-control variants, in Flax NNX.

Legend: B batch (x views for SynCamMaster), F latent frames, H/W latent height/width, C latent channels,
L video tokens, S context tokens, N heads, D head_dim, E model width, V views.

Inputs are channels-last latents x [B, F, H, W, C]. One `DiTConfig.variant` decides which submodules exist:
  i2v / camclone  y [B, F, H, W, 4 + C] (mask | image latent) joins x on channels; CLIP tokens go through
                  `img_emb` and feed a second, image-only softmax in every cross-attention.
  recam / camclone  clean `cond_latents` [B, Fc, H, W, C] are appended after the target frames; RoPE frame
                  positions continue past the target and the output is sliced back to the first F frames.
  recam           per-block `cam_encoder` (zero init) adds a per-frame camera vector to the modulated
                  self-attention input; `projector` (identity init) follows self-attention.
  syncam          per-block multi-view attention (`mvs_attn`, `modulation_mvs`, `cam_encoder`, zero-init
                  `projector`) over all views' tokens of one latent frame; views are folded into B.
Blocks are stacked on a leading `layers` axis and run with `lax.scan` (optionally rematerialised).
"""

from __future__ import annotations

import functools

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from camclone_jax import axes
from camclone_jax.models.attention import dot_product_attention, resolve_backend
from camclone_jax.models.layers import (LayerNorm, Linear, RMSNorm, apply_rope, identity_init, layer_norm, param,
                                        rope_band_sizes, timestep_sinusoid, zeros)
from camclone_jax.models.presets import DiTConfig
from camclone_jax.sharding import constrain, per_device_attention

F32 = jnp.float32
_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def rope_tables(grid: tuple[int, int, int], head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos / sin [L, D/2] for a (frames, rows, columns) token grid, frame slowest.

    Per-axis tables are built in float64 on the host and only broadcast on device, so the angles carry no fp32
    product error and the graph holds kilobytes of constants, not L x D/2.
    """
    cos_parts, sin_parts = [], []
    for axis, (length, size) in enumerate(zip(grid, rope_band_sizes(head_dim))):
        omega = 1.0 / theta ** (np.arange(0, size, 2, dtype=np.float64) / size)
        angle = np.arange(length, dtype=np.float64)[:, None] * omega[None]
        shape = [1, 1, 1, angle.shape[-1]]
        shape[axis] = length
        for parts, fn in ((cos_parts, np.cos), (sin_parts, np.sin)):
            table = jnp.asarray(fn(angle).astype(np.float32).reshape(shape))
            parts.append(jnp.broadcast_to(table, (*grid, angle.shape[-1])))
    tokens = int(np.prod(grid))
    return (jnp.concatenate(cos_parts, -1).reshape(tokens, -1), jnp.concatenate(sin_parts, -1).reshape(tokens, -1))


class MLP(nnx.Module):
    """fc_out(act(fc_in(x))): Wan's FFN, text embedding and time embedding."""

    def __init__(self, cfg: DiTConfig, dims: tuple[int, int, int], names: tuple[str, str, str], activation,
                 *, rngs: nnx.Rngs, dtype=None):
        kw = dict(rngs=rngs, param_dtype=cfg.jnp_param_dtype, dtype=dtype or cfg.jnp_dtype)
        self.fc_in = Linear(dims[0], dims[1], names[:2], **kw)
        self.fc_out = Linear(dims[1], dims[2], names[1:], **kw)
        self.activation = activation

    def __call__(self, x: Array) -> Array:
        return self.fc_out(self.activation(self.fc_in(x)))


@jax.checkpoint
def gelu_tanh(x):
    # Rematerialised: autodiff of the tanh GELU keeps its intermediates (the cubic, the tanh) for the backward,
    # several [B, L, ffn_dim] arrays per block that a training step holds at once. Recomputing them from x is
    # elementwise and cheap: a medium train step (benchmarks/RESULTS.md) needs 1.0 GiB less and runs 4 % faster.
    return jax.nn.gelu(x, approximate=True)


class SelfAttention(nnx.Module):
    """Full 3D self-attention with RMSNorm over all heads on q and k, then RoPE."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=cfg.jnp_param_dtype, dtype=cfg.jnp_dtype)
        e = cfg.dim
        self.q = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.k = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.v = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.o = Linear(e, e, (axes.HEADS, axes.EMBED), **kw)
        self.norm_q = RMSNorm(e, axes.HEADS, rngs=rngs, eps=cfg.eps, param_dtype=cfg.jnp_param_dtype)
        self.norm_k = RMSNorm(e, axes.HEADS, rngs=rngs, eps=cfg.eps, param_dtype=cfg.jnp_param_dtype)
        self.num_heads, self.dtype = cfg.num_heads, cfg.jnp_dtype
        self.backend = resolve_backend(cfg.attention, cfg.jnp_dtype)

    def __call__(self, x: Float[Array, "B L E"], rope: tuple[Array, Array]) -> Float[Array, "B L E"]:
        split = lambda t: einops.rearrange(t, "B L (N D) -> B L N D", N=self.num_heads)
        q = apply_rope(split(self.norm_q(self.q(x))), *rope).astype(self.dtype)
        k = apply_rope(split(self.norm_k(self.k(x))), *rope).astype(self.dtype)
        out = per_device_attention(self._attend, q, k, split(self.v(x)).astype(self.dtype), self_attention=True,
                                   force=self.backend != "xla")
        return self.o(einops.rearrange(out, "B L N D -> B L (N D)"))

    def _attend(self, q, k, v):
        return dot_product_attention(q, k, v, self.backend)


class CrossAttention(nnx.Module):
    """Attention from video tokens to the text tokens and, for image variants, a second softmax over the CLIP
    tokens (`k_img`, `v_img`, `norm_k_img`), summed before `o`. No mask: padded text rows are attended."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=cfg.jnp_param_dtype, dtype=cfg.jnp_dtype)
        e, pd = cfg.dim, cfg.jnp_param_dtype
        self.q = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.k = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.v = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
        self.o = Linear(e, e, (axes.HEADS, axes.EMBED), **kw)
        self.norm_q = RMSNorm(e, axes.HEADS, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.norm_k = RMSNorm(e, axes.HEADS, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        if cfg.has_image_input:
            self.k_img = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
            self.v_img = Linear(e, e, (axes.EMBED, axes.HEADS), **kw)
            self.norm_k_img = RMSNorm(e, axes.HEADS, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.num_heads, self.dtype = cfg.num_heads, cfg.jnp_dtype
        self.backend = resolve_backend(cfg.attention, cfg.jnp_dtype)
        self.has_image_input = cfg.has_image_input

    def __call__(self, x: Float[Array, "B L E"], text: Float[Array, "B S E"],
                 image: Float[Array, "B S E"] | None) -> Float[Array, "B L E"]:
        split = lambda t: einops.rearrange(t, "B L (N D) -> B L N D", N=self.num_heads).astype(self.dtype)
        q = split(self.norm_q(self.q(x)))
        attend = functools.partial(per_device_attention, self._attend, self_attention=False,
                                   force=self.backend != "xla")
        out = attend(q, split(self.norm_k(self.k(text))), split(self.v(text)))
        if self.has_image_input:
            out = out + attend(q, split(self.norm_k_img(self.k_img(image))), split(self.v_img(image)))
        return self.o(einops.rearrange(out, "B L N D -> B L (N D)"))

    def _attend(self, q, k, v):
        return dot_product_attention(q, k, v, self.backend)


def _modulation_table(cfg: DiTConfig, rngs: nnx.Rngs, slots: int) -> nnx.Param:
    init = lambda key, shape, dtype: (jax.random.normal(key, shape, F32) / cfg.dim**0.5).astype(dtype)
    return param(rngs, init, (1, slots, cfg.dim), (None, None, axes.EMBED), cfg.jnp_param_dtype)


def _add_per_frame(u: Float[Array, "B L E"], c: Float[Array, "B F E"]) -> Float[Array, "B L E"]:
    """Adds each latent frame's vector to all of that frame's tokens (tokens are frame-major)."""
    b, length, e = u.shape
    frames = c.shape[1]
    return (u.reshape(b, frames, length // frames, e) + c[:, :, None]).reshape(b, length, e)


def _projected(projector: Linear, attn: Float[Array, "B L E"]) -> Float[Array, "B L E"]:
    """The camera projector, its input and output pinned to the residual-stream layout. Unpinned, XLA's
    sharding propagation (jax 0.10.2, CPU, data x fsdp x tensor mesh) produced a wrong projector result (2-24 %
    relative error) for two chained E x E matmuls; tests/test_sharding.py guards this."""
    attn = constrain(attn, axes.BATCH, axes.LENGTH, axes.EMBED)
    return constrain(projector(attn), axes.BATCH, axes.LENGTH, axes.EMBED)


class Block(nnx.Module):
    """One Wan attention block (self-attention, cross-attention, FFN, adaLN modulation) plus the camera
    submodules its variant declares."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        pd, e = cfg.jnp_param_dtype, cfg.dim
        self.modulation = _modulation_table(cfg, rngs, 6)
        self.self_attn = SelfAttention(cfg, rngs=rngs)
        self.cross_attn = CrossAttention(cfg, rngs=rngs)
        self.norm3 = LayerNorm(e, axes.EMBED, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.ffn = MLP(cfg, (e, cfg.ffn_dim, e), (axes.EMBED, axes.MLP, axes.EMBED), gelu_tanh, rngs=rngs)
        if cfg.has_cam_encoder:
            kw = dict(rngs=rngs, param_dtype=pd, dtype=cfg.jnp_dtype)
            # Zero camera encoder and identity (ReCam) / zero (SynCam) projector: a fresh camera model is
            # exactly its base model, as upstream initialises it.
            self.cam_encoder = Linear(cfg.cam_dim, e, (None, axes.EMBED), kernel_init=zeros, **kw)
            self.projector = Linear(e, e, (axes.HEADS, axes.EMBED),
                                    kernel_init=zeros if cfg.has_mvs else identity_init, **kw)
        if cfg.has_mvs:
            self.mvs_attn = SelfAttention(cfg, rngs=rngs)
            nnx.update(self.mvs_attn, jax.tree.map(jnp.copy, nnx.state(self.self_attn)))
            self.modulation_mvs = nnx.Param(self.modulation[...][:, :3], out_sharding=(None, None, axes.EMBED),
                                            eager_sharding=False)
        self.eps, self.dtype = cfg.eps, cfg.jnp_dtype
        self.variant = cfg.variant

    def __call__(self, x: Float[Array, "B L E"], e0: Float[Array, "B 6 E"], text: Array, image: Array | None,
                 rope: tuple[Array, Array], cam: Array | None, mvs_rope: tuple[Array, Array] | None,
                 grid: tuple[int, int, int], views: int) -> Float[Array, "B L E"]:
        m = self.modulation[...].astype(F32) + e0
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (m[:, i:i + 1] for i in range(6))
        u = layer_norm(x, self.eps) * (1 + scale_a) + shift_a
        if self.variant == "recam":
            u = _add_per_frame(u, self.cam_encoder(cam).astype(F32))
        attn = self.self_attn(u.astype(self.dtype), rope)
        if self.variant == "recam":
            attn = _projected(self.projector, attn)
        x = x + gate_a * attn.astype(F32)
        if self.variant == "syncam":
            x = self._multi_view(x, e0, cam, mvs_rope, grid, views)
        x = x + self.cross_attn(self.norm3(x).astype(self.dtype), text, image).astype(F32)
        u = layer_norm(x, self.eps) * (1 + scale_f) + shift_f
        return x + gate_f * self.ffn(u.astype(self.dtype)).astype(F32)

    def _multi_view(self, x, e0, cam, mvs_rope, grid, views):
        """SynCamMaster: attention over the V views' tokens of each latent frame, RoPE frame band = view index."""
        m = self.modulation_mvs[...].astype(F32) + e0[:, :3]
        shift, scale, gate = m[:, 0:1], m[:, 1:2], m[:, 2:3]
        u = layer_norm(x, self.eps) * (1 + scale) + shift
        u = _add_per_frame(u, self.cam_encoder(cam).astype(F32))
        frames, height, width = grid
        to_groups = "(B V) (F T) E -> (B F) (V T) E"
        u = einops.rearrange(u, to_groups, V=views, F=frames)
        attn = _projected(self.projector, self.mvs_attn(u.astype(self.dtype), mvs_rope))
        attn = einops.rearrange(attn, "(B F) (V T) E -> (B V) (F T) E", V=views, F=frames)
        return x + gate * attn.astype(F32)


class ImageEmbedding(nnx.Module):
    """CLIP tokens -> model width: LayerNorm, Linear, exact GELU, Linear, LayerNorm (eps 1e-5)."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        pd = cfg.jnp_param_dtype
        self.norm_in = LayerNorm(cfg.image_dim, axes.IMAGE_EMBED, rngs=rngs, eps=1e-5, param_dtype=pd)
        self.mlp = MLP(cfg, (cfg.image_dim, cfg.image_dim, cfg.dim), (axes.IMAGE_EMBED, axes.MLP, axes.EMBED),
                       lambda x: jax.nn.gelu(x, approximate=False), rngs=rngs)
        self.norm_out = LayerNorm(cfg.dim, axes.EMBED, rngs=rngs, eps=1e-5, param_dtype=pd)
        self.dtype = cfg.jnp_dtype

    def __call__(self, clip: Float[Array, "B S K"]) -> Float[Array, "B S E"]:
        return self.norm_out(self.mlp(self.norm_in(clip).astype(self.dtype)))


class Head(nnx.Module):
    """Output head: time-modulated LayerNorm, then Linear(E -> prod(patch) * C), all in fp32."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.modulation = _modulation_table(cfg, rngs, 2)
        self.head = Linear(cfg.dim, int(np.prod(cfg.patch_size)) * cfg.out_dim, (axes.EMBED, None), rngs=rngs,
                           param_dtype=cfg.jnp_param_dtype, dtype=F32, kernel_init=zeros)
        self.eps = cfg.eps

    def __call__(self, x: Float[Array, "B L E"], e: Float[Array, "B E"]) -> Float[Array, "B L P"]:
        m = self.modulation[...].astype(F32) + e[:, None, :]
        shift, scale = m[:, 0:1], m[:, 1:2]
        return self.head(layer_norm(x, self.eps) * (1 + scale) + shift)


class PatchEmbedding(nnx.Module):
    """Conv3d with kernel = stride = patch, as a reshape plus one matmul. kernel [pt, ph, pw, C_in, E]."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        pt, ph, pw = cfg.patch_size
        fan_in = pt * ph * pw * cfg.in_dim
        init = lambda key, shape, dtype: nnx.initializers.xavier_uniform()(key, (fan_in, cfg.dim), dtype).reshape(shape)
        self.kernel = param(rngs, init, (pt, ph, pw, cfg.in_dim, cfg.dim), (None, None, None, None, axes.EMBED),
                            cfg.jnp_param_dtype)
        self.bias = param(rngs, zeros, (cfg.dim,), (axes.EMBED,), cfg.jnp_param_dtype)
        self.patch_size, self.dtype = cfg.patch_size, cfg.jnp_dtype

    def __call__(self, x: Float[Array, "B F H W C"]) -> Float[Array, "B L E"]:
        pt, ph, pw = self.patch_size
        tokens = einops.rearrange(x, "B (F pt) (H ph) (W pw) C -> B (F H W) (pt ph pw C)", pt=pt, ph=ph, pw=pw)
        kernel = self.kernel[...].reshape(-1, self.kernel.shape[-1]).astype(self.dtype)
        return jnp.dot(tokens.astype(self.dtype), kernel) + self.bias[...].astype(self.dtype)


class WanDiT(nnx.Module):
    """Wan2.1 DiT. `__call__` returns the velocity prediction for the target frames, fp32, [B, F, H, W, C]."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        e, pd = cfg.dim, cfg.jnp_param_dtype
        self.patch_embedding = PatchEmbedding(cfg, rngs=rngs)
        self.text_embedding = MLP(cfg, (cfg.text_dim, e, e), (axes.TEXT_EMBED, axes.EMBED, axes.EMBED), gelu_tanh,
                                  rngs=rngs)
        # The time MLP and projection run in fp32 whatever the compute dtype (the original's fp32 autocast island).
        self.time_embedding = MLP(cfg, (cfg.freq_dim, e, e), (None, axes.EMBED, axes.EMBED), jax.nn.silu, rngs=rngs,
                                  dtype=F32)
        self.time_projection = Linear(e, 6 * e, (axes.EMBED, axes.MODULATION), rngs=rngs, param_dtype=pd, dtype=F32)
        if cfg.has_image_input:
            self.img_emb = ImageEmbedding(cfg, rngs=rngs)

        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: axes.LAYERS})
        def make_blocks(rngs):
            return Block(cfg, rngs=rngs)

        self.blocks = make_blocks(rngs)
        self.head = Head(cfg, rngs=rngs)

    def __call__(self, x: Float[Array, "B F H W C"], t: Float[Array, "B"], context: Float[Array, "B S T"], *,
                 y: Array | None = None, clip_feature: Array | None = None, cond_latents: Array | None = None,
                 cam_emb: Array | None = None, num_views: int = 1) -> Float[Array, "B F H W C"]:
        """
        x: noisy target latents [B, F, H, W, out_dim]. t: timesteps in [0, 1000], shape [], [1] or [B].
        context: umT5 features [B, S, text_dim], S <= text_len (zero rows are appended up to text_len).
        y: [B, F, H, W, in_dim - out_dim] mask + image latent (i2v, camclone).
        clip_feature: [B, num_image_tokens, image_dim] (i2v, camclone).
        cond_latents: [B, Fc, H, W, <= in_dim] clean latents appended after the target frames (recam: source
          video; camclone: camera reference then content reference, zeros for I2V); channels are zero-padded.
        cam_emb: [B, F, cam_dim] per target latent frame (recam; tiled over condition frames), or
          [B, F, cam_dim] with B = batch x num_views, each view's pose relative to view 0 (syncam).
        """
        cfg = self.config
        batch, frames, height, width = self._check_inputs(x, t, context, y, clip_feature, cond_latents, cam_emb,
                                                          num_views)
        if cfg.has_image_input:
            x = jnp.concatenate([x, y.astype(x.dtype)], axis=-1)
        if cond_latents is not None:
            pad = cfg.in_dim - cond_latents.shape[-1]
            cond = jnp.pad(cond_latents.astype(x.dtype), ((0, 0),) * 4 + ((0, pad),))
            x = jnp.concatenate([x, cond], axis=1)
        pt, ph, pw = cfg.patch_size
        grid = (x.shape[1] // pt, height // ph, width // pw)

        tokens = self.patch_embedding(x).astype(F32)
        t = jnp.asarray(t, F32).reshape(-1)
        e = self.time_embedding(timestep_sinusoid(t, cfg.freq_dim))
        e0 = self.time_projection(jax.nn.silu(e)).reshape(-1, 6, cfg.dim)
        context = jnp.pad(context, ((0, 0), (0, cfg.text_len - context.shape[1]), (0, 0)))
        text = self.text_embedding(context)
        image = self.img_emb(clip_feature) if cfg.has_image_input else None

        rope = rope_tables(grid, cfg.head_dim, cfg.rope_theta)
        mvs_rope = rope_tables((num_views, *grid[1:]), cfg.head_dim, cfg.rope_theta) if cfg.has_mvs else None
        cam = None
        if cfg.has_cam_encoder:
            # ReCamMaster gives condition frames the camera of the target frame they repeat (upstream tiling).
            repeats = -(-grid[0] // cam_emb.shape[1])
            cam = jnp.concatenate([cam_emb.astype(F32)] * repeats, axis=1)[:, :grid[0]]
        tokens = self._run_blocks(tokens, e0, text, image, rope, cam, mvs_rope, grid, num_views)
        out = self.head(tokens, e)
        out = einops.rearrange(out, "B (F H W) (pt ph pw C) -> B (F pt) (H ph) (W pw) C", F=grid[0], H=grid[1],
                               W=grid[2], pt=pt, ph=ph, pw=pw)
        return out[:, :frames]

    def _run_blocks(self, x, e0, text, image, rope, cam, mvs_rope, grid, views):
        graphdef, stacked = nnx.split(self.blocks)

        def body(x, block_state):
            block = nnx.merge(graphdef, block_state)
            x = constrain(x, axes.BATCH, axes.LENGTH, axes.EMBED)
            x = block(x, e0, text, image, rope, cam, mvs_rope, grid, views)
            return constrain(x, axes.BATCH, axes.LENGTH, axes.EMBED), None

        if self.config.remat != "none":
            body = jax.checkpoint(body, policy=_REMAT_POLICIES[self.config.remat], prevent_cse=False)
        x, _ = jax.lax.scan(body, x, stacked)
        return x

    def _check_inputs(self, x, t, context, y, clip_feature, cond_latents, cam_emb, views):
        """Shape checks with messages that name the argument and the expected shape."""
        cfg = self.config
        if x.ndim != 5 or x.shape[-1] != cfg.out_dim:
            raise ValueError(f"x must be latents [B, F, H, W, {cfg.out_dim}] (channels last), got {x.shape}")
        batch, frames, height, width, _ = x.shape
        pt, ph, pw = cfg.patch_size
        if frames % pt or height % ph or width % pw:
            raise ValueError(f"latent frames/height/width {(frames, height, width)} must be divisible by the patch "
                             f"size {cfg.patch_size}")
        if jnp.size(t) not in (1, batch):
            raise ValueError(f"t must hold 1 or B={batch} timesteps, got shape {jnp.shape(t)}")
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.text_dim:
            raise ValueError(f"context must be [B={batch}, S, {cfg.text_dim}], got {context.shape}")
        if context.shape[1] > cfg.text_len:
            raise ValueError(f"context has {context.shape[1]} tokens, more than text_len={cfg.text_len}")

        def need(name, value, shape, wanted):
            if not wanted:
                if value is not None:
                    raise ValueError(f"{name} is not used by the {cfg.variant!r} variant")
                return
            if value is None:
                raise ValueError(f"the {cfg.variant!r} variant needs {name} of shape {shape}")
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")

        need("y", y, (batch, frames, height, width, cfg.in_dim - cfg.out_dim), cfg.has_image_input)
        need("clip_feature", clip_feature, (batch, cfg.num_image_tokens, cfg.image_dim), cfg.has_image_input)
        if cond_latents is not None:
            if not cfg.takes_cond_latents:
                raise ValueError(f"cond_latents are not used by the {cfg.variant!r} variant")
            if (cond_latents.ndim != 5 or cond_latents.shape[0] != batch or cond_latents.shape[2:4] != (height, width)
                    or cond_latents.shape[-1] > cfg.in_dim or cond_latents.shape[1] % pt):
                raise ValueError(f"cond_latents must be [B={batch}, Fc, {height}, {width}, <= {cfg.in_dim}], got "
                                 f"{cond_latents.shape}")
        need("cam_emb", cam_emb, (batch, frames, cfg.cam_dim), cfg.has_cam_encoder)
        if cfg.has_mvs and batch % views:
            raise ValueError(f"batch {batch} is not a multiple of num_views={views} (views are folded into batch)")
        if not cfg.has_mvs and views != 1:
            raise ValueError(f"num_views={views} needs the 'syncam' variant")
        return batch, frames, height, width
