"""The conversions the CLI exposes, as functions (tests and scripts call these): dispatch on what a checkpoint
holds, and the DiT itself (the VAE lives in `convert/vae.py`, the umT5 / CLIP encoders in `convert/encoders.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camclone_jax.models.loading import checkpoint_kind, load_dit_params, read_config, save_dit
from camclone_jax.models.presets import DiTConfig
from convert.dit import params_to_torch, torch_to_params
from convert.encoders import convert_clip, convert_umt5, export_encoder
from convert.keymap_clip import is_clip_state
from convert.keymap_umt5 import is_umt5_state
from convert.keymap_vae import is_vae_state
from convert.keymap_wan import detect_config, diffusers_to_original, is_diffusers_naming, strip_wrapper_prefixes
from convert.state_dict_io import ConversionError, leaves, read_state_dict, write_safetensors
from convert.vae import convert_vae, export_vae

# What a checkpoint holds, tested in this order on its keys; anything else is read as a DiT.
_NON_DIT = (("CLIP image encoder", is_clip_state, convert_clip, ("variant",)),
            ("umT5 text encoder", is_umt5_state, convert_umt5, ("variant", "num_heads")),
            ("VAE", is_vae_state, convert_vae, ("variant", "num_heads")))


def convert(src: str | Path, dst: str | Path, **options):
    """Converts a DiT, VAE, umT5 or CLIP checkpoint, whichever `src` holds (detected from its keys); returns the
    written config."""
    state, hf_config = read_state_dict(src)
    state = strip_wrapper_prefixes(state)
    for what, holds, convert_fn, dit_only in _NON_DIT:
        if holds(state):
            for name in dit_only:
                if options.pop(name, None) is not None:
                    raise ConversionError(f"{src} holds a {what}; --{name.replace('_', '-')} applies to DiT "
                                          "checkpoints only")
            return convert_fn(src, dst, state=state, hf_config=hf_config, **options)
    return convert_dit(src, dst, state=state, hf_config=hf_config, **options)


def export(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray] | None:
    """A converted directory (any model) or a training run directory -> original-naming safetensors file."""
    from camclone_jax.train.export import export_run, is_run_dir

    if is_run_dir(src_dir):
        if Path(dst_file).suffix != ".safetensors":
            raise ConversionError(f"--to-torch of a training run writes a .safetensors file, got {dst_file}")
        export_run(src_dir, dst_file, log=log)
        return None
    kind = checkpoint_kind(src_dir)
    export_fn = {"dit": export_dit, "vae": export_vae}.get(kind, export_encoder)
    return export_fn(src_dir, dst_file, log=log)


def _exported_variant(src: str | Path) -> str | None:
    """The variant our own export wrote into the safetensors metadata (keys alone cannot tell a small
    CamCloneMaster from I2V)."""
    if Path(src).suffix != ".safetensors" or not Path(src).is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(src), "np") as f:
        return (f.metadata() or {}).get("variant")


def convert_dit(src: str | Path, dst: str | Path, *, variant: str | None = None, num_heads: int | None = None,
                dtype: str | None = None, log=print, state=None, hf_config=None) -> DiTConfig:
    """Reads a torch checkpoint (any supported format / naming), writes a converted directory, returns its config."""
    if state is None:
        state, hf_config = read_state_dict(src)
        state = strip_wrapper_prefixes(state)
    variant = variant or _exported_variant(src)
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
    param_dtype = np.dtype(next(iter(leaves(params))).dtype).name
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
