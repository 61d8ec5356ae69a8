"""`DiTConfig`: the frozen, hashable description of a Wan DiT, and the named presets.

Variants (one `WanDiT` class covers all of them; each flag declares submodules, nothing is patched later):
  t2v       Wan2.1 text-to-video.
  i2v       Wan2.1 image-to-video: 36 input channels (noisy 16 | mask 4 | image latent 16) and the CLIP branch.
  camclone  CamCloneMaster: i2v plus camera-reference / content latents concatenated on the frame axis.
  recam     ReCamMaster: t2v plus source latents on the frame axis and per-block cam_encoder / projector.
  syncam    SynCamMaster: t2v plus per-block multi-view attention across views (views folded into batch).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax.numpy as jnp

from camclone_jax.models.attention import BACKENDS

VARIANTS = ("t2v", "i2v", "camclone", "recam", "syncam")
ATTENTION_BACKENDS = BACKENDS  # "auto" picks per platform at model construction (attention.resolve_backend)
REMAT_POLICIES = ("none", "full", "dots")


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    variant: str = "t2v"
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512  # text context is zero-padded to this many rows before the text MLP
    text_dim: int = 4096
    freq_dim: int = 256
    image_dim: int = 1280  # CLIP ViT-H/14 width
    num_image_tokens: int = 257
    cam_dim: int = 12  # flattened 3x4 relative camera-to-world pose
    eps: float = 1e-6
    rope_theta: float = 10000.0
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype of matmuls and attention; norms / modulation / RoPE stay fp32
    attention: str = "auto"
    remat: str = "none"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"DiTConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"DiTConfig.attention must be one of {ATTENTION_BACKENDS}, got {self.attention!r}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"DiTConfig.remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"DiTConfig.dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim={self.head_dim} must be even and >= 6 for the 3D RoPE split")
        # I2V input = noisy latent | 4 mask channels | image latent.
        expected_in = 2 * self.out_dim + 4 if self.has_image_input else self.out_dim
        if self.in_dim != expected_in:
            raise ValueError(f"variant {self.variant!r} with out_dim={self.out_dim} expects in_dim={expected_in}, "
                             f"got {self.in_dim}")
        object.__setattr__(self, "patch_size", tuple(self.patch_size))

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_input(self) -> bool:
        return self.variant in ("i2v", "camclone")

    @property
    def has_cam_encoder(self) -> bool:
        return self.variant in ("recam", "syncam")

    @property
    def has_mvs(self) -> bool:
        return self.variant == "syncam"

    @property
    def takes_cond_latents(self) -> bool:
        """Variants whose forward concatenates clean condition latents after the target on the frame axis."""
        return self.variant in ("recam", "camclone")

    @property
    def jnp_param_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)

    def replace(self, **changes: Any) -> "DiTConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "DiTConfig":
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown DiTConfig fields {sorted(unknown)}")
        return cls(**fields)

    # Presets -------------------------------------------------------------------------------------------
    @classmethod
    def wan_t2v_1_3b(cls, **kw) -> "DiTConfig":
        return cls(**{"variant": "t2v", "dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 30, **kw})

    @classmethod
    def wan_t2v_14b(cls, **kw) -> "DiTConfig":
        return cls(**{"variant": "t2v", "dim": 5120, "ffn_dim": 13824, "num_heads": 40, "num_layers": 40, **kw})

    @classmethod
    def wan_i2v_14b(cls, **kw) -> "DiTConfig":
        return cls.wan_t2v_14b(**{"variant": "i2v", "in_dim": 36, **kw})

    @classmethod
    def camclonemaster(cls, **kw) -> "DiTConfig":
        return cls.wan_t2v_1_3b(**{"variant": "camclone", "in_dim": 36, **kw})

    @classmethod
    def recammaster(cls, **kw) -> "DiTConfig":
        return cls.wan_t2v_1_3b(**{"variant": "recam", **kw})

    @classmethod
    def syncammaster(cls, **kw) -> "DiTConfig":
        return cls.wan_t2v_1_3b(**{"variant": "syncam", **kw})

    @classmethod
    def tiny(cls, variant: str = "t2v", **kw) -> "DiTConfig":
        """Test-sized model. head_dim 32 keeps a non-degenerate RoPE split (12/10/10 channels); text_len 512 and
        the CLIP width / token count stay as upstream because the oracles hard-code them."""
        base = dict(variant=variant, dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, freq_dim=32,
                    in_dim=36 if variant in ("i2v", "camclone") else 16)
        return cls(**{**base, **kw})


PRESETS = {
    "wan_t2v_1_3b": DiTConfig.wan_t2v_1_3b,
    "wan_t2v_14b": DiTConfig.wan_t2v_14b,
    "wan_i2v_14b": DiTConfig.wan_i2v_14b,
    "camclonemaster": DiTConfig.camclonemaster,
    "recammaster": DiTConfig.recammaster,
    "syncammaster": DiTConfig.syncammaster,
    "tiny": DiTConfig.tiny,
}


def get_preset(name: str, **overrides: Any) -> DiTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
