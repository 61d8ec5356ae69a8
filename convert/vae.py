"""Wan VAE: torch state dict <-> `WanVAE` parameter tree (driven by `keymap_vae.vae_table`), and the VAE
conversions the CLI runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from camclone_jax.models.loading import abstract_vae, load_vae_params, read_vae_config, save_vae
from camclone_jax.models.wan_vae import VAEConfig, param_count
from convert.dit import common_dtype
from convert.keymap_vae import detect_vae_config, diffusers_vae_to_original, is_diffusers_vae, vae_table
from convert.keymap_wan import strip_wrapper_prefixes
from convert.state_dict_io import ConversionError, check_keys, leaves, read_state_dict, write_safetensors
from convert.tables import params_to_state, state_to_params, torch_shapes


def expected_torch_shapes(cfg: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Original key -> torch shape for every parameter of `cfg`."""
    return torch_shapes(abstract_vae(cfg), vae_table(cfg), 0)


def check_state_dict(state: dict[str, np.ndarray], cfg: VAEConfig, source: str = "checkpoint"):
    check_keys(state, expected_torch_shapes(cfg),
               f"{source} does not match a Wan VAE (dim {cfg.dim}, z_dim {cfg.z_dim}, dim_mult {cfg.dim_mult}):")


def torch_to_params(state: dict[str, np.ndarray], cfg: VAEConfig, source: str = "checkpoint",
                    dtype: Any = None) -> dict[Any, Any]:
    """Original-naming state dict -> nested dict matching `nnx.state(WanVAE(cfg), nnx.Param).to_pure_dict()`."""
    check_state_dict(state, cfg, source)
    dtype = np.dtype(dtype) if dtype is not None else common_dtype(state)
    return state_to_params(state, vae_table(cfg), 0, dtype)


def params_to_torch(params: dict[Any, Any], cfg: VAEConfig) -> dict[str, np.ndarray]:
    """Inverse of `torch_to_params`: an original-naming state dict (`Wan2.1_VAE.pth` layout)."""
    return params_to_state(params, vae_table(cfg), 0)


def convert_vae(src: str | Path, dst: str | Path, *, dtype: str | None = None, log=print, state=None,
                hf_config=None) -> VAEConfig:
    """`Wan2.1_VAE.pth` (original keys) or a diffusers `AutoencoderKLWan` folder -> converted directory."""
    if state is None:
        state, hf_config = read_state_dict(src)
        state = strip_wrapper_prefixes(state)
    naming = "original (Wan / DiffSynth)"
    if is_diffusers_vae(state):
        naming = "diffusers"
        state, unknown = diffusers_vae_to_original(state, (hf_config or {}).get("num_res_blocks", 2))
        if unknown:
            raise ConversionError(f"{src}: diffusers VAE keys with no Wan counterpart ({len(unknown)}): "
                                  f"{', '.join(unknown)}")
    try:
        cfg = detect_vae_config(state)
    except ValueError as err:
        raise ConversionError(f"{src}: {err}") from err
    params = torch_to_params(state, cfg, source=str(src), dtype=np.dtype(dtype) if dtype else None)
    cfg = cfg.replace(param_dtype=np.dtype(next(iter(leaves(params))).dtype).name)
    log(f"source     {src}")
    log(f"naming     {naming}, {len(state)} tensors, {param_count(cfg):,} parameters, stored as {cfg.param_dtype}")
    log(f"model      Wan VAE: dim {cfg.dim}, z_dim {cfg.z_dim}, dim_mult {cfg.dim_mult}, "
        f"temporal downsample {cfg.temporal_downsample}")
    save_vae(dst, cfg, params)
    log(f"wrote      {Path(dst).absolute()}")
    return cfg


def export_vae(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray]:
    cfg = read_vae_config(src_dir)
    state = params_to_torch(load_vae_params(src_dir, cfg), cfg)
    write_safetensors(state, dst_file, metadata={"format": "pt", "model": "wan_vae"})
    log(f"wrote      {dst_file}: {len(state)} tensors in Wan2.1_VAE.pth naming")
    return state
