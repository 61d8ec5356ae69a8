"""The denoising loop shared by every task: guided DiT velocity + a flow-matching solver, compiled once.

    latents = denoise(dit, noise, text, negative_text, Sampler("euler", steps=50, shift=5.0, cfg_scale=5.0),
                      y=..., clip_feature=..., cond_latents=..., cam_emb=..., num_views=1)
    latents = denoise(..., Sampler(..., camera_scale=2.0), static_camera=dict(cond_latents=...), ...)

Shapes (channels last): noise / latents [B, F, h, w, 16]; text, negative_text [B, S, text_dim] (S <= 512, zero past
each prompt's length); the condition arrays as `WanDiT.__call__` takes them, batch B. With SynCamMaster, B is
samples x views and the text is repeated per view.

Text guidance is as in every upstream pipeline: the conditional and unconditional passes share the image / video /
camera conditions and run batched as one [2B] forward; `pred = uncond + g (cond - uncond)`. Camera guidance is
off upstream (scale 1) and optional here: a further pass with the camera condition replaced by a static one
(`static_camera`: the condition entries that differ, e.g. CamCloneMaster's latents with a frozen reference), and
`pred += (g_cam - 1) (cond - static)` pushes the result further along the camera motion, as CamI2V guides on its
camera condition. All passes run as one batched forward.
The step (forward + guidance + solver update) is one `jax.jit`, traced on the first step and reused for every
later one: the step index is a traced argument and the solver tables are device arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float
from tqdm import tqdm

from camclone_jax.sample import schedulers

SOLVERS = {
    "euler": "DiffSynth flow-matching Euler (the camera repos: shift 5, 50 steps, model t = 1000 sigma)",
    "unipc": "UniPC-bh2 on flow sigmas (Wan's own sampler; diffusers UniPCMultistepScheduler, int timesteps)",
    "flow_euler": "diffusers FlowMatchEulerDiscreteScheduler (shift applied twice, as diffusers does)",
}


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Solver, step count, sigma shift, text guidance scale (upstream camera repos: euler, 50, 5.0, 5.0) and camera
    guidance scale (1: off, as upstream)."""

    solver: str = "euler"
    steps: int = 50
    shift: float = 5.0
    cfg_scale: float = 5.0
    camera_scale: float = 1.0

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {sorted(SOLVERS)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.shift <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")

    @property
    def guided(self) -> bool:
        # As diffusers: a scale of 1 is the conditional prediction, so the unconditional pass is skipped.
        return self.cfg_scale != 1.0

    @property
    def camera_guided(self) -> bool:
        return self.camera_scale != 1.0

    def schedule(self) -> tuple[np.ndarray, Any]:
        """(model timesteps float32 [steps], the solver's initial state builder input)."""
        if self.solver == "unipc":
            sched = schedulers.unipc_schedule(self.steps, flow_shift=self.shift)
            return sched.timesteps.astype(np.float32), sched
        if self.solver == "flow_euler":
            sigmas, steps = schedulers.flow_match_euler_sigmas(self.steps, shift=self.shift)
            return steps.astype(np.float32), sigmas
        sigmas = schedulers.diffsynth_sigmas(self.steps, shift=self.shift)
        return schedulers.timesteps(sigmas), sigmas


def _solver_init(sampler: Sampler, table, latents: Array):
    if sampler.solver == "unipc":
        return schedulers.unipc_init(table, latents)
    return jnp.asarray(table, jnp.float32)  # Euler: the sigma grid is the whole state


def _solver_update(solver: str, state, velocity: Array, k: Array, latents: Array):
    if solver == "unipc":
        return schedulers.unipc_step(state, velocity, k, latents)
    return schedulers.euler_step(state, velocity, k, latents), state


@functools.partial(jax.jit, static_argnames=("graphdef", "solver", "guided", "camera_guided", "num_views"),
                   donate_argnames=("latents", "solver_state"))
def _step(graphdef, params, latents, solver_state, k, timesteps, text, scales, conditions, *, solver: str,
          guided: bool, camera_guided: bool, num_views: int):
    """`text` and `conditions` hold the passes' rows [cond | uncond if guided | static camera if camera_guided];
    scales = (text, camera) guidance scales."""
    model = nnx.merge(graphdef, params)
    batch = latents.shape[0]
    passes = 1 + guided + camera_guided
    x = jnp.concatenate([latents] * passes)
    t = jnp.full((x.shape[0],), timesteps[k], jnp.float32)
    velocity = model(x, t, text, num_views=num_views, **conditions)
    cond = velocity[:batch]
    out = cond
    if guided:
        uncond = velocity[batch:2 * batch]
        out = uncond + scales[0] * (cond - uncond)
    if camera_guided:
        out = out + (scales[1] - 1) * (cond - velocity[(passes - 1) * batch:])
    return _solver_update(solver, solver_state, out, k, latents)


def denoise(dit, noise: Float[Array, "B F h w C"], text: Float[Array, "B S D"],
            negative_text: Float[Array, "B S D"] | None, sampler: Sampler, *, num_views: int = 1,
            progress: bool = True, mesh: jax.sharding.Mesh | None = None,
            static_camera: dict[str, Array] | None = None,
            **conditions: Array | None) -> Float[Array, "B F h w C"]:
    """Runs `sampler.steps` guided solver steps from `noise` (sigma 1) to clean latents (float32).

    `conditions`: y, clip_feature, cond_latents, cam_emb as the DiT variant needs them (None entries are dropped).
    `negative_text` may be None only when `sampler.cfg_scale == 1`; `static_camera` (the entries of `conditions`
    that carry the camera, with a static camera instead) only when `sampler.camera_scale == 1`.
    `mesh` (`sharding.make_mesh`): the DiT weights are FSDP/tensor-sharded by the logical rules, the [2B] CFG
    batch (samples, views) goes over data x fsdp and the video tokens over `sequence` (Ulysses attention).
    """
    if mesh is not None:
        from camclone_jax import sharding

        with sharding.use_mesh(mesh):
            graphdef, params = nnx.split(dit)
            dit = nnx.merge(graphdef, jax.device_put(params, sharding.param_shardings(params, mesh)))
            return denoise(dit, noise, text, negative_text, sampler, num_views=num_views, progress=progress,
                           static_camera=static_camera, **conditions)
    noise = jnp.asarray(noise, jnp.float32)
    text = jnp.asarray(text, jnp.float32)
    if text.shape[0] != noise.shape[0]:
        raise ValueError(f"text batch {text.shape[0]} != latent batch {noise.shape[0]} (repeat the prompt per "
                         "sample / view)")
    conditions = {name: jnp.asarray(value) for name, value in conditions.items() if value is not None}
    texts, rows = [text], [conditions]
    if sampler.guided:
        if negative_text is None:
            raise ValueError(f"cfg_scale={sampler.cfg_scale} needs negative_text (or use cfg_scale 1)")
        negative_text = jnp.asarray(negative_text, jnp.float32)
        if negative_text.shape[0] != text.shape[0]:
            raise ValueError(f"negative_text batch {negative_text.shape[0]} != text batch {text.shape[0]}")
        texts.append(negative_text)
        rows.append(conditions)
    if sampler.camera_guided:
        rows.append(_static_rows(conditions, static_camera, sampler.camera_scale))
        texts.append(text)
    width = max(a.shape[1] for a in texts)
    text = jnp.concatenate([jnp.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in texts])
    conditions = {name: jnp.concatenate([row[name] for row in rows]) for name in conditions}
    timesteps, table = sampler.schedule()
    graphdef, params = nnx.split(dit)
    params = params.to_pure_dict()  # jit flattens a plain dict in C++, an nnx.State in Python
    latents = jnp.array(noise, copy=True)  # the loop donates its latents; the caller keeps `noise`
    state = _solver_init(sampler, table, latents)
    weight = jax.tree.leaves(params)[0]
    if len(weight.sharding.device_set) == 1:
        latents, state = _placed_like(weight, (latents, state))
    timesteps = jnp.asarray(timesteps)
    scales = jnp.asarray([sampler.cfg_scale, sampler.camera_scale], jnp.float32)
    for k in tqdm(range(sampler.steps), desc=f"denoising ({sampler.solver})", unit="step", disable=not progress):
        latents, state = _step(graphdef, params, latents, state, jnp.int32(k), timesteps, text, scales, conditions,
                               solver=sampler.solver, guided=sampler.guided, camera_guided=sampler.camera_guided,
                               num_views=num_views)
    return latents


@functools.partial(jax.jit, keep_unused=True)
def _placed_like(anchor: Array, tree):
    """`tree`, committed to a device exactly when `anchor` is (a jit's outputs are committed when an input is), as
    the step's outputs will be: with loaded, committed weights, an uncommitted step-0 input would compile the step
    a second time at step 1; with uncommitted ones the result stays free to meet arrays on other devices."""
    del anchor
    return tree


def _static_rows(conditions: dict[str, Array], static_camera: dict[str, Array] | None, scale: float) -> dict:
    """`conditions` with the camera entries of `static_camera` swapped in (shapes checked)."""
    if not static_camera:
        raise ValueError(f"camera_scale={scale} needs static_camera: the camera conditions with a static camera "
                         "(or use camera_scale 1)")
    unknown = sorted(set(static_camera) - set(conditions))
    if unknown:
        raise ValueError(f"static_camera entries {unknown} are not conditions of this call ({sorted(conditions)})")
    static = dict(conditions)
    for name, value in static_camera.items():
        value = jnp.asarray(value, conditions[name].dtype)
        if value.shape != conditions[name].shape:
            raise ValueError(f"static_camera[{name!r}] must have the shape of {name} {list(conditions[name].shape)}, "
                             f"got {list(value.shape)}")
        static[name] = value
    return static


def noise_like(seed: int, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Seeded standard-normal float32 latents (reproducible across runs and machines for a given JAX PRNG)."""
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)
