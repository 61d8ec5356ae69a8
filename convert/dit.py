"""Wan DiT: torch state dict <-> `WanDiT` parameter tree, driven by `keymap_wan.dit_table`."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from flax import nnx

from camclone_jax.models.loading import abstract_dit
from camclone_jax.models.presets import DiTConfig
from convert.keymap_wan import Entry, dit_table
from convert.state_dict_io import check_keys
from convert.tables import params_to_state, state_to_params


def _jax_shapes(cfg: DiTConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    flat = nnx.state(abstract_dit(cfg), nnx.Param).flat_state()
    return {tuple(str(k) for k in path): tuple(var.get_value().shape) for path, var in flat}


def expected_torch_shapes(cfg: DiTConfig) -> dict[str, tuple[Entry, int | None, tuple[int, ...]]]:
    """Original key -> (table entry, block index or None, torch shape) for every parameter of `cfg`."""
    shapes = _jax_shapes(cfg)
    table = dit_table(cfg)
    covered = {e.jax_path for e in table}
    if covered != set(shapes):  # a model/table drift is a bug here, not a user error
        raise AssertionError(f"key table out of sync with WanDiT: {sorted(set(shapes) ^ covered)}")
    out = {}
    for entry in table:
        shape = shapes[entry.jax_path]
        if entry.per_block:
            for i in range(cfg.num_layers):
                out[entry.torch_key.format(i=i)] = (entry, i, entry.transform.torch_shape(shape[1:]))
        else:
            out[entry.torch_key] = (entry, None, entry.transform.torch_shape(shape))
    return out


def check_state_dict(state: dict[str, np.ndarray], cfg: DiTConfig, source: str = "checkpoint"):
    """Raises one ConversionError naming every missing, unexpected and misshapen key."""
    expected = {k: shape for k, (_, _, shape) in expected_torch_shapes(cfg).items()}
    check_keys(state, expected, f"{source} does not match a Wan DiT of variant {cfg.variant!r} (dim {cfg.dim}, "
                                f"{cfg.num_layers} layers, in_dim {cfg.in_dim}):")


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
