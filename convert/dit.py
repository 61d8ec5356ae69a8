"""Wan DiT: torch state dict <-> `WanDiT` parameter tree, driven by `keymap_wan.dit_table`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from camclone_jax.models.loading import abstract_dit
from camclone_jax.models.presets import DiTConfig
from convert.keymap_wan import dit_table
from convert.state_dict_io import check_keys
from convert.tables import params_to_state, state_to_params, torch_shapes


def expected_torch_shapes(cfg: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Original key -> torch shape for every parameter of `cfg`."""
    return torch_shapes(abstract_dit(cfg), dit_table(cfg), cfg.num_layers)


def check_state_dict(state: dict[str, np.ndarray], cfg: DiTConfig, source: str = "checkpoint"):
    """Raises one ConversionError naming every missing, unexpected and misshapen key."""
    check_keys(state, expected_torch_shapes(cfg), f"{source} does not match a Wan DiT of variant {cfg.variant!r} "
                                                  f"(dim {cfg.dim}, {cfg.num_layers} layers, in_dim {cfg.in_dim}):")


def common_dtype(state: dict[str, np.ndarray]) -> np.dtype:
    return Counter(v.dtype for v in state.values()).most_common(1)[0][0]


def torch_to_params(state: dict[str, np.ndarray], cfg: DiTConfig, source: str = "checkpoint",
                    dtype: Any = None) -> dict[str, Any]:
    """Original-naming state dict -> nested dict matching `nnx.state(WanDiT(cfg), nnx.Param).to_pure_dict()`."""
    check_state_dict(state, cfg, source)
    dtype = np.dtype(dtype) if dtype is not None else common_dtype(state)
    return state_to_params(state, dit_table(cfg), cfg.num_layers, dtype)


def params_to_torch(params: dict[str, Any], cfg: DiTConfig) -> dict[str, np.ndarray]:
    """Inverse of `torch_to_params`: original-naming state dict (Wan / DiffSynth / Kwai scripts load it)."""
    return params_to_state(params, dit_table(cfg), cfg.num_layers)
