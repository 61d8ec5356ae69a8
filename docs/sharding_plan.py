"""Numbers of docs/sharding_plan.md: parameter and activation memory per chip, FLOPs per step, step time and
communication for CamCloneMaster training at 480x832x81 (98,280 tokens) with a global batch of 64 on TPU v5p.

    python docs/sharding_plan.py                          # assumed utilisation 35 / 45 / 55 %
    python docs/sharding_plan.py --measured-tflops 180    # a measured per-chip model TFLOP/s slots in

`--measured-tflops` is the trainer's `tflops_per_s_per_device` (metrics.jsonl; the same definition as the
"jax TFLOP/s" column of `python -m benchmarks.train_step`): `flops.dit_train_flops` per second per chip, the
remat recompute NOT counted. Runs in seconds on CPU: parameter counts come from `abstract_dit` (eval_shape),
FLOPs from `camclone_jax.flops`; nothing is allocated or compiled. Activation sizes are analytic estimates
(see ACT_BYTES_PER_TOKEN); replace them by the measured `peak_bytes_in_use` once a v5p run exists.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# TPU v5p, per chip (Google Cloud TPU v5p documentation).
PEAK = 459e12  # dense bf16 FLOP/s (= flops.peak_flops_per_second for "TPU v5")
HBM = 95e9  # bytes
ICI_EFFECTIVE = 100e9  # bytes/s one collective gets per chip: assumed, 1/6 of the 4,800 Gbit/s (600 GB/s) aggregate
HEADROOM = 0.9  # plan to at most 90 % of HBM (XLA scratch, fragmentation)

GLOBAL_BATCH = 64
LATENT = (21, 60, 104)  # 81 frames at 480x832 -> 21 x 60 x 104 latent; camclone attends over 3 x 21 frames
TRAINABLE = ("self_attn",)
UTILISATION = (0.35, 0.45, 0.55)  # assumed hardware FLOP utilisation, remat recompute included
PAPER_STEPS = 9_500  # CamCloneMaster-Step9500.ckpt (camera_control.md section 1; global batch 32 there)

# Bytes per token of one block's working set during its rematerialised forward + backward, as multiples of the
# model width E and the FFN width F: the block's saved-for-backward tensors (fp32 residual, LayerNorm and
# RMSNorm inputs, bf16 q/k/v/out of both attentions, GELU input) plus the gradients in flight. Estimate.
ACT_BYTES_PER_TOKEN = dict(per_dim=80, per_ffn=8)
RESIDUAL_BYTES = 4  # the scanned residual stream is fp32: full remat saves one [L, E] fp32 input per block


def models():
    from camclone_jax.models.presets import DiTConfig
    return {
        "1.3B": DiTConfig.camclonemaster(dtype="bfloat16", remat="full"),
        "14B": DiTConfig.wan_t2v_14b(variant="camclone", in_dim=36, dtype="bfloat16", remat="full"),
    }


# (model, slice, mesh (data, fsdp, tensor, sequence), micro-batch per optimiser step, accumulation steps)
PLANS = [
    ("1.3B", "v5p-64", (1, 32, 1, 1), 32, 2),
    ("1.3B", "v5p-64", (1, 32, 1, 1), 64, 1),
    ("1.3B", "v5p-128", (1, 64, 1, 1), 64, 1),
    ("1.3B", "v5p-256", (1, 64, 1, 2), 64, 1),
    ("14B", "v5p-256", (1, 64, 1, 2), 64, 1),
    ("14B", "v5p-256", (1, 32, 1, 4), 32, 2),
    ("14B", "v5p-512", (1, 64, 1, 4), 64, 1),
    ("14B", "v5p-1024", (1, 64, 1, 8), 64, 1),
]


def param_counts(cfg):
    """(total, trainable, per-block total, per-block trainable) from the abstract model, plus the exact formula
    check: self-attention = 4 x (E x E + E) + 2 x E (q/k/v/o with biases, norm_q, norm_k) per block."""
    import jax
    from flax import nnx
    from camclone_jax.models.loading import abstract_dit
    flat = jax.tree_util.tree_flatten_with_path(nnx.state(abstract_dit(cfg), nnx.Param))[0]
    size = lambda leaf: math.prod(leaf.shape)
    name = jax.tree_util.keystr
    total = sum(size(x) for _, x in flat)
    trainable = sum(size(x) for p, x in flat if any(t in name(p) for t in TRAINABLE))
    blocks = sum(size(x) for p, x in flat if name(p).startswith("['blocks']"))
    e = cfg.dim
    assert trainable == cfg.num_layers * (4 * (e * e + e) + 2 * e), trainable
    return total, trainable, blocks // cfg.num_layers, trainable // cfg.num_layers


def analyse(cfg, counts, mesh, micro, accum):
    from camclone_jax import flops
    data, fsdp, tensor, seq = mesh
    chips = math.prod(mesh)
    total, trainable, block, block_tr = counts
    frozen = total - trainable
    tokens = flops.dit_sequence_tokens(cfg, *LATENT)
    frames = flops.dit_sequence_frames(cfg, LATENT[0])
    heads_ok = cfg.num_heads % (seq * tensor) == 0 and tokens % seq == 0
    assert micro % (data * fsdp) == 0 and micro * accum == GLOBAL_BATCH
    rows = micro // (data * fsdp)  # samples per (data, fsdp) shard; each is split over `seq` chips
    shard = fsdp * tensor  # parameters are replicated over data and sequence
    mem = {
        "frozen bf16": frozen * 2 / shard,
        "trainable fp32 + grad + AdamW mu/nu": trainable * (4 + 4 + 8 + (4 if accum > 1 else 0)) / shard,
        "gathered layer weights (2 in flight)": 2 * ((block - block_tr) * 2 + block_tr * 4) / tensor,
        "residual stream (remat saves)": cfg.num_layers * rows * tokens / seq * cfg.dim * RESIDUAL_BYTES,
        "one block's working set": rows * tokens / seq * (ACT_BYTES_PER_TOKEN["per_dim"] * cfg.dim
                                                         + ACT_BYTES_PER_TOKEN["per_ffn"] * cfg.ffn_dim / tensor),
        # umT5 features [512, 4096] fp32 in, text [512, E] + CLIP [257, E] embedded (fp32), latents / y / refs.
        "inputs + text/CLIP context": rows * (cfg.text_len * cfg.text_dim * 4 + (cfg.text_len + cfg.num_image_tokens)
                                              * cfg.dim * 4 + math.prod(LATENT) * (16 + 20 + 16 + 16) * 4),
    }
    mem_total = sum(mem.values())
    f_train = flops.dit_train_flops(cfg, tokens=tokens, batch=1, trainable=TRAINABLE, frames=frames)
    f_fwd = flops.dit_forward_flops(cfg, tokens=tokens, batch=1, frames=frames)
    step_model = GLOBAL_BATCH * f_train  # what the trainer's TFLOP/s and MFU count
    step_hw = GLOBAL_BATCH * (f_train + f_fwd)  # + full-remat recompute (one more forward)
    # Communication per chip per optimiser step (bytes received), no overlap assumed.
    params_gather = frozen * 2 + trainable * 4  # trainable gathered as fp32 (conservative; bf16 if cast first)
    fsdp_bytes = accum * (2 * params_gather * (fsdp - 1) / fsdp / tensor  # forward + backward (recompute) gathers
                          + trainable * 4 * (fsdp - 1) / fsdp / tensor)  # gradient reduce-scatter
    fsdp_bytes += accum * 2 * trainable * 4 / shard * (seq - 1) / seq  # grads all-reduced over sequence
    # Ulysses: q, k, v in and out back, in forward, recompute and backward: 12 [L/sp, E] bf16 tensors per layer.
    a2a_bytes = accum * cfg.num_layers * 12 * rows * tokens / seq * cfg.dim / tensor * 2 * (seq - 1) / seq
    return dict(chips=chips, tokens=tokens, heads_ok=heads_ok, rows=rows, mem=mem, mem_total=mem_total,
                fits=mem_total <= HEADROOM * HBM, f_train=f_train, f_fwd=f_fwd, step_model=step_model,
                step_hw=step_hw, fsdp_bytes=fsdp_bytes, a2a_bytes=a2a_bytes)


def flops_ratio(cfg) -> float:
    """Model FLOPs (dit_train_flops) / executed FLOPs (+ one remat forward) of one sample."""
    from camclone_jax import flops
    tokens, frames = flops.dit_sequence_tokens(cfg, *LATENT), flops.dit_sequence_frames(cfg, LATENT[0])
    ft = flops.dit_train_flops(cfg, tokens=tokens, batch=1, trainable=TRAINABLE, frames=frames)
    return ft / (ft + flops.dit_forward_flops(cfg, tokens=tokens, batch=1, frames=frames))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measured-tflops", type=float, default=None,
                   help="measured model TFLOP/s per chip (trainer's tflops_per_s_per_device) to time the plans with")
    args = p.parse_args(argv)
    cfgs = models()
    counts = {k: param_counts(c) for k, c in cfgs.items()}
    from camclone_jax import flops

    print("## Models (480x832x81 camclone, 98,280 tokens)\n")
    print("| model | E / FFN / heads / layers | params | trainable (self_attn) | frozen bf16 GB | trainable state GB "
          "(fp32 w + grad + mu + nu) | fwd TFLOP/sample | train TFLOP/sample (dit_train_flops) | + remat fwd |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, cfg in cfgs.items():
        total, tr, _, _ = counts[k]
        tokens = flops.dit_sequence_tokens(cfg, *LATENT)
        frames = flops.dit_sequence_frames(cfg, LATENT[0])
        fw = flops.dit_forward_flops(cfg, tokens=tokens, batch=1, frames=frames)
        ft = flops.dit_train_flops(cfg, tokens=tokens, batch=1, trainable=TRAINABLE, frames=frames)
        print(f"| {k} | {cfg.dim} / {cfg.ffn_dim} / {cfg.num_heads} / {cfg.num_layers} | {total:,} | {tr:,} | "
              f"{(total - tr) * 2 / 1e9:.1f} | {tr * 16 / 1e9:.1f} | {fw / 1e12:,.0f} | {ft / 1e12:,.0f} | "
              f"{(ft + fw) / 1e12:,.0f} |")
        attn = 4 * tokens * tokens * cfg.dim * cfg.num_layers
        print(f"|   | self-attention q·k / p·v share of the forward: {attn / fw:.0%} | residual stream per sample "
              f"{cfg.num_layers * tokens * cfg.dim * 4 / 1e9:.1f} GB | working set per sample "
              f"{tokens * (ACT_BYTES_PER_TOKEN['per_dim'] * cfg.dim + ACT_BYTES_PER_TOKEN['per_ffn'] * cfg.ffn_dim) / 1e9:.1f} GB | | | | | |")

    print("\n## Plans (global batch 64; assumed utilisation incl. recompute "
          + " / ".join(f"{u:.0%}" for u in UTILISATION) + ")\n")
    head = ("| model | slice (chips) | mesh d,f,t,s | samples/chip-group x accum | params+opt GB | activations GB | "
            "total GB / 95 | PFLOP/step (model / +remat) | step s | samples/s | 9,500 steps h | FSDP GB/step/chip "
            "| all-to-all GB/step/chip | comm s @100 GB/s |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for model, name, mesh, micro, accum in PLANS:
        cfg = cfgs[model]
        a = analyse(cfg, counts[model], mesh, micro, accum)
        m = a["mem"]
        params = m["frozen bf16"] + m["trainable fp32 + grad + AdamW mu/nu"] + m["gathered layer weights (2 in flight)"]
        acts = a["mem_total"] - params
        if args.measured_tflops:
            times = [a["step_model"] / (a["chips"] * args.measured_tflops * 1e12)]
        else:
            times = [a["step_hw"] / (a["chips"] * PEAK * u) for u in UTILISATION]
        fmt = lambda xs, f: " / ".join(f(x) for x in xs)
        comm = (a["fsdp_bytes"] + a["a2a_bytes"]) / ICI_EFFECTIVE
        print(f"| {model} | {name} ({a['chips']}) | {','.join(map(str, mesh))} | {a['rows']} x {accum} | "
              f"{params / 1e9:.1f} | {acts / 1e9:.1f} | {a['mem_total'] / 1e9:.1f}{'' if a['fits'] else ' (!)'} | "
              f"{a['step_model'] / 1e15:,.0f} / {a['step_hw'] / 1e15:,.0f} | {fmt(times, lambda t: f'{t:.0f}')} | "
              f"{fmt(times, lambda t: f'{GLOBAL_BATCH / t:.2f}')} | {fmt(times, lambda t: f'{PAPER_STEPS * t / 3600:.0f}')} | "
              f"{a['fsdp_bytes'] / 1e9:.1f} | {a['a2a_bytes'] / 1e9:.1f} | {comm:.1f} |")
        assert a["heads_ok"], (model, mesh)

    ratio = {k: flops_ratio(cfgs[k]) for k in cfgs}
    print("\nThe assumed utilisation counts the recompute. As the trainer logs it (`mfu`, "
          "`tflops_per_s_per_device`: model FLOPs, recompute not counted), "
          + "; ".join(f"{u:.0%} is MFU " + " / ".join(f"{u * r:.0%} ({k})" for k, r in ratio.items())
                      + " = " + " / ".join(f"{u * r * PEAK / 1e12:.0f}" for r in ratio.values())
                      + " model TFLOP/s per chip" for u in UTILISATION) + ".")

    print("\n## Per-chip memory breakdown (GB)\n")
    keys = list(analyse(cfgs["1.3B"], counts["1.3B"], *PLANS[0][2:]).get("mem"))
    print("| model | slice | " + " | ".join(keys) + " | total |")
    print("|" + "---|" * (len(keys) + 3))
    for model, name, mesh, micro, accum in PLANS:
        a = analyse(cfgs[model], counts[model], mesh, micro, accum)
        print(f"| {model} | {name} | " + " | ".join(f"{a['mem'][k] / 1e9:.2f}" for k in keys)
              + f" | {a['mem_total'] / 1e9:.1f} |")

    print("\n## Single-sample reference (one chip per sample, no sequence parallelism)\n")
    for model, cfg in cfgs.items():
        a = analyse(cfg, counts[model], (1, 64, 1, 1), 64, 1)
        print(f"{model}: {a['mem_total'] / 1e9:.1f} GB per chip at 1 sample/chip "
              f"({'fits' if a['fits'] else 'does NOT fit'} in {HEADROOM:.0%} of {HBM / 1e9:.0f} GB); "
              f"sequence sizes allowed by {cfg.num_heads} heads and {a['tokens']} tokens: "
              f"{[s for s in range(1, cfg.num_heads + 1) if cfg.num_heads % s == 0 and a['tokens'] % s == 0]}")


if __name__ == "__main__":
    main()
