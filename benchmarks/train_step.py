"""Training-step wall time and peak memory: the JAX trainer's jitted step vs diffusers `WanTransformer3DModel`
(PyTorch, SDPA) with torch.optim.AdamW.

Usage:
    python -m benchmarks.train_step [--sizes tiny,medium] [--repeats 3] [--threads N]

Both sides train a t2v DiT of the same size (diffusers has no CamCloneMaster model; the camclone variant only
adds condition frames and the image branch) with CamCloneMaster's trained subset, self-attention only
(JAX: parameter paths containing "self_attn"; PyTorch: `blocks.*.attn1.*`, norm_q / norm_k included), AdamW
lr 5e-5 (torch defaults otherwise), batch 1, fp32, no remat, random weights, 512 text rows.

JAX: exactly the trainer's step, `camclone_jax.train.step` (`init_state`, `StepConfig`, `jit_train_step`, state
donated) built from configs/tiny.py with the model preset and size overridden; it also draws the timestep and
the noise on device. PyTorch: forward on fixed noisy latents, timestep and text, MSE against a fixed target,
backward, `optimizer.step()`, `zero_grad(set_to_none=True)`.

Every (framework, size) pair runs in its own subprocess (`--worker jax|torch --size NAME`, one JSON line). Per
pair: one warm-up step (for JAX it also compiles; "compile" = warm-up minus the fastest timed step), then
`--repeats` timed steps, more while they total under 2 s (median and min; JAX synchronised with
`block_until_ready` on the new state). Achieved TFLOP/s = `camclone_jax.flops.dit_train_flops` (forward +
backward matmuls with only self-attention's weight gradients) / median step time. Memory on CPU: peak RSS of
the worker over the timed steps (VmHWM reset after the warm-up), weights and optimiser state included, and its
growth over the RSS after the build. MFU = achieved FLOP/s / the device's fp32 peak (`--peak-tflops`, else
`camclone_jax.flops.peak_flops_per_second`; "–" on CPU without `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import datetime

from benchmarks.common import (add_common_args, comparison_cells, cpu_name, emit, load_note, measure, parse_sizes,
                               peak_flops, peak_note, run_pairs, run_worker_and_print, torch_device_hooks, versions)

# name -> (DiTConfig preset, its overrides, target latent (F, H, W)). "medium" keeps the 1.3B width (head_dim
# 128) with 4 layers on 17 frames at 240x416 (1950 tokens), as benchmarks/dit_forward.py's "medium": a step
# takes seconds on 2 cores, so the whole run stays within a few minutes.
SIZES = {
    "tiny": ("tiny", {}, (3, 16, 16)),
    "medium": ("wan_t2v_1_3b", {"num_layers": 4}, (5, 30, 52)),
    "full": ("wan_t2v_1_3b", {}, (3, 20, 32)),  # the real 1.3B (30 blocks) on a small latent, as dit_forward's
}
TEXT_LEN = 512
TRAINABLE = ("self_attn",)  # CamCloneMaster's subset (configs/camclonemaster.py)
LR = 5e-5


def run_config(size: str):
    """configs/tiny.py (t2v) with the size's preset and overrides, AdamW lr 5e-5 on self-attention."""
    from configs import tiny
    preset, overrides, _ = SIZES[size]
    config = tiny.get_config("variant=t2v")
    with config.unlocked():
        config.model.preset = preset
        config.model.overrides.update(dict(variant="t2v", param_dtype="float32", dtype="float32", attention="xla",
                                           remat="none", **overrides))
        config.optimizer.lr = LR
        config.optimizer.trainable = TRAINABLE
    return config


def make_config(size: str):
    from configs.common import model_config
    return model_config(run_config(size))


def _batch(cfg, latent):
    import numpy as np
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, *latent, cfg.out_dim), dtype=np.float32)
    text = rng.standard_normal((1, TEXT_LEN, cfg.text_dim), dtype=np.float32)
    return latents, text


# Worker ---------------------------------------------------------------------------------------------------------
def build_jax(size: str, latent):
    """Returns (step(), sync, device description, peak device bytes or None)."""
    import jax
    from flax import nnx
    from camclone_jax.models import WanDiT
    from camclone_jax.train.step import StepConfig, init_state, jit_train_step
    from configs.common import model_config
    config = run_config(size)
    cfg = model_config(config)
    graphdef, state = init_state(WanDiT(cfg, rngs=nnx.Rngs(0)), config.optimizer.trainable, config.optimizer)
    step = jit_train_step(graphdef, StepConfig.from_config(config, cfg.variant), config.optimizer)
    latents, text = _batch(cfg, latent)
    batch = dict(latents=jax.device_put(latents), text=jax.device_put(text))
    key = jax.random.key(0)
    box = {"state": state}  # the step donates its state: always feed it the newest one

    def call():
        box["state"], metrics = step(box["state"], batch, key)
        return box["state"], metrics

    dev = jax.devices()[0]
    peak = (lambda: dev.memory_stats()["peak_bytes_in_use"]) if dev.platform == "gpu" else (lambda: None)
    desc = dev.device_kind if dev.platform == "gpu" else cpu_name()
    return call, jax.block_until_ready, desc, peak


def build_torch(size: str, latent, threads: int):
    import torch
    from diffusers import WanTransformer3DModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = make_config(size)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps).train().to(dev)
    trained = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("blocks.") and ".attn1." in name)
        if p.requires_grad:
            trained.append(p)
    optimizer = torch.optim.AdamW(trained, lr=LR)
    latents, text = _batch(cfg, latent)
    x = torch.from_numpy(latents).permute(0, 4, 1, 2, 3).contiguous().to(dev)  # channels-first [B, C, F, H, W]
    noise = torch.randn_like(x)
    noisy, target = 0.5 * x + 0.5 * noise, noise - x  # flow matching at sigma 0.5: velocity target
    t = torch.tensor([500.0], device=dev)
    context = torch.from_numpy(text).to(dev)

    def call():
        pred = model(hidden_states=noisy, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    sync, desc, peak, _ = torch_device_hooks(dev, cpu_sync=lambda loss: loss.item())
    return call, sync, desc, peak


def run_worker(framework: str, size: str, repeats: int, threads: int) -> dict:
    latent = SIZES[size][2]
    build = (lambda: build_jax(size, latent)) if framework == "jax" else (lambda: build_torch(size, latent, threads))
    return measure(build, framework, size, repeats, threads)


# Parent ---------------------------------------------------------------------------------------------------------
def format_table(rows: list[tuple[str, dict, dict]], peak: float | None = None) -> str:
    from camclone_jax.flops import dit_sequence_tokens, dit_train_flops
    lines = ["| size | layers/dim/heads | latent FxHxW | tokens | step GFLOP | torch s med (min) | jax s med (min) | "
             "jax/torch (median) | torch TFLOP/s | jax TFLOP/s | torch MFU | jax MFU | "
             "jax compile s (warm-up − fastest) | torch peak GiB (Δ) | jax peak GiB (Δ) |",
             "|" + "---|" * 15]
    for size, tr, jr in rows:
        cfg, latent = make_config(size), SIZES[size][2]
        tokens = dit_sequence_tokens(cfg, *latent)
        flops = dit_train_flops(cfg, tokens=tokens, batch=1, trainable=TRAINABLE)
        lines.append(f"| {size} | {cfg.num_layers}/{cfg.dim}/{cfg.num_heads} | {'x'.join(map(str, latent))} | "
                     f"{tokens} | {flops / 1e9:.1f} | {comparison_cells(flops, tr, jr, peak)}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " ") + " One subprocess per (framework, size); "
        "prints a markdown table.",
        epilog="sizes: " + "; ".join(f"{k} = {f}({kw or ''}) t2v on a {'x'.join(map(str, lat))} (FxHxW) latent"
                                     for k, (f, kw, lat) in SIZES.items())
        + f". Both train {TRAINABLE} with AdamW lr {LR}, batch 1, fp32. See the module docstring for details.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, SIZES, "tiny,medium", "timed steps after one warm-up step (default %(default)s)")
    args = p.parse_args(argv)
    if args.worker:
        run_worker_and_print(args, run_worker)
        return
    sizes = parse_sizes(p, args.sizes, SIZES)
    rows, loads, devices = run_pairs("benchmarks.train_step", sizes, args)
    peak = peak_flops(args, [jr for _, _, jr in rows])
    return emit(f"### WanDiT train step, JAX vs PyTorch ({datetime.date.today()})",
                f"Device: {' / '.join(devices)}; threads {args.threads} (CPU affinity + "
                f"torch.set_num_threads); t2v, batch 1, fp32, {TEXT_LEN} text rows, random weights, trained: "
                f"self-attention only, AdamW lr {LR}, no remat; median (min) of {args.repeats} steps (more for steps "
                f"under 2 s in all) after one warm-up step. JAX: camclone_jax.train.step (jit_train_step); PyTorch: "
                f"diffusers "
                f"WanTransformer3DModel (SDPA) + torch.optim.AdamW. TFLOP/s from camclone_jax.flops.dit_train_flops. "
                f"Peak memory: GPU peak bytes where marked (device), else the worker's peak RSS over the timed steps, "
                f"weights and optimiser state included (Δ: growth over the RSS after the build). {peak_note(peak)}. "
                f"{load_note(loads)}. Versions: {versions()}.",
                format_table(rows, peak))


if __name__ == "__main__":
    main()
