"""Model definitions: the Wan DiT with its camera variants (`wan_dit`), its config (`presets`)."""

from camclone_jax.models.presets import DiTConfig, PRESETS, get_preset
from camclone_jax.models.wan_dit import WanDiT

__all__ = ["DiTConfig", "PRESETS", "get_preset", "WanDiT"]
