"""Flow-matching sigma grids.

DiffSynth's `FlowMatchScheduler` as the Kwai camera repos construct it (shift 5, sigma_min 0, extra_one_step):
sigma_k = linspace(1, 0, N + 1)[k] for k < N, shifted by s*sigma / (1 + (s - 1)*sigma); t_k = 1000*sigma_k
(float, not truncated); Euler: x <- x + v * (sigma_{k+1} - sigma_k) with a final sigma of 0.
"""

from __future__ import annotations

import numpy as np


def diffsynth_sigmas(num_steps: int, shift: float = 5.0, denoising_strength: float = 1.0) -> np.ndarray:
    """[num_steps + 1] float32 sigmas, the last one 0 (the Euler target)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigmas = np.linspace(denoising_strength, 0.0, num_steps + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return np.append(sigmas, 0.0).astype(np.float32)


def timesteps(sigmas: np.ndarray) -> np.ndarray:
    """Model timesteps for each step (the sigma grid without its final 0, times 1000)."""
    return (sigmas[:-1] * 1000.0).astype(np.float32)
