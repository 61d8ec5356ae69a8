"""The Wan2.1 causal 3D VAE: video [B, T, H, W, 3] in [-1, 1] <-> normalised latents [B, F, H/8, W/8, 16].

Legend: B batch, T pixel frames (4k + 1), F latent frames (k + 1), H/W pixel height/width, h/w latent, C channels.

Time is processed in causal chunks as the reference does (encode: frame 0, then 4 frames at a time; decode:
one latent frame at a time), with the per-layer time cache an explicit pytree carried through `lax.scan`.
Peak memory is therefore that of one chunk whatever the clip length. The first chunk runs outside the scan
because it has a different length and applies Wan's first-frame rules; after it every cache has its final
shape. `encode` returns the normalised posterior mean `(mu - mean) / std`; `decode` de-normalises and clamps
its output to [-1, 1] (spec wan.md 5.4-5.7).

    vae = WanVAE(VAEConfig(), rngs=nnx.Rngs(0))      # or camclone_jax.models.loading.load_vae(dir)
    latents = encode(vae, video)                       # jitted; `decode(vae, latents)` inverts it
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from camclone_jax.models.model_config import NamedConfig
from camclone_jax.models.vae_blocks import AttentionBlock, CausalConv3d, Resample, ResidualBlock, RMSNorm
from camclone_jax.models.vae_tiling import tiled_apply

# Per-channel statistics of Wan2.1 latents (spec wan.md 5.6); encode subtracts the mean and divides by std.
LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
               3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
TIME_STRIDE, SPACE_STRIDE = 4, 8


@dataclasses.dataclass(frozen=True)
class VAEConfig(NamedConfig):
    MODEL: ClassVar[str] = "wan_vae"
    DESCRIPTION: ClassVar[str] = "Wan VAE"

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)  # Wan's factory value, not the class default
    param_dtype: str = "float32"
    dtype: str = "float32"  # the reference runs the VAE in fp32; DiffSynth runs it in bf16

    def __post_init__(self):
        if self.z_dim != len(LATENTS_MEAN):
            raise ValueError(f"VAEConfig.z_dim must be {len(LATENTS_MEAN)} (the Wan2.1 latent statistics), "
                             f"got {self.z_dim}")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("VAEConfig.temporal_downsample needs one flag per downsampling stage "
                             f"({len(self.dim_mult) - 1}), got {self.temporal_downsample}")
        if sum(self.temporal_downsample) != 2 or len(self.dim_mult) != 4:
            raise ValueError("only Wan's x4 time / x8 space layout is supported (4 stages, 2 temporal)")

    @property
    def temporal_upsample(self) -> tuple[bool, ...]:
        return self.temporal_downsample[::-1]


def wan_vae() -> VAEConfig:
    """Wan2.1_VAE.pth: 126,892,531 parameters."""
    return VAEConfig()


def tiny_vae() -> VAEConfig:
    """The same layout at width 8, for tests."""
    return VAEConfig(dim=8)


def encoder_plan(cfg: VAEConfig) -> list[tuple]:
    """The encoder's `downsamples` list: ("res", in, out) and ("resample", dim, mode) in call order."""
    dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
    plan = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(cfg.num_res_blocks):
            plan.append(("res", in_dim, out_dim))
            in_dim = out_dim
        if i < len(cfg.dim_mult) - 1:
            plan.append(("resample", out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
    return plan


def decoder_plan(cfg: VAEConfig) -> list[tuple]:
    """The decoder's `upsamples` list; each upsampler halves the width, so later stages start at half."""
    dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
    plan = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        in_dim = in_dim // 2 if i > 0 else in_dim
        for _ in range(cfg.num_res_blocks + 1):
            plan.append(("res", in_dim, out_dim))
            in_dim = out_dim
        if i < len(cfg.dim_mult) - 1:
            plan.append(("resample", out_dim, "upsample3d" if cfg.temporal_upsample[i] else "upsample2d"))
    return plan


def _build(plan, kw) -> nnx.List:
    return nnx.List([ResidualBlock(a, b, **kw) if kind == "res" else Resample(a, b, **kw) for kind, a, b in plan])


def _middle(dim: int, kw) -> nnx.List:
    return nnx.List([ResidualBlock(dim, dim, **kw), AttentionBlock(dim, **kw), ResidualBlock(dim, dim, **kw)])


def _run(layers, x, caches):
    new = []
    for i, layer in enumerate(layers):
        x, c = layer(x, None if caches is None else caches[i])
        new.append(c)
    return x, new


class Encoder3d(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=jnp.dtype(cfg.param_dtype), dtype=jnp.dtype(cfg.dtype))
        top = cfg.dim * cfg.dim_mult[-1]
        self.conv_in = CausalConv3d(3, cfg.dim, **kw)
        self.downsamples = _build(encoder_plan(cfg), kw)
        self.middle = _middle(top, kw)
        self.norm_out = RMSNorm(top, rngs=rngs, param_dtype=kw["param_dtype"])
        self.conv_out = CausalConv3d(top, 2 * cfg.z_dim, **kw)

    def __call__(self, x: Float[Array, "B T H W 3"], cache=None):
        """One chunk -> ([B, T', H/8, W/8, 2z], cache); `cache=None` for the first chunk of a video."""
        c = cache or {}
        x, c_in = self.conv_in(x, c.get("conv_in"))
        x, c_down = _run(self.downsamples, x, c.get("downsamples"))
        x, c_mid = _run(self.middle, x, c.get("middle"))
        x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), c.get("conv_out"))
        return x, dict(conv_in=c_in, downsamples=c_down, middle=c_mid, conv_out=c_out)


class Decoder3d(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=jnp.dtype(cfg.param_dtype), dtype=jnp.dtype(cfg.dtype))
        top = cfg.dim * cfg.dim_mult[-1]
        self.conv_in = CausalConv3d(cfg.z_dim, top, **kw)
        self.middle = _middle(top, kw)
        self.upsamples = _build(decoder_plan(cfg), kw)
        self.norm_out = RMSNorm(cfg.dim, rngs=rngs, param_dtype=kw["param_dtype"])
        self.conv_out = CausalConv3d(cfg.dim, 3, **kw)

    def __call__(self, z: Float[Array, "B F h w C"], cache=None):
        """One latent chunk -> ([B, T', 8h, 8w, 3], cache); `cache=None` for the first chunk of a video."""
        c = cache or {}
        x, c_in = self.conv_in(z, c.get("conv_in"))
        x, c_mid = _run(self.middle, x, c.get("middle"))
        x, c_up = _run(self.upsamples, x, c.get("upsamples"))
        x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), c.get("conv_out"))
        return x, dict(conv_in=c_in, middle=c_mid, upsamples=c_up, conv_out=c_out)


def _chunked(step, x: Array, chunk: int) -> Array:
    """Runs `step(x_chunk, cache) -> (y, cache)` on [first frame] then `chunk`-frame pieces, scanning the rest."""
    first, cache = step(x[:, :1], None)
    if x.shape[1] == 1:
        return first
    pieces = einops.rearrange(x[:, 1:], "B (K T) ... -> K B T ...", T=chunk)
    _, rest = jax.lax.scan(lambda c, piece: step(piece, c)[::-1], cache, pieces)
    return jnp.concatenate([first, einops.rearrange(rest, "K B T ... -> B (K T) ...")], axis=1)


class WanVAE(nnx.Module):
    """Parameter paths follow the reference module names: `encoder`, `quant_conv` (original `conv1`),
    `post_quant_conv` (`conv2`), `decoder`; `convert/keymap_vae.py` maps them to both checkpoint namings."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=jnp.dtype(cfg.param_dtype), dtype=jnp.dtype(cfg.dtype))
        self.config = cfg
        self.encoder = Encoder3d(cfg, rngs=rngs)
        self.quant_conv = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, (1, 1, 1), **kw)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, (1, 1, 1), **kw)
        self.decoder = Decoder3d(cfg, rngs=rngs)

    def encode(self, video: Float[Array, "B T H W 3"]) -> Float[Array, "B F h w C"]:
        """Normalised posterior mean (no sampling), fp32."""
        check_video(video)
        moments = self.quant_conv(_chunked(self.encoder, video, TIME_STRIDE))[0].astype(jnp.float32)
        mu = moments[..., :self.config.z_dim]
        mean, inv_std = jnp.asarray(LATENTS_MEAN), 1.0 / jnp.asarray(LATENTS_STD)
        return (mu - mean) * inv_std  # the reference multiplies by a precomputed 1/std

    def decode(self, latents: Float[Array, "B F h w C"], clamp: bool = True) -> Float[Array, "B T H W 3"]:
        """Video in [-1, 1] (fp32) with 4F - 3 frames; `clamp=False` is for tiled decoding, which clamps after
        blending the tiles."""
        check_latents(latents, self.config.z_dim)
        mean, inv_std = jnp.asarray(LATENTS_MEAN), 1.0 / jnp.asarray(LATENTS_STD)
        z = self.post_quant_conv(latents.astype(jnp.float32) / inv_std + mean)[0]
        video = _chunked(self.decoder, z, 1).astype(jnp.float32)
        return jnp.clip(video, -1.0, 1.0) if clamp else video


def check_video(video) -> None:
    """Raises ValueError unless `video` is [B, 4k+1, H, W, 3] with H and W multiples of 8."""
    shape = tuple(video.shape)
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(f"VAE encode expects video of shape [batch, frames, height, width, 3] (channels-last "
                         f"RGB in [-1, 1]), got shape {shape}")
    frames, height, width = shape[1:4]
    if frames < 1 or (frames - 1) % TIME_STRIDE:
        raise ValueError(f"VAE encode expects 4k+1 frames (1, 5, 9, ..., 81), got {frames}; "
                         f"trim to {max(1, frames - (frames - 1) % TIME_STRIDE)} frames")
    if height % SPACE_STRIDE or width % SPACE_STRIDE or not height or not width:
        raise ValueError(f"VAE encode expects height and width divisible by {SPACE_STRIDE}, got {height}x{width}")


def check_latents(latents, z_dim: int) -> None:
    shape = tuple(latents.shape)
    if len(shape) != 5 or shape[-1] != z_dim:
        raise ValueError(f"VAE decode expects latents of shape [batch, frames, height, width, {z_dim}] "
                         f"(channels-last), got shape {shape}")
    if not all(shape[1:4]):
        raise ValueError(f"VAE decode got empty latents of shape {shape}")


# jax.jit over nnx.split rather than nnx.jit: nnx.jit also hands the module's state back, which kept a second
# copy of the weights and buffers alive (steady RSS 2.4 instead of 1.6 GiB for a 17x128x128 encode on CPU).
@functools.partial(jax.jit, static_argnums=0)
def _encode_split(graphdef, state, video: Array) -> Array:
    return nnx.merge(graphdef, state).encode(video)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _decode_split(graphdef, state, latents: Array, clamp: bool) -> Array:
    return nnx.merge(graphdef, state).decode(latents, clamp)


def _encode(vae: WanVAE, video: Array) -> Array:
    return _encode_split(*nnx.split(vae), video)


def _decode(vae: WanVAE, latents: Array, clamp: bool = True) -> Array:
    return _decode_split(*nnx.split(vae), latents, clamp)


def encode(vae: WanVAE, video: Float[Array, "B T H W 3"], *, tile_size: tuple[int, int] | None = None,
           tile_stride: tuple[int, int] | None = None, progress: bool = False) -> Float[Array, "B F h w C"]:
    """Jitted `vae.encode`; with `tile_size` (latent units; stride defaults to half the size) it encodes
    overlapping pixel tiles of 8x that size and blends them as DiffSynth does (`vae_tiling.py`)."""
    check_video(video)
    if tile_size is None:
        return _encode(vae, video)
    run_tile = functools.partial(_encode_split, *nnx.split(vae))
    return jnp.asarray(tiled_apply(run_tile, video, tile_size, tile_stride, scale=1 / SPACE_STRIDE,
                                   out_channels=vae.config.z_dim, out_frames=num_latent_frames(video.shape[1]),
                                   desc="VAE encode tiles", progress=progress))


def decode(vae: WanVAE, latents: Float[Array, "B F h w C"], *, tile_size: tuple[int, int] | None = None,
           tile_stride: tuple[int, int] | None = None, progress: bool = False) -> Float[Array, "B T H W 3"]:
    """Jitted `vae.decode` (clamped to [-1, 1]); with `tile_size` (latent units, e.g. (30, 52) with stride
    (15, 26) as the camera repos sample) it decodes overlapping latent tiles and blends them, then clamps."""
    check_latents(latents, vae.config.z_dim)
    if tile_size is None:
        return _decode(vae, latents)
    graphdef, state = nnx.split(vae)
    run_tile = lambda tile: _decode_split(graphdef, state, tile, False)  # blended tiles are clamped once, at the end
    video = tiled_apply(run_tile, latents, tile_size, tile_stride, scale=SPACE_STRIDE, out_channels=3,
                        out_frames=num_video_frames(latents.shape[1]), desc="VAE decode tiles", progress=progress)
    return jnp.asarray(np.clip(video, -1.0, 1.0))


def num_latent_frames(frames: int) -> int:
    return (frames - 1) // TIME_STRIDE + 1


def num_video_frames(latent_frames: int) -> int:
    return TIME_STRIDE * latent_frames - (TIME_STRIDE - 1)


def param_count(cfg: VAEConfig) -> int:
    abstract = nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
