"""Full sampling (the guided denoising loop + VAE decode): JAX vs PyTorch (diffusers, SDPA), wall time, peak memory,
TFLOP/s and MFU.

Usage:
    python -m benchmarks.sampling [--sizes tiny,medium] [--steps 4] [--task t2v|camclone] [--repeats 3]
                                  [--threads N] [--peak-tflops X]

One sample = `--steps` flow-matching Euler steps (DiffSynth sigma grid, shift 5), each one DiT forward on a batch
of 2 (text CFG: [text; negative text], guidance scale 5), then one untiled VAE decode of the final latents. Both
sides get the same config, random fp32 weights (a speed benchmark: weights need not match), the same noise and
the same random text features (512 rows), and the same sigma / timestep grid (`Sampler.schedule()`).

JAX: `camclone_jax.sample.denoise.denoise(dit, noise, text, negative_text, Sampler("euler", steps, shift=5.0,
cfg_scale=5.0), progress=False)` then `camclone_jax.models.wan_vae.decode(vae, latents)`, as
`camclone_jax.sample.tasks.generate` runs them (untiled). PyTorch: diffusers `WanTransformer3DModel` and
`AutoencoderKLWan` with the same dims, and a hand loop: per step one forward on `torch.cat([x, x])` with
[text; negative text], `uncond + 5 (cond - uncond)`, `x += (sigma_next - sigma) v`; then the latents are
de-normalised (`z / (1 / std) + mean`, as diffusers' WanPipeline does; JAX does it inside `decode`) and
`vae.decode(z).sample`.

`--task camclone`: the CamCloneMaster V2V token layout, an i2v-architecture DiT (in_dim 36, image branch on 257
CLIP tokens) on [target | camera reference | content] frames, so the self-attention sees 3x the latent frames.
JAX: the `camclone` variant with `y` (mask + image latent), `clip_feature` and `cond_latents` = [ref | content];
PyTorch: `WanTransformer3DModel(image_dim=1280, added_kv_proj_dim=dim)` fed the same frames concatenated on the
frame axis ([x | y] on channels for the target, the condition latents zero-padded to in_dim, as
`camclone_jax/models/wan_dit.py` does) with the output sliced to the target frames: the same computation.

Every (framework, size) pair runs in its own subprocess (`--worker jax|torch --size NAME`, one JSON line). Per
pair: one warm-up sample (for JAX it also compiles the step and the decode; "compile" = warm-up minus the
fastest timed sample), then `--repeats` timed samples (median; the loop and the decode are timed separately,
each synchronised: JAX `block_until_ready`, CUDA `torch.cuda.synchronize`). FLOPs per sample = steps x 2 (CFG)
x `camclone_jax.flops.dit_forward_flops` + the decode's FLOPs from XLA's cost analysis of the JAX graph
(`benchmarks.vae.vae_flops`), used for both frameworks; MFU = achieved FLOP/s / the device's fp32 peak
(`--peak-tflops`, else `camclone_jax.flops.peak_flops_per_second`; "–" on CPU without `--peak-tflops`). Memory on
CPU: the worker's peak RSS over the timed samples (VmHWM reset after the warm-up), weights included, and its
growth over the RSS after the build; on GPU: peak device bytes (JAX's cannot be reset: a running peak, warm-up
included).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

from benchmarks.common import (add_common_args, cpu_name, emit, load_note, memory_gib, mfu, parse_sizes, peak_flops,
                               peak_note, reset_peak_rss, rss_kib, run_worker_and_print, spawn, tflops,
                               torch_device_hooks, versions)

# name -> (DiT size: "tiny" or "1_3b", DiT overrides, VAE factory, target latent (F, H, W), default steps).
# "tiny" is the test-sized DiT and VAE (per-call overhead). "medium" keeps the 1.3B width (head_dim 128) with 4
# layers and the real VAE on 9 frames at 240x416 (1170 target tokens), so that a CPU run takes minutes. "full" is
# the upstream sampling shape, 1.3B, 81 frames at 480x832, 50 steps: for an accelerator.
SIZES = {
    "tiny": ("tiny", {}, "tiny_vae", (3, 16, 16), 4),
    "medium": ("1_3b", {"num_layers": 4}, "wan_vae", (3, 30, 52), 4),
    "full": ("1_3b", {}, "wan_vae", (21, 60, 104), 50),
}
TASKS = ("t2v", "camclone")
TEXT_LEN = 512
SHIFT, CFG_SCALE = 5.0, 5.0


def make_config(size: str, task: str):
    from camclone_jax.models import DiTConfig
    kind, kw, *_ = SIZES[size]
    if kind == "tiny":
        return DiTConfig.tiny(task, **kw)
    return (DiTConfig.camclonemaster if task == "camclone" else DiTConfig.wan_t2v_1_3b)(**kw)


def make_vae_config(size: str):
    import camclone_jax.models.wan_vae as wv
    return getattr(wv, SIZES[size][2])()


def default_steps(size: str) -> int:
    return SIZES[size][4]


def make_sampler(steps: int):
    from camclone_jax.sample.denoise import Sampler
    return Sampler("euler", steps, shift=SHIFT, cfg_scale=CFG_SCALE)


def dit_sample_flops(cfg, latent, steps: int) -> float:
    """DiT FLOPs of one sample: steps x one forward on the CFG batch of 2."""
    from camclone_jax.flops import dit_forward_flops, dit_sequence_tokens
    return steps * dit_forward_flops(cfg, tokens=dit_sequence_tokens(cfg, *latent), batch=2)


def _inputs(cfg, latent, task: str) -> dict:
    """Channels-last numpy inputs, batch 1: noise, text, negative text (+ y, clip, cond for camclone)."""
    import numpy as np
    rng = np.random.default_rng(0)
    f, h, w = latent
    normal = lambda *shape: rng.standard_normal(shape, dtype=np.float32)
    out = dict(noise=normal(1, f, h, w, cfg.out_dim), text=normal(1, TEXT_LEN, cfg.text_dim),
               negative_text=normal(1, TEXT_LEN, cfg.text_dim))
    if task == "camclone":
        out.update(y=normal(1, f, h, w, cfg.in_dim - cfg.out_dim), clip_feature=normal(1, cfg.num_image_tokens,
                                                                                       cfg.image_dim),
                   cond_latents=normal(1, 2 * f, h, w, cfg.out_dim))  # [camera reference | content]
    return out


# Worker ---------------------------------------------------------------------------------------------------------
def build_jax(size: str, task: str, steps: int):
    """Returns (loop(), decode(latents), sync, device description, peak device bytes, reset peak, decode FLOPs)."""
    import jax
    from flax import nnx
    from camclone_jax.models import WanDiT
    from camclone_jax.models.wan_vae import WanVAE, decode
    from camclone_jax.sample.denoise import denoise
    from benchmarks.vae import vae_flops
    cfg, vcfg, latent = make_config(size, task), make_vae_config(size), SIZES[size][3]
    dit = WanDiT(cfg, rngs=nnx.Rngs(0))
    vae = WanVAE(vcfg, rngs=nnx.Rngs(1))
    inputs = {k: jax.device_put(v) for k, v in _inputs(cfg, latent, task).items()}
    noise, text, negative = inputs.pop("noise"), inputs.pop("text"), inputs.pop("negative_text")
    sampler = make_sampler(steps)
    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    peak = (lambda: dev.memory_stats()["peak_bytes_in_use"]) if gpu else (lambda: None)
    desc = dev.device_kind if gpu else cpu_name()
    flops = vae_flops(vae, "decode", noise.shape)
    return (lambda: denoise(dit, noise, text, negative, sampler, progress=False, **inputs)), (
        lambda z: decode(vae, z)), jax.block_until_ready, desc, peak, (lambda: None), flops


def build_torch(size: str, task: str, steps: int, threads: int):
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from camclone_jax.models.wan_vae import LATENTS_MEAN, LATENTS_STD
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg, vcfg, latent = make_config(size, task), make_vae_config(size), SIZES[size][3]
    camclone = task == "camclone"
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps, image_dim=cfg.image_dim if camclone else None,
        added_kv_proj_dim=cfg.dim if camclone else None).eval().to(dev)
    vae = AutoencoderKLWan(base_dim=vcfg.dim, z_dim=vcfg.z_dim, dim_mult=list(vcfg.dim_mult),
                           num_res_blocks=vcfg.num_res_blocks,
                           temperal_downsample=list(vcfg.temporal_downsample)).eval().to(dev)
    arrays = {k: torch.from_numpy(v).to(dev) for k, v in _inputs(cfg, latent, task).items()}
    first = lambda a: a.permute(0, 4, 1, 2, 3).contiguous()  # channels-last -> channels-first [B, C, F, H, W]
    noise = first(arrays["noise"])
    text = torch.cat([arrays["text"], arrays["negative_text"]])  # the CFG batch: [cond; uncond]
    frames = latent[0]
    if camclone:
        y = first(arrays["y"])
        cond = first(arrays["cond_latents"])
        cond = torch.nn.functional.pad(cond, (0, 0, 0, 0, 0, 0, 0, cfg.in_dim - cond.shape[1]))  # channels
        image = torch.cat([arrays["clip_feature"]] * 2)
    timesteps, sigmas = make_sampler(steps).schedule()
    timesteps, sigmas = timesteps.tolist(), sigmas.tolist()
    mean = torch.tensor(LATENTS_MEAN, device=dev).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(LATENTS_STD, device=dev).view(1, -1, 1, 1, 1)

    def loop():
        x = noise.clone()
        with torch.inference_mode():
            for k in range(steps):
                inp = torch.cat([torch.cat([x, y], 1), cond], 2) if camclone else x
                t = torch.full((2,), timesteps[k], device=dev)
                v = model(hidden_states=torch.cat([inp, inp]), timestep=t, encoder_hidden_states=text,
                          encoder_hidden_states_image=image if camclone else None, return_dict=False)[0]
                v = v[:, :, :frames]
                v = v[1:] + CFG_SCALE * (v[:1] - v[1:])
                x = x + (sigmas[k + 1] - sigmas[k]) * v
        return x

    def dec(x):
        with torch.inference_mode():
            return vae.decode(x / inv_std + mean).sample

    return loop, dec, *torch_device_hooks(dev), None


def run_worker(framework: str, size: str, repeats: int, threads: int, steps: int, task: str) -> dict:
    t0 = time.perf_counter()
    loop, dec, sync, desc, device_peak, reset_device_peak, vae_flops = (
        build_jax(size, task, steps) if framework == "jax" else build_torch(size, task, steps, threads))
    build_s = time.perf_counter() - t0
    rss_built = rss_kib("VmRSS")

    def sample():
        t0 = time.perf_counter()
        z = loop()
        sync(z)
        t1 = time.perf_counter()
        video = dec(z)
        sync(video)
        return t1 - t0, time.perf_counter() - t1, video

    loop_s, decode_s, video = sample()
    warmup = dict(loop_s=loop_s, decode_s=decode_s)
    hwm_reset = reset_peak_rss()
    reset_device_peak()
    loops, decodes = [], []
    for _ in range(repeats):
        loop_s, decode_s, _ = sample()
        loops.append(loop_s)
        decodes.append(decode_s)
    times = [a + b for a, b in zip(loops, decodes)]
    return dict(framework=framework, size=size, task=task, steps=steps, build_s=build_s,
                warmup_s=warmup["loop_s"] + warmup["decode_s"], warmup=warmup, times=times,
                median_s=statistics.median(times), loop_times=loops, loop_median_s=statistics.median(loops),
                decode_times=decodes, decode_median_s=statistics.median(decodes), rss_built_kib=rss_built,
                peak_rss_kib=rss_kib("VmHWM"), hwm_reset=hwm_reset, device_peak_bytes=device_peak(),
                video_shape=list(video.shape), vae_decode_flops=vae_flops, device=desc, threads=threads)


# Parent ---------------------------------------------------------------------------------------------------------
def format_table(rows: list[tuple[str, dict, dict]], peak: float | None = None) -> str:
    from camclone_jax.flops import dit_sequence_tokens
    lines = ["| size | task | layers/dim/heads | latent FxHxW → video TxHxW | tokens | steps | GFLOP DiT + VAE | "
             "torch s/sample | jax s/sample | jax/torch | torch s/step | jax s/step | torch decode s | "
             "jax decode s | torch TFLOP/s | jax TFLOP/s | torch MFU | jax MFU | jax compile s (warm-up − fastest) "
             "| torch peak GiB (Δ) | jax peak GiB (Δ) |",
             "|" + "---|" * 21]
    for size, tr, jr in rows:
        task, steps = jr["task"], jr["steps"]
        cfg, latent = make_config(size, task), SIZES[size][3]
        dit = dit_sample_flops(cfg, latent, steps)
        vae = jr.get("vae_decode_flops")
        flops = dit + (vae or 0.0)
        video = "x".join(map(str, jr["video_shape"][1:4]))
        vae_text = "–" if vae is None else f"{vae / 1e9:.1f}"
        lines.append(
            f"| {size} | {task} | {cfg.num_layers}/{cfg.dim}/{cfg.num_heads} | {'x'.join(map(str, latent))} → "
            f"{video} | {dit_sequence_tokens(cfg, *latent)} | {steps} | {dit / 1e9:.1f} + {vae_text} | "
            f"{tr['median_s']:.3f} | {jr['median_s']:.3f} | **{jr['median_s'] / tr['median_s']:.2f}** | "
            f"{tr['loop_median_s'] / steps:.3f} | {jr['loop_median_s'] / steps:.3f} | {tr['decode_median_s']:.3f} | "
            f"{jr['decode_median_s']:.3f} | {tflops(flops, tr['median_s'])} | {tflops(flops, jr['median_s'])} | "
            f"{mfu(flops, tr['median_s'], peak)} | {mfu(flops, jr['median_s'], peak)} | "
            f"{jr['warmup_s'] - min(jr['times']):.1f} | {memory_gib(tr)} | {memory_gib(jr)} |")
    return "\n".join(lines)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps per sample (default: 4 for the CPU sizes tiny and medium, 50 for full; "
                        "upstream samples with 50)")
    p.add_argument("--task", choices=TASKS, default="t2v",
                   help="t2v: plain DiT on the target latents; camclone: CamCloneMaster's V2V layout, i2v DiT with "
                        "the image branch on [target | camera reference | content] frames (default %(default)s)")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " ") + " One subprocess per (framework, size); "
        "prints a markdown table.",
        epilog="sizes: " + "; ".join(f"{k} = {kind} DiT {kw or ''} + {vae}() on a {'x'.join(map(str, lat))} (FxHxW) "
                                     f"latent, {n} steps by default" for k, (kind, kw, vae, lat, n) in SIZES.items())
        + ". Euler, shift 5, CFG 5 (batch 2 per step). See the module docstring for details.")
    add_common_args(p, SIZES, "tiny,medium", "timed samples after one warm-up sample (default %(default)s)")
    add_sampling_args(p)
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.worker:
        run_worker_and_print(args, lambda fw, size, repeats, threads: run_worker(
            fw, size, repeats, threads, args.steps or default_steps(size), args.task))
        return
    sizes = parse_sizes(p, args.sizes, SIZES)
    loads, rows = [os.getloadavg()[0]], []
    for size in sizes:
        steps = args.steps or default_steps(size)
        tr, jr = (spawn("benchmarks.sampling", fw, size, args.repeats, args.threads, peak_tflops=args.peak_tflops,
                        extra=("--steps", str(steps), "--task", args.task)) for fw in ("torch", "jax"))
        tv, jv = tr["video_shape"], jr["video_shape"]
        if [tv[0], *tv[2:], tv[1]] != jv:
            raise RuntimeError(f"[{size}] decoded videos differ in shape: torch {tv}, jax {jv}")
        print(f"[{size}] torch loop {tr['loop_times']} decode {tr['decode_times']}  jax loop {jr['loop_times']} "
              f"decode {jr['decode_times']} (warm-up torch {tr['warmup_s']:.1f} s, jax {jr['warmup_s']:.1f} s)",
              file=sys.stderr)
        rows.append((size, tr, jr))
        loads.append(os.getloadavg()[0])
    devices = sorted({r["device"] for _, *pair in rows for r in pair})
    peak = peak_flops(args, [jr for _, _, jr in rows])
    return emit(f"### Full sampling ({args.task}: denoising loop + VAE decode), JAX vs PyTorch "
                f"({datetime.date.today()})",
                f"Device: {' / '.join(devices)}; threads {args.threads} (CPU affinity + "
                f"torch.set_num_threads); batch 1, fp32, random weights, {TEXT_LEN} text rows; Euler (DiffSynth "
                f"sigmas, shift {SHIFT}), text CFG {CFG_SCALE} (one batch-2 forward per step), then an untiled VAE "
                f"decode; median of {args.repeats} samples after one warm-up sample. JAX: "
                f"camclone_jax.sample.denoise.denoise + wan_vae.decode; PyTorch: diffusers WanTransformer3DModel "
                f"(SDPA{', i2v image branch' if args.task == 'camclone' else ''}) in a hand-written loop + "
                f"AutoencoderKLWan.decode. GFLOP: steps x 2 x dit_forward_flops + the decode's XLA cost analysis. "
                f"Peak memory: GPU peak bytes where marked (device; JAX's is a running peak), else the worker's "
                f"peak RSS over the timed samples, weights included (Δ: growth over the RSS after the build). "
                f"{peak_note(peak)}. {load_note(loads)}. Versions: {versions()}.",
                format_table(rows, peak))


if __name__ == "__main__":
    main()
