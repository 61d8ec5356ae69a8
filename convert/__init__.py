"""PyTorch Wan checkpoints (DiT and VAE) <-> camclone_jax converted directories.

    python -m convert SRC DST                 # torch/diffusers -> orbax + config.json
    python -m convert --to-torch SRC_DIR OUT.safetensors   # back to original Wan naming
"""

from convert.api import convert, convert_dit, convert_vae, export, export_dit, export_vae

__all__ = ["convert", "convert_dit", "convert_vae", "export", "export_dit", "export_vae"]
