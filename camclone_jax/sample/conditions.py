"""What each task hands the DiT besides its noise: text features, the I2V image condition, CLIP features and
clean video latents (spec camera_control.md 7.3-7.4, 5.4; wan.md 2.13).

Shapes (channels last): image [B, H, W, 3] and video [B, T, H, W, 3] in [-1, 1]; T = 4k + 1 frames give
F = k + 1 latent frames of h, w = H/8, W/8; y [B, F, h, w, 4 + 16] = mask | image latent; clip_feature
[B, 257, 1280]; text [B, 512, 4096] zero past each prompt's length.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from camclone_jax.models.clip_vision import encode_images
from camclone_jax.models.text_prompts import PromptTokenizer, encode_prompts
from camclone_jax.models.wan_vae import TIME_STRIDE, WanVAE, encode, num_latent_frames

# Wan's base negative prompt (wan/configs/shared_config.py), hard-coded in every camera repo's inference script.
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                   "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的"
                   "肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
# The camera repos' VAE tiling in latent units (spec 4.2): 240x416-pixel tiles with half overlap.
TILE_SIZE, TILE_STRIDE = (30, 52), (15, 26)


def encode_text(encoder, tokenizer: PromptTokenizer, prompts: str | Sequence[str],
                text_len: int = 512) -> Float[Array, "B S D"]:
    """umT5 features of `prompts` as the DiT receives them (zero rows past each prompt's length)."""
    return encode_prompts(encoder, tokenizer, prompts, text_len=text_len)[0]


def encode_video(vae: WanVAE, video: Float[Array, "B T H W 3"], *, tiled: bool = True,
                 progress: bool = False) -> Float[Array, "B F h w 16"]:
    """Normalised VAE latents of clean condition videos; `tiled` uses the camera repos' (30, 52)/(15, 26) tiles."""
    tiles = dict(tile_size=TILE_SIZE, tile_stride=TILE_STRIDE, progress=progress) if tiled else {}
    return encode(vae, jnp.asarray(video, jnp.float32), **tiles)


def image_condition(vae: WanVAE, image: Float[Array, "B H W 3"], num_frames: int) -> Float[Array, "B F h w 20"]:
    """The I2V `y`: a 4-channel mask (all four 1 on latent frame 0, else 0) then the latent of
    [image, num_frames - 1 zero (mid-grey) frames], encoded untiled as upstream does."""
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"image must be [B, H, W, 3] in [-1, 1], got shape {image.shape}")
    if (num_frames - 1) % TIME_STRIDE or num_frames < 1:
        raise ValueError(f"num_frames must be of the form 4k+1, got {num_frames}")
    video = jnp.zeros((image.shape[0], num_frames, *image.shape[1:]), jnp.float32).at[:, 0].set(image)
    latents = encode(vae, video)
    # Frame 0 is repeated 4x before the mask is folded into groups of 4 frames (Wan's 81 -> 84 trick), so latent
    # frame 0 has all four mask channels set and every later latent frame none.
    mask = np.zeros((*latents.shape[:-1], TIME_STRIDE), np.float32)
    mask[:, 0] = 1.0
    return jnp.concatenate([jnp.asarray(mask), latents], axis=-1)


def clip_features(clip, image: Float[Array, "B H W 3"]) -> Float[Array, "B T E"]:
    """CLIP ViT-H/14 penultimate-block tokens of the first frame (its own bicubic squash to 224x224)."""
    return encode_images(clip, jnp.asarray(image, jnp.float32))


def zeros_like_latents(batch: int, num_frames: int, height: int, width: int, channels: int = 16) -> Array:
    """Latents of nothing: CamCloneMaster's content slot in I2V mode (and its content dropout)."""
    return jnp.zeros((batch, num_latent_frames(num_frames), height // 8, width // 8, channels), jnp.float32)
