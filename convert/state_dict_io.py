"""Reading PyTorch-side checkpoints into flat `{key: numpy array}` dicts, and writing safetensors.

Formats: `.safetensors` (read lazily with numpy, bf16 through ml_dtypes; no torch needed), torch pickles
(`.pth`, `.pt`, `.ckpt`, `.bin`: plain state dict, Lightning `state_dict`, DeepSpeed `module`; loaded with
`weights_only=True`, never executing pickled code), and diffusers folders (`config.json` plus one or sharded
`diffusion_pytorch_model*.safetensors`, also inside a `transformer/` subfolder).
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message names the file and the offending keys."""


PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        with safe_open(str(path), framework="np") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ConversionError(f"{path}: not a readable safetensors file ({err})") from err


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.detach().cpu().contiguous().view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.detach().cpu().contiguous().numpy()


def read_torch_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as err:
        raise ConversionError(f"{path}: reading torch pickles needs PyTorch: pip install 'camclone_jax[convert]' "
                              "(or convert the checkpoint to .safetensors first)") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ConversionError(f"{path}: refused to load: it is not a plain weights file that torch.load(..., "
                              f"weights_only=True) accepts, and pickled code is never executed ({err})") from err
    for wrapper in ("state_dict", "module", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    not_tensors = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"{path}: entries that are not tensors: {not_tensors[:20]}")
    return {k: _torch_to_numpy(v) for k, v in obj.items()}


def read_diffusers_folder(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    if (path / "transformer").is_dir() and not (path / "config.json").exists():
        path = path / "transformer"
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
    index = path / "diffusion_pytorch_model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{path}: folder holds no *.safetensors weights (expected a diffusers transformer folder)")
    state = {}
    for name in files:
        state.update(read_safetensors(path / name))
    return state, config


def read_state_dict(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Returns (flat state dict, diffusers config.json contents or {})."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_diffusers_folder(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path), {}
    if path.suffix in PICKLE_SUFFIXES:
        return read_torch_pickle(path), {}
    raise ConversionError(f"{path}: unknown checkpoint type; expected .safetensors, {', '.join(PICKLE_SUFFIXES)} "
                          "or a diffusers folder")


def check_keys(state: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], header: str):
    """Raises one ConversionError naming every missing, unexpected and misshapen key (under `header`)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k}: expected {expected[k]}, got {tuple(state[k].shape)}" for k in sorted(set(state) & set(expected))
                 if tuple(state[k].shape) != tuple(expected[k])]
    if missing or unexpected or misshapen:
        lines = [header]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshapen)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise ConversionError("\n".join(lines))


def leaves(tree):
    """The arrays of a nested parameter dict, in insertion order."""
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    else:
        yield tree


def write_safetensors(state: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None):
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path), metadata=metadata)
