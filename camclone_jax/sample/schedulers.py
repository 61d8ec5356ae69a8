"""Flow-matching schedulers: sigma grids built on the host in numpy, steps in jnp (one compile per loop).

Convention (spec `wan.md` §8): x_σ = (1 − σ)·x₀ + σ·ε, the model predicts v ≈ ε − x₀, shift map
σ ↦ s·σ / (1 + (s − 1)·σ). Every grid below reproduces its reference bit for bit; every step is pure jnp,
indexed by a (traced) step number, so a whole denoising loop fits in one `lax.scan` / `lax.fori_loop`.

1. DiffSynth `FlowMatchScheduler` as the Kwai camera repos use it (`shift=5, sigma_min=0, extra_one_step=True`;
   DiffSynth 2.x: template "Wan"): `diffsynth_sigmas`, `timesteps`, `euler_step`. The grid is computed in
   torch's float32 arithmetic (linspace, then the shift op by op), so it equals `scheduler.sigmas` exactly;
   model timesteps are float 1000·σ (no truncation).
2. diffusers `FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(N)` (shift applied twice at the low
   end, spec §8.5): `flow_match_euler_sigmas`, `euler_step`.
3. diffusers `UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=s)`
   (Wan's own sampler; solver_order 2, bh2, predict_x0, lower_order_final, final sigma 0; spec §8.2-8.3):
   `unipc_schedule` (grid, int64 timesteps, per-step coefficients), `unipc_init`, `unipc_step`.

Usage (UniPC; `velocity(x, t)` is the guided DiT call):

    sched = unipc_schedule(50, flow_shift=5.0)
    t = jnp.asarray(sched.timesteps, jnp.float32)

    def body(carry, k):
        x, state = carry
        x, state = unipc_step(state, velocity(x, t[k]), k, x)
        return (x, state), None

    (x, _), _ = jax.lax.scan(body, (noise, unipc_init(sched, noise)), jnp.arange(len(t)))
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

f32 = np.float32


# ---------------------------------------------------------------------------------------------------------
# 1. DiffSynth FlowMatchScheduler (Kwai camera repos)
# ---------------------------------------------------------------------------------------------------------

def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """`torch.linspace(start, end, steps)` in float32, bit for bit (CPU kernel: fused start + step·i from each end).

    torch computes step = (end − start)/(steps − 1) in float32 and element i as start + step·i for the first
    half, end − step·(steps − 1 − i) for the second, each with one rounding (an FMA); the product of a float32
    and an integer below 2²⁴ is exact in float64, so float64 evaluation followed by one rounding matches.
    """
    start, end = f32(start), f32(end)
    if steps == 1:
        return np.array([start], f32)
    step = (end - start) / f32(steps - 1)
    i = np.arange(steps, dtype=np.float64)
    low = (np.float64(start) + np.float64(step) * i).astype(f32)
    high = (np.float64(end) - np.float64(step) * (steps - 1 - i)).astype(f32)
    return np.where(i < steps // 2, low, high)


def diffsynth_sigmas(num_steps: int, shift: float = 5.0, denoising_strength: float = 1.0) -> np.ndarray:
    """[num_steps + 1] float32 sigmas, the last one 0 (the Euler target).

    Equals DiffSynth's `FlowMatchScheduler.sigmas` (the Kwai repos' `set_timesteps(N, denoising_strength,
    shift=shift)` with `sigma_min=0, sigma_max=1, extra_one_step=True`; DiffSynth 2.x template "Wan") with a 0
    appended: σ_k = shift(linspace(strength, 0, N + 1)[k]), k < N, all in float32 as torch computes it.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigma_min, sigma_max = 0.0, 1.0
    start = sigma_min + (sigma_max - sigma_min) * denoising_strength
    sigmas = _torch_linspace_f32(start, sigma_min, num_steps + 1)[:-1]
    sigmas = f32(shift) * sigmas / (f32(1) + f32(shift - 1) * sigmas)  # torch: python scalars become float32
    return np.append(sigmas, f32(0)).astype(f32)


def timesteps(sigmas: np.ndarray) -> np.ndarray:
    """Model timesteps for each step (the sigma grid without its final 0, times 1000, in float32)."""
    return (np.asarray(sigmas, f32)[:-1] * f32(1000)).astype(f32)


def euler_step(sigmas: Array, model_output: Array, step_index, sample: Array) -> Array:
    """x + v·(σ_{k+1} − σ_k) in float32, cast to sample.dtype (DiffSynth and diffusers FlowMatchEuler `step`).

    `sigmas` is the [N + 1] grid ending in 0 (`diffsynth_sigmas`, `flow_match_euler_sigmas`); `step_index` may
    be traced. (In bf16, DiffSynth rounds the product and the sum to bf16 separately; this rounds once.)
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)
    dt = sigmas[step_index + 1] - sigmas[step_index]
    out = sample.astype(jnp.float32) + model_output.astype(jnp.float32) * dt
    return out.astype(sample.dtype)


# ---------------------------------------------------------------------------------------------------------
# 2. diffusers FlowMatchEulerDiscreteScheduler
# ---------------------------------------------------------------------------------------------------------

def _time_shift(sigmas: np.ndarray, mu: float, kind: str) -> np.ndarray:
    """diffusers' resolution-dependent shift (`time_shift(mu, 1.0, t)`), float64."""
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)
    if kind == "linear":
        return mu / (mu + (1 / sigmas - 1) ** 1.0)
    raise ValueError(f"time_shift_type must be 'exponential' or 'linear', got {kind!r}")


def _stretch_to_terminal(sigmas: np.ndarray, shift_terminal: float) -> np.ndarray:
    one_minus_z = 1 - sigmas
    return 1 - one_minus_z / (one_minus_z[-1] / (1 - shift_terminal))


def flow_match_euler_sigmas(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000, *,
                            use_dynamic_shifting: bool = False, mu: float | None = None,
                            time_shift_type: str = "exponential",
                            shift_terminal: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas [N + 1] float32 ending in 0, timesteps [N] float32) of diffusers `FlowMatchEulerDiscreteScheduler(
    num_train_timesteps, shift, use_dynamic_shifting, time_shift_type, shift_terminal).set_timesteps(N, mu=mu)`.

    The constructor shifts the training grid t/1000, t = 1000…1 (float32, torch op by op), and takes σ_max/σ_min
    from it; `set_timesteps` spaces N points between them in float64 and shifts again (or applies the
    dynamic `mu` shift, then the optional terminal stretch), then rounds to float32; timesteps = 1000·σ.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if use_dynamic_shifting and mu is None:
        raise ValueError("mu must be given when use_dynamic_shifting=True")
    train = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=f32)[::-1] / f32(num_train_timesteps)
    if not use_dynamic_shifting:
        train = f32(shift) * train / (f32(1) + f32(shift - 1) * train)
    sigma_max, sigma_min = float(train[0]), float(train[-1])
    sigmas = np.linspace(sigma_max * num_train_timesteps, sigma_min * num_train_timesteps, num_steps)
    sigmas = sigmas / num_train_timesteps
    if use_dynamic_shifting:
        sigmas = _time_shift(sigmas, mu, time_shift_type)
    else:
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    if shift_terminal:
        sigmas = _stretch_to_terminal(sigmas, shift_terminal)
    sigmas = sigmas.astype(f32)
    steps = (sigmas * f32(num_train_timesteps)).astype(f32)
    return np.append(sigmas, f32(0)).astype(f32), steps


# ---------------------------------------------------------------------------------------------------------
# 3. diffusers UniPCMultistepScheduler with flow sigmas
# ---------------------------------------------------------------------------------------------------------

class UniPCCoeffs(NamedTuple):
    """Per-step float32 coefficient tables, indexed by the step number n (K = solver_order).

    Data prediction m⁽ⁿ⁾ = x − σ_n·v. Corrector (interval n−1 → n; x_s = the previous predictor's start):
      x ← c_x·x_s − c_m·m⁽ⁿ⁻¹⁾ − c_scale·(Σ_i c_w[i]·(m⁽ⁿ⁻¹⁻ⁱ⁾ − m⁽ⁿ⁻¹⁾) + c_t·(m⁽ⁿ⁾ − m⁽ⁿ⁻¹⁾)),  if c_use
    Predictor (interval n → n+1, from the corrected x):
      x' = p_x·x − p_m·m⁽ⁿ⁾ − p_scale·Σ_i p_w[i]·(m⁽ⁿ⁻ⁱ⁾ − m⁽ⁿ⁾)
    with i = 1…K−1 (the weights ρ_i/r_i are 0 past the step's order).
    """

    sigmas: np.ndarray   # [N + 1]
    p_x: np.ndarray      # [N] σ_t/σ_s
    p_m: np.ndarray      # [N] α_t·φ₁
    p_scale: np.ndarray  # [N] α_t·B_h
    p_w: np.ndarray      # [N, K−1] ρ_p,i / r_i
    c_use: np.ndarray    # [N] bool
    c_x: np.ndarray      # [N]
    c_m: np.ndarray      # [N]
    c_scale: np.ndarray  # [N]
    c_w: np.ndarray      # [N, K−1] ρ_c,i / r_i
    c_t: np.ndarray      # [N] ρ_c,last


class UniPCSchedule(NamedTuple):
    sigmas: np.ndarray     # [N + 1] float32, last 0
    timesteps: np.ndarray  # [N] int64 (truncated 1000·σ): what the model receives
    orders: np.ndarray     # [N] int: the predictor order of each step
    coeffs: UniPCCoeffs


class UniPCState(NamedTuple):
    """Carry of `unipc_step`: constant tables, the last K data predictions (newest first), the predictor's start."""

    coeffs: UniPCCoeffs
    history: Array      # [K, *x.shape] float32: m⁽ⁿ⁻¹⁾, m⁽ⁿ⁻²⁾, …
    last_sample: Array  # [*x.shape] float32


def unipc_flow_sigmas(num_steps: int, flow_shift: float = 1.0, num_train_timesteps: int = 1000, *,
                      use_dynamic_shifting: bool = False, mu: float | None = None,
                      time_shift_type: str = "exponential",
                      shift_terminal: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas [N + 1] float32 ending in 0, timesteps [N] int64) of diffusers UniPC with `use_flow_sigmas=True`.

    σ = linspace(1, 1/T, N + 1)[:−1] shifted once (float64), σ_0 −= 1e−6 if it is within 1e−6 of 1,
    timesteps = int64(trunc(T·σ)), then the sigmas are rounded to float32.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if use_dynamic_shifting and mu is None:
        raise ValueError("mu must be given when use_dynamic_shifting=True")
    sigmas = np.linspace(1, 1 / num_train_timesteps, num_steps + 1)[:-1]
    if use_dynamic_shifting:
        sigmas = _time_shift(sigmas, mu, time_shift_type)
    else:
        sigmas = flow_shift * sigmas / (1 + (flow_shift - 1) * sigmas)
    if shift_terminal:
        sigmas = _stretch_to_terminal(sigmas, shift_terminal)
    if np.fabs(sigmas[0] - 1) < 1e-6:  # keeps log(α) finite in the first updates
        sigmas[0] -= 1e-6
    steps = (sigmas * num_train_timesteps).astype(np.int64)
    return np.append(sigmas, 0.0).astype(f32), steps


def _unipc_terms(lam: np.ndarray, sigma: np.ndarray, s: int, t: int, hist: Sequence[int]):
    """Shared UniPC-bh2 quantities for the interval s → t; `hist` holds the older steps s−1, s−2, …"""
    h = lam[t] - lam[s]
    hh = -h
    phi1 = np.expm1(hh)
    b_h = np.expm1(hh)  # bh2
    alpha_t = 1.0 - sigma[t]
    rks = np.array([(lam[i] - lam[s]) / h for i in hist] + [1.0])
    order = len(hist) + 1
    h_phi_k, factorial, b = phi1 / hh - 1, 1, []
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R = np.stack([rks ** (i - 1) for i in range(1, order + 1)])
    return sigma[t] / sigma[s], alpha_t * phi1, alpha_t * b_h, rks[:-1], R, np.array(b)


def unipc_schedule(num_steps: int, flow_shift: float = 1.0, num_train_timesteps: int = 1000, *,
                   solver_order: int = 2, lower_order_final: bool = True,
                   disable_corrector: Sequence[int] = (), **grid_kwargs) -> UniPCSchedule:
    """Grid and per-step coefficients of diffusers `UniPCMultistepScheduler(prediction_type="flow_prediction",
    use_flow_sigmas=True, flow_shift, solver_order, lower_order_final, disable_corrector)` (predict_x0, bh2,
    final_sigmas_type "zero"); `grid_kwargs` go to `unipc_flow_sigmas` (dynamic shift, shift_terminal).

    Coefficients are computed in float64 from the float32 sigmas and rounded once to float32 (diffusers
    evaluates the same scalars in float32 torch ops). Orders: min(K, N − n, n + 1), the corrector at step n
    uses the order of step n − 1.
    """
    sig32, steps = unipc_flow_sigmas(num_steps, flow_shift, num_train_timesteps, **grid_kwargs)
    n_steps, k = len(steps), solver_order
    sigma = sig32.astype(np.float64)
    with np.errstate(divide="ignore"):
        lam = np.log(1.0 - sigma) - np.log(sigma)  # λ_N = +inf at σ = 0
    orders = np.array([min(k, n_steps - n) if lower_order_final else k for n in range(n_steps)])
    orders = np.minimum(orders, np.arange(n_steps) + 1)
    tab = {name: np.zeros(n_steps) for name in ("p_x", "p_m", "p_scale", "c_x", "c_m", "c_scale", "c_t")}
    p_w, c_w = np.zeros((n_steps, k - 1)), np.zeros((n_steps, k - 1))
    c_use = np.zeros(n_steps, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for n in range(n_steps):
            p = orders[n]
            tab["p_x"][n], tab["p_m"][n], tab["p_scale"][n], r, R, b = _unipc_terms(
                lam, sigma, n, n + 1, range(n - 1, n - p, -1))
            if p == 2:
                p_w[n, :1] = 0.5 / r
            elif p > 2:
                p_w[n, :p - 1] = np.linalg.solve(R[:-1, :-1], b[:-1]) / r
            if n == 0 or (n - 1) in disable_corrector:
                continue
            q = orders[n - 1]
            c_use[n] = True
            tab["c_x"][n], tab["c_m"][n], tab["c_scale"][n], r, R, b = _unipc_terms(
                lam, sigma, n - 1, n, range(n - 2, n - 1 - q, -1))
            rhos = np.array([0.5]) if q == 1 else np.linalg.solve(R, b)
            c_w[n, :q - 1], tab["c_t"][n] = rhos[:-1] / r, rhos[-1]
    coeffs = UniPCCoeffs(sigmas=sig32, p_w=p_w.astype(f32), c_w=c_w.astype(f32), c_use=c_use,
                         **{name: v.astype(f32) for name, v in tab.items()})
    for name, v in coeffs._asdict().items():
        if not np.all(np.isfinite(v)):
            raise ValueError(f"UniPC coefficient {name} is not finite (an order > 1 step onto σ = 0?)")
    return UniPCSchedule(sigmas=sig32, timesteps=steps, orders=orders, coeffs=coeffs)


def unipc_init(schedule: UniPCSchedule, sample: Array) -> UniPCState:
    """Empty history (zeros; unused until filled: the step-0 corrector is off, weights past the order are 0)."""
    order = schedule.coeffs.p_w.shape[1] + 1
    zeros = jnp.zeros(sample.shape, jnp.float32)
    coeffs = UniPCCoeffs(*(jnp.asarray(v) for v in schedule.coeffs))
    return UniPCState(coeffs=coeffs, history=jnp.stack([zeros] * order), last_sample=zeros)


def _weighted_diffs(weights: Array, older: Array, newest: Array) -> Array:
    """Σ_i weights[i]·(older[i] − newest) over the leading axis."""
    w = weights.reshape(weights.shape + (1,) * newest.ndim)
    return jnp.sum(w * (older - newest[None]), axis=0)


def unipc_step(state: UniPCState, model_output: Array, step_index, sample: Array) -> tuple[Array, UniPCState]:
    """One diffusers `UniPCMultistepScheduler.step` (flow prediction, bh2): UniC corrector, then UniP predictor.

    `model_output` is the velocity predicted at `sample` for step `step_index` (may be traced); arithmetic is
    float32 and the returned sample has `sample.dtype`.
    """
    c, n = state.coeffs, step_index
    x = sample.astype(jnp.float32)
    m = x - c.sigmas[n] * model_output.astype(jnp.float32)
    prev = state.history[0]
    corrected = (c.c_x[n] * state.last_sample - c.c_m[n] * prev
                 - c.c_scale[n] * (_weighted_diffs(c.c_w[n], state.history[1:], prev) + c.c_t[n] * (m - prev)))
    x = jnp.where(c.c_use[n], corrected, x)
    prev_sample = c.p_x[n] * x - c.p_m[n] * m - c.p_scale[n] * _weighted_diffs(c.p_w[n], state.history[:-1], m)
    history = jnp.concatenate([m[None], state.history[:-1]])
    return prev_sample.astype(sample.dtype), UniPCState(coeffs=c, history=history, last_sample=x)
