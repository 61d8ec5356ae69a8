r"""Held-out camera-cloning evaluation of a trained CamCloneMaster on the synthetic CameraClone dataset.

    python -m camclone_jax.eval.heldout --models MODELS_DIR --data SYNTH_DIR --out OUT [--num 24]
        [--method sfm homography direct] [--rotation-only]

For `--num` triples of the dataset's held-out split (`test.csv`: scenes and trajectories never seen in training;
spread evenly over the file), the model generates the target from the camera reference and the content video,
and every row below is posed (SfM by default, as `python -m camclone_jax.eval`; one table per `--method`;
`--rotation-only` keeps the pan / tilt / roll targets, which `--method direct` poses even when blurred) and
compared with the target's ground-truth trajectory (`cameras/camXX.json`, written by the generator) and with the
true target render:

    model V2V          camera reference + content video (CamCloneMaster V2V)
    model I2V          camera reference + the content's first frame only (content latents zeroed)
    content unchanged  baseline (a): the content video returned as the result
    static reference   baseline (b): the same model, camera reference replaced by its first frame repeated
    ground truth       the true target render: the pose estimator's own error on this data
    VAE round trip     the true target encoded and decoded by the model's VAE: the best a DiT working in this
                       VAE's latents could return, so the ceiling of the model rows

Columns: RotErr / TransErr / CamMC (spec cami2v_metrics.md 8.3: relative to the first frame, each trajectory
normalised by its own max-norm, sums over the T frames), their medians (SfM occasionally flips a solution, which
dominates a mean of a few dozen clips), PSNR of the result against the true target, and how many clips the
estimator failed on (counted, never averaged in). OUT gets results.json (every clip), results.md (the tables),
the generated mp4s, and PNG strips (reference / content / V2V / static / VAE round trip / truth at five frames)
of the first `--examples` triples.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from camclone_jax.eval.metrics import camera_metrics
from camclone_jax.eval.estimators import METHODS, estimate_poses
from camclone_jax.eval.poses import Intrinsics

SYSTEMS = {  # key: (table label, what it is)
    "model_v2v": ("model V2V", "camera reference + content video"),
    "model_i2v": ("model I2V", "camera reference + content's first frame"),
    "content": ("baseline: content unchanged", "the content video as the result"),
    "static_ref": ("baseline: static reference", "the model with a frozen camera reference"),
    "ground_truth": ("ground truth (estimator error)", "the true target render"),
    "vae_round_trip": ("VAE round trip of the target (the DiT's ceiling)",
                       "the true target encoded and decoded by the model's VAE"),
}
GENERATED = ("model_v2v", "model_i2v", "static_ref", "vae_round_trip")  # written as mp4
METRICS = ("RotErr", "TransErr", "CamMC")
STRIP_ROWS = {"reference": "camera reference", "content": "content", "model_v2v": "result (V2V)",  # PNG rows
              "static_ref": "static reference", "vae_round_trip": "VAE round trip", "ground_truth": "true target"}


@dataclasses.dataclass(frozen=True)
class Triple:
    """One CameraClone row: target = content's scene along the reference's trajectory."""

    row: int
    caption: str
    target: Path
    ref: Path
    content: Path

    @property
    def target_cameras(self) -> Path:
        return cameras_json(self.target)


def cameras_json(video: Path) -> Path:
    """The generator's ground truth of a video: .../videos/camXX.mp4 -> .../cameras/camXX.json."""
    return video.parent.parent / "cameras" / (video.stem + ".json")


def read_triples(data: Path, split: str = "test") -> list[Triple]:
    """Every row of DATA/{split}.csv, in file order (paths not checked)."""
    index = data / f"{split}.csv"
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: --data must be a folder written by "
                                "`python -m camclone_jax.data.synthetic`")
    with index.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{index} has no triples")
    return [Triple(i, r["caption"], data / r["video_path"], data / r["ref_video_path"], data / r["content_video_path"])
            for i, r in enumerate(rows)]


def check_files(triple: Triple, index: Path) -> None:
    for path in (triple.target, triple.ref, triple.content, triple.target_cameras):
        if not path.is_file():
            raise FileNotFoundError(f"{index} row {triple.row}: {path} is missing")


def trajectory_kind(cameras: Path) -> str:
    """The generator's name for a target's camera path (pan, tilt, roll, translate, arc, spline)."""
    return json.loads(Path(cameras).read_text())["trajectory"]["kind"]


def is_rotation_only(cameras: Path) -> bool:
    """Whether the ground-truth camera of a generator JSON only turns (pan / tilt / roll: no translation)."""
    c2w = np.asarray(json.loads(Path(cameras).read_text())["c2w"], np.float64)
    return bool(np.max(np.linalg.norm(c2w[:, :3, 3] - c2w[0, :3, 3], axis=-1)) < 1e-6)


def select_triples(data: Path, split: str = "test", num: int = 24, rotation_only: bool = False) -> list[Triple]:
    """`num` rows of DATA/{split}.csv spread evenly over the file (all rows when it has fewer); with
    `rotation_only`, over the rows whose target camera only turns (what the rotation estimators can pose)."""
    index = data / f"{split}.csv"
    rows = read_triples(data, split)
    if rotation_only:  # every row is read, so every row is checked first
        for row in rows:
            check_files(row, index)
        rows = [row for row in rows if is_rotation_only(row.target_cameras)]
        if not rows:
            raise ValueError(f"{index} has no triple whose target camera only rotates")
    picks = sorted(set(np.linspace(0, len(rows) - 1, min(num, len(rows))).round().astype(int).tolist()))
    chosen = [rows[i] for i in picks]
    if not rotation_only:
        for row in chosen:
            check_files(row, index)
    return chosen


def clip_size(data: Path) -> dict:
    """num_frames / height / width the dataset's clips are evaluated at: the longest 4k+1 prefix of its frames."""
    meta = json.loads((data / "dataset.json").read_text())["args"]
    return dict(num_frames=4 * ((meta["frames"] - 1) // 4) + 1, height=meta["height"], width=meta["width"])


def load_setup(models_dir: Path, data: Path, split: str, num: int, rotation_only: bool = False):
    """-> (triples, clip size, the loaded camclone models) for a CLI over the synthetic dataset. Raises OSError,
    ValueError or KeyError with a message naming what is missing."""
    from camclone_jax.sample.checkpoints import CheckpointPaths, load_models

    triples = select_triples(data, split, num, rotation_only)
    size = clip_size(data)
    return triples, size, load_models("camclone", CheckpointPaths.resolve(models_dir), attention="xla")


def psnr(video: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of [-1, 1] videos (peak-to-peak 2), over all frames."""
    mse = float(np.mean(np.square(np.clip(video, -1, 1) - np.clip(target, -1, 1))))
    return float(10 * np.log10(4.0 / max(mse, 1e-12)))


def pose_errors(video: np.ndarray, gt_c2w: np.ndarray, intr: Intrinsics, method: str, seed: int) -> dict:
    """Estimated poses of `video` against the ground truth: the three metrics, or status "failed"."""
    est = estimate_poses(video, intr, method, seed=seed)
    out = {"registered": est.num_registered, "frames": est.num_frames}
    if not est.success:
        return out | {"status": "failed", "message": est.message}
    try:
        metrics = camera_metrics(est.c2w, gt_c2w)
    except ValueError as err:  # e.g. a degenerate estimate; counted as a failure like the CLI does
        return out | {"status": "failed", "message": f"metrics: {err}"}
    return out | {"status": "ok", **{k: float(metrics[k]) for k in METRICS}}


def evaluate(models, triples: list[Triple], out: Path, *, num_frames: int, height: int, width: int, sampler,
             methods: tuple[str, ...] = ("sfm",), seed: int = 0, examples: int = 3, progress: bool = True) -> dict:
    """Runs every system on every triple (module doc) and poses each result with every estimator of `methods`;
    writes OUT/videos, OUT/examples and returns the report."""
    import jax.numpy as jnp
    from tqdm import tqdm

    from camclone_jax.eval.__main__ import load_ground_truth
    from camclone_jax.models.wan_vae import decode, encode
    from camclone_jax.sample.tasks import Inputs, generate
    from camclone_jax.sample.video import frame_grid, read_video, write_video

    size = dict(num_frames=num_frames, height=height, width=width)

    def sample(prompt, ref, content=None, image=None, s=0, sampler=sampler):
        inputs = Inputs(prompt=prompt, ref_video=ref, content_video=content, image=image)
        return generate(models, "camclone", inputs, sampler=sampler, seed=s, tiled=False, progress=False, **size)[0]

    # With a frozen reference the camera-guidance term is exactly zero: skip its pass.
    static_sampler = dataclasses.replace(sampler, camera_scale=1.0)

    rows = []
    for k, t in enumerate(tqdm(triples, desc="held-out triples", unit="triple", disable=not progress)):
        ref, content, target = (read_video(p, **size) for p in (t.ref, t.content, t.target))
        start = time.perf_counter()
        videos = {
            "model_v2v": sample(t.caption, ref, content, s=seed + k),
            "model_i2v": sample(t.caption, ref, image=content[0], s=seed + k),
            "content": content,
            "static_ref": sample(t.caption, np.repeat(ref[:1], num_frames, axis=0), content, s=seed + k,
                                 sampler=static_sampler),
            "ground_truth": target,
            "vae_round_trip": np.asarray(decode(models.vae, encode(models.vae, jnp.asarray(target)[None])))[0],
        }
        gen_seconds = time.perf_counter() - start
        gt_c2w, intr = load_ground_truth(t.target_cameras)
        gt_c2w = gt_c2w[:num_frames]
        row = {"row": t.row, "target": str(t.target), "ref": str(t.ref), "content": str(t.content),
               "trajectory": trajectory_kind(t.target_cameras), "generation_seconds": round(gen_seconds, 2),
               "systems": {}}
        for name, video in videos.items():
            row["systems"][name] = {"PSNR": psnr(video, target),
                                    **{m: pose_errors(video, gt_c2w, intr, m, seed) for m in methods}}
        for name in GENERATED:
            write_video(out / "videos" / f"row{t.row:04d}_{name}.mp4", videos[name], fps=15)
        if k < examples:
            shown = {"reference": ref} | videos
            frame_grid([(label, shown[name]) for name, label in STRIP_ROWS.items()],
                       out / "examples" / f"row{t.row:04d}.png")
        rows.append(row)
    return {"rows": rows, "summary": {m: summarise(rows, m) for m in methods}, "methods": list(methods),
            "psnr": {name: float(np.mean([r["systems"][name]["PSNR"] for r in rows])) for name in SYSTEMS},
            "num_frames": num_frames, "size": [height, width]}


def summarise(rows: list[dict], method: str) -> dict:
    """Per system: mean and median of each metric over the clips `method` posed, and its failures."""
    summary = {}
    for name in SYSTEMS:
        entries = [r["systems"][name][method] for r in rows]
        ok = [e for e in entries if e["status"] == "ok"]
        s = {"clips": len(entries), "failed": len(entries) - len(ok)}
        for key in METRICS:
            values = [e[key] for e in ok]
            s[key] = float(np.mean(values)) if values else None
            s[f"{key}_median"] = float(np.median(values)) if values else None
        summary[name] = s
    return summary


def ratios(summary: dict, key: str = "RotErr") -> dict:
    """Model V2V's `key` over each baseline's (the issue's target: <= 0.5 against both)."""
    model = summary["model_v2v"][key]
    return {base: (model / summary[base][key] if model is not None and summary[base][key] else None)
            for base in ("content", "static_ref")}


def paired_ratios(rows: list[dict], method: str, key: str = "RotErr") -> dict:
    """As `ratios`, over only the clips where `method` posed both model V2V and the baseline:
    {baseline: (ratio of the means or None, number of such clips)}. A failure drops a clip from one system's
    mean only, and generated clips fail more often, so the unpaired means compare different clip sets."""
    out = {}
    for base in ("content", "static_ref"):
        pairs = [(r["systems"]["model_v2v"][method], r["systems"][base][method]) for r in rows]
        pairs = [(m[key], b[key]) for m, b in pairs if m["status"] == "ok" and b["status"] == "ok"]
        denominator = float(np.mean([b for _, b in pairs])) if pairs else 0.0
        out[base] = (float(np.mean([m for m, _ in pairs])) / denominator if denominator else None, len(pairs))
    return out


def format_ratios(report: dict, method: str) -> str:
    """The target line under each table: model V2V RotErr over each baseline's, unpaired and paired."""
    fmt = lambda v: "–" if v is None else f"{v:.2f}"
    rel = ratios(report["summary"][method])
    paired = paired_ratios(report["rows"], method)
    return (f"model V2V RotErr / baseline ({method}): content {fmt(rel['content'])}, static reference "
            f"{fmt(rel['static_ref'])}; over the clips both were posed on: content {fmt(paired['content'][0])} "
            f"({paired['content'][1]} clips), static reference {fmt(paired['static_ref'][0])} "
            f"({paired['static_ref'][1]} clips)")


BY_TRAJECTORY = ("model_v2v", "static_ref", "content")  # the systems the per-trajectory table compares


def by_trajectory(rows: list[dict], method: str) -> dict:
    """{trajectory kind: {"triples": n, system: mean RotErr over its posed clips or None, system_failed: k}}
    for the systems of BY_TRAJECTORY: where the model turns with its reference and where it does not."""
    out = {}
    for kind in sorted({r["trajectory"] for r in rows}):
        entries = {name: [r["systems"][name][method] for r in rows if r["trajectory"] == kind]
                   for name in BY_TRAJECTORY}
        out[kind] = {"triples": len(entries["model_v2v"])}
        for name, es in entries.items():
            ok = [e["RotErr"] for e in es if e["status"] == "ok"]
            out[kind] |= {name: float(np.mean(ok)) if ok else None, f"{name}_failed": len(es) - len(ok)}
    return out


def format_by_trajectory(rows: list[dict], method: str) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.2f}"
    lines = ["| target trajectory | triples | " + " | ".join(f"{SYSTEMS[n][0]}: RotErr ({method})"
                                                               for n in BY_TRAJECTORY) + " |",
             "|" + "---|" * (len(BY_TRAJECTORY) + 2)]
    for kind, k in by_trajectory(rows, method).items():
        cells = [fmt(k[n]) + (f" ({k[f'{n}_failed']} failed)" if k[f"{n}_failed"] else "") for n in BY_TRAJECTORY]
        lines.append(f"| {kind} | {k['triples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(report: dict, method: str) -> str:
    fmt = lambda v, spec=".2f": "–" if v is None else format(v, spec)
    lines = [f"| poses: {method} | RotErr (rad) | TransErr | CamMC | RotErr median | TransErr median | "
             f"CamMC median | PSNR (dB) | failures |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (label, _) in SYSTEMS.items():
        s = report["summary"][method][name]
        lines.append(f"| {label} | " + " | ".join(fmt(s[k]) for k in METRICS) + " | "
                     + " | ".join(fmt(s[f"{k}_median"]) for k in METRICS)
                     + f" | {fmt(report['psnr'][name], '.1f')} | {s['failed']}/{s['clips']} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m camclone_jax.eval.heldout", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", required=True, type=Path,
                   help="folder with dit/ vae/ umt5/ clip/ (e.g. the shipped camclone_jax/assets/synthetic)")
    p.add_argument("--data", required=True, type=Path, help="synthetic dataset folder (python -m "
                   "camclone_jax.data.synthetic ... --detail coarse, the data the model was trained on)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--split", default="test", help="which CSV of --data (default test: the held-out scenes)")
    p.add_argument("--num", type=int, default=24, help="triples to evaluate, spread over the split (default 24)")
    p.add_argument("--method", choices=tuple(METHODS), nargs="+", default=["sfm"],
                   help="pose estimator(s), one table each (default sfm, the CamI2V protocol; homography and "
                        "direct: rotations only, from SIFT homographies or whole-frame alignment)")
    p.add_argument("--rotation-only", action="store_true",
                   help="evaluate only triples whose target camera only turns (pan / tilt / roll), the clips the "
                        "rotation estimators can pose")
    p.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    p.add_argument("--shift", type=float, default=None,
                   help="sigma shift of the sampling grid, the DiT's training flow.shift (default: `sampler_shift` "
                        "of MODELS/example/example.json when there is one, as in the shipped folder, else 5)")
    p.add_argument("--cfg", type=float, default=1.0, help="text guidance scale (default 1: no unconditional pass; "
                   "the synthetic captions carry no camera information)")
    p.add_argument("--camera-scale", type=float, default=None,
                   help="camera guidance scale of the model rows (default: `camera_scale` of "
                        "MODELS/example/example.json when there is one, as in the shipped folder, else 1: off). The "
                        "static-reference baseline is the same sampler with a frozen reference, where camera "
                        "guidance adds nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples", type=int, default=3, help="PNG strips of the first N triples (default 3)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from camclone_jax.sample.denoise import Sampler

    try:
        triples, size, models = load_setup(args.models, args.data, args.split, args.num, args.rotation_only)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from camclone_jax.sample.demo import camera_scale, sampler_shift

    if args.shift is None:
        args.shift = sampler_shift(args.models)
    if args.camera_scale is None:
        args.camera_scale = camera_scale(args.models)
    sampler = Sampler("euler", args.steps, args.shift, args.cfg, args.camera_scale)
    report = evaluate(models, triples, args.out, **size, sampler=sampler, methods=tuple(args.method), seed=args.seed,
                      examples=args.examples, progress=not args.no_progress)
    report["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    kind = "rotation-only held-out" if args.rotation_only else "held-out"
    text = (f"{len(triples)} {kind} triples of {args.data} ({args.split}.csv), {size['num_frames']} frames "
            f"{size['height']}x{size['width']}, {args.steps} Euler steps at shift {args.shift:g}"
            f"{f', camera guidance {args.camera_scale:g}' if args.camera_scale != 1 else ''}\n")
    for method in args.method:
        text += (f"\n{format_table(report, method)}\n\n{format_ratios(report, method)}\n\n"
                 f"{format_by_trajectory(report['rows'], method)}\n")
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
