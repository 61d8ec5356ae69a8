"""The umT5 text encoder and CLIP image encoder conversions the CLI runs (checkpoint -> converted directory,
and back to original naming)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camclone_jax.models.loading import checkpoint_kind, load_model_params, read_model_config, save_model
from convert import clip, umt5
from convert.keymap_umt5 import is_hf_umt5_state
from convert.keymap_wan import strip_wrapper_prefixes
from convert.state_dict_io import ConversionError, leaves, read_state_dict, write_safetensors


def _read(src, state, hf_config):
    if state is None:
        state, hf_config = read_state_dict(src)
        state = strip_wrapper_prefixes(state)
    return state, hf_config


def _finish(src, dst, cfg, params, state, naming: str, model, log, notes=()):
    cfg = cfg.replace(param_dtype=np.dtype(next(iter(leaves(params))).dtype).name)
    count = sum(int(np.prod(np.shape(v))) for v in leaves(params))
    log(f"source     {src}")
    log(f"naming     {naming}, {len(state)} tensors read, {count:,} parameters kept, stored as {cfg.param_dtype}")
    log(f"model      {model(cfg)}")
    for note in notes:
        log(f"note       {note}")
    save_model(dst, cfg, params)
    log(f"wrote      {Path(dst).absolute()}")
    return cfg


def convert_umt5(src: str | Path, dst: str | Path, *, dtype: str | None = None, log=print, state=None,
                 hf_config=None):
    """`models_t5_umt5-xxl-enc-bf16.pth` (original keys) or a transformers `UMT5EncoderModel` -> directory."""
    state, _ = _read(src, state, hf_config)
    naming = "transformers UMT5EncoderModel" if is_hf_umt5_state(state) else "original (Wan / DiffSynth)"
    state, unknown = umt5.to_original_naming(state)
    if unknown:
        raise ConversionError(f"{src}: umT5 keys with no encoder counterpart ({len(unknown)}): {', '.join(unknown)}")
    try:
        cfg = umt5.detect_umt5_config(state)
    except ValueError as err:
        raise ConversionError(f"{src}: {err}") from err
    params = umt5.torch_to_params(state, cfg, source=str(src), dtype=np.dtype(dtype) if dtype else None)
    return _finish(src, dst, cfg, params, state, naming, lambda c: f"umT5 encoder: dim {c.dim}, {c.num_layers} "
                   f"layers, {c.num_heads} heads, ffn {c.dim_ffn}, vocab {c.vocab_size}", log)


def convert_clip(src: str | Path, dst: str | Path, *, num_heads: int | None = None, dtype: str | None = None,
                 log=print, state=None, hf_config=None):
    """`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` -> directory holding the visual tower as Wan
    I2V uses it (the text tower, the last block, post_norm and head are left out)."""
    state, _ = _read(src, state, hf_config)
    state, dropped = clip.visual_only(state)
    try:
        cfg = clip.detect_clip_config(state, **({"num_heads": num_heads} if num_heads else {}))
    except ValueError as err:
        raise ConversionError(f"{src}: {err}") from err
    unused = clip.unused_visual_keys(state, cfg)
    params = clip.torch_to_params(state, cfg, source=str(src), dtype=np.dtype(dtype) if dtype else None)
    note = (f"skipped {dropped} non-visual tensors and {len(unused)} visual ones Wan never runs (last block, "
            "post_norm, head)")
    return _finish(src, dst, cfg, params, state, "original (Wan / DiffSynth)", lambda c: f"CLIP ViT visual tower: "
                   f"dim {c.dim}, {c.used_layers} of {c.num_layers} blocks, {c.num_heads} heads, "
                   f"{c.image_size} px", log, notes=[note])


def export_encoder(src_dir: str | Path, dst_file: str | Path, log=print) -> dict[str, np.ndarray]:
    kind = checkpoint_kind(src_dir)
    module = {"umt5": umt5, "clip": clip}[kind]
    cfg = read_model_config(src_dir)
    state = module.params_to_torch(load_model_params(src_dir, cfg), cfg)
    write_safetensors(state, dst_file, metadata={"format": "pt", "model": kind})
    log(f"wrote      {dst_file}: {len(state)} tensors in Wan/DiffSynth naming ({kind})")
    return state
