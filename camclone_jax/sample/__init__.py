"""Sampling: flow-matching schedulers and the denoising loop (`python -m camclone_jax.sample`)."""
