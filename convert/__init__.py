"""PyTorch Wan checkpoints (DiT, VAE, umT5, CLIP) <-> camclone_jax converted directories.

    python -m convert SRC DST                 # torch/diffusers -> orbax + config.json
    python -m convert --to-torch SRC_DIR OUT.safetensors   # back to original Wan naming
"""

from convert.api import convert, convert_dit, export, export_dit
from convert.encoders import convert_clip, convert_umt5
from convert.vae import convert_vae, export_vae

__all__ = ["convert", "convert_clip", "convert_dit", "convert_umt5", "convert_vae", "export", "export_dit",
           "export_vae"]
