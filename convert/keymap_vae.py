"""Declarative key table between Wan2.1 VAE checkpoints and the `WanVAE` parameter tree.

Namings:
  original   `Wan2.1_VAE.pth` / DiffSynth (`encoder.downsamples.3.residual.2.weight`); the canonical torch naming.
  diffusers  `AutoencoderKLWan` (`encoder.down_blocks.3.conv1.weight`); renamed to original first.
  jax        `WanVAE` paths (`encoder/downsamples/3/conv1/kernel`); list indices are ints.
The table is generated from the same layer plans that build the model (`wan_vae.encoder_plan`/`decoder_plan`).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from camclone_jax.models.wan_vae import VAEConfig, decoder_plan, encoder_plan
from convert.keymap_wan import CONV3D, SAME, Transform

CONV2D = Transform("conv2d", (2, 3, 1, 0))  # weight [O, I, H, W] -> kernel [H, W, I, O]


@dataclasses.dataclass(frozen=True)
class Gamma:
    """RMS_norm.gamma [C, 1, 1(, 1)] <-> scale [C]."""
    trailing: int
    name: str = "gamma"

    def to_jax(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0])

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], *(1,) * self.trailing)

    def torch_shape(self, jax_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (jax_shape[0], *(1,) * self.trailing)


@dataclasses.dataclass(frozen=True)
class VAEEntry:
    torch_key: str
    jax_path: tuple[str | int, ...]
    transform: Transform | Gamma


def _conv(torch_prefix: str, path: tuple, transform=CONV3D) -> list[VAEEntry]:
    return [VAEEntry(f"{torch_prefix}.weight", (*path, "kernel"), transform),
            VAEEntry(f"{torch_prefix}.bias", (*path, "bias"), SAME)]


def _residual(torch_prefix: str, path: tuple, in_dim: int, out_dim: int) -> list[VAEEntry]:
    out = [VAEEntry(f"{torch_prefix}.residual.0.gamma", (*path, "norm1", "scale"), Gamma(3)),
           *_conv(f"{torch_prefix}.residual.2", (*path, "conv1")),
           VAEEntry(f"{torch_prefix}.residual.3.gamma", (*path, "norm2", "scale"), Gamma(3)),
           *_conv(f"{torch_prefix}.residual.6", (*path, "conv2"))]
    return out + (_conv(f"{torch_prefix}.shortcut", (*path, "shortcut")) if in_dim != out_dim else [])


def _resample(torch_prefix: str, path: tuple, mode: str) -> list[VAEEntry]:
    out = _conv(f"{torch_prefix}.resample.1", (*path, "conv"), CONV2D)
    return out + (_conv(f"{torch_prefix}.time_conv", (*path, "time_conv")) if mode.endswith("3d") else [])


def _layers(torch_prefix: str, path: tuple, plan) -> list[VAEEntry]:
    out = []
    for i, (kind, a, b) in enumerate(plan):
        prefix, where = f"{torch_prefix}.{i}", (*path, i)
        out += _residual(prefix, where, a, b) if kind == "res" else _resample(prefix, where, b)
    return out


def _middle(torch_prefix: str, path: tuple, dim: int) -> list[VAEEntry]:
    attn = (*path, 1)
    return [*_residual(f"{torch_prefix}.0", (*path, 0), dim, dim),
            VAEEntry(f"{torch_prefix}.1.norm.gamma", (*attn, "norm", "scale"), Gamma(2)),
            *_conv(f"{torch_prefix}.1.to_qkv", (*attn, "to_qkv"), CONV2D),
            *_conv(f"{torch_prefix}.1.proj", (*attn, "proj"), CONV2D),
            *_residual(f"{torch_prefix}.2", (*path, 2), dim, dim)]


def vae_table(cfg: VAEConfig) -> list[VAEEntry]:
    """Every parameter of a `WanVAE` with `cfg`, in original torch naming."""
    top = cfg.dim * cfg.dim_mult[-1]
    return [
        *_conv("encoder.conv1", ("encoder", "conv_in")),
        *_layers("encoder.downsamples", ("encoder", "downsamples"), encoder_plan(cfg)),
        *_middle("encoder.middle", ("encoder", "middle"), top),
        VAEEntry("encoder.head.0.gamma", ("encoder", "norm_out", "scale"), Gamma(3)),
        *_conv("encoder.head.2", ("encoder", "conv_out")),
        *_conv("conv1", ("quant_conv",)),
        *_conv("conv2", ("post_quant_conv",)),
        *_conv("decoder.conv1", ("decoder", "conv_in")),
        *_middle("decoder.middle", ("decoder", "middle"), top),
        *_layers("decoder.upsamples", ("decoder", "upsamples"), decoder_plan(cfg)),
        VAEEntry("decoder.head.0.gamma", ("decoder", "norm_out", "scale"), Gamma(3)),
        *_conv("decoder.head.2", ("decoder", "conv_out")),
    ]


# diffusers -> original ----------------------------------------------------------------------------------------
_DIFFUSERS_TOP = {"encoder.conv_in": "encoder.conv1", "encoder.norm_out": "encoder.head.0",
                  "encoder.conv_out": "encoder.head.2", "decoder.conv_in": "decoder.conv1",
                  "decoder.norm_out": "decoder.head.0", "decoder.conv_out": "decoder.head.2",
                  "quant_conv": "conv1", "post_quant_conv": "conv2"}
_DIFFUSERS_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6",
                       "conv_shortcut": "shortcut"}
_MID = re.compile(r"^(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)$")
_DOWN = re.compile(r"^encoder\.down_blocks\.(\d+)\.(.+)$")
_UP = re.compile(r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)$")


def _residual_rename(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_DIFFUSERS_RESIDUAL.get(head, head)}.{tail}"


def is_vae_state(keys) -> bool:
    return any(k.startswith(("encoder.conv1.", "encoder.conv_in.", "decoder.conv1.")) for k in keys)


def is_diffusers_vae(keys) -> bool:
    return any(k.startswith(("encoder.conv_in.", "encoder.down_blocks.", "decoder.up_blocks.")) for k in keys)


def diffusers_vae_to_original(state: dict[str, np.ndarray],
                              num_res_blocks: int = 2) -> tuple[dict[str, np.ndarray], list[str]]:
    """Renames an `AutoencoderKLWan` state dict; returns it and the keys that have no original counterpart.

    diffusers nests the decoder as up_blocks.i.{resnets.j, upsamplers.0}; the original flattens it into
    `decoder.upsamples.N` with N = i * (num_res_blocks + 2) + j (the upsampler comes last in each stage).
    """
    out, unknown = {}, []
    per_stage = num_res_blocks + 2
    for key, value in state.items():
        top = next((p for p in _DIFFUSERS_TOP if key.startswith(p + ".")), None)
        if top:
            out[_DIFFUSERS_TOP[top] + key[len(top):]] = value
        elif m := _MID.match(key):
            side, kind, j, rest = m.groups()
            index = 1 if kind == "attentions" else 2 * int(j)
            out[f"{side}.middle.{index}.{rest if kind == 'attentions' else _residual_rename(rest)}"] = value
        elif m := _DOWN.match(key):
            i, rest = m.groups()
            resample = rest.startswith(("resample.", "time_conv."))
            out[f"encoder.downsamples.{i}.{rest if resample else _residual_rename(rest)}"] = value
        elif m := _UP.match(key):
            i, kind, j, rest = m.groups()
            if kind == "upsamplers":
                out[f"decoder.upsamples.{int(i) * per_stage + num_res_blocks + 1}.{rest}"] = value
            else:
                out[f"decoder.upsamples.{int(i) * per_stage + int(j)}.{_residual_rename(rest)}"] = value
        else:
            unknown.append(key)
    return out, unknown


def detect_vae_config(state: dict[str, np.ndarray]) -> VAEConfig:
    """Infers the VAEConfig of an original-naming state dict from its encoder layout."""
    if "encoder.conv1.weight" not in state or "conv2.weight" not in state:
        raise ValueError("not a Wan VAE checkpoint: 'encoder.conv1.weight' or 'conv2.weight' is missing")
    dim = int(state["encoder.conv1.weight"].shape[0])
    z_dim = int(state["conv2.weight"].shape[0])
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^encoder\.downsamples\.(\d+)\.", k))})
    stages, temporal, res_in_stage, num_res_blocks = [], [], 0, None
    for i in indices:
        prefix = f"encoder.downsamples.{i}."
        if prefix + "residual.2.weight" in state:
            res_in_stage += 1
            out_dim = int(state[prefix + "residual.2.weight"].shape[0])
        elif prefix + "resample.1.weight" in state:
            temporal.append(prefix + "time_conv.weight" in state)
            stages.append(out_dim // dim)
            num_res_blocks = num_res_blocks or res_in_stage
            res_in_stage = 0
    if res_in_stage:
        stages.append(out_dim // dim)
    return VAEConfig(dim=dim, z_dim=z_dim, dim_mult=tuple(stages), num_res_blocks=num_res_blocks or res_in_stage,
                     temporal_downsample=tuple(temporal))
