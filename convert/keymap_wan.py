"""Declarative key table between PyTorch Wan DiT checkpoints and the `WanDiT` parameter tree.

Three namings meet here:
  original   Wan2.1 / DiffSynth / Kwai camera repos (`blocks.3.self_attn.q.weight`); the canonical torch naming.
  diffusers  `WanTransformer3DModel` (`blocks.3.attn1.to_q.weight`); renamed to original before anything else.
  jax        `WanDiT` paths with blocks stacked on a leading axis (`blocks/self_attn/q/kernel[3]`).
Every entry of `dit_table(cfg)` is (original key, jax path, transform); per-block entries hold `{i}`.
"""

from __future__ import annotations

import dataclasses
import re
import numpy as np

from camclone_jax.models.presets import DiTConfig


@dataclasses.dataclass(frozen=True)
class Transform:
    """A lossless axis permutation from the torch layout to the JAX layout (None: unchanged)."""
    name: str
    perm: tuple[int, ...] | None = None

    def to_jax(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else np.ascontiguousarray(a.transpose(self.perm))

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        return a if self.perm is None else np.ascontiguousarray(a.transpose(np.argsort(self.perm)))

    def torch_shape(self, jax_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.perm is None:
            return tuple(jax_shape)
        return tuple(jax_shape[i] for i in np.argsort(self.perm))


SAME = Transform("same")
LINEAR = Transform("linear", (1, 0))  # weight [out, in] -> kernel [in, out]
CONV3D = Transform("conv3d", (2, 3, 4, 1, 0))  # weight [O, I, T, H, W] -> kernel [T, H, W, I, O]


@dataclasses.dataclass(frozen=True)
class Entry:
    torch_key: str  # original naming; "{i}" marks a per-block entry
    jax_path: tuple[str, ...]
    transform: Transform

    @property
    def per_block(self) -> bool:
        return "{i}" in self.torch_key


def _linear(torch_prefix: str, jax_path: str) -> list[Entry]:
    path = tuple(jax_path.split("/"))
    return [Entry(f"{torch_prefix}.weight", (*path, "kernel"), LINEAR), Entry(f"{torch_prefix}.bias", (*path, "bias"), SAME)]


def _norm(torch_prefix: str, jax_path: str, bias: bool = False) -> list[Entry]:
    path = tuple(jax_path.split("/"))
    out = [Entry(f"{torch_prefix}.weight", (*path, "scale"), SAME)]
    return out + ([Entry(f"{torch_prefix}.bias", (*path, "bias"), SAME)] if bias else [])


def _attention(torch_prefix: str, jax_path: str, image: bool = False) -> list[Entry]:
    out = [e for name in "qkvo" for e in _linear(f"{torch_prefix}.{name}", f"{jax_path}/{name}")]
    out += _norm(f"{torch_prefix}.norm_q", f"{jax_path}/norm_q") + _norm(f"{torch_prefix}.norm_k", f"{jax_path}/norm_k")
    if image:
        out += _linear(f"{torch_prefix}.k_img", f"{jax_path}/k_img") + _linear(f"{torch_prefix}.v_img", f"{jax_path}/v_img")
        out += _norm(f"{torch_prefix}.norm_k_img", f"{jax_path}/norm_k_img")
    return out


def dit_table(cfg: DiTConfig) -> list[Entry]:
    """Every parameter of a `WanDiT` with `cfg`, in original torch naming."""
    table = [
        Entry("patch_embedding.weight", ("patch_embedding", "kernel"), CONV3D),
        Entry("patch_embedding.bias", ("patch_embedding", "bias"), SAME),
        *_linear("text_embedding.0", "text_embedding/fc_in"), *_linear("text_embedding.2", "text_embedding/fc_out"),
        *_linear("time_embedding.0", "time_embedding/fc_in"), *_linear("time_embedding.2", "time_embedding/fc_out"),
        *_linear("time_projection.1", "time_projection"),
        Entry("head.modulation", ("head", "modulation"), SAME),
        *_linear("head.head", "head/head"),
    ]
    if cfg.has_image_input:
        table += [*_norm("img_emb.proj.0", "img_emb/norm_in", bias=True), *_linear("img_emb.proj.1", "img_emb/mlp/fc_in"),
                  *_linear("img_emb.proj.3", "img_emb/mlp/fc_out"), *_norm("img_emb.proj.4", "img_emb/norm_out", bias=True)]
    block = [
        Entry("blocks.{i}.modulation", ("blocks", "modulation"), SAME),
        *_attention("blocks.{i}.self_attn", "blocks/self_attn"),
        *_attention("blocks.{i}.cross_attn", "blocks/cross_attn", image=cfg.has_image_input),
        *_norm("blocks.{i}.norm3", "blocks/norm3", bias=True),
        *_linear("blocks.{i}.ffn.0", "blocks/ffn/fc_in"), *_linear("blocks.{i}.ffn.2", "blocks/ffn/fc_out"),
    ]
    if cfg.has_cam_encoder:
        block += _linear("blocks.{i}.cam_encoder", "blocks/cam_encoder") + _linear("blocks.{i}.projector", "blocks/projector")
    if cfg.has_mvs:
        block += [Entry("blocks.{i}.modulation_mvs", ("blocks", "modulation_mvs"), SAME),
                  *_attention("blocks.{i}.mvs_attn", "blocks/mvs_attn")]
    return table + block


# diffusers -> original ----------------------------------------------------------------------------------------
# Pure renames (spec wan.md 4.4). Note the norm swap: diffusers norm2 is the original's affine norm3.
DIFFUSERS_TOP_LEVEL = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos",
    "scale_shift_table": "head.modulation",
    "proj_out": "head.head",
    "patch_embedding": "patch_embedding",
}
DIFFUSERS_BLOCK = {
    "scale_shift_table": "modulation",
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "norm2": "norm3",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
# Present in some diffusers I2V checkpoints but unused by the model (spec wan.md 2.10).
DIFFUSERS_IGNORED = re.compile(r"^blocks\.\d+\.attn2\.norm_added_q\.")
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(name: str, table: dict[str, str]) -> str | None:
    for prefix in sorted(table, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return table[prefix] + name[len(prefix):]
    return None


def is_diffusers_naming(keys) -> bool:
    return any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys)


def diffusers_to_original(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Renames a diffusers state dict; returns it and the keys that have no original counterpart."""
    out, unknown = {}, []
    for key, value in state.items():
        if DIFFUSERS_IGNORED.match(key):
            continue
        block = _BLOCK_KEY.match(key)
        renamed = (_rename(block.group(2), DIFFUSERS_BLOCK) if block else _rename(key, DIFFUSERS_TOP_LEVEL))
        if renamed is None:
            unknown.append(key)
            continue
        out[f"blocks.{block.group(1)}.{renamed}" if block else renamed] = value
    return out, unknown


def strip_wrapper_prefixes(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops training-wrapper prefixes shared by every key (`module.`, `model.`, `model.diffusion_model.`, ...)."""
    for prefix in ("module.", "model.diffusion_model.", "model.", "dit.", "pipe.dit.", "diffusion_model."):
        if state and all(k.startswith(prefix) for k in state):
            return strip_wrapper_prefixes({k[len(prefix):]: v for k, v in state.items()})
    return state


# Variant detection --------------------------------------------------------------------------------------------
def detect_config(state: dict[str, np.ndarray], num_heads: int | None = None, variant: str | None = None,
                  head_dim: int = 128) -> tuple[DiTConfig, list[str]]:
    """Infers the DiTConfig of an original-naming state dict from its keys and shapes.

    Returns the config and human-readable notes on what was found. Wan checkpoints do not record the head
    count; it defaults to dim / 128 (true for every released Wan2.1 model).
    """
    if "patch_embedding.weight" not in state:
        raise ValueError("not a Wan DiT checkpoint: no 'patch_embedding.weight' key (found e.g. "
                         f"{sorted(state)[:5]})")
    dim, in_dim, *patch = state["patch_embedding.weight"].shape
    block_ids = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    num_layers = max(block_ids) + 1 if block_ids else 0
    notes = []
    if variant is None:
        if "blocks.0.mvs_attn.q.weight" in state:
            variant = "syncam"
        elif "blocks.0.cam_encoder.weight" in state:
            variant = "recam"
        elif "img_emb.proj.1.weight" in state or "blocks.0.cross_attn.k_img.weight" in state:
            # Wan2.1 ships I2V only at 14B; an image-conditioned 1.3B is CamCloneMaster's adapted model.
            variant = "camclone" if dim == 1536 else "i2v"
            if variant == "camclone":
                notes.append("image branch on a 1536-wide model: CamCloneMaster (pass --variant i2v for plain I2V)")
        else:
            variant = "t2v"
    patch_size = tuple(int(p) for p in patch)
    out_dim = state["head.head.weight"].shape[0] // int(np.prod(patch_size)) if "head.head.weight" in state else 16
    fields = dict(variant=variant, dim=int(dim), in_dim=int(in_dim), out_dim=int(out_dim), patch_size=patch_size,
                  num_layers=num_layers, num_heads=int(num_heads or dim // head_dim))
    if "blocks.0.ffn.0.weight" in state:
        fields["ffn_dim"] = int(state["blocks.0.ffn.0.weight"].shape[0])
    if "text_embedding.0.weight" in state:
        fields["text_dim"] = int(state["text_embedding.0.weight"].shape[1])
    if "time_embedding.0.weight" in state:
        fields["freq_dim"] = int(state["time_embedding.0.weight"].shape[1])
    if "img_emb.proj.1.weight" in state:
        fields["image_dim"] = int(state["img_emb.proj.1.weight"].shape[1])
    if "blocks.0.cam_encoder.weight" in state:
        fields["cam_dim"] = int(state["blocks.0.cam_encoder.weight"].shape[1])
    return DiTConfig(**fields), notes
