"""Deepen a converted DiT: every block followed by a copy of itself whose residual outputs are zero.

    python -m camclone_jax.train.deepen ckpt/synthc_motion ckpt/synthc_motion_deep [--factor 2]

A Wan block adds three residuals to its input: gate * self_attn.o(...), cross_attn.o(...) and
gate * ffn.fc_out(...) (ReCamMaster passes the first through its camera `projector`; SynCamMaster adds a fourth,
gate * projector(mvs_attn(...))). With the last projection of every residual path zeroed (kernel and bias), a
block is the identity, so the deepened model computes exactly what the source computed, and training starts
from there with the extra depth free to learn (depth up-scaling). The copies keep the source block's input-side
weights, which already read the residual stream it sees, and get gradients at once: d loss / d o.kernel is the
attention output times the residual gradient, not zero. Zeroing only the last projection of a path matters:
two zeroed matrices in a row would give each other zero gradients and stay zero.

Shapes: parameters are stacked per block, [L, ...] -> [L * factor, ...], block i moving to i * factor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from camclone_jax.models.loading import load_dit_params, read_config, save_dit


def residual_outputs(variant: str) -> tuple[tuple[str, ...], ...]:
    """The last projection of each residual path of a `variant` block (module doc), as paths inside `blocks`."""
    attention = {"recam": (("projector",),), "syncam": (("self_attn", "o"), ("projector",))}
    return attention.get(variant, (("self_attn", "o"),)) + (("cross_attn", "o"), ("ffn", "fc_out"))


def deepen_params(blocks: dict[str, Any], factor: int, variant: str) -> dict[str, Any]:
    """The stacked block tree with `factor - 1` identity copies after each block."""
    if factor < 2:
        raise ValueError(f"deepen: --factor must be at least 2, got {factor}")
    zeroed = residual_outputs(variant)

    def grow(tree, path):
        if isinstance(tree, dict):
            return {k: grow(v, path + (k,)) for k, v in tree.items()}
        tree = np.asarray(tree)
        copy = np.zeros_like(tree) if any(path[:len(z)] == z for z in zeroed) else tree
        return np.stack([tree] + [copy] * (factor - 1), axis=1).reshape(-1, *tree.shape[1:])

    for path in zeroed:
        node = blocks
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"deepen: the {variant} DiT's blocks have no {'.'.join(path)}; is this a Wan DiT "
                                 "folder?")
            node = node[key]
    return grow(blocks, ())


def deepen(src: str | Path, dst: str | Path, factor: int = 2) -> Path:
    cfg = read_config(src)
    params = load_dit_params(src, cfg)
    params = {**params, "blocks": deepen_params(params["blocks"], factor, cfg.variant)}
    return save_dit(dst, cfg.replace(num_layers=cfg.num_layers * factor), params)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.train.deepen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="converted DiT folder (config.json + params/), e.g. from train.export")
    p.add_argument("dst", help="output folder for the deepened DiT (refused if it already holds params/)")
    p.add_argument("--factor", type=int, default=2, help="blocks per source block (default 2: twice as deep)")
    args = p.parse_args(argv)
    try:
        out = deepen(args.src, args.dst, args.factor)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # save_dit refuses a folder with params/
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {read_config(out).num_layers} blocks (from {read_config(args.src).num_layers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
