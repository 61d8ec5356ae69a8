"""Forward wall time and peak memory: JAX `WanDiT` vs diffusers `WanTransformer3DModel` (PyTorch, SDPA).

Usage:
    python -m benchmarks.dit_forward [--sizes tiny,medium,full] [--repeats 3] [--threads N]

Both models get the same config, random fp32 weights (a speed benchmark: weights need not match) and the same
inputs: B=1 latents, one timestep, 512 text rows. Every (framework, size) pair runs in its own subprocess
(`--worker jax|torch --size NAME`, which prints one JSON line), so imports, allocator caches and XLA compilation
of one never pollute the timing or the memory of another; the parent prints a markdown table.

Measured per pair: one warm-up call (for JAX it also traces and compiles; "compile" = warm-up minus the fastest
timed call), then `--repeats` timed calls, more while they total under 2 s (median and min; JAX synchronised
with `block_until_ready`); the jax/torch ratio and achieved TFLOP/s use the medians, from an analytic matmul FLOP count
(`camclone_jax.flops.dit_forward_flops`). Memory on CPU: peak RSS of the worker over the timed calls (VmHWM is reset
after the warm-up, so compile-time memory is excluded), weights included, plus its growth over the RSS right
after the model build. On GPU: peak device bytes (`memory_stats()["peak_bytes_in_use"]` /
`torch.cuda.max_memory_allocated()`), weights included. MFU = achieved FLOP/s / the device's fp32 peak
(`--peak-tflops`, else `camclone_jax.flops.peak_flops_per_second`; "–" on CPU without `--peak-tflops`).
`--threads N` pins each worker to N cores (CPU affinity, which both XLA's and PyTorch's thread pools size
themselves to) and calls `torch.set_num_threads(N)`.
"""

from __future__ import annotations

import argparse
import datetime

from benchmarks.common import (add_common_args, comparison_cells, cpu_name, emit, load_note, measure, parse_sizes,
                               peak_flops, peak_note, run_pairs, run_worker_and_print, torch_device_hooks, versions)

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
    from camclone_jax.flops import dit_sequence_tokens
    return dit_sequence_tokens(cfg, *latent)


# Worker ---------------------------------------------------------------------------------------------------------
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
    # Weights go in as an argument: closed-over arrays would be baked into the HLO as constants. As a plain dict,
    # as the train step holds them: jit flattens an nnx.State in Python, ~25 us a call.
    state = state.to_pure_dict()
    fwd = jax.jit(lambda state, x, t, c: nnx.merge(graphdef, state)(x, t, c))
    x, t, c = (jax.device_put(a) for a in _inputs(cfg, latent))
    dev = jax.devices()[0]
    peak = (lambda: dev.memory_stats()["peak_bytes_in_use"]) if dev.platform == "gpu" else (lambda: None)
    desc = dev.device_kind if dev.platform == "gpu" else cpu_name()
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

    sync, desc, peak, _ = torch_device_hooks(dev)
    return call, sync, desc, peak


def run_worker(framework: str, size: str, repeats: int, threads: int) -> dict:
    cfg, latent = make_config(size), SIZES[size][2]
    build = (lambda: build_jax(cfg, latent)) if framework == "jax" else (lambda: build_torch(cfg, latent, threads))
    return measure(build, framework, size, repeats, threads)


# Parent ---------------------------------------------------------------------------------------------------------
def format_table(rows: list[tuple[str, dict, dict]], peak: float | None = None) -> str:
    lines = ["| size | layers/dim/heads | latent FxHxW | tokens | GFLOP | torch s med (min) | jax s med (min) | "
             "jax/torch (median) | torch TFLOP/s | jax TFLOP/s | torch MFU | jax MFU | "
             "jax compile s (warm-up − fastest) | torch peak GiB (Δ) | jax peak GiB (Δ) |",
             "|" + "---|" * 15]
    from camclone_jax.flops import dit_forward_flops
    for size, tr, jr in rows:
        cfg, latent = make_config(size), SIZES[size][2]
        flops = dit_forward_flops(cfg, tokens=num_tokens(cfg, latent))
        lines.append(f"| {size} | {cfg.num_layers}/{cfg.dim}/{cfg.num_heads} | {'x'.join(map(str, latent))} | "
                     f"{num_tokens(cfg, latent)} | {flops / 1e9:.1f} | {comparison_cells(flops, tr, jr, peak)}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " One subprocess per (framework, size); prints a markdown table.",
        epilog="sizes: " + "; ".join(f"{k} = {f}({kw or ''}) on a {'x'.join(map(str, lat))} (FxHxW) latent"
                                     for k, (f, kw, lat) in SIZES.items()) + ". See the module docstring.")
    add_common_args(p, SIZES, "tiny,medium,full", "timed calls after one warm-up (default %(default)s)")
    args = p.parse_args(argv)
    if args.worker:
        run_worker_and_print(args, run_worker)
        return
    sizes = parse_sizes(p, args.sizes, SIZES)
    rows, loads, devices = run_pairs("benchmarks.dit_forward", sizes, args)
    peak = peak_flops(args, [jr for _, _, jr in rows])
    return emit(f"### WanDiT forward, JAX vs PyTorch ({datetime.date.today()})",
                f"Device: {' / '.join(devices)}; threads {args.threads} (CPU affinity + "
                f"torch.set_num_threads); batch 1, fp32, {TEXT_LEN} text rows, random weights, median (min) of "
                f"{args.repeats} (more for calls under 2 s in all) after one warm-up call. PyTorch: diffusers "
                f"WanTransformer3DModel (SDPA). Peak "
                f"memory: GPU peak bytes where marked (device), else the worker's peak RSS over the timed calls, "
                f"weights included (Δ: growth over the RSS after the model build). {peak_note(peak)}. "
                f"{load_note(loads)}. Versions: {versions()}.",
                format_table(rows, peak))


if __name__ == "__main__":
    main()
