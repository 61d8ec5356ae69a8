"""The two conversions the CLI exposes, as functions (tests and scripts call these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camclone_jax.models.loading import (checkpoint_kind, load_dit_params, load_vae_params, read_config,
                                         read_vae_config, save_dit, save_vae)
from camclone_jax.models.presets import DiTConfig
from camclone_jax.models.wan_vae import VAEConfig, param_count
from convert import vae as vae_convert
from convert.dit import params_to_torch, torch_to_params
from convert.keymap_vae import detect_vae_config, diffusers_vae_to_original, is_diffusers_vae, is_vae_state
from convert.keymap_wan import detect_config, diffusers_to_original, is_diffusers_naming, strip_wrapper_prefixes
from convert.state_dict_io import ConversionError, read_state_dict, write_safetensors


def convert(src: str | Path, dst: str | Path, **options) -> DiTConfig | VAEConfig:
    """Converts a DiT or a VAE checkpoint, whichever `src` holds (detected from its keys)."""
    state, hf_config = read_state_dict(src)
    state = strip_wrapper_prefixes(state)
    if is_vae_state(state):
        for name in ("variant", "num_heads"):
            if options.pop(name, None) is not None:
                raise ConversionError(f"{src} holds a VAE; --{name.replace('_', '-')} applies to DiT checkpoints only")
        return convert_vae(src, dst, state=state, hf_config=hf_config, **options)
    return convert_dit(src, dst, state=state, hf_config=hf_config, **options)


def export(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray]:
    """A converted DiT or VAE directory -> original-naming safetensors file."""
    export_fn = export_vae if checkpoint_kind(src_dir) == "vae" else export_dit
    return export_fn(src_dir, dst_file, log=log)


def convert_dit(src: str | Path, dst: str | Path, *, variant: str | None = None, num_heads: int | None = None,
                dtype: str | None = None, log=print, state=None, hf_config=None) -> DiTConfig:
    """Reads a torch checkpoint (any supported format / naming), writes a converted directory, returns its config."""
    if state is None:
        state, hf_config = read_state_dict(src)
        state = strip_wrapper_prefixes(state)
    naming = "original (Wan / DiffSynth)"
    if is_diffusers_naming(state):
        naming = "diffusers"
        state, unknown = diffusers_to_original(state)
        if unknown:
            raise ConversionError(f"{src}: diffusers keys with no Wan counterpart ({len(unknown)}): {', '.join(unknown)}")
        num_heads = num_heads or hf_config.get("num_attention_heads")
    cfg, notes = detect_config(state, num_heads=num_heads, variant=variant)
    stored = np.dtype(dtype) if dtype else None
    params = torch_to_params(state, cfg, source=str(src), dtype=stored)
    param_dtype = np.dtype(next(iter(_leaves(params))).dtype).name
    cfg = cfg.replace(param_dtype=param_dtype)
    count = sum(int(np.prod(v.shape)) for v in state.values())
    log(f"source     {src}")
    log(f"naming     {naming}, {len(state)} tensors, {count:,} parameters, stored as {param_dtype}")
    log(f"variant    {cfg.variant}: dim {cfg.dim}, {cfg.num_layers} layers, {cfg.num_heads} heads, ffn {cfg.ffn_dim}, "
        f"in_dim {cfg.in_dim}, out_dim {cfg.out_dim}")
    for note in notes:
        log(f"note       {note}")
    save_dit(dst, cfg, params)
    log(f"wrote      {Path(dst).absolute()}")
    return cfg


def export_dit(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray]:
    """Converted directory -> original-naming safetensors file."""
    cfg = read_config(src_dir)
    params = load_dit_params(src_dir, cfg)
    state = params_to_torch(params, cfg)
    write_safetensors(state, dst_file, metadata={"format": "pt", "variant": cfg.variant})
    log(f"wrote      {dst_file}: {len(state)} tensors in Wan/DiffSynth naming (variant {cfg.variant})")
    return state


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
    params = vae_convert.torch_to_params(state, cfg, source=str(src), dtype=np.dtype(dtype) if dtype else None)
    cfg = cfg.replace(param_dtype=np.dtype(next(iter(_leaves(params))).dtype).name)
    log(f"source     {src}")
    log(f"naming     {naming}, {len(state)} tensors, {param_count(cfg):,} parameters, stored as {cfg.param_dtype}")
    log(f"model      Wan VAE: dim {cfg.dim}, z_dim {cfg.z_dim}, dim_mult {cfg.dim_mult}, "
        f"temporal downsample {cfg.temporal_downsample}")
    save_vae(dst, cfg, params)
    log(f"wrote      {Path(dst).absolute()}")
    return cfg


def export_vae(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray]:
    cfg = read_vae_config(src_dir)
    state = vae_convert.params_to_torch(load_vae_params(src_dir, cfg), cfg)
    write_safetensors(state, dst_file, metadata={"format": "pt", "model": "wan_vae"})
    log(f"wrote      {dst_file}: {len(state)} tensors in Wan2.1_VAE.pth naming")
    return state


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree
