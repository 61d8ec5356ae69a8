"""Converted checkpoint directories: save and load a `WanDiT` without torch.

Layout of a directory written by `python -m convert` (or `save_dit`):
  config.json   the DiTConfig (variant, sizes, dtypes)
  params/       an orbax checkpoint of the parameter tree (blocks stacked on the leading axis)

    from camclone_jax.models.loading import load_dit
    model = load_dit("ckpt/camclonemaster", dtype="bfloat16")   # ready to call
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from camclone_jax.models.presets import DiTConfig
from camclone_jax.models.wan_dit import WanDiT

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def abstract_dit(cfg: DiTConfig) -> WanDiT:
    """The model with ShapeDtypeStruct leaves: shapes, dtypes and logical axes, no memory."""
    return nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))


def save_dit(directory: str | Path, cfg: DiTConfig, params: dict[str, Any]) -> Path:
    """Writes `params` (a pure nested dict, as `nnx.state(model, nnx.Param).to_pure_dict()`) and `cfg`."""
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / PARAMS_DIR).exists():
        raise FileExistsError(f"{directory / PARAMS_DIR} already exists; choose an empty output directory")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, params)
        checkpointer.wait_until_finished()
    (directory / CONFIG_FILE).write_text(cfg.to_json())
    return directory


def read_config(directory: str | Path) -> DiTConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a converted DiT directory (run `python -m convert SRC DST`)")
    return DiTConfig.from_json(path.read_text())


def load_dit_params(directory: str | Path, cfg: DiTConfig | None = None, shardings=None) -> dict[str, Any]:
    """The parameter tree as stored (dtype of the file), checked against the shapes `cfg` implies."""
    directory = Path(directory).absolute()
    cfg = cfg or read_config(directory)
    abstract = nnx.state(abstract_dit(cfg), nnx.Param).to_pure_dict()
    stored = ocp.StandardCheckpointer().metadata(directory / PARAMS_DIR)
    stored = getattr(stored, "item_metadata", stored)
    target = jax.tree.map(lambda a, m: jax.ShapeDtypeStruct(a.shape, m.dtype), abstract, dict(stored))
    if shardings is not None:
        target = jax.tree.map(lambda t, s: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=s), target, shardings)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(directory / PARAMS_DIR, target)


def load_dit(directory: str | Path, **overrides: Any) -> WanDiT:
    """A ready `WanDiT` from a converted directory. `overrides` replace config fields such as `dtype`
    ("bfloat16" compute), `param_dtype` (parameters are cast on load), `attention` or `remat`."""
    cfg = read_config(directory).replace(**overrides)
    params = load_dit_params(directory, cfg)
    model = abstract_dit(cfg)
    state = nnx.state(model, nnx.Param)
    params = jax.tree.map(lambda p: jax.numpy.asarray(p, cfg.jnp_param_dtype), params)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model
