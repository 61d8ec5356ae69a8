"""Converted checkpoint directories for sampling: where they are, whether they fit the task, loading them.

Everything is checked from the small config files first (existence, which model each folder holds, the DiT
variant against the task, the tokenizer file), so a wrong path or a mode/weights mismatch fails in
milliseconds, before gigabytes are read.

Layout of `--models DIR` (each folder made by `python -m convert`; any of them can be given on its own):
    DIR/dit/    the DiT (CamCloneMaster, ReCamMaster, SynCamMaster, Wan T2V/I2V)
    DIR/vae/    Wan2.1_VAE
    DIR/umt5/   the umT5-XXL encoder; its `spiece.model` (google/umt5-xxl tokenizer) here or in DIR/
    DIR/clip/   CLIP ViT-H/14 (i2v and camclone only)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from camclone_jax.models.loading import checkpoint_kind, load_clip, load_dit, load_umt5, load_vae, read_config
from camclone_jax.models.text_prompts import SPIECE, PromptTokenizer
from camclone_jax.sample.tasks import Models, check_variant

NEEDS_CLIP = ("i2v", "camclone")


@dataclasses.dataclass
class CheckpointPaths:
    dit: Path | None = None
    vae: Path | None = None
    text_encoder: Path | None = None
    tokenizer: Path | None = None
    clip: Path | None = None

    @classmethod
    def resolve(cls, models: str | Path | None = None, **given: str | Path | None) -> "CheckpointPaths":
        """Explicit paths win; the rest come from the `models` layout (module doc)."""
        root = Path(models) if models else None
        defaults = dict(dit="dit", vae="vae", text_encoder="umt5", clip="clip")
        paths = {name: Path(given[name]) if given.get(name) else (root / sub if root else None)
                 for name, sub in defaults.items()}
        tokenizer = given.get("tokenizer")
        if not tokenizer:
            candidates = [p for p in (paths["text_encoder"], root) if p is not None]
            tokenizer = next((p for p in candidates if (p / SPIECE).is_file()), candidates[0] if candidates else None)
        return cls(tokenizer=Path(tokenizer) if tokenizer else None, **paths)


def require_dir(path: Path | None, flag: str, kind: str) -> Path:
    if path is None:
        raise ValueError(f"no {kind} checkpoint given: pass {flag} DIR or --models DIR (a folder with dit/ vae/ "
                         "umt5/ clip/ made by `python -m convert`)")
    if not path.is_dir():
        raise FileNotFoundError(f"{kind} checkpoint directory not found: {path} (make it with `python -m convert "
                                f"<torch checkpoint> {path}`)")
    found = checkpoint_kind(path)
    if found != kind:
        raise ValueError(f"{path} holds a converted {found}, not the {kind} expected for {flag}")
    return path


def check_checkpoints(task: str, paths: CheckpointPaths) -> None:
    """Cheap checks of every path the task needs; raises with the flag and the expected content."""
    dit = require_dir(paths.dit, "--dit", "dit")
    check_variant(task, read_config(dit).variant, where=f"--dit {dit}")
    require_dir(paths.vae, "--vae", "vae")
    require_dir(paths.text_encoder, "--text-encoder", "umt5")
    if paths.tokenizer is None or not (paths.tokenizer.is_file() or (paths.tokenizer / SPIECE).is_file()):
        raise FileNotFoundError(f"umT5 tokenizer not found at {paths.tokenizer}: pass --tokenizer with the "
                                f"google/umt5-xxl '{SPIECE}' file or its folder")
    if task in NEEDS_CLIP:
        require_dir(paths.clip, "--clip", "clip")


def load_models(task: str, paths: CheckpointPaths, dtype: str = "float32", attention: str = "auto") -> Models:
    """Checks, then loads the networks `task` needs; `dtype` is the DiT / encoders' compute dtype, `attention`
    the DiT's attention backend."""
    check_checkpoints(task, paths)
    return Models(dit=load_dit(paths.dit, dtype=dtype, attention=attention), vae=load_vae(paths.vae, dtype=dtype),
                  text_encoder=load_umt5(paths.text_encoder, dtype=dtype), tokenizer=PromptTokenizer(paths.tokenizer),
                  clip=load_clip(paths.clip, dtype=dtype) if task in NEEDS_CLIP else None)
