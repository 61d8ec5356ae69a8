"""Deepen a converted DiT: every block followed by a copy of itself whose residual outputs are zero.

    python -m camclone_jax.train.deepen ckpt/synthc_motion ckpt/synthc_motion_deep [--factor 2]

A Wan block adds three residuals to its input: gate * self_attn.o(...), cross_attn.o(...) and
gate * ffn.fc_out(...). With those three output projections (kernel and bias) zeroed, a block is the identity,
so the deepened model computes exactly what the source computed, and training starts from there with the extra
depth free to learn (depth up-scaling). The copies keep the source block's input-side weights, which already
read the residual stream it sees, and get gradients at once: d loss / d o.kernel is the attention output times the
residual gradient, not zero.

Shapes: parameters are stacked per block, [L, ...] -> [L * factor, ...], block i moving to i * factor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from camclone_jax.models.loading import load_dit_params, read_config, save_dit

# The three residual outputs of a block, as paths inside `blocks`.
ZEROED = (("self_attn", "o"), ("cross_attn", "o"), ("ffn", "fc_out"))


def deepen_params(blocks: dict[str, Any], factor: int) -> dict[str, Any]:
    """The stacked block tree with `factor - 1` identity copies after each block."""
    if factor < 2:
        raise ValueError(f"deepen: --factor must be at least 2, got {factor}")

    def grow(tree, path):
        if isinstance(tree, dict):
            return {k: grow(v, path + (k,)) for k, v in tree.items()}
        tree = np.asarray(tree)
        copy = np.zeros_like(tree) if any(path[:len(z)] == z for z in ZEROED) else tree
        return np.stack([tree] + [copy] * (factor - 1), axis=1).reshape(-1, *tree.shape[1:])

    for module, proj in ZEROED:
        if proj not in blocks.get(module, {}):
            raise ValueError(f"deepen: the DiT's blocks have no {module}.{proj}; is this a Wan DiT folder?")
    return grow(blocks, ())


def deepen(src: str | Path, dst: str | Path, factor: int = 2) -> Path:
    cfg = read_config(src)
    params = load_dit_params(src, cfg)
    params = {**params, "blocks": deepen_params(params["blocks"], factor)}
    return save_dit(dst, cfg.replace(num_layers=cfg.num_layers * factor), params)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.train.deepen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="converted DiT folder (config.json + params/), e.g. from train.export")
    p.add_argument("dst", help="new folder for the deepened DiT (must not exist)")
    p.add_argument("--factor", type=int, default=2, help="blocks per source block (default 2: twice as deep)")
    args = p.parse_args(argv)
    if Path(args.dst).exists():
        print(f"error: {args.dst} already exists; choose a new output directory", file=sys.stderr)
        return 2
    try:
        out = deepen(args.src, args.dst, args.factor)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {read_config(out).num_layers} blocks (from {read_config(args.src).num_layers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
