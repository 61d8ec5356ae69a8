"""Converted checkpoint directories: save and load a `WanDiT` or a `WanVAE` without torch.

Layout of a directory written by `python -m convert` (or `save_dit` / `save_vae`):
  config.json   the DiTConfig or VAEConfig (a VAE's carries "model": "wan_vae")
  params/       an orbax checkpoint of the parameter tree (DiT blocks stacked on the leading axis)

    from camclone_jax.models.loading import load_dit, load_vae
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

from camclone_jax.models.presets import DiTConfig
from camclone_jax.models.wan_dit import WanDiT
from camclone_jax.models.wan_vae import VAEConfig, WanVAE

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def abstract_dit(cfg: DiTConfig) -> WanDiT:
    """The model with ShapeDtypeStruct leaves: shapes, dtypes and logical axes, no memory."""
    return nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))


def abstract_vae(cfg: VAEConfig) -> WanVAE:
    return nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0)))


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
    target = jax.tree.map(lambda a, m: jax.ShapeDtypeStruct(a.shape, m.dtype), _str_keys(abstract), dict(stored))
    if shardings is not None:
        target = jax.tree.map(lambda t, s: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=s), target,
                              _str_keys(shardings))
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
    """"dit" or "vae": what a converted directory holds."""
    return "vae" if _read_json(directory, "model").get("model") == "wan_vae" else "dit"


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
    if fields.get("model") == "wan_vae":
        raise ValueError(f"{directory} holds a converted VAE, not a DiT; load it with load_vae")
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


# VAE ----------------------------------------------------------------------------------------------------------
def save_vae(directory: str | Path, cfg: VAEConfig, params: dict[Any, Any]) -> Path:
    return _save(directory, cfg.to_json(), params)


def read_vae_config(directory: str | Path) -> VAEConfig:
    fields = _read_json(directory, "VAE")
    if fields.get("model") != "wan_vae":
        raise ValueError(f"{directory} does not hold a converted Wan VAE (its config.json describes a DiT)")
    return VAEConfig.from_json(json.dumps(fields))


def load_vae_params(directory: str | Path, cfg: VAEConfig | None = None) -> dict[Any, Any]:
    directory = Path(directory).absolute()
    cfg = cfg or read_vae_config(directory)
    return _restore(directory, nnx.state(abstract_vae(cfg), nnx.Param).to_pure_dict())


def load_vae(directory: str | Path, **overrides: Any) -> WanVAE:
    """A ready `WanVAE` from a converted directory; `overrides` such as dtype="bfloat16" replace config fields."""
    cfg = read_vae_config(directory).replace(**overrides)
    return _into_model(abstract_vae(cfg), load_vae_params(directory, cfg), cfg.param_dtype)
