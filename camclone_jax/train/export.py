"""A training run's weights -> a converted directory (for `python -m camclone_jax.sample --dit DIR`) or a PyTorch
safetensors file in original Wan/DiffSynth naming (for the upstream repos), through the converter's tables.

    python -m camclone_jax.train.export RUN_DIR ckpt/my_camclone              # converted directory
    python -m camclone_jax.train.export RUN_DIR my_camclone.safetensors --ema # PyTorch, EMA weights
    python -m convert --to-torch RUN_DIR my_camclone.safetensors              # the same, from the converter

The run directory holds `dit_config.json` (written by `train`) and orbax checkpoints; only the `trainable` and
`frozen` (or `ema`) parts of the newest (or `--step`) checkpoint are read, not the optimiser state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from camclone_jax.models import DiTConfig
from camclone_jax.models.loading import abstract_dit
from camclone_jax.train.checkpoint import CKPT_DIR

DIT_CONFIG = "dit_config.json"


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / DIT_CONFIG).is_file() and (path / CKPT_DIR).is_dir()


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / CKPT_DIR).iterdir()
                  if p.name.isdigit() and (p / "state").is_dir())


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if k in out and isinstance(v, dict) else v
    return out


def _align(reference: Any, tree: Any, where: str = "") -> Any:
    """`tree` (orbax: string keys) in the key types and structure of `reference`; missing leaves raise."""
    if isinstance(reference, dict):
        if not isinstance(tree, dict):
            raise ValueError(f"checkpoint has a leaf where the model has the subtree {where or '/'}")
        missing = [str(k) for k in reference if str(k) not in tree]
        if missing:
            raise ValueError(f"checkpoint lacks parameters under {where or '/'}: {', '.join(missing)}")
        return {k: _align(v, tree[str(k)], f"{where}/{k}") for k, v in reference.items()}
    if tuple(tree.shape) != tuple(reference.shape):
        raise ValueError(f"checkpoint parameter {where} has shape {tuple(tree.shape)}, the model expects "
                         f"{tuple(reference.shape)}")
    return np.asarray(tree)


def trained_params(run_dir: str | Path, *, step: int | None = None, use_ema: bool = False,
                   dtype: str | None = None) -> tuple[DiTConfig, dict[str, Any], int]:
    """-> (DiTConfig, the full parameter tree as `nnx.state(model, nnx.Param).to_pure_dict()`, step)."""
    run_dir = Path(run_dir).absolute()
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"{run_dir} is not a training run directory (needs {DIT_CONFIG} and {CKPT_DIR}/, "
                                "as `python -m camclone_jax.train --workdir` writes)")
    cfg = DiTConfig.from_json((run_dir / DIT_CONFIG).read_text())
    steps = _steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir / CKPT_DIR} holds no finished checkpoint")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"{run_dir / CKPT_DIR} has no step {step}; it has {steps}")
    path = run_dir / CKPT_DIR / str(step) / "state"
    meta = ocp.StandardCheckpointer().metadata(path)
    meta = dict(getattr(meta, "item_metadata", meta))
    parts = ("ema", "frozen") if use_ema else ("trainable", "frozen")
    if use_ema and "ema" not in meta:
        raise ValueError(f"{path} holds no EMA weights (the run had optimizer.ema_decay = 0)")
    # Onto the host, whatever mesh the run saved from: an export needs no accelerator.
    host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    target = {k: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=host), meta[k])
              for k in parts}
    with ocp.PyTreeCheckpointer() as checkpointer:
        stored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(item=target, partial_restore=True))
    reference = nnx.state(abstract_dit(cfg), nnx.Param).to_pure_dict()
    params = _align(reference, _merge(stored[parts[1]], stored[parts[0]]))
    if dtype:
        params = jax.tree.map(lambda a: a.astype(dtype), params)
    stored_dtype = np.dtype(jax.tree.leaves(params)[0].dtype).name
    return cfg.replace(param_dtype=stored_dtype), params, step


def export_run(run_dir: str | Path, dst: str | Path, *, step: int | None = None, use_ema: bool = False,
               dtype: str | None = None, log=print) -> Path:
    """Writes a converted directory, or a PyTorch .safetensors file (original naming) when `dst` ends so."""
    from camclone_jax.models.loading import save_dit

    cfg, params, step = trained_params(run_dir, step=step, use_ema=use_ema, dtype=dtype)
    dst = Path(dst)
    which = "EMA" if use_ema else "trained"
    if dst.suffix == ".safetensors":
        from convert.dit import params_to_torch
        from convert.state_dict_io import write_safetensors

        state = params_to_torch(params, cfg)
        write_safetensors(state, dst, metadata={"format": "pt", "variant": cfg.variant, "step": str(step)})
        log(f"wrote      {dst}: {len(state)} tensors in Wan/DiffSynth naming ({which} weights of step {step})")
    else:
        save_dit(dst, cfg, params)
        log(f"wrote      {dst.absolute()}: converted {cfg.variant} DiT ({which} weights of step {step})")
    return dst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camclone_jax.train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="the --workdir of a training run")
    parser.add_argument("dst", help="output: a new directory (converted, for sampling) or a .safetensors file")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    parser.add_argument("--ema", action="store_true", help="export the EMA of the trained weights")
    parser.add_argument("--dtype", help="cast parameters, e.g. bfloat16 (default: as trained)")
    args = parser.parse_args(argv)
    try:
        export_run(args.run_dir, args.dst, step=args.step, use_ema=args.ema, dtype=args.dtype)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
