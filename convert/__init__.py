"""PyTorch Wan checkpoints <-> camclone_jax converted directories.

    python -m convert SRC DST                 # torch/diffusers -> orbax + config.json
    python -m convert --to-torch SRC_DIR OUT.safetensors   # back to original Wan naming
"""

from convert.api import convert_dit, export_dit

__all__ = ["convert_dit", "export_dit"]
