"""Wan CLIP visual tower: torch state dict <-> `CLIPVisionEncoder` parameter tree, driven by `keymap_clip`.

Typical use (original checkpoint file, which also holds the text tower):
    state, _ = read_state_dict("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    state, dropped = visual_only(state)          # textual.* and log_scale dropped
    cfg = detect_clip_config(state)              # ViT-H/14, 32 blocks, 31 used
    params = torch_to_params(state, cfg)         # the last block, post_norm and head are skipped
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

from camclone_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionEncoder
from convert.dit import common_dtype
from convert.keymap_clip import clip_table, detect_clip_config, is_clip_state, unused_visual_keys, visual_only
from convert.state_dict_io import check_keys
from convert.tables import params_to_state, state_to_params, torch_shapes

__all__ = ["abstract_clip", "check_state_dict", "detect_clip_config", "expected_torch_shapes", "is_clip_state",
           "params_to_torch", "torch_to_params", "unused_visual_keys", "visual_only"]


def abstract_clip(cfg: CLIPVisionConfig) -> CLIPVisionEncoder:
    return nnx.eval_shape(lambda: CLIPVisionEncoder(cfg, rngs=nnx.Rngs(0)))


def expected_torch_shapes(cfg: CLIPVisionConfig) -> dict[str, tuple[int, ...]]:
    """Original key -> torch shape for every parameter of `cfg` (used blocks only)."""
    return torch_shapes(abstract_clip(cfg), clip_table(cfg), cfg.used_layers)


def check_state_dict(state: dict[str, np.ndarray], cfg: CLIPVisionConfig, source: str = "checkpoint"):
    """Strict check of a visual-only state dict; the tower's unused keys (late blocks, post_norm, head) pass."""
    unused = set(unused_visual_keys(state, cfg))
    check_keys({k: v for k, v in state.items() if k not in unused}, expected_torch_shapes(cfg),
               f"{source} does not match a CLIP visual tower (image {cfg.image_size}, patch {cfg.patch_size}, "
               f"dim {cfg.dim}, {cfg.used_layers} of {cfg.num_layers} blocks):")


def torch_to_params(state: dict[str, np.ndarray], cfg: CLIPVisionConfig, source: str = "checkpoint",
                    dtype: Any = None) -> dict[str, Any]:
    """`visual_only` state dict -> nested dict matching `nnx.state(CLIPVisionEncoder(cfg), nnx.Param).to_pure_dict()`.

    Raises ConversionError naming every missing, unexpected and misshapen key. Values keep their dtype
    (bf16 stays ml_dtypes.bfloat16, bit-exact) unless `dtype` is given.
    """
    check_state_dict(state, cfg, source)
    dtype = np.dtype(dtype) if dtype is not None else common_dtype(state)
    return state_to_params(state, clip_table(cfg), cfg.used_layers, dtype)


def params_to_torch(params: dict[str, Any], cfg: CLIPVisionConfig) -> dict[str, np.ndarray]:
    """Inverse of `torch_to_params`: original-naming `visual.*` keys of the used part of the tower."""
    return params_to_state(params, clip_table(cfg), cfg.used_layers)
