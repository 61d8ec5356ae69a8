"""camclone_jax: Wan2.1 and its camera-control descendants in JAX/Flax NNX.

Importing this package never imports torch; PyTorch is only needed by `convert/` for `.pth`/`.ckpt` files and by
the parity tests. Importing it adds a measured XLA:CPU flag to `XLA_FLAGS` (`camclone_jax.xla_flags`).
"""

from camclone_jax.xla_flags import default_xla_flags

default_xla_flags()

__version__ = "0.1.0"
