"""umT5 text encoder: torch state dict <-> `UMT5Encoder` parameter tree, driven by `keymap_umt5.umt5_table`.

HF `UMT5EncoderModel` checkpoints are renamed first (`keymap_umt5.to_original_naming`); everything here takes
and returns the original (Wan2.1 / DiffSynth) naming.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

from camclone_jax.models.umt5 import UMT5Config, UMT5Encoder
from convert.dit import common_dtype
from convert.keymap_umt5 import detect_umt5_config, is_umt5_state, to_original_naming, umt5_table
from convert.state_dict_io import check_keys
from convert.tables import params_to_state, state_to_params, torch_shapes

__all__ = ["detect_umt5_config", "expected_torch_shapes", "is_umt5_state", "params_to_torch", "to_original_naming",
           "torch_to_params"]


def abstract_umt5(cfg: UMT5Config) -> UMT5Encoder:
    """The model with ShapeDtypeStruct leaves: shapes, dtypes and logical axes, no memory."""
    return nnx.eval_shape(lambda: UMT5Encoder(cfg, rngs=nnx.Rngs(0)))


def expected_torch_shapes(cfg: UMT5Config) -> dict[str, tuple[int, ...]]:
    """Original key -> torch shape for every parameter of `cfg`."""
    return torch_shapes(abstract_umt5(cfg), umt5_table(cfg), cfg.num_layers)


def check_state_dict(state: dict[str, np.ndarray], cfg: UMT5Config, source: str = "checkpoint"):
    """Raises one ConversionError naming every missing, unexpected and misshapen key."""
    check_keys(state, expected_torch_shapes(cfg), f"{source} does not match a umT5 encoder (dim {cfg.dim}, "
                                                  f"{cfg.num_layers} layers, vocab {cfg.vocab_size}):")


def torch_to_params(state: dict[str, np.ndarray], cfg: UMT5Config, source: str = "checkpoint",
                    dtype: Any = None) -> dict[str, Any]:
    """Original-naming state dict -> nested dict matching `nnx.state(UMT5Encoder(cfg), nnx.Param).to_pure_dict()`.
    `dtype` None keeps the checkpoint's (most common) dtype, so bf16 stays bit-exact."""
    check_state_dict(state, cfg, source)
    dtype = np.dtype(dtype) if dtype is not None else common_dtype(state)
    return state_to_params(state, umt5_table(cfg), cfg.num_layers, dtype)


def params_to_torch(params: dict[str, Any], cfg: UMT5Config) -> dict[str, np.ndarray]:
    """Inverse of `torch_to_params`: an original-naming state dict (Wan2.1 / DiffSynth load it)."""
    return params_to_state(params, umt5_table(cfg), cfg.num_layers)
