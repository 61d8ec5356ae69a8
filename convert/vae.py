"""Wan VAE: torch state dict <-> `WanVAE` parameter tree, driven by `keymap_vae.vae_table`."""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

from camclone_jax.models.loading import abstract_vae
from camclone_jax.models.wan_vae import VAEConfig
from convert.dit import common_dtype
from convert.keymap_vae import vae_table
from convert.state_dict_io import check_keys


def expected_torch_shapes(cfg: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Original key -> torch shape for every parameter of `cfg`."""
    flat = nnx.state(abstract_vae(cfg), nnx.Param).flat_state()
    shapes = {tuple(path): tuple(var.get_value().shape) for path, var in flat}
    table = vae_table(cfg)
    covered = {e.jax_path for e in table}
    if covered != set(shapes):  # a model/table drift is a bug here, not a user error
        raise AssertionError(f"key table out of sync with WanVAE: {sorted(set(shapes) ^ covered, key=str)}")
    return {e.torch_key: e.transform.torch_shape(shapes[e.jax_path]) for e in table}


def check_state_dict(state: dict[str, np.ndarray], cfg: VAEConfig, source: str = "checkpoint"):
    check_keys(state, expected_torch_shapes(cfg),
               f"{source} does not match a Wan VAE (dim {cfg.dim}, z_dim {cfg.z_dim}, dim_mult {cfg.dim_mult}):")


def torch_to_params(state: dict[str, np.ndarray], cfg: VAEConfig, source: str = "checkpoint",
                    dtype: Any = None) -> dict[Any, Any]:
    """Original-naming state dict -> nested dict matching `nnx.state(WanVAE(cfg), nnx.Param).to_pure_dict()`."""
    check_state_dict(state, cfg, source)
    dtype = np.dtype(dtype) if dtype is not None else common_dtype(state)
    params: dict[Any, Any] = {}
    for entry in vae_table(cfg):
        node = params
        for part in entry.jax_path[:-1]:
            node = node.setdefault(part, {})
        node[entry.jax_path[-1]] = entry.transform.to_jax(state[entry.torch_key]).astype(dtype, copy=False)
    return params


def params_to_torch(params: dict[Any, Any], cfg: VAEConfig) -> dict[str, np.ndarray]:
    """Inverse of `torch_to_params`: an original-naming state dict (`Wan2.1_VAE.pth` layout)."""
    state = {}
    for entry in vae_table(cfg):
        value = params
        for part in entry.jax_path:
            value = value[part]
        state[entry.torch_key] = entry.transform.to_torch(np.asarray(value))
    return state
