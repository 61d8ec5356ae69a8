"""PyTorch oracles for parity tests: diffusers models and diffsynth's original-key Wan modules.

diffsynth 2.1.12 is installed with --no-deps; its package `__init__` imports torchvision and half the
ecosystem, so its model files are loaded with stand-in parent packages that skip those `__init__`s.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def diffsynth_module(name: str):
    """Imports `diffsynth.<name>` without executing the `__init__.py` of `diffsynth`, `diffsynth.models`,
    `diffsynth.core` or `diffsynth.diffusion` (which import torchvision and the trainer)."""
    if not getattr(sys.modules.get("diffsynth"), "_camclone_stub", False):
        spec = importlib.util.find_spec("diffsynth")
        if spec is None:
            pytest.skip("diffsynth==2.1.12 is not installed (pip install --no-deps diffsynth==2.1.12)")
        root = Path(list(spec.submodule_search_locations)[0])
        for package, sub in (("diffsynth", ""), ("diffsynth.models", "models"), ("diffsynth.core", "core"),
                             ("diffsynth.diffusion", "diffusion")):
            stub = types.ModuleType(package)
            stub.__path__ = [str(root / sub)]
            stub.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
            stub._camclone_stub = True
            sys.modules[package] = stub
    return importlib.import_module(f"diffsynth.{name}")


def randomize_(module: "torch.nn.Module", seed: int = 0, norm_jitter: float = 0.2, scale: float = 1.0):
    """Overwrites every parameter (norm weights, biases, modulation tables included) with random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name and name.endswith("weight") or name.endswith(("img_emb.proj.0.weight",
                                                                              "img_emb.proj.4.weight")):
                p.copy_(1.0 + norm_jitter * noise)
            elif p.ndim >= 2 and "modulation" not in name and "scale_shift_table" not in name:
                p.copy_(scale * noise / np.sqrt(np.prod(p.shape[1:])))
            else:
                p.copy_(0.2 * noise)
    return module


def diffsynth_wan(cfg, seed: int = 0):
    """diffsynth's original-key WanModel for a camclone_jax DiTConfig (t2v or has_image_input)."""
    dit = diffsynth_module("models.wan_video_dit")
    model = dit.WanModel(dim=cfg.dim, in_dim=cfg.in_dim, ffn_dim=cfg.ffn_dim, out_dim=cfg.out_dim,
                         text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, eps=cfg.eps, patch_size=cfg.patch_size,
                         num_heads=cfg.num_heads, num_layers=cfg.num_layers, has_image_input=cfg.has_image_input)
    return randomize_(model.eval(), seed)


def diffsynth_forward(model, x, timestep, context, clip_feature=None, y=None):
    """diffsynth's `model_fn_wan_video` on its plain Wan path (no VACE, TeaCache, sequence parallel...).

    `WanModel.forward` of diffsynth 2.1.12 cannot run (its `patchify` returns one tensor where `forward`
    unpacks two), and the pipeline module that holds `model_fn_wan_video` imports torchvision; so the same
    sequence of calls is made here, every piece of math being diffsynth's own module or function.
    """
    from einops import rearrange

    dit = diffsynth_module("models.wan_video_dit")
    t = model.time_embedding(dit.sinusoidal_embedding_1d(model.freq_dim, timestep))
    t_mod = model.time_projection(t).unflatten(1, (6, model.dim))
    context = model.text_embedding(context)
    if y is not None:
        x = torch.cat([x, y], dim=1)
    if clip_feature is not None:
        context = torch.cat([model.img_emb(clip_feature), context], dim=1)
    x = model.patchify(x)
    f, h, w = x.shape[2:]
    x = rearrange(x, "b c f h w -> b (f h w) c").contiguous()
    freqs = torch.cat([
        model.freqs[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
        model.freqs[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
        model.freqs[2][:w].view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, 1, -1)
    for block in model.blocks:
        x = block(x, context, t_mod, freqs)
    return model.unpatchify(model.head(x, t), (f, h, w))


def diffusers_wan(cfg, seed: int = 0):
    """diffusers' WanTransformer3DModel for a camclone_jax DiTConfig (t2v or i2v)."""
    from diffusers import WanTransformer3DModel

    image = dict(image_dim=cfg.image_dim, added_kv_proj_dim=cfg.dim) if cfg.has_image_input else {}
    model = WanTransformer3DModel(patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads,
                                  attention_head_dim=cfg.head_dim, in_channels=cfg.in_dim, out_channels=cfg.out_dim,
                                  text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim,
                                  num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                  eps=cfg.eps, **image)
    return randomize_(model.eval(), seed)


def save_state_dict(model: "torch.nn.Module", path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def to_torch(a) -> "torch.Tensor":
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32)))


def channels_first(a) -> "torch.Tensor":
    """[B, F, H, W, C] -> torch [B, C, F, H, W]."""
    return to_torch(np.moveaxis(np.asarray(a), -1, 1))


def channels_last(t: "torch.Tensor") -> np.ndarray:
    return np.moveaxis(t.detach().float().numpy(), 1, -1)


def rel_max_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
