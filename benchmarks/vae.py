"""Encode / decode wall time and peak memory: JAX `WanVAE` vs diffusers `AutoencoderKLWan` (PyTorch).

Usage:
    python -m benchmarks.vae [--sizes small,clip,tiny] [--repeats 3] [--threads N]

Both models get the same config (full size: the Wan2.1 VAE, base width 96, z_dim 16, 126.9M parameters; "tiny":
width 8), random fp32 weights (a speed benchmark: weights need not match) and the same random clip, uniform in
[-1, 1], batch 1: JAX channels-last [B, T, H, W, 3] through the jitted `encode` / `decode` of
`camclone_jax.models.wan_vae`, PyTorch channels-first [B, 3, T, H, W] through `vae.encode(x).latent_dist.mode()` /
`vae.decode(z).sample` under `torch.no_grad()` (no tiling, no slicing). Both process time in the same causal
chunks (encode: frame 0, then 4 frames at a time; decode: one latent frame at a time). Decode is fed the latents
that the warm-up encode produced. Every (framework, size) pair runs in its own subprocess (`--worker jax|torch
--size NAME`, which prints one JSON line), so imports, allocator caches and XLA compilation of one never pollute
the timing or the memory of another; the parent prints a markdown table with one row per (size, op).

Measured per pair and op: one warm-up call of encode, then one of decode (for JAX they also trace and compile;
"compile" = warm-up minus the fastest timed call), then `--repeats` timed encode calls, then `--repeats` timed
decode calls (median and min; JAX synchronised with `block_until_ready`); the jax/torch ratio uses the medians.
Memory on CPU: peak RSS of the worker over each op's timed calls (VmHWM is reset after the warm-ups and again
between the encode and the decode calls, so compile-time memory is excluded and each op gets its own peak),
weights included, plus its growth over the RSS right after the model build. On GPU: peak device bytes
(`torch.cuda.max_memory_allocated()`, reset before each op; JAX `memory_stats()["peak_bytes_in_use"]`, which
cannot be reset, so the JAX figure is a running peak since start-up, warm-ups included, and its decode row is
the larger of the two ops). `--threads N` pins each worker to N cores (CPU affinity, which both XLA's and
PyTorch's thread pools size themselves to) and calls `torch.set_num_threads(N)`.

FLOPs per call come from XLA's cost analysis of the JAX graph (`vae_flops`; convolutions and everything else,
before optimisation) and are used for both frameworks' TFLOP/s and MFU (achieved FLOP/s / the device's fp32
peak: `--peak-tflops`, else `camclone_jax.flops.peak_flops_per_second`; "–" on CPU without `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

from benchmarks.common import (add_common_args, cpu_name, emit, load_note, mfu, parse_sizes, peak_flops, peak_note,
                               reset_peak_rss, rss_kib, run_worker_and_print, seconds, spawn, tflops,
                               torch_device_hooks, versions)

# name -> (VAEConfig factory, pixel clip (T, H, W)). "small" is the required CPU point; "clip" trades frames for
# resolution (4x the pixels per frame); "tiny" (width 8) shows the fixed per-call overhead.
SIZES = {
    "small": ("wan_vae", (17, 128, 128)),
    "clip": ("wan_vae", (5, 256, 256)),
    "tiny": ("tiny_vae", (9, 64, 64)),
}
OPS = ("encode", "decode")


def make_config(size: str):
    import camclone_jax.models.wan_vae as wv
    return getattr(wv, SIZES[size][0])()


def latent_shape(clip) -> tuple[int, int, int]:
    t, h, w = clip
    return (t - 1) // 4 + 1, h // 8, w // 8


def _video(clip):
    import numpy as np
    return np.random.default_rng(0).uniform(-1.0, 1.0, (1, *clip, 3)).astype(np.float32)  # [B, T, H, W, 3]


def vae_flops(vae, op: str, shape: tuple[int, ...]) -> float:
    """FLOPs of one untiled `encode` (shape = video [B, T, H, W, 3]) or `decode` (latents [B, F, h, w, C]) call,
    from XLA's cost analysis of the lowered (unoptimised) HLO. The cost analysis counts a `lax.scan` body once,
    whatever its trip count, so this lowers the op on one chunk and on two, and returns
    first chunk + (chunks - 1) x (two chunks - one chunk). Lowering only: nothing is compiled or run."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    import camclone_jax.models.wan_vae as wv
    graphdef, state = nnx.split(vae)
    chunk = wv.TIME_STRIDE if op == "encode" else 1
    chunks = (shape[1] - 1) // chunk + 1

    def cost(frames: int) -> float:
        x = jax.ShapeDtypeStruct((shape[0], frames, *shape[2:]), jnp.float32)
        lowered = (wv._encode_split.lower(graphdef, state, x) if op == "encode"
                   else wv._decode_split.lower(graphdef, state, x, True))
        return float(lowered.cost_analysis()["flops"])

    first = cost(1)
    return first if chunks == 1 else first + (chunks - 1) * (cost(1 + chunk) - first)


# Worker ---------------------------------------------------------------------------------------------------------
def build_jax(cfg, clip):
    """Returns (encode(), decode(latents), sync, device description, peak device bytes or None, reset peak,
    {op: FLOPs per call})."""
    import jax
    from flax import nnx
    from camclone_jax.models.wan_vae import WanVAE, decode, encode
    vae = WanVAE(cfg, rngs=nnx.Rngs(0))
    video = jax.device_put(_video(clip))
    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    peak = (lambda: dev.memory_stats()["peak_bytes_in_use"]) if gpu else (lambda: None)
    desc = dev.device_kind if gpu else cpu_name()
    # `encode` / `decode` are jitted with the weights as an argument, so they are not baked in as constants.
    flops = {"encode": vae_flops(vae, "encode", video.shape),
             "decode": vae_flops(vae, "decode", (1, *latent_shape(clip), cfg.z_dim))}
    return (lambda: encode(vae, video)), (lambda z: decode(vae, z)), jax.block_until_ready, desc, peak, (
        lambda: None), flops


def build_torch(cfg, clip, threads: int):
    import torch
    from diffusers import AutoencoderKLWan
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = AutoencoderKLWan(base_dim=cfg.dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult),
                           num_res_blocks=cfg.num_res_blocks,
                           temperal_downsample=list(cfg.temporal_downsample)).eval().to(dev)
    x = torch.from_numpy(_video(clip)).permute(0, 4, 1, 2, 3).contiguous().to(dev)  # [B, 3, T, H, W]

    def enc():
        with torch.no_grad():
            return vae.encode(x).latent_dist.mode()

    def dec(z):
        with torch.no_grad():
            return vae.decode(z).sample

    return enc, dec, *torch_device_hooks(dev), None


def run_worker(framework: str, size: str, repeats: int, threads: int) -> dict:
    cfg, clip = make_config(size), SIZES[size][1]
    t0 = time.perf_counter()
    enc, dec, sync, desc, device_peak, reset_device_peak, flops = (build_jax(cfg, clip) if framework == "jax"
                                                                   else build_torch(cfg, clip, threads))
    build_s = time.perf_counter() - t0
    rss_built = rss_kib("VmRSS")
    warmup = {}
    t0 = time.perf_counter()
    z = enc()
    sync(z)
    warmup["encode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sync(dec(z))
    warmup["decode"] = time.perf_counter() - t0
    calls = {"encode": enc, "decode": lambda: dec(z)}
    ops = {}
    for op in OPS:
        hwm_reset = reset_peak_rss()
        reset_device_peak()
        rss_before = rss_kib("VmRSS")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sync(calls[op]())
            times.append(time.perf_counter() - t0)
        ops[op] = dict(warmup_s=warmup[op], times=times, median_s=statistics.median(times),
                       rss_before_kib=rss_before, peak_rss_kib=rss_kib("VmHWM"), hwm_reset=hwm_reset,
                       device_peak_bytes=device_peak())
    return dict(framework=framework, size=size, build_s=build_s, rss_built_kib=rss_built, ops=ops,
                latent=list(z.shape), device=desc, threads=threads, flops=flops)


# Parent ---------------------------------------------------------------------------------------------------------
def _mem(r: dict, op: str) -> str:
    o = r["ops"][op]
    if o["device_peak_bytes"] is not None:
        return f"{o['device_peak_bytes'] / 2**20:.0f} (device)"
    return f"{o['peak_rss_kib'] / 2**10:.0f} ({(o['peak_rss_kib'] - r['rss_built_kib']) / 2**10:+.0f})"


def format_table(rows: list[tuple[str, dict, dict]], peak: float | None = None) -> str:
    lines = ["| size | op | clip TxHxW → latent Fxhxw | GFLOP (XLA) | torch s med (min) | jax s med (min) | "
             "jax/torch (median) | torch TFLOP/s | jax TFLOP/s | torch MFU | jax MFU | "
             "jax compile s (warm-up − fastest) | torch peak MiB (Δ) | jax peak MiB (Δ) |",
             "|" + "---|" * 14]
    for size, tr, jr in rows:
        cfg, clip = make_config(size), SIZES[size][1]
        shapes = f"{'x'.join(map(str, clip))} → {'x'.join(map(str, latent_shape(clip)))}"
        for op in OPS:
            t, j = tr["ops"][op], jr["ops"][op]
            flops = (jr.get("flops") or {}).get(op)
            gflop = "–" if flops is None else f"{flops / 1e9:.1f}"
            lines.append(f"| {size} (width {cfg.dim}) | {op} | {shapes} | {gflop} | {seconds(t)} | {seconds(j)} | "
                         f"**{j['median_s'] / t['median_s']:.2f}** | {tflops(flops, t['median_s'])} | "
                         f"{tflops(flops, j['median_s'])} | {mfu(flops, t['median_s'], peak)} | "
                         f"{mfu(flops, j['median_s'], peak)} | {j['warmup_s'] - min(j['times']):.1f} | "
                         f"{_mem(tr, op)} | {_mem(jr, op)} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " One subprocess per (framework, size); prints a markdown table.",
        epilog="sizes: " + "; ".join(f"{k} = {f}() on a {'x'.join(map(str, c))} (TxHxW) clip"
                                     for k, (f, c) in SIZES.items()) + ". See the module docstring for details.")
    add_common_args(p, SIZES, "small,clip", "timed calls per op after one warm-up (default %(default)s)")
    args = p.parse_args(argv)
    if args.worker:
        run_worker_and_print(args, run_worker)
        return
    sizes = parse_sizes(p, args.sizes, SIZES)
    loads, rows = [os.getloadavg()[0]], []
    for size in sizes:
        tr, jr = (spawn("benchmarks.vae", fw, size, args.repeats, args.threads, peak_tflops=args.peak_tflops)
                  for fw in ("torch", "jax"))
        if tuple(tr["latent"][2:]) != latent_shape(SIZES[size][1]) or tuple(jr["latent"][1:4]) != latent_shape(
                SIZES[size][1]):
            raise RuntimeError(f"[{size}] unexpected latent shapes: torch {tr['latent']}, jax {jr['latent']}")
        for op in OPS:
            print(f"[{size} {op}] torch {tr['ops'][op]['times']}  jax {jr['ops'][op]['times']} "
                  f"(warm-up torch {tr['ops'][op]['warmup_s']:.1f} s, jax {jr['ops'][op]['warmup_s']:.1f} s)",
                  file=sys.stderr)
        rows.append((size, tr, jr))
        loads.append(os.getloadavg()[0])
    devices = sorted({r["device"] for _, *pair in rows for r in pair})
    peak = peak_flops(args, [jr for _, _, jr in rows])
    return emit(f"### Wan VAE encode / decode, JAX vs PyTorch ({datetime.date.today()})",
                f"Device: {' / '.join(devices)}; threads {args.threads} (CPU affinity + "
                f"torch.set_num_threads); batch 1, fp32, random weights and a random clip in [-1, 1], median (min) "
                f"of {args.repeats} after one warm-up call of each op. PyTorch: diffusers AutoencoderKLWan, "
                f"`encode(x).latent_dist.mode()` / `decode(z).sample`, no tiling. JAX: jitted `wan_vae.encode` / "
                f"`decode`. GFLOP: XLA cost analysis of the JAX graph, used for both frameworks. Peak memory: GPU "
                f"peak bytes where marked (device; JAX's cannot be reset, so it is a running peak), else the "
                f"worker's peak RSS over that op's timed calls (VmHWM reset before each op), weights included (Δ: "
                f"growth over the RSS after the model build). {peak_note(peak)}. {load_note(loads)}. Versions: "
                f"{versions()}.",
                format_table(rows, peak))

if __name__ == "__main__":
    main()
