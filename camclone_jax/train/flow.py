"""Rectified-flow training noise: DiffSynth's 1000-point training grid, its Gaussian loss weights, timestep draws.

Spec wan.md 8.6 / camera_control.md 4.1: the camera repos draw one grid index k ~ U{0..999} per optimiser step
(shared by the batch and by SynCamMaster's views), round t_k to bf16 (the DiT and the grid lookups see the
rounded value), look up σ and the weight at the grid point nearest the rounded t, noise
x_t = (1 − σ) x₀ + σ ε and regress the velocity ε − x₀ with `mean((pred − target)²) · w(t)`.

Alternatives behind config switches: one draw per sample instead of per batch, and logit-normal σ (the
shift is then applied to σ = sigmoid(n), n ~ N(0, 1)) in place of the uniform grid index.

Shapes: B batch; t, σ, w [B] float32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from camclone_jax.sample.schedulers import diffsynth_sigmas

SAMPLINGS = ("grid", "logit_normal")


class TrainingGrid(NamedTuple):
    sigmas: np.ndarray     # [N] float32, 1 (k = 0) down to shift(1/N)
    timesteps: np.ndarray  # [N] float32, 1000 σ
    weights: np.ndarray    # [N] float32, mean 1 over the grid, 0 at t = 1000
    shift: float


def training_grid(num_train_timesteps: int = 1000, shift: float = 5.0) -> TrainingGrid:
    """DiffSynth `FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(N, training=True)`."""
    sigmas = diffsynth_sigmas(num_train_timesteps, shift=shift)[:-1]
    steps = (sigmas * np.float32(1000)).astype(np.float32)
    n = num_train_timesteps
    # Float64 here and rounded once: DiffSynth evaluates the same formula in float32 torch ops; the two agree
    # to ~1e-6 relative, far below anything the loss can feel.
    y = np.exp(-2.0 * ((steps.astype(np.float64) - n / 2) / n) ** 2)
    y_shifted = y - y.min()
    weights = (y_shifted * n / y_shifted.sum()).astype(np.float32)
    return TrainingGrid(sigmas=sigmas, timesteps=steps, weights=weights, shift=float(shift))


def nearest_index(grid_timesteps: Array, t: Float[Array, "B"]) -> Array:
    """argmin_k |t_k − t| per element, first index on ties (DiffSynth's lookup)."""
    return jnp.argmin(jnp.abs(grid_timesteps[None, :] - t[:, None]), axis=1)


def draw_timesteps(key: Array, grid: TrainingGrid, batch: int, *, per_sample: bool = False,
                   sampling: str = "grid", bf16_timesteps: bool = True,
                   weighting: bool = True) -> tuple[Array, Array, Array]:
    """-> (t, σ, loss weight), each float32 [batch]. One shared draw unless `per_sample`."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"timestep sampling must be one of {SAMPLINGS}, got {sampling!r}")
    timesteps = jnp.asarray(grid.timesteps)
    n = 1 if not per_sample else batch
    if sampling == "grid":
        t = timesteps[jax.random.randint(key, (n,), 0, len(grid.timesteps))]
    else:
        u = jax.nn.sigmoid(jax.random.normal(key, (n,), jnp.float32))
        t = 1000.0 * grid.shift * u / (1.0 + (grid.shift - 1.0) * u)
    if bf16_timesteps:  # upstream casts t to bf16 before the lookups and the time embedding
        t = t.astype(jnp.bfloat16).astype(jnp.float32)
    k = nearest_index(timesteps, t)
    sigma = jnp.asarray(grid.sigmas)[k] if sampling == "grid" else t / 1000.0
    weight = jnp.asarray(grid.weights)[k] if weighting else jnp.ones_like(t)
    return tuple(jnp.broadcast_to(a, (batch,)) for a in (t, sigma, weight))


def add_noise(x0: Array, noise: Array, sigma: Float[Array, "B"]) -> Array:
    s = sigma.reshape((-1,) + (1,) * (x0.ndim - 1))
    return (1.0 - s) * x0 + s * noise
