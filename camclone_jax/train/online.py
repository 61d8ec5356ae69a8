"""Encoding raw-video batches inside the trainer (`config.input.format = "videos"`), as upstream CamCloneMaster's
training step does, instead of reading precomputed latent shards.

    encoders = load_encoders(config.input.encoders, kind)      # VAE, umT5 + tokenizer, CLIP (camclone)
    step_batch = encode_batch(kind, raw_batch, encoders, text_len=512)

Raw batch (data.py, raw mode; B host-local samples, T frames, H/W pixels in [-1, 1]):
  camclone  target, ref, content [B, T, H, W, 3]; caption [B]
  recam     target, source [B, T, H, W, 3]; cam_emb [B, F, 12]; caption [B]
  syncam    views [B, V, T, H, W, 3]; cam_emb [B, V, F, 12]; caption [B]
Step batch: step.py's keys (latents [B, F, h, w, 16], text [B, L, D], ...), the same arrays precompute.py stores,
encoded the same way (precompute.encode_latents: untiled for CamCloneMaster, DiffSynth tiles for ReCam/SynCam).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from camclone_jax.models.text_prompts import encode_prompts
from camclone_jax.sample.conditions import clip_features, image_condition


def load_encoders(models_dir: str | Path, kind: str) -> SimpleNamespace:
    """VAE, umT5, tokenizer and (camclone) CLIP from a `--models`-style folder (vae/ umt5/ clip/, spiece.model
    in umt5/ or the folder itself), each checked before anything is read."""
    from camclone_jax.models.loading import load_clip, load_umt5, load_vae
    from camclone_jax.models.text_prompts import SPIECE, PromptTokenizer
    from camclone_jax.sample.checkpoints import CheckpointPaths, require_dir

    if not models_dir:
        raise ValueError('config.input.format = "videos" needs config.input.encoders: a folder with vae/ umt5/ '
                         '(and clip/ for camclone) made by `python -m convert`')
    paths = CheckpointPaths.resolve(models_dir)
    require_dir(paths.vae, "config.input.encoders/vae", "vae")
    require_dir(paths.text_encoder, "config.input.encoders/umt5", "umt5")
    if paths.tokenizer is None or not (paths.tokenizer / SPIECE).is_file():
        raise FileNotFoundError(f"no {SPIECE} in {paths.text_encoder} or {models_dir} (the umT5 tokenizer)")
    clip = None
    if kind == "camclone":
        clip = load_clip(require_dir(paths.clip, "config.input.encoders/clip", "clip"))
    return SimpleNamespace(vae=load_vae(paths.vae), text_encoder=load_umt5(paths.text_encoder),
                           tokenizer=PromptTokenizer(paths.tokenizer), clip=clip)


def encode_batch(kind: str, batch: dict, encoders, *, text_len: int) -> dict[str, np.ndarray]:
    """A raw dataset batch -> the train step's batch (module doc)."""
    from camclone_jax.train.precompute import encode_latents  # precompute imports data, which imports sample

    def latents(videos):
        return np.asarray(encode_latents(encoders.vae, np.asarray(videos, np.float32), kind))

    text, _ = encode_prompts(encoders.text_encoder, encoders.tokenizer, list(batch["caption"]), text_len=text_len)
    out = {"text": np.asarray(text)}
    if kind == "camclone":
        target = np.asarray(batch["target"], np.float32)
        num_frames = target.shape[1]
        out.update(latents=latents(target), ref_latents=latents(batch["ref"]),
                   content_latents=latents(batch["content"]),
                   y=np.asarray(image_condition(encoders.vae, target[:, 0], num_frames)),
                   clip_feature=np.asarray(clip_features(encoders.clip, target[:, 0])))
    elif kind == "recam":
        out.update(latents=latents(batch["target"]), source_latents=latents(batch["source"]),
                   cam_emb=np.asarray(batch["cam_emb"], np.float32))
    else:
        views = np.asarray(batch["views"], np.float32)
        folded = latents(views.reshape((-1,) + views.shape[2:]))
        out.update(latents=folded.reshape(views.shape[:2] + folded.shape[1:]),
                   cam_emb=np.asarray(batch["cam_emb"], np.float32))
    return out
