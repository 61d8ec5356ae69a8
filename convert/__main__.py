"""Command line: convert Wan DiT, VAE, umT5 and CLIP checkpoints between PyTorch and camclone_jax."""

from __future__ import annotations

import argparse
import sys

from convert.api import convert, export
from convert.state_dict_io import ConversionError
from camclone_jax.models.presets import VARIANTS

EPILOG = """examples:
  python -m convert Wan2.1-T2V-1.3B/diffusion_pytorch_model.safetensors ckpt/wan_t2v_1_3b
  python -m convert CamCloneMaster-Step9500.ckpt ckpt/camclonemaster
  python -m convert Wan2.1-T2V-1.3B-Diffusers/transformer ckpt/wan_t2v_1_3b
  python -m convert Wan2.1-T2V-1.3B/Wan2.1_VAE.pth ckpt/wan_vae
  python -m convert Wan2.1-T2V-1.3B-Diffusers/vae ckpt/wan_vae
  python -m convert Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth ckpt/umt5_xxl
  python -m convert Wan2.1-I2V-14B-480P/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth ckpt/clip
  python -m convert --to-torch ckpt/camclonemaster camclone_trained.safetensors
  python -m convert --to-torch runs/camclone camclone_trained.safetensors   # a training --workdir

What the checkpoint holds (a DiT, the VAE, the umT5 text encoder or the CLIP image encoder), its naming
(original Wan/DiffSynth, diffusers or transformers) and the DiT variant (t2v, i2v, recam, syncam, camclone)
are detected from the keys and shapes; torch pickles are read with weights_only=True."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="torch checkpoint (.safetensors, .pth, .pt, .ckpt, .bin) or diffusers folder; "
                                    "with --to-torch, a converted directory or a training run's --workdir")
    parser.add_argument("dst", help="output directory (created); with --to-torch, an output .safetensors file")
    parser.add_argument("--to-torch", action="store_true", help="export a converted directory to original naming")
    parser.add_argument("--variant", choices=VARIANTS, help="override the detected DiT variant")
    parser.add_argument("--num-heads", type=int, help="attention heads (DiT default: diffusers config, else dim/128; CLIP: dim/80)")
    parser.add_argument("--dtype", help="store parameters in this dtype (default: the checkpoint's own)")
    args = parser.parse_args(argv)
    try:
        if args.to_torch:
            export(args.src, args.dst)
        else:
            convert(args.src, args.dst, variant=args.variant, num_heads=args.num_heads, dtype=args.dtype)
    except (ConversionError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
