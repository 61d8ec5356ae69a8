"""Declarative key table between umT5 encoder checkpoints and the `UMT5Encoder` parameter tree (spec wan.md 6.5).

Namings:
  original  Wan2.1 `models_t5_umt5-xxl-enc-bf16.pth` / DiffSynth (`blocks.3.attn.q.weight`); the canonical naming.
  hf        transformers `UMT5EncoderModel` / `google/umt5-xxl` (`encoder.block.3.layer.0.SelfAttention.q.weight`);
            renamed to original first. `shared.weight` and `encoder.embed_tokens.weight` are the same tied tensor.
  jax       `UMT5Encoder` paths with blocks stacked on a leading axis (`blocks/attn/q/kernel[3]`).
"""

from __future__ import annotations

import re

import numpy as np

from camclone_jax.models.umt5 import UMT5Config
from convert.keymap_wan import LINEAR, SAME, Entry
from convert.state_dict_io import ConversionError


def umt5_table(cfg: UMT5Config) -> list[Entry]:
    """Every parameter of a `UMT5Encoder`, in original torch naming; per-block entries hold `{i}`."""
    del cfg  # every umT5 encoder has the same parameter set
    block = [Entry(f"blocks.{{i}}.attn.{n}.weight", ("blocks", "attn", n, "kernel"), LINEAR) for n in "qkvo"]
    block += [
        Entry("blocks.{i}.pos_embedding.embedding.weight", ("blocks", "pos_embedding"), SAME),
        Entry("blocks.{i}.norm1.weight", ("blocks", "norm1", "scale"), SAME),
        Entry("blocks.{i}.ffn.gate.0.weight", ("blocks", "ffn", "gate", "kernel"), LINEAR),
        Entry("blocks.{i}.ffn.fc1.weight", ("blocks", "ffn", "fc1", "kernel"), LINEAR),
        Entry("blocks.{i}.ffn.fc2.weight", ("blocks", "ffn", "fc2", "kernel"), LINEAR),
        Entry("blocks.{i}.norm2.weight", ("blocks", "norm2", "scale"), SAME),
    ]
    return [Entry("token_embedding.weight", ("token_embedding",), SAME), *block,
            Entry("norm.weight", ("norm", "scale"), SAME)]


# HF -> original -----------------------------------------------------------------------------------------------
HF_EMBEDDING = ("shared.weight", "encoder.embed_tokens.weight")  # tied: either or both may be stored
HF_TOP = {"encoder.final_layer_norm.weight": "norm.weight"}
HF_BLOCK = {
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",  # the GELU branch
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
}
_HF_BLOCK_KEY = re.compile(r"^encoder\.block\.(\d+)\.(.+)$")


def is_hf_umt5_state(keys) -> bool:
    return any(k.startswith("encoder.block.") and "SelfAttention.relative_attention_bias" in k for k in keys)


def is_umt5_state(keys) -> bool:
    """True for a umT5 encoder in original or HF naming (a relative-position table in the blocks)."""
    keys = list(keys)
    original = any(re.match(r"^blocks\.\d+\.pos_embedding\.embedding\.weight$", k) for k in keys)
    return original or is_hf_umt5_state(keys)


def to_original_naming(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """HF `UMT5EncoderModel` state dict -> original naming; returns it and the keys with no original counterpart
    (e.g. a full seq2seq checkpoint's `decoder.*`, `lm_head.*`). Identity on an original-naming state dict."""
    if not is_hf_umt5_state(state):
        return dict(state), []
    out, unknown = {}, []
    embeddings = [k for k in HF_EMBEDDING if k in state]
    if len(embeddings) == 2 and not np.array_equal(state[embeddings[0]], state[embeddings[1]]):
        raise ConversionError("shared.weight and encoder.embed_tokens.weight differ; a umT5 encoder ties them")
    for key, value in state.items():
        if key in HF_EMBEDDING:
            out["token_embedding.weight"] = value
        elif key in HF_TOP:
            out[HF_TOP[key]] = value
        elif (m := _HF_BLOCK_KEY.match(key)) and m.group(2) in HF_BLOCK:
            out[f"blocks.{m.group(1)}.{HF_BLOCK[m.group(2)]}"] = value
        else:
            unknown.append(key)
    return out, unknown


def detect_umt5_config(state: dict[str, np.ndarray]) -> UMT5Config:
    """Infers the UMT5Config of an original-naming state dict from its shapes (max_distance is not stored; the
    umT5 value 128 is assumed)."""
    needed = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
              "blocks.0.pos_embedding.embedding.weight")
    if missing := [k for k in needed if k not in state]:
        raise ValueError(f"not a umT5 encoder checkpoint in original naming: missing {missing}")
    vocab_size, dim = state["token_embedding.weight"].shape
    num_buckets, num_heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    num_layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k)))
    return UMT5Config(vocab_size=int(vocab_size), dim=int(dim), dim_attn=int(state["blocks.0.attn.q.weight"].shape[0]),
                      dim_ffn=int(state["blocks.0.ffn.fc1.weight"].shape[0]), num_heads=int(num_heads),
                      num_layers=num_layers, num_buckets=int(num_buckets))
