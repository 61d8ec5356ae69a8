"""Re-patch a converted DiT to 1x1x1 patches: every latent pixel its own token, the blocks kept as trained.

    python -m camclone_jax.train.repatch ckpt/synthc_motion ckpt/synthc_motion_p1

A start for training a finer token grid (`configs/synthetic_camclone.py:patch=1`) from a model trained on Wan's
1x2x2 patches, instead of from random init. Only the two layers whose shapes depend on the patch change:
  patch_embedding  kernel [pt, ph, pw, C_in, E] -> [1, 1, 1, C_in, E], the sum over the pt x ph x pw taps: on a
                   latent constant over each coarse patch, every fine token equals its coarse parent's token
  head.head        kernel [E, pt*ph*pw*C] -> [E, C] (bias likewise), the mean over the patch positions it
                   emitted: a fine token's output is the average of its coarse parent's sub-pixel outputs
Everything else (blocks, embeddings, modulation tables) is copied. The result does not compute what its source
did: it has pt*ph*pw times the tokens, and RoPE now counts positions in latent pixels, so neighbouring tokens sit
at half the distance they had. Fine-tuning adapts the blocks (README "A small trained model").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from camclone_jax.models.loading import load_dit_params, read_config, save_dit
from camclone_jax.models.presets import DiTConfig

FINE = (1, 1, 1)


def repatch_params(params: dict[str, Any], cfg: DiTConfig) -> dict[str, Any]:
    """The parameter tree of `cfg`'s DiT with 1x1x1 patches (module doc)."""
    if tuple(cfg.patch_size) == FINE:
        raise ValueError("repatch: the DiT already has 1x1x1 patches")
    positions = int(np.prod(cfg.patch_size))
    kernel = np.asarray(params["patch_embedding"]["kernel"])
    head_kernel = np.asarray(params["head"]["head"]["kernel"])
    head_bias = np.asarray(params["head"]["head"]["bias"])
    return {
        **params,
        "patch_embedding": {**params["patch_embedding"], "kernel": kernel.sum(axis=(0, 1, 2), keepdims=True)},
        "head": {**params["head"], "head": {
            "kernel": head_kernel.reshape(head_kernel.shape[0], positions, cfg.out_dim).mean(axis=1),
            "bias": head_bias.reshape(positions, cfg.out_dim).mean(axis=0)}},
    }


def repatch(src: str | Path, dst: str | Path) -> Path:
    cfg = read_config(src)
    params = repatch_params(load_dit_params(src, cfg), cfg)
    return save_dit(dst, cfg.replace(patch_size=FINE), params)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.train.repatch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="converted DiT folder (config.json + params/), e.g. from train.export")
    p.add_argument("dst", help="output folder for the 1x1x1-patch DiT (refused if it already holds params/)")
    args = p.parse_args(argv)
    try:
        out = repatch(args.src, args.dst)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # save_dit refuses a folder with params/
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: patches {tuple(read_config(args.src).patch_size)} -> {FINE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
