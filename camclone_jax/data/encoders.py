r"""An encoders folder (vae/ umt5/ clip/) for training and sampling a tiny CamCloneMaster on the synthetic dataset.

    python -m camclone_jax.data.encoders --vae /tmp/vae_run/vae --out /tmp/synth_encoders [--data /tmp/synth]

writes the layout that `config.input.encoders` (camclone_jax.train.online.load_encoders) and the sampler's
`--models` (camclone_jax.sample.checkpoints.CheckpointPaths) read:

    OUT/vae/               a copy of the trained VAE (`python -m camclone_jax.train --config configs/synthetic_vae.py`
                           exports it to WORKDIR/vae)
    OUT/umt5/              a tiny random umT5 encoder (camclone_jax.models.umt5.tiny_umt5: width 64)
    OUT/umt5/spiece.model  a small unigram sentencepiece model trained on the dataset's captions
    OUT/clip/              a tiny random CLIP vision tower (tiny_clip at 224 px: 257 tokens of width 64)

The text and image encoders are random and stay frozen, as the real umT5 and CLIP do in CamCloneMaster training:
a fixed random network is still a deterministic, injective-in-practice map from a caption (or first frame) to
features, so the DiT can learn whatever it needs from them. On the synthetic scenes the caption matters little
for camera cloning (the camera comes from the reference video, the content from the content video or first
frame), so no text model is pretrained. Everything is deterministic given --seed (weights) and the captions
(spiece.model's bytes differ between output folders only in the training path it records).

Captions: those of `--data`'s train.csv / test.csv when given, else the captions the synthetic generator draws for
its first --locations locations of each split with --data-seed (camclone_jax.data.synthetic.make_location), plus
the sampler's default negative prompt.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

SPLITS = ("train", "test")


def dataset_captions(data: str | Path | None = None, *, locations: int = 64, data_seed: int = 0) -> list[str]:
    """The captions of a synthetic dataset folder (train.csv / test.csv), or of the generator's locations."""
    if data is not None:
        data = Path(data)
        captions: list[str] = []
        for split in SPLITS:
            path = data / f"{split}.csv"
            if path.is_file():
                with path.open(newline="", encoding="utf-8") as f:
                    captions += [row["caption"] for row in csv.DictReader(f)]
        if not captions:
            raise ValueError(f"no captions in {data}/train.csv or test.csv (a synthetic dataset folder)")
    else:
        from camclone_jax.data.synthetic import make_location

        captions = [make_location(data_seed, i, split)["caption"] for split in SPLITS for i in range(locations)]
    return list(dict.fromkeys(captions))  # unique, in order: deterministic


def check_vae_dir(vae: str | Path) -> Path:
    """`vae` must be a converted VAE folder (config.json naming a VAE + params/); raises ValueError otherwise."""
    from camclone_jax.models.loading import CONFIG_FILE, PARAMS_DIR, checkpoint_kind

    vae = Path(vae)
    if not vae.is_dir():
        raise ValueError(f"--vae {vae} is not a directory (expected a converted VAE folder, e.g. the WORKDIR/vae "
                         "that `python -m camclone_jax.train --config configs/synthetic_vae.py` exports)")
    if not (vae / CONFIG_FILE).is_file() or not (vae / PARAMS_DIR).is_dir():
        raise ValueError(f"--vae {vae} has no {CONFIG_FILE} and {PARAMS_DIR}/: not a converted VAE folder")
    try:
        kind = checkpoint_kind(vae)
    except Exception as e:  # unreadable JSON
        raise ValueError(f"--vae {vae}: cannot read {vae / CONFIG_FILE}: {e}") from e
    if kind != "vae":
        raise ValueError(f"--vae {vae} holds a converted {kind}, not a VAE")
    return vae


def build_encoders(vae: str | Path, out: str | Path, *, seed: int = 0, captions: list[str] | None = None,
                   vocab_size: int = 256) -> Path:
    """Writes OUT/vae (copied), OUT/umt5 (+ spiece.model) and OUT/clip (module doc); returns OUT."""
    from flax import nnx

    from camclone_jax.models.clip_vision import CLIPVisionEncoder, tiny_clip
    from camclone_jax.models.loading import save_model
    from camclone_jax.models.umt5 import UMT5Encoder, tiny_umt5
    from camclone_jax.sample.conditions import NEGATIVE_PROMPT
    from camclone_jax.sample.demo import train_tokenizer

    vae = check_vae_dir(vae)
    out = Path(out)
    existing = [out / sub for sub in ("vae", "umt5", "clip") if (out / sub).exists()]
    if existing:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist(s); choose an empty --out folder")
    out.mkdir(parents=True, exist_ok=True)

    shutil.copytree(vae, out / "vae")  # a copy, not a symlink: the folder stays valid when the VAE run is removed

    umt5_cfg = tiny_umt5()
    if vocab_size > umt5_cfg.vocab_size:
        raise ValueError(f"vocab_size {vocab_size} > the tiny umT5's {umt5_cfg.vocab_size} embeddings")
    corpus = list(captions if captions is not None else dataset_captions()) + [NEGATIVE_PROMPT]
    train_tokenizer(out / "umt5", corpus=corpus, vocab_size=vocab_size)  # writes umt5/spiece.model (+ .vocab)
    umt5 = UMT5Encoder(umt5_cfg, rngs=nnx.Rngs(seed))
    save_model(out / "umt5", umt5_cfg, nnx.state(umt5, nnx.Param).to_pure_dict())

    clip_cfg = tiny_clip().replace(image_size=224)  # 224 px / 14 = 16x16 patches + class token = 257 tokens
    clip = CLIPVisionEncoder(clip_cfg, rngs=nnx.Rngs(seed + 1))
    save_model(out / "clip", clip_cfg, nnx.state(clip, nnx.Param).to_pure_dict())
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.data.encoders", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="converted VAE folder (the synthetic_vae run's WORKDIR/vae)")
    p.add_argument("--out", required=True, help="output folder: vae/ umt5/ clip/ are written into it")
    p.add_argument("--seed", type=int, default=0, help="seed of the random umT5 / CLIP weights")
    p.add_argument("--data", default=None, help="synthetic dataset folder whose train.csv / test.csv captions "
                                                "train the tokenizer (default: the generator's captions)")
    p.add_argument("--data-seed", type=int, default=0, help="without --data: the dataset's generator seed")
    p.add_argument("--locations", type=int, default=64, help="without --data: locations per split to caption")
    p.add_argument("--vocab-size", type=int, default=256, help="sentencepiece vocabulary (<= 512)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_vae_dir(args.vae)
        captions = dataset_captions(args.data, locations=args.locations, data_seed=args.data_seed)
        out = build_encoders(args.vae, args.out, seed=args.seed, captions=captions, vocab_size=args.vocab_size)
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))  # exit code 2
    print(f"wrote {out}/vae, {out}/umt5 (+ spiece.model), {out}/clip ({len(captions)} captions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
