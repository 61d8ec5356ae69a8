"""The CLIP ViT-H/14 visual tower as Wan2.1 I2V uses it (`clip_xlm_roberta_vit_h_14`, `use_31_block=True`).

Legend: B batch, H/W input image height/width, R image_size, P patch_size, G = R / P patches per side,
T = 1 + G*G tokens (class token first), N heads, D head_dim, E width (`dim`), M MLP width.

`CLIPVisionEncoder(images)` takes channels-last images [B, H, W, 3] in [-1, 1] of any size and returns the
fp32 features [B, T, E] = [B, 257, 1280] that feed the DiT's `img_emb`. As in Wan and DiffSynth's
`WanImageEncoder.encode_image`, `preprocess` squashes the image to R x R with PyTorch's bicubic kernel
(a = -0.75, align_corners=False, no antialiasing, no crop), maps it to [0, 1] and applies the CLIP mean/std.
The tower is: patch conv (no bias) -> class token -> + position embedding -> `pre_norm` LayerNorm -> the first
`used_layers` pre-norm blocks (fused qkv, exact-GELU MLP). The checkpoint's last block, `post_norm` and `head`
are never run, so the model does not hold them. Parameter paths mirror the original keys
(`transformer/attn/to_qkv`, `pre_norm`, `cls_embedding`, ...); blocks are stacked and run with `lax.scan`.
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

from camclone_jax import axes
from camclone_jax.models.attention import dot_product_attention
from camclone_jax.models.layers import LayerNorm, Linear, param
from camclone_jax.models.model_config import NamedConfig
from camclone_jax.sharding import constrain

F32 = jnp.float32
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution constant; PIL and jax.image use -0.5


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig(NamedConfig):
    MODEL: ClassVar[str] = "clip_vision"
    DESCRIPTION: ClassVar[str] = "CLIP vision tower"

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_ratio: int = 4
    num_heads: int = 16
    num_layers: int = 32  # blocks in the checkpoint's tower
    used_layers: int = 31  # blocks run: Wan's use_31_block (penultimate block output, no post-norm/projection)
    eps: float = 1e-5
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype of the matmuls; norms, softmax and the residual stream stay fp32
    attention: str = "xla"

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 1 <= self.used_layers <= self.num_layers:
            raise ValueError(f"used_layers must be in [1, num_layers={self.num_layers}], got {self.used_layers}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return 1 + self.grid**2

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return self.dim * self.mlp_ratio


def clip_vit_h_14() -> CLIPVisionConfig:
    """`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`, visual tower, first 31 of 32 blocks."""
    return CLIPVisionConfig()


def tiny_clip() -> CLIPVisionConfig:
    """The same layout at 56 px (4 x 4 patches), width 64, 3 blocks of which 2 run; for tests."""
    return CLIPVisionConfig(image_size=56, patch_size=14, dim=64, num_heads=4, num_layers=3, used_layers=2)


# Preprocessing ---------------------------------------------------------------------------------------------
def _cubic(x: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=32)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` on one axis.

    As in ATen's `upsample_bicubic2d` (antialias off): source x = in/out * (i + 0.5) - 0.5 (fp32 scale, double
    arithmetic, rounded to fp32), not clamped;
    taps floor(x) - 1 .. floor(x) + 2, each index clamped to [0, in - 1] (edge replication).
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))  # fp32 scale, index arithmetic in double
    src = (scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    base = np.floor(src)
    t = (src - base).astype(np.float64)
    weights = np.stack([_cubic(t + 1), _cubic(t), _cubic(1 - t), _cubic(2 - t)], axis=-1)
    taps = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None], 0, in_size - 1)
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_size), 4), taps.reshape(-1)), weights.reshape(-1))
    return matrix.astype(np.float32)


def resize_bicubic(images: Float[Array, "B H W C"], size: tuple[int, int]) -> Float[Array, "B h w C"]:
    """Separable PyTorch-compatible bicubic resize of channels-last images to `size` = (h, w), in fp32."""
    rows = jnp.asarray(bicubic_matrix(images.shape[1], size[0]))
    cols = jnp.asarray(bicubic_matrix(images.shape[2], size[1]))
    x = jnp.einsum("hH,BHWC->BhWC", rows, images.astype(F32), precision="highest")
    return jnp.einsum("wW,BhWC->BhwC", cols, x, precision="highest")


def preprocess(images: Float[Array, "B H W 3"], cfg: CLIPVisionConfig) -> Float[Array, "B R R 3"]:
    """Images in [-1, 1] of any size -> squashed to R x R (bicubic), to [0, 1], CLIP-normalised; fp32."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3] (channels last, in [-1, 1]), got {images.shape}")
    x = resize_bicubic(images, (cfg.image_size, cfg.image_size)) * 0.5 + 0.5
    return (x - jnp.asarray(CLIP_MEAN, F32)) / jnp.asarray(CLIP_STD, F32)


# Model ---------------------------------------------------------------------------------------------------------
def _normal(std: float):
    return lambda key, shape, dtype: (std * jax.random.normal(key, shape, F32)).astype(dtype)


class SelfAttention(nnx.Module):
    """Fused `to_qkv` (E -> 3E, chunked q | k | v), softmax attention over all tokens, `proj`."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=jnp.dtype(cfg.param_dtype), dtype=jnp.dtype(cfg.dtype))
        self.to_qkv = Linear(cfg.dim, 3 * cfg.dim, (axes.EMBED, axes.HEADS), **kw)
        self.proj = Linear(cfg.dim, cfg.dim, (axes.HEADS, axes.EMBED), **kw)
        self.num_heads, self.backend = cfg.num_heads, cfg.attention

    def __call__(self, x: Float[Array, "B T E"]) -> Float[Array, "B T E"]:
        qkv = einops.rearrange(self.to_qkv(x), "B T (K N D) -> K B T N D", K=3, N=self.num_heads)
        out = dot_product_attention(qkv[0], qkv[1], qkv[2], self.backend)
        return self.proj(einops.rearrange(out, "B T N D -> B T (N D)"))


class MLP(nnx.Module):
    """fc_out(gelu(fc_in(x))) with the exact (erf) GELU; the original's `mlp.0` / `mlp.2`."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, param_dtype=jnp.dtype(cfg.param_dtype), dtype=jnp.dtype(cfg.dtype))
        self.fc_in = Linear(cfg.dim, cfg.mlp_dim, (axes.EMBED, axes.MLP), **kw)
        self.fc_out = Linear(cfg.mlp_dim, cfg.dim, (axes.MLP, axes.EMBED), **kw)

    def __call__(self, x: Float[Array, "B T E"]) -> Float[Array, "B T E"]:
        return self.fc_out(jax.nn.gelu(self.fc_in(x), approximate=False))


class Block(nnx.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); residual stream in fp32."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        pd = jnp.dtype(cfg.param_dtype)
        self.norm1 = LayerNorm(cfg.dim, axes.EMBED, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.attn = SelfAttention(cfg, rngs=rngs)
        self.norm2 = LayerNorm(cfg.dim, axes.EMBED, rngs=rngs, eps=cfg.eps, param_dtype=pd)
        self.mlp = MLP(cfg, rngs=rngs)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: Float[Array, "B T E"]) -> Float[Array, "B T E"]:
        x = x + self.attn(self.norm1(x).astype(self.dtype)).astype(F32)
        return x + self.mlp(self.norm2(x).astype(self.dtype)).astype(F32)


class CLIPVisionEncoder(nnx.Module):
    """Wan's CLIP image encoder: images [B, H, W, 3] in [-1, 1] -> fp32 [B, T, E] (first `used_layers` blocks)."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        pd, e, p = jnp.dtype(cfg.param_dtype), cfg.dim, cfg.patch_size
        self.patch_embedding = param(rngs, _normal((p * p * 3) ** -0.5), (p, p, 3, e),
                                     (None, None, None, axes.EMBED), pd)  # [P, P, 3, E]; the conv has no bias
        self.cls_embedding = param(rngs, _normal(e**-0.5), (1, 1, e), (None, None, axes.EMBED), pd)
        self.pos_embedding = param(rngs, _normal(e**-0.5), (1, cfg.num_tokens, e), (None, None, axes.EMBED), pd)
        self.pre_norm = LayerNorm(e, axes.EMBED, rngs=rngs, eps=cfg.eps, param_dtype=pd)

        @nnx.split_rngs(splits=cfg.used_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: axes.LAYERS})
        def make_blocks(rngs):
            return Block(cfg, rngs=rngs)

        self.transformer = make_blocks(rngs)

    def __call__(self, images: Float[Array, "B H W 3"]) -> Float[Array, "B T E"]:
        return self.encode_pixels(preprocess(images, self.config))

    def encode_pixels(self, pixels: Float[Array, "B R R 3"]) -> Float[Array, "B T E"]:
        """The tower on already preprocessed (resized, CLIP-normalised) images."""
        cfg = self.config
        if pixels.shape[1:] != (cfg.image_size, cfg.image_size, 3):
            raise ValueError(f"pixels must be [B, {cfg.image_size}, {cfg.image_size}, 3], got {pixels.shape}")
        dtype, p = jnp.dtype(cfg.dtype), cfg.patch_size
        patches = einops.rearrange(pixels, "B (G p) (J q) C -> B (G J) (p q C)", p=p, q=p)
        kernel = self.patch_embedding[...].reshape(-1, cfg.dim).astype(dtype)
        x = jnp.dot(patches.astype(dtype), kernel).astype(F32)
        cls = jnp.broadcast_to(self.cls_embedding[...].astype(F32), (x.shape[0], 1, cfg.dim))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embedding[...].astype(F32)
        return self._run_blocks(self.pre_norm(x))

    def _run_blocks(self, x: Float[Array, "B T E"]) -> Float[Array, "B T E"]:
        graphdef, stacked = nnx.split(self.transformer)

        def body(x, block_state):
            x = constrain(x, axes.BATCH, axes.CONTEXT, axes.EMBED)
            x = nnx.merge(graphdef, block_state)(x)
            return constrain(x, axes.BATCH, axes.CONTEXT, axes.EMBED), None

        x, _ = jax.lax.scan(body, x, stacked)
        return x


@functools.partial(jax.jit, static_argnums=0)
def _encode_split(graphdef, state, images):
    return nnx.merge(graphdef, state)(images)


def encode_images(encoder: CLIPVisionEncoder, images: Float[Array, "B H W 3"]) -> Float[Array, "B T E"]:
    """Jitted `encoder(images)` (over the split module, so no second copy of the weights is kept)."""
    return _encode_split(*nnx.split(encoder), images)
