"""camclone_jax: Wan2.1 and its camera-control descendants in JAX/Flax NNX.

Importing this package never imports torch; PyTorch is only needed by `convert/` for `.pth`/`.ckpt` files and by
the parity tests.
"""

__version__ = "0.1.0"
