"""Declarative key table between the Wan CLIP checkpoint's visual tower and the `CLIPVisionEncoder` tree.

Namings:
  original   `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (`visual.transformer.3.attn.to_qkv.weight`;
             the file also holds `textual.*` and `log_scale`, which are not ours).
  diffsynth  `WanImageEncoder` wraps the same model as `self.model`: `model.visual.*`, `model.log_scale`.
  jax        `CLIPVisionEncoder` paths, blocks stacked on a leading axis (`transformer/attn/to_qkv/kernel[3]`).
Only the blocks Wan runs (`used_layers`) are converted; the tower's later blocks, `post_norm` and `head` are
recognised as unused visual keys and skipped.
"""

from __future__ import annotations

import re

import numpy as np

from camclone_jax.models.clip_vision import CLIPVisionConfig
from convert.keymap_wan import LINEAR, SAME, Entry, Transform

CONV2D = Transform("conv2d", (2, 3, 1, 0))  # weight [O, I, H, W] -> kernel [H, W, I, O]
VISUAL = "visual."
_PATCH = VISUAL + "patch_embedding.weight"
_BLOCK_KEY = re.compile(r"^visual\.transformer\.(\d+)\.")
_UNUSED_TOP = ("visual.post_norm.", "visual.head")


def _linear(torch_prefix: str, path: tuple[str, ...]) -> list[Entry]:
    return [Entry(f"{torch_prefix}.weight", (*path, "kernel"), LINEAR), Entry(f"{torch_prefix}.bias", (*path, "bias"), SAME)]


def _norm(torch_prefix: str, path: tuple[str, ...]) -> list[Entry]:
    return [Entry(f"{torch_prefix}.weight", (*path, "scale"), SAME), Entry(f"{torch_prefix}.bias", (*path, "bias"), SAME)]


def clip_table(cfg: CLIPVisionConfig) -> list[Entry]:
    """Every parameter of a `CLIPVisionEncoder`, in original naming; per-block keys hold `{i}`."""
    del cfg  # the layout does not depend on sizes; the block count is applied by the converter
    block = "visual.transformer.{i}"
    return [
        Entry(_PATCH, ("patch_embedding",), CONV2D),
        Entry("visual.cls_embedding", ("cls_embedding",), SAME),
        Entry("visual.pos_embedding", ("pos_embedding",), SAME),
        *_norm("visual.pre_norm", ("pre_norm",)),
        *_norm(f"{block}.norm1", ("transformer", "norm1")),
        *_linear(f"{block}.attn.to_qkv", ("transformer", "attn", "to_qkv")),
        *_linear(f"{block}.attn.proj", ("transformer", "attn", "proj")),
        *_norm(f"{block}.norm2", ("transformer", "norm2")),
        *_linear(f"{block}.mlp.0", ("transformer", "mlp", "fc_in")),
        *_linear(f"{block}.mlp.2", ("transformer", "mlp", "fc_out")),
    ]


def is_clip_state(keys) -> bool:
    """True for the Wan CLIP checkpoint (whole file or visual tower only), original or DiffSynth naming."""
    return any(k in (_PATCH, "model." + _PATCH) for k in keys)


def visual_only(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Keeps the `visual.*` keys (DiffSynth's `model.` prefix removed); returns them and how many keys were
    dropped (`textual.*`, `log_scale`, anything else outside the visual tower)."""
    out = {}
    for key, value in state.items():
        name = key[len("model."):] if key.startswith("model." + VISUAL) else key
        if name.startswith(VISUAL):
            out[name] = value
    return out, len(state) - len(out)


def block_ids(state: dict[str, np.ndarray]) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})


def unused_visual_keys(state: dict[str, np.ndarray], cfg: CLIPVisionConfig) -> list[str]:
    """Visual-tower keys Wan never runs: blocks >= used_layers (up to num_layers), `post_norm`, `head`."""
    late = {f"visual.transformer.{i}." for i in range(cfg.used_layers, cfg.num_layers)}
    return sorted(k for k in state if k.startswith(_UNUSED_TOP)
                  or ((m := _BLOCK_KEY.match(k)) and m.group(0) in late))


def detect_clip_config(state: dict[str, np.ndarray], **overrides) -> CLIPVisionConfig:
    """Infers the tower's CLIPVisionConfig from a `visual_only` state dict; `overrides` win (e.g. num_heads).

    The checkpoint does not record the head count: it defaults to dim / 80 (ViT-H/14: 1280 / 80 = 16 heads).
    `used_layers` defaults to all blocks but the last, as Wan's `use_31_block`.
    """
    state, _ = visual_only(state)
    for key in (_PATCH, "visual.pos_embedding", "visual.transformer.0.mlp.0.weight"):
        if key not in state:
            raise ValueError(f"not a CLIP visual tower: {key!r} is missing (found e.g. {sorted(state)[:5]})")
    dim, _, patch, _ = state[_PATCH].shape
    tokens = state["visual.pos_embedding"].shape[1]
    grid = int(round(np.sqrt(tokens - 1)))
    if grid * grid != tokens - 1:
        raise ValueError(f"visual.pos_embedding holds {tokens} tokens, not 1 + a square number of patches")
    layers = len(block_ids(state))
    fields = dict(image_size=grid * patch, patch_size=patch, dim=dim,
                  mlp_ratio=state["visual.transformer.0.mlp.0.weight"].shape[0] // dim, num_layers=layers,
                  used_layers=max(layers - 1, 1))
    if "num_heads" not in overrides and dim % 80:
        raise ValueError(f"width {dim} is not a multiple of 80 (ViT-H head size); pass num_heads explicitly")
    fields["num_heads"] = dim // 80
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return CLIPVisionConfig(**fields)
