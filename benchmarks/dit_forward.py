"""Forward wall time and peak memory: JAX `WanDiT` vs diffusers `WanTransformer3DModel` (PyTorch, SDPA).

Usage:
    python -m benchmarks.dit_forward [--sizes tiny,medium,full] [--repeats 3] [--threads N]

Both models get the same config, random fp32 weights (a speed benchmark: weights need not match) and the same
inputs: B=1 latents, one timestep, 512 text rows. Every (framework, size) pair runs in its own subprocess
(`--worker jax|torch --size NAME`, which prints one JSON line), so imports, allocator caches and XLA compilation
of one never pollute the timing or the memory of another; the parent prints a markdown table.

Measured per pair: one warm-up call (for JAX it also traces and compiles; "compile" = warm-up minus the fastest
timed call), then `--repeats` timed calls (median and min; JAX synchronised with `block_until_ready`); the
jax/torch ratio and achieved TFLOP/s use the medians, from an analytic
matmul FLOP count (`forward_flops`). Memory on CPU: peak RSS of the worker over the timed calls (VmHWM is reset
after the warm-up, so compile-time memory is excluded), weights included, plus its growth over the RSS right
after the model build. On GPU: peak device bytes (`memory_stats()["peak_bytes_in_use"]` /
`torch.cuda.max_memory_allocated()`), weights included. `--threads N` pins each worker to N cores (CPU
affinity, which both XLA's and PyTorch's thread pools size themselves to) and calls `torch.set_num_threads(N)`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

# name -> (DiTConfig factory, its overrides, latent (F, H, W)). "full" is the real 1.3B on a latent sized so that
# its PyTorch forward takes ~10 s on a 2-core CPU. "medium" keeps the 1.3B width (head_dim 128) with 4 layers
# but 4x the tokens (17 frames at 240x416 px), so that self-attention, quadratic in tokens, carries real weight.
SIZES = {
    "tiny": ("tiny", {}, (3, 16, 16)),
    "medium": ("wan_t2v_1_3b", {"num_layers": 4}, (5, 30, 52)),
    "full": ("wan_t2v_1_3b", {}, (3, 20, 32)),
}
TEXT_LEN = 512


def make_config(size: str):
    from camclone_jax.models import DiTConfig
    factory, kw, _ = SIZES[size]
    return getattr(DiTConfig, factory)(**kw)


def num_tokens(cfg, latent) -> int:
    pt, ph, pw = cfg.patch_size
    return (latent[0] // pt) * (latent[1] // ph) * (latent[2] // pw)


def forward_flops(cfg, tokens: int, batch: int = 1) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward; norms, RoPE, softmax and the time MLP are ignored."""
    l, e, s, f = tokens, cfg.dim, cfg.text_len, cfg.ffn_dim
    block = (2 * l * e * e * 4          # self-attention q, k, v, o
             + 2 * 2 * l * l * e        # q k^T and weights @ v
             + 2 * l * e * e * 2        # cross-attention q, o
             + 2 * s * e * e * 2        # cross-attention k, v over the text rows
             + 2 * 2 * l * s * e        # cross-attention logits and weighted sum
             + 2 * 2 * l * e * f)       # FFN
    patch_volume = cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
    patch = 2 * l * cfg.in_dim * patch_volume * e
    text = 2 * s * cfg.text_dim * e + 2 * s * e * e
    head = 2 * l * e * cfg.out_dim * patch_volume
    return float(batch * (cfg.num_layers * block + patch + text + head))


# Worker ---------------------------------------------------------------------------------------------------------
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def _reset_peak_rss() -> bool:
    """Resets VmHWM (Linux >= 4.0) so the peak covers the timed calls only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _inputs(cfg, latent):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *latent, cfg.out_dim), dtype=np.float32)
    t = np.array([500.0], np.float32)
    context = rng.standard_normal((1, TEXT_LEN, cfg.text_dim), dtype=np.float32)
    return x, t, context


def build_jax(cfg, latent):
    """Returns (call, sync, device description, peak device bytes or None)."""
    import jax
    from flax import nnx
    from camclone_jax.models import WanDiT
    graphdef, state = nnx.split(WanDiT(cfg, rngs=nnx.Rngs(0)))
    # Weights go in as an argument: closed-over arrays would be baked into the HLO as constants.
    fwd = jax.jit(lambda state, x, t, c: nnx.merge(graphdef, state)(x, t, c))
    x, t, c = (jax.device_put(a) for a in _inputs(cfg, latent))
    dev = jax.devices()[0]
    peak = (lambda: dev.memory_stats()["peak_bytes_in_use"]) if dev.platform == "gpu" else (lambda: None)
    desc = dev.device_kind if dev.platform == "gpu" else _cpu_name()
    return (lambda: fwd(state, x, t, c)), jax.block_until_ready, desc, peak


def build_torch(cfg, latent, threads: int):
    import torch
    from diffusers import WanTransformer3DModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps).eval().to(dev)
    x, t, c = _inputs(cfg, latent)
    x = torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous().to(dev)  # channels-first [B, C, F, H, W]
    t, c = torch.from_numpy(t).to(dev), torch.from_numpy(c).to(dev)

    def call():
        with torch.inference_mode():
            return model(hidden_states=x, timestep=t, encoder_hidden_states=c, return_dict=False)[0]

    cuda = dev.type == "cuda"
    sync = (lambda out: torch.cuda.synchronize()) if cuda else (lambda out: out)
    desc = torch.cuda.get_device_name() if cuda else _cpu_name()
    return call, sync, desc, (torch.cuda.max_memory_allocated if cuda else lambda: None)


def run_worker(framework: str, size: str, repeats: int, threads: int) -> dict:
    cfg, latent = make_config(size), SIZES[size][2]
    t0 = time.perf_counter()
    call, sync, desc, device_peak = (build_jax(cfg, latent) if framework == "jax"
                                     else build_torch(cfg, latent, threads))
    build_s = time.perf_counter() - t0
    rss_built = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    sync(call())
    warmup_s = time.perf_counter() - t0
    hwm_reset = _reset_peak_rss()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(call())
        times.append(time.perf_counter() - t0)
    peak_rss = _rss_kib("VmHWM")
    return dict(framework=framework, size=size, build_s=build_s, warmup_s=warmup_s, times=times,
                median_s=statistics.median(times), rss_built_kib=rss_built, peak_rss_kib=peak_rss,
                hwm_reset=hwm_reset, device_peak_bytes=device_peak(), device=desc, threads=threads)


# Parent ---------------------------------------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = re.search(r"model name\s*:\s*(.+)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        name = "unknown CPU"
    return f"{name} ({len(os.sched_getaffinity(0))} cores used)"


def spawn(framework: str, size: str, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.dit_forward", "--worker", framework, "--size", size,
           "--repeats", str(repeats), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> str:
    from importlib.metadata import version
    return ", ".join(f"{p} {version(p)}" for p in ("jax", "jaxlib", "flax", "torch", "diffusers"))


def _secs(r: dict) -> str:
    return f"{r['median_s']:.3f} ({min(r['times']):.3f})"


def _mem(r: dict) -> str:
    if r["device_peak_bytes"] is not None:
        return f"{r['device_peak_bytes'] / 2**30:.2f} (device)"
    return f"{r['peak_rss_kib'] / 2**20:.2f} ({(r['peak_rss_kib'] - r['rss_built_kib']) / 2**20:+.2f})"


def format_table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| size | layers/dim/heads | latent FxHxW | tokens | GFLOP | torch s med (min) | jax s med (min) | "
             "jax/torch (median) | torch TFLOP/s | jax TFLOP/s | jax compile s (warm-up − fastest) | "
             "torch peak GiB (Δ) | jax peak GiB (Δ) |",
             "|" + "---|" * 13]
    for size, tr, jr in rows:
        cfg, latent = make_config(size), SIZES[size][2]
        flops = forward_flops(cfg, num_tokens(cfg, latent))
        lines.append(f"| {size} | {cfg.num_layers}/{cfg.dim}/{cfg.num_heads} | {'x'.join(map(str, latent))} | "
                     f"{num_tokens(cfg, latent)} | {flops / 1e9:.1f} | {_secs(tr)} | {_secs(jr)} | "
                     f"**{jr['median_s'] / tr['median_s']:.2f}** | {flops / tr['median_s'] / 1e12:.3f} | "
                     f"{flops / jr['median_s'] / 1e12:.3f} | {jr['warmup_s'] - min(jr['times']):.1f} | "
                     f"{_mem(tr)} | {_mem(jr)} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="tiny,medium,full")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        # Must precede the jax / torch imports: both size their thread pools from the affinity mask.
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
        print(json.dumps(run_worker(args.worker, args.size, args.repeats, args.threads)))
        return
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        p.error(f"unknown sizes {sorted(unknown)}; known: {list(SIZES)}")
    # Other processes on the same cores skew CPU timings (PyTorch's OpenMP barriers suffer most), so say so.
    loads, rows = [os.getloadavg()[0]], []
    for size in sizes:
        tr, jr = (spawn(fw, size, args.repeats, args.threads) for fw in ("torch", "jax"))
        print(f"[{size}] torch {tr['times']}  jax {jr['times']} (warm-up {jr['warmup_s']:.1f} s)", file=sys.stderr)
        rows.append((size, tr, jr))
        loads.append(os.getloadavg()[0])
    devices = sorted({r["device"] for _, *pair in rows for r in pair})
    print(f"### WanDiT forward, JAX vs PyTorch ({datetime.date.today()})\n")
    print(f"Device: {' / '.join(devices)}; threads {args.threads} (CPU affinity + torch.set_num_threads); batch 1, "
          f"fp32, {TEXT_LEN} text rows, random weights, median (min) of {args.repeats} after one warm-up call. "
          f"PyTorch: diffusers WanTransformer3DModel (SDPA). Peak memory: GPU peak bytes where marked (device), "
          f"else the worker's peak RSS over the timed calls, weights included (Δ: growth over the RSS after the "
          f"model build). 1-min load average sampled before/after each size: {', '.join(f'{x:.1f}' for x in loads)} "
          f"(our worker alone accounts for up to --threads; more means other processes shared the cores). "
          f"Versions: {versions()}.\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
