"""Converted checkpoint directories: save and load the DiT, the VAE and the umT5 / CLIP encoders without torch.

Layout of a directory written by `python -m convert` (or `save_dit` / `save_model`):
  config.json   the model's config; all but the DiT's name their model ("wan_vae", "umt5", "clip_vision")
  params/       an orbax checkpoint of the parameter tree (DiT blocks stacked on the leading axis)

    from camclone_jax.models.loading import load_clip, load_dit, load_umt5, load_vae
    model = load_dit("ckpt/camclonemaster", dtype="bfloat16")   # ready to call
    vae = load_vae("ckpt/wan_vae")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from camclone_jax.models.clip_vision import CLIPVisionConfig, CLIPVisionEncoder
from camclone_jax.models.presets import DiTConfig
from camclone_jax.models.umt5 import UMT5Config, UMT5Encoder
from camclone_jax.models.wan_dit import WanDiT
from camclone_jax.models.wan_vae import VAEConfig, WanVAE

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def abstract_dit(cfg: DiTConfig) -> WanDiT:
    """The model with ShapeDtypeStruct leaves: shapes, dtypes and logical axes, no memory."""
    return nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))


def _save(directory: str | Path, config_json: str, params: dict[Any, Any]) -> Path:
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / PARAMS_DIR).exists():
        raise FileExistsError(f"{directory / PARAMS_DIR} already exists; choose an empty output directory")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, _str_keys(params))
        checkpointer.wait_until_finished()
    (directory / CONFIG_FILE).write_text(config_json)
    return directory


def _restore(directory: Path, abstract: dict[Any, Any], shardings=None) -> dict[Any, Any]:
    """Restores params/ as stored (dtype of the file) into the structure of `abstract` (a pure dict)."""
    stored = ocp.StandardCheckpointer().metadata(directory / PARAMS_DIR)
    stored = getattr(stored, "item_metadata", stored)
    if shardings is None:
        # Without a target sharding orbax falls back to the one saved beside the arrays ("cpu:0" for the shipped
        # assets), which a GPU or TPU process cannot build ("Topology mismatch"): load onto this process's device.
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree.map(lambda _: device, abstract)
    target = jax.tree.map(lambda a, m, s: jax.ShapeDtypeStruct(a.shape, m.dtype, sharding=s),
                          _str_keys(abstract), dict(stored), _str_keys(shardings))
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(directory / PARAMS_DIR, target)
    return _like(abstract, restored)


def _str_keys(tree):
    """Orbax stores mapping keys as strings; nnx.List indices are ints in the model's pure dict."""
    return {str(k): _str_keys(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _like(reference, tree):
    if isinstance(reference, dict):
        return {k: _like(v, tree[str(k)]) for k, v in reference.items()}
    return tree


def _read_json(directory: str | Path, what: str) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a converted {what} directory (run `python -m convert SRC DST`)")
    return json.loads(path.read_text())


def checkpoint_kind(directory: str | Path) -> str:
    """"dit", "vae", "umt5" or "clip": what a converted directory holds."""
    return _MODELS.get(_read_json(directory, "model").get("model"), ("dit",))[0]


def _into_model(abstract_model, params, param_dtype):
    state = nnx.state(abstract_model, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda p: jax.numpy.asarray(p, param_dtype), params))
    nnx.update(abstract_model, state)
    return abstract_model


# DiT ----------------------------------------------------------------------------------------------------------
def save_dit(directory: str | Path, cfg: DiTConfig, params: dict[str, Any]) -> Path:
    """Writes `params` (a pure nested dict, as `nnx.state(model, nnx.Param).to_pure_dict()`) and `cfg`."""
    return _save(directory, cfg.to_json(), params)


def read_config(directory: str | Path) -> DiTConfig:
    fields = _read_json(directory, "DiT")
    if fields.get("model") in _MODELS:
        kind = _MODELS[fields["model"]][0]
        raise ValueError(f"{directory} holds a converted {kind}, not a DiT; load it with load_{kind}")
    return DiTConfig.from_json(json.dumps(fields))


def load_dit_params(directory: str | Path, cfg: DiTConfig | None = None, shardings=None) -> dict[str, Any]:
    """The parameter tree as stored (dtype of the file), checked against the shapes `cfg` implies."""
    directory = Path(directory).absolute()
    cfg = cfg or read_config(directory)
    return _restore(directory, nnx.state(abstract_dit(cfg), nnx.Param).to_pure_dict(), shardings)


def load_dit(directory: str | Path, **overrides: Any) -> WanDiT:
    """A ready `WanDiT` from a converted directory. `overrides` replace config fields such as `dtype`
    ("bfloat16" compute), `param_dtype` (parameters are cast on load), `attention` or `remat`."""
    cfg = read_config(directory).replace(**overrides)
    return _into_model(abstract_dit(cfg), load_dit_params(directory, cfg), cfg.jnp_param_dtype)


# VAE, text and image encoders: config.json names its model ---------------------------------------------------
_MODELS = {  # config.json "model" -> (short kind, config class, module class)
    "wan_vae": ("vae", VAEConfig, WanVAE),
    "umt5": ("umt5", UMT5Config, UMT5Encoder),
    "clip_vision": ("clip", CLIPVisionConfig, CLIPVisionEncoder),
}


def abstract_model(cfg):
    """Any converted model (DiT, VAE, umT5, CLIP) with ShapeDtypeStruct leaves."""
    if isinstance(cfg, DiTConfig):
        return abstract_dit(cfg)
    module = next(m for _, c, m in _MODELS.values() if isinstance(cfg, c))
    return nnx.eval_shape(lambda: module(cfg, rngs=nnx.Rngs(0)))


def abstract_vae(cfg: VAEConfig) -> WanVAE:
    return abstract_model(cfg)


def save_model(directory: str | Path, cfg, params: dict[Any, Any]) -> Path:
    """Writes a VAE / umT5 / CLIP config (its to_json names the model) and its parameter tree."""
    return _save(directory, cfg.to_json(), params)


save_vae = save_model


def _read_kind(directory: str | Path, kind: str):
    fields = _read_json(directory, kind)
    found = _MODELS.get(fields.get("model"), ("dit",))[0]
    if found != kind:
        raise ValueError(f"{directory} holds a converted {found}, not a {kind}; load it with load_{found}")
    return _MODELS[fields["model"]][1].from_json(json.dumps(fields))


def load_model_params(directory: str | Path, cfg) -> dict[Any, Any]:
    return _restore(Path(directory).absolute(), nnx.state(abstract_model(cfg), nnx.Param).to_pure_dict())


def _load(directory: str | Path, kind: str, overrides: dict[str, Any]):
    cfg = _read_kind(directory, kind).replace(**overrides)
    return _into_model(abstract_model(cfg), load_model_params(directory, cfg), cfg.param_dtype)


def read_vae_config(directory: str | Path) -> VAEConfig:
    return _read_kind(directory, "vae")


def load_vae_params(directory: str | Path, cfg: VAEConfig | None = None) -> dict[Any, Any]:
    return load_model_params(directory, cfg or read_vae_config(directory))


def load_vae(directory: str | Path, **overrides: Any) -> WanVAE:
    """A ready `WanVAE` from a converted directory; `overrides` such as dtype="bfloat16" replace config fields."""
    return _load(directory, "vae", overrides)


def load_umt5(directory: str | Path, **overrides: Any) -> UMT5Encoder:
    """A ready umT5 encoder from a converted `models_t5_umt5-xxl-enc-bf16.pth` or HF UMT5EncoderModel."""
    return _load(directory, "umt5", overrides)


def load_clip(directory: str | Path, **overrides: Any) -> CLIPVisionEncoder:
    """A ready CLIP ViT-H/14 visual tower from a converted `models_clip_open-clip-...-vit-huge-14.pth`."""
    return _load(directory, "clip", overrides)


def read_model_config(directory: str | Path):
    """The config of whatever a converted directory holds."""
    kind = checkpoint_kind(directory)
    return read_config(directory) if kind == "dit" else _read_kind(directory, kind)
