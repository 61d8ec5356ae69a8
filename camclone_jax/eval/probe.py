r"""Does a CamCloneMaster read its camera reference and its content video? A one-step denoising probe.

    python -m camclone_jax.eval.probe --models MODELS_DIR --data SYNTH_DIR [--split test] [--num 8]
        [--sigmas 0.5 0.7 0.9] [--out probe.json]

Sampling and posing (`python -m camclone_jax.eval.heldout`) show whether the camera is cloned. While a model is
still learning they fail on every clip and cannot tell a model that reads the reference a little from one that
ignores it. This probe measures that directly, on the synthetic dataset's triples (`--split`, default the
held-out `test`). The target's latents x0 are noised once per σ, x_σ = (1 − σ) x0 + σ ε (one ε per triple), and
the DiT's one-step estimate x̂0 = x_σ − σ v̂ is scored by its MSE against x0 over the latent frames after the
first (the image condition gives the first). Four conditionings share each x_σ:

    v2v            camera reference + content video (the true inputs)
    v2v_static     the camera reference frozen at its first frame, content video
    i2v            camera reference, content latents zeroed (I2V)
    i2v_static     frozen reference, content zeroed

Gains, over the triples: reference gain = 1 − MSE(v2v) / MSE(v2v_static) (0 for a model that ignores the
reference; the I2V one likewise), content gain = 1 − MSE(v2v) / MSE(i2v). The MSE of the target's own per-channel
mean as the estimate (`channel_mean`: knows the clip's statistics, not its content) gives the scale. Run it on
`--split train` as well to tell under-fitting (no gain on either split) from over-fitting (gain on train only).
The V2V reference gain is also given per kind of target trajectory (pan, tilt, roll, translate, arc, spline;
from the generator's camera JSON): a model that reads only large image motions gains on tilts and not on pans.

Shapes: latents [1, F, h, w, 16]; scores per σ and conditioning: scalars averaged over triples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from camclone_jax.eval.heldout import load_setup, trajectory_kind

CONDITIONINGS = ("v2v", "v2v_static", "i2v", "i2v_static")


def frame_mse(estimate, x0) -> float:
    """MSE over the latent frames after the first. [1, F, h, w, C] each."""
    return float(np.mean(np.square(np.asarray(estimate)[:, 1:] - np.asarray(x0)[:, 1:])))


def probe(models, triples, *, num_frames: int, height: int, width: int, sigmas=(0.5, 0.7, 0.9), seed: int = 0,
          progress: bool = True) -> dict:
    """-> {"rows": per-triple MSEs, "summary": per-σ means and gains} (module doc)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from tqdm import tqdm

    from camclone_jax.sample.conditions import encode_text, encode_video
    from camclone_jax.sample.tasks import Inputs, task_conditions
    from camclone_jax.sample.video import read_video

    size = dict(num_frames=num_frames, height=height, width=width)
    graphdef, state = nnx.split(models.dit)
    dit = jax.jit(lambda state, x, t, text, kw: nnx.merge(graphdef, state)(x, t, text, **kw))
    rows = []
    for t in tqdm(triples, desc="probe", unit="triple", disable=not progress):
        ref, content, target = (read_video(p, **size) for p in (t.ref, t.content, t.target))
        static = np.repeat(ref[:1], num_frames, axis=0)
        inputs = {"v2v": Inputs(t.caption, ref_video=ref, content_video=content),
                  "v2v_static": Inputs(t.caption, ref_video=static, content_video=content),
                  "i2v": Inputs(t.caption, ref_video=ref, image=content[0]),
                  "i2v_static": Inputs(t.caption, ref_video=static, image=content[0])}
        conditions = {name: task_conditions(models, "camclone", inp, num_frames, height, width, False, False)
                      for name, inp in inputs.items()}
        text = encode_text(models.text_encoder, models.tokenizer, [t.caption])
        x0 = encode_video(models.vae, jnp.asarray(target)[None], tiled=False)
        noise = jax.random.normal(jax.random.key(seed + t.row), x0.shape, jnp.float32)
        channel_mean = jnp.mean(x0[:, 1:], axis=(1, 2, 3), keepdims=True)
        row = {"row": t.row, "trajectory": trajectory_kind(t.target_cameras),
               "channel_mean": frame_mse(jnp.broadcast_to(channel_mean, x0.shape), x0), "mse": {}}
        for sigma in sigmas:
            noisy = (1.0 - sigma) * x0 + sigma * noise
            timestep = jnp.full((1,), 1000.0 * sigma, jnp.float32)
            row["mse"][str(sigma)] = {
                name: frame_mse(noisy - sigma * dit(state, noisy, timestep, text, conditions[name]), x0)
                for name in CONDITIONINGS}
        rows.append(row)
    return {"rows": rows, "summary": summarise(rows, sigmas), "size": [num_frames, height, width]}


def reference_gain(rows: list[dict], sigma, moving: str = "v2v", static: str = "v2v_static") -> float:
    return 1.0 - np.mean([r["mse"][str(sigma)][moving] for r in rows]) / np.mean(
        [r["mse"][str(sigma)][static] for r in rows])


def summarise(rows: list[dict], sigmas) -> dict:
    summary = {"channel_mean": float(np.mean([r["channel_mean"] for r in rows]))}
    kinds = sorted({r["trajectory"] for r in rows})
    summary["by_trajectory"] = {
        kind: {"triples": sum(r["trajectory"] == kind for r in rows)} | {
            str(sigma): float(reference_gain([r for r in rows if r["trajectory"] == kind], sigma))
            for sigma in sigmas}
        for kind in kinds}
    for sigma in sigmas:
        mean = {name: float(np.mean([r["mse"][str(sigma)][name] for r in rows])) for name in CONDITIONINGS}
        summary[str(sigma)] = mean | {
            "reference_gain_v2v": float(reference_gain(rows, sigma)),
            "reference_gain_i2v": float(reference_gain(rows, sigma, "i2v", "i2v_static")),
            "content_gain": 1.0 - mean["v2v"] / mean["i2v"]}
    return summary


def format_table(summary: dict, sigmas) -> str:
    head = ("| σ | " + " | ".join(f"MSE {c}" for c in CONDITIONINGS)
            + " | reference gain V2V | reference gain I2V | content gain |")
    lines = [head, "|" + "---|" * (len(CONDITIONINGS) + 4)]
    for sigma in sigmas:
        s = summary[str(sigma)]
        lines.append(f"| {sigma} | " + " | ".join(f"{s[c]:.4f}" for c in CONDITIONINGS)
                     + f" | {s['reference_gain_v2v']:+.1%} | {s['reference_gain_i2v']:+.1%} | "
                       f"{s['content_gain']:+.1%} |")
    lines += ["", "| target trajectory | triples | " + " | ".join(f"reference gain V2V, σ {s}" for s in sigmas)
              + " |", "|" + "---|" * (len(sigmas) + 2)]
    for kind, k in summary["by_trajectory"].items():
        lines.append(f"| {kind} | {k['triples']} | " + " | ".join(f"{k[str(s)]:+.1%}" for s in sigmas) + " |")
    return "\n".join(lines) + (f"\n\nscale: the target's per-channel mean as the estimate, MSE "
                                f"{summary['channel_mean']:.4f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.eval.probe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", required=True, type=Path, help="folder with dit/ vae/ umt5/ clip/")
    p.add_argument("--data", required=True, type=Path, help="synthetic dataset folder "
                   "(python -m camclone_jax.data.synthetic)")
    p.add_argument("--split", default="test", help="which CSV of --data (default test: the held-out scenes)")
    p.add_argument("--num", type=int, default=8, help="triples, spread over the split (default 8)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.7, 0.9],
                   help="noise levels in (0, 1] (default 0.5 0.7 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the per-triple scores and the summary as JSON here")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not all(0.0 < s <= 1.0 for s in args.sigmas):
        print(f"error: --sigmas must lie in (0, 1], got {args.sigmas}", file=sys.stderr)
        return 2
    try:
        triples, size, models = load_setup(args.models, args.data, args.split, args.num)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = probe(models, triples, **size, sigmas=tuple(args.sigmas), seed=args.seed,
                   progress=not args.no_progress)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report | {"args": {k: str(v) for k, v in vars(args).items()}}, indent=1)
                            + "\n")
    print(f"{len(triples)} triples of {args.data} ({args.split}.csv), {size['num_frames']} frames "
          f"{size['height']}x{size['width']}\n\n{format_table(report['summary'], args.sigmas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
