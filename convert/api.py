"""The two conversions the CLI exposes, as functions (tests and scripts call these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camclone_jax.models.loading import load_dit_params, read_config, save_dit
from camclone_jax.models.presets import DiTConfig
from convert.dit import params_to_torch, torch_to_params
from convert.keymap_wan import detect_config, diffusers_to_original, is_diffusers_naming, strip_wrapper_prefixes
from convert.state_dict_io import ConversionError, read_state_dict, write_safetensors


def convert_dit(src: str | Path, dst: str | Path, *, variant: str | None = None, num_heads: int | None = None,
                dtype: str | None = None, log=print) -> DiTConfig:
    """Reads a torch checkpoint (any supported format / naming), writes a converted directory, returns its config."""
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


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree
