"""`python -m camclone_jax.sample`: run a camera-control DiT denoising loop.

Today this runs `--demo`: the CamCloneMaster V2V denoising loop (DiffSynth flow-matching Euler, shift 5, CFG on
text) on a tiny random-weight DiT with procedurally generated reference / content latents, on the CPU in
seconds. It writes the final latents to an .npz file. The full pipelines (VAE encode/decode, umT5, CLIP, mp4
output, every mode) come with the sampling issue; until then there is no pixel output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.sample.schedulers import diffsynth_sigmas


def moving_pattern(frames: int, height: int, width: int, shift: tuple[float, float], seed: int) -> np.ndarray:
    """Latent-shaped stripes that translate by `shift` latent pixels per frame: a stand-in for a panning
    camera, [F, H, W, 16]."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.3, 0.9, size=(16, 2))
    phase = rng.uniform(0, 2 * np.pi, size=16)
    f, i, j = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    y, x = i[..., None] + shift[0] * f[..., None], j[..., None] + shift[1] * f[..., None]
    return np.sin(freq[:, 0] * y + freq[:, 1] * x + phase).astype(np.float32)


def demo(args) -> Path:
    cfg = DiTConfig.tiny("camclone")
    print("camclone_jax demo: CamCloneMaster V2V denoising loop on a TINY RANDOM-WEIGHT DiT.")
    print("The weights are untrained, so the result is not a meaningful video; this shows the pipeline runs.")
    model = WanDiT(cfg, rngs=nnx.Rngs(args.seed))
    head = model.head.head.kernel  # a fresh head is zero (upstream init); give the demo a non-trivial one
    head.set_value(jax.random.normal(jax.random.key(args.seed), head.shape) * 0.05)
    frames, height, width = (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8
    reference = moving_pattern(frames, height, width, (0.0, 1.0), args.seed + 1)  # pans right
    content = moving_pattern(frames, height, width, (0.5, 0.0), args.seed + 2)
    cond = jnp.asarray(np.concatenate([reference, content])[None])
    rng = np.random.default_rng(args.seed)
    y = np.zeros((1, frames, height, width, 20), np.float32)
    y[:, 0, ..., :4] = 1.0  # I2V mask: first latent frame known
    y[:, ..., 4:] = content[None, :1]
    clip = jnp.asarray(rng.standard_normal((1, cfg.num_image_tokens, cfg.image_dim)), jnp.float32)
    text = jnp.asarray(rng.standard_normal((2, 16, cfg.text_dim)), jnp.float32)  # [prompt, negative prompt]
    latents = jnp.asarray(rng.standard_normal((1, frames, height, width, 16)), jnp.float32)
    sigmas = diffsynth_sigmas(args.steps)

    graphdef, state = nnx.split(model)

    @jax.jit
    def euler_step(latents, sigma, next_sigma):
        batch = lambda a: jnp.concatenate([a, a])  # conditional and unconditional passes in one forward
        velocity = nnx.merge(graphdef, state)(batch(latents), jnp.full((2,), sigma * 1000.0), text, y=batch(y),
                                             clip_feature=batch(clip), cond_latents=batch(cond))
        guided = velocity[1] + args.cfg_scale * (velocity[0] - velocity[1])
        return latents + guided[None] * (next_sigma - sigma)

    start = time.perf_counter()
    for k in tqdm(range(args.steps), desc="denoising", unit="step"):
        latents = euler_step(latents, sigmas[k], sigmas[k + 1])
    latents = np.asarray(latents)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, latents=latents, reference=reference, content=content, sigmas=sigmas)
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s; latents {latents.shape}, "
          f"mean {latents.mean():+.3f}, std {latents.std():.3f}, finite {bool(np.isfinite(latents).all())}")
    print(f"wrote {out}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m camclone_jax.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="run the built-in tiny random-weight demo (no downloads)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps (upstream uses 50)")
    parser.add_argument("--cfg-scale", type=float, default=5.0, help="text classifier-free guidance scale")
    parser.add_argument("--frames", type=int, default=17, help="pixel frames, of the form 4k+1")
    parser.add_argument("--height", type=int, default=64, help="pixel height, divisible by 16")
    parser.add_argument("--width", type=int, default=96, help="pixel width, divisible by 16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="out/demo_latents.npz", help="where to write the latents")
    args = parser.parse_args(argv)
    if (args.frames - 1) % 4:
        parser.error(f"--frames must be of the form 4k+1 (e.g. 17, 81), got {args.frames}")
    if args.height % 16 or args.width % 16:
        parser.error(f"--height and --width must be divisible by 16, got {args.height}x{args.width}")
    if not args.demo:
        parser.error("only --demo is available so far; the checkpoint-driven modes arrive with the sampling issue")
    demo(args)


if __name__ == "__main__":
    main()
