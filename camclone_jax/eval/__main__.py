"""Camera-accuracy evaluation CLI: `python -m camclone_jax.eval --help`.

Estimates the camera poses of generated videos (COLMAP/GLOMAP SfM via pycolmap, or for rotation-only clips the
homography or the direct-alignment estimator: `camclone_jax.eval.estimators`) and compares them with reference
videos (posed the same way) or with given ground-truth poses, using RotErr / TransErr / CamMC exactly as spec
`cami2v_metrics.md` 8.3 defines them (relative to the first frame, each trajectory normalised by its own
max-norm, sums over frames).
Pairs where pose estimation fails are counted and listed, never silently dropped (spec 8.4 / 12 item 5).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from camclone_jax.eval.estimators import METHODS, ROTATION_ONLY, estimate_poses
from camclone_jax.eval.metrics import as_poses, camera_metrics
from camclone_jax.eval.poses import Intrinsics, PoseEstimate, pycolmap_info

EPILOG = """\
examples:
  # generated vs reference videos (both posed with SfM), intrinsics from a 60 degree horizontal FOV
  python -m camclone_jax.eval --generated out/a.mp4 out/b.mp4 --reference ref/a.mp4 ref/b.mp4 --fov 60
  # the estimator's own error: a clip against its known poses (intrinsics read from the JSON)
  python -m camclone_jax.eval --generated clip.mp4 --ground-truth clip_poses.json --json report.json
  # a pan / tilt clip with the fast homography estimator, the protocol's 16 frames
  python -m camclone_jax.eval --generated pan.mp4 --reference ref.mp4 --method homography --num-frames 16
  # a blurred generated pan against its known poses: whole-frame alignment instead of keypoints
  python -m camclone_jax.eval --generated gen_pan.mp4 --ground-truth pan.json --method direct

ground-truth JSON: {"intrinsics": {"fx": .., "fy": .., "cx": .., "cy": ..} (or [fx, fy, cx, cy] or a 3x3 K),
  "c2w": [[4x4], ...]}: one camera-to-world matrix per video frame, OpenCV axes (x right, y down, z forward).

metrics (spec cami2v_metrics.md 8.3), over the T evaluated frames, each trajectory relative to its first frame:
  RotErr   = sum_i geodesic angle between R_gen,i and R_ref,i                  (radians)
  TransErr = sum_i || t_gen,i / s(gen) - t_ref,i / s(ref) ||, s = max_i ||t_i|| + 1e-9
  CamMC    = sum_i Frobenius norm of [R | t/s]_gen,i - [R | t/s]_ref,i (3x4)
Sums grow with T (upstream uses T = 16): compare numbers only at equal T.
Intrinsics: --fx/--fy/--cx/--cy (pixels of the generated video; rescaled for other video sizes), or --fov,
or the ground-truth JSON's, else fx = fy = 0.5 * max(H, W) with a centred principal point (spec 3.2).
Exit status: 0 when the evaluation ran (failed pairs are reported in the output), 2 for bad arguments or
unreadable inputs.
"""


class InputError(Exception):
    """A problem with the user's inputs: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camclone_jax.eval",
        description="Camera-accuracy evaluation (RotErr, TransErr, CamMC) of generated videos against reference "
                    "videos or ground-truth poses, with COLMAP/GLOMAP SfM (pycolmap) or, for rotation-only clips, "
                    "a homography or a direct-alignment estimator.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generated", nargs="+", required=True, metavar="VIDEO", help="generated videos (mp4, ...)")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--reference", nargs="+", metavar="VIDEO",
                     help="reference videos, posed with the same estimator; one per generated video, or one for all")
    ref.add_argument("--ground-truth", nargs="+", metavar="JSON",
                     help="ground-truth poses (format below); one per generated video, or one for all")
    p.add_argument("--method", choices=tuple(METHODS), default="sfm",
                   help="sfm: COLMAP SIFT + sequential matching + mapper (the protocol, default); homography: fast "
                        "rotation-only estimator from SIFT matches; direct: rotation-only whole-frame photometric "
                        "alignment, for blurred clips with too few keypoints (rotation-only: translations are 0)")
    p.add_argument("--mapper", choices=("global", "incremental"), default="global",
                   help="SfM mapper: global = GLOMAP (protocol, default), incremental = COLMAP")
    p.add_argument("--no-dsp", action="store_true",
                   help="plain SIFT instead of the protocol's affine-shape + DSP-SIFT (faster, not the protocol)")
    intr = p.add_argument_group("intrinsics (pixels; default fx = fy = 0.5 * max(H, W), centred)")
    intr.add_argument("--fx", type=float)
    intr.add_argument("--fy", type=float, help="defaults to --fx")
    intr.add_argument("--cx", type=float, help="defaults to W / 2")
    intr.add_argument("--cy", type=float, help="defaults to H / 2")
    intr.add_argument("--fov", type=float, metavar="DEG", help="horizontal field of view instead of --fx")
    p.add_argument("--num-frames", type=int, metavar="N", help="evaluate the first N frames (after --stride)")
    p.add_argument("--stride", type=int, default=1, help="use every K-th frame (and pose), default 1")
    p.add_argument("--seed", type=int, default=0,
                   help="RANSAC / mapper seed of trial 0, trial k uses seed + k (default 0); -1: nondeterministic")
    p.add_argument("--trials", type=int, default=1,
                   help="pose-estimation trials per pair (upstream: 5); a pair's metrics are the mean over its valid "
                        "trials after the pooled 10-sigma outlier filter of spec 8.4")
    p.add_argument("--workdir", type=Path, help="keep SfM images, database and models under this folder")
    p.add_argument("--json", type=Path, metavar="OUT", help="write per-pair results and the summary as JSON")
    return p


# --- inputs ----------------------------------------------------------------------------------------------

def decode_video(path: Path) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3]; InputError for missing or unreadable files."""
    from camclone_jax.sample.video import _decode_frames

    try:
        frames = _decode_frames(str(path), 0, sys.maxsize)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None
    except Exception as err:  # PyAV raises a zoo of errors for corrupt files
        raise InputError(f"cannot read video {path}: {type(err).__name__}: {err}") from None
    if not frames:
        raise InputError(f"no frames decoded from {path}")
    return np.stack(frames)


def check_video(path: Path) -> None:
    """Fail fast (before any SfM run) on a missing or undecodable video."""
    from camclone_jax.sample.video import _decode_frames

    try:
        if not _decode_frames(str(path), 0, 1):
            raise InputError(f"no frames decoded from {path}")
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err)) from None
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read video {path}: {type(err).__name__}: {err}") from None


def load_ground_truth(path: Path) -> tuple[np.ndarray, Intrinsics | None]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise InputError(f"cannot read ground-truth JSON {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or "c2w" not in data:
        raise InputError(f"{path}: expected an object with a 'c2w' list of 4x4 matrices (and 'intrinsics')")
    try:
        c2w = as_poses(data["c2w"], "c2w")
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: bad 'c2w': {err}") from None
    if not np.all(np.isfinite(c2w)):
        raise InputError(f"{path}: 'c2w' has non-finite entries")
    intr = None
    if data.get("intrinsics") is not None:
        try:
            intr = Intrinsics.from_any(data["intrinsics"])
        except (ValueError, TypeError) as err:
            raise InputError(f"{path}: bad 'intrinsics': {err}") from None
    return c2w, intr


def pair_up(generated: list, others: list, what: str) -> list:
    if len(others) == 1:
        return others * len(generated)
    if len(others) != len(generated):
        raise InputError(f"got {len(generated)} generated videos but {len(others)} {what}; give one per generated "
                         f"video, or a single one for all")
    return others


class IntrinsicsChoice:
    """Resolves the intrinsics for a video of a given size from the command line (see EPILOG)."""

    def __init__(self, args, base_size: tuple[int, int]):
        self.args, self.base_w, self.base_h = args, base_size[0], base_size[1]
        if args.fov is not None and args.fx is not None:
            raise InputError("give either --fov or --fx, not both")
        if args.fx is None and args.fov is None and any(v is not None for v in (args.fy, args.cx, args.cy)):
            raise InputError("--fy/--cx/--cy need --fx (or use --fov)")

    def explicit(self) -> bool:
        return self.args.fx is not None or self.args.fov is not None

    def for_size(self, width: int, height: int, fallback: Intrinsics | None = None) -> Intrinsics:
        a = self.args
        if a.fov is not None:
            return Intrinsics.from_fov(width, height, a.fov)
        if a.fx is not None:
            base = Intrinsics(a.fx, a.fy if a.fy is not None else a.fx,
                              a.cx if a.cx is not None else self.base_w / 2.0,
                              a.cy if a.cy is not None else self.base_h / 2.0)
            return scale_intrinsics(base, self.base_w, self.base_h, width, height)
        if fallback is not None:
            return fallback
        return Intrinsics.default(width, height)


def scale_intrinsics(intr: Intrinsics, w0: int, h0: int, w: int, h: int) -> Intrinsics:
    if (w0, h0) == (w, h):
        return intr
    sx, sy = w / w0, h / h0
    return Intrinsics(intr.fx * sx, intr.fy * sy, intr.cx * sx, intr.cy * sy)


def select_frames(x: np.ndarray, stride: int, num_frames: int | None) -> np.ndarray:
    x = x[::stride]
    return x if num_frames is None else x[:num_frames]


# --- evaluation ------------------------------------------------------------------------------------------

def estimate(frames: np.ndarray, intr: Intrinsics, args, seed, workdir: Path | None) -> PoseEstimate:
    if workdir is not None and args.method == "sfm":
        workdir.mkdir(parents=True, exist_ok=True)
    return estimate_poses(frames, intr, args.method, seed=seed, workdir=workdir, mapper=args.mapper,
                          dsp=not args.no_dsp)


def evaluate_pair(index: int, gen_path: Path, ref, args, choice: IntrinsicsChoice) -> dict:
    """One row of the report. `ref` is ("video", path) or ("poses", (path, c2w, intrinsics))."""
    row = {"pair": index, "generated": str(gen_path), "status": "ok", "notes": []}
    gen = select_frames(decode_video(gen_path), args.stride, args.num_frames)
    h, w = gen.shape[1:3]
    if ref[0] == "video":
        row["reference"] = str(ref[1])
        ref_frames = select_frames(decode_video(ref[1]), args.stride, args.num_frames)
        n = min(len(gen), len(ref_frames))
        if len(gen) != len(ref_frames):
            row["notes"].append(f"frame counts differ ({len(gen)} vs {len(ref_frames)}); first {n} used")
        gen, ref_frames = gen[:n], ref_frames[:n]
        intr_gen = choice.for_size(w, h)
        rh, rw = ref_frames.shape[1:3]
        intr_ref = choice.for_size(rw, rh)
    else:
        gt_path, gt_c2w, gt_intr = ref[1]
        row["reference"] = str(gt_path)
        gt_c2w = select_frames(gt_c2w, args.stride, args.num_frames)
        n = min(len(gen), len(gt_c2w))
        if len(gen) != len(gt_c2w):
            row["notes"].append(f"{len(gen)} frames but {len(gt_c2w)} poses; first {n} used")
        gen, gt_c2w = gen[:n], gt_c2w[:n]
        intr_gen = choice.for_size(w, h, fallback=gt_intr)
    row["num_frames"] = int(n)
    row["intrinsics"] = {"fx": intr_gen.fx, "fy": intr_gen.fy, "cx": intr_gen.cx, "cy": intr_gen.cy}
    if n < 2:
        row.update(status="failed", message=f"only {n} frame(s) to evaluate")
        return row

    start = time.perf_counter()
    row["trials"] = []
    for trial in range(args.trials):
        seed = None if args.seed < 0 else args.seed + trial
        work = None
        if args.workdir is not None:
            work = args.workdir / f"pair{index:03d}" / (f"trial{trial}" if args.trials > 1 else "")
        est_gen = estimate(gen, intr_gen, args, seed, None if work is None else work / "generated")
        entry = {"trial": trial, "seed": seed, "generated_estimate": summarise(est_gen)}
        if ref[0] == "video":
            est_ref = estimate(ref_frames, intr_ref, args, seed, None if work is None else work / "reference")
            entry["reference_estimate"] = summarise(est_ref)
            ref_c2w = est_ref.c2w
        else:
            est_ref, ref_c2w = None, gt_c2w
        row["trials"].append(entry)
        failed = [(name, e) for name, e in (("generated", est_gen), ("reference", est_ref))
                  if e is not None and not e.success]
        if failed:
            entry.update(status="failed", message="; ".join(f"{name}: {e.message}" for name, e in failed))
            continue
        try:
            metrics = camera_metrics(est_gen.c2w, ref_c2w)
        except ValueError as err:
            entry.update(status="failed", message=f"metrics: {err}")
            continue
        entry.update(status="ok", **{k: metrics[k] for k in METRICS})
        entry["rot_err_deg_per_frame"] = metrics["rot_err_deg_per_frame"]
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


METRICS = ("RotErr", "TransErr", "CamMC")


def aggregate(rows: list[dict], outlier_sigma: float = 10.0) -> None:
    """Spec 8.4 steps 2-3, in place: pool the successful (pair, trial) entries, drop an entry when any metric
    is more than `outlier_sigma` standard deviations from the pooled mean, then average the remaining trials
    per pair. A pair with no valid trial is marked failed (counted, never silently dropped)."""
    pool = [e for r in rows for e in r.get("trials", []) if e.get("status") == "ok"]
    if len(pool) > 1:
        values = np.array([[e[k] for k in METRICS] for e in pool])
        mu, sigma = values.mean(axis=0), values.std(axis=0)
        for e, v in zip(pool, values):
            if np.any(np.abs(v - mu) > outlier_sigma * sigma):
                e.update(status="outlier", message=f"more than {outlier_sigma:g} sigma from the pooled mean")
    for r in rows:
        if "trials" not in r:
            continue
        valid = [e for e in r["trials"] if e.get("status") == "ok"]
        r["num_trials"], r["num_valid_trials"] = len(r["trials"]), len(valid)
        last = r["trials"][-1] if r["trials"] else {}
        for key in ("generated_estimate", "reference_estimate"):
            if key in last:
                r[key] = {k: v for k, v in last[key].items() if k != "c2w"}
        if valid:
            r["status"] = "ok"
            r.update({k: float(np.mean([e[k] for e in valid])) for k in METRICS})
        else:
            r["status"] = "failed"
            r["message"] = "; ".join(sorted({e.get("message", "?") for e in r["trials"]})) or "no trial ran"
        if len(valid) < len(r["trials"]):
            bad = len(r["trials"]) - len(valid)
            if valid:
                r["notes"].append(f"{bad} of {len(r['trials'])} trials failed or were outliers")


def summarise(est: PoseEstimate) -> dict:
    return {"success": est.success, "registered": est.num_registered, "num_frames": est.num_frames,
            "message": est.message, "method": est.method,
            "c2w": [None if not np.all(np.isfinite(p)) else p.tolist() for p in est.c2w]}


def summary_of(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    out = {"num_pairs": len(rows), "num_ok": len(ok), "num_failed": len(rows) - len(ok),
           "failed_pairs": [r["pair"] for r in rows if r["status"] != "ok"],
           "success_rate": len(ok) / len(rows) if rows else math.nan}
    for key in METRICS:
        out[f"mean_{key}"] = float(np.mean([r[key] for r in ok])) if ok else None
    frames = sorted({r["num_frames"] for r in ok})
    out["num_frames"] = frames[0] if len(frames) == 1 else frames
    return out


def format_table(rows: list[dict], summary: dict, args) -> str:
    def fmt(v):
        return f"{v:9.4f}" if isinstance(v, float) else f"{'-':>9}"

    def reg(r, key):
        e = r.get(key)
        return f"{e['registered']}/{e['num_frames']}" if e else "-"

    detail = {"sfm": f"{args.mapper} mapper, {'plain' if args.no_dsp else 'DSP'} SIFT, {pycolmap_info()}",
              "homography": pycolmap_info(), "direct": "whole-frame alignment, no pycolmap"}[args.method]
    lines = [f"method: {args.method} ({detail})",
             "metrics: sums over the evaluated frames (spec cami2v_metrics.md 8.3); RotErr in radians"
             + (f"; mean over up to {args.trials} trials per pair after the 10-sigma filter (spec 8.4)"
                if args.trials > 1 else ""), ""]
    header = f"{'pair':>4}  {'frames':>6}  {'reg gen':>7}  {'reg ref':>7}  {'RotErr':>9}  {'TransErr':>9}  " \
             f"{'CamMC':>9}  generated -> reference"
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['pair']:>4}  {r.get('num_frames', 0):>6}  {reg(r, 'generated_estimate'):>7}  "
                     f"{reg(r, 'reference_estimate'):>7}  {fmt(r.get('RotErr'))}  {fmt(r.get('TransErr'))}  "
                     f"{fmt(r.get('CamMC'))}  {Path(r['generated']).name} -> {Path(r['reference']).name}")
        if r["status"] != "ok":
            lines.append(f"{'':>6}FAILED: {r['message']}")
        for note in r["notes"]:
            lines.append(f"{'':>6}note: {note}")
    lines.append("-" * len(header))
    lines.append(f"{'mean':>4}  {str(summary['num_frames']):>6}  {'':>7}  {'':>7}  {fmt(summary['mean_RotErr'])}  "
                 f"{fmt(summary['mean_TransErr'])}  {fmt(summary['mean_CamMC'])}  over {summary['num_ok']} "
                 f"successful pair(s)")
    label = "SfM" if args.method == "sfm" else "pose-estimation"
    lines.append(f"{label} failures: {summary['num_failed']} of {summary['num_pairs']} pair(s)"
                 + (f" (pairs {summary['failed_pairs']}); they are NOT in the mean" if summary["num_failed"] else ""))
    if args.method in ROTATION_ONLY:
        lines.append(f"note: the {args.method} estimator recovers rotations only (translations are 0); TransErr "
                     "and CamMC are meaningful only for rotation-only references")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.stride < 1:
            raise InputError(f"--stride must be >= 1, got {args.stride}")
        if args.trials < 1:
            raise InputError(f"--trials must be >= 1, got {args.trials}")
        if args.num_frames is not None and args.num_frames < 2:
            raise InputError(f"--num-frames must be >= 2, got {args.num_frames}")
        generated = [Path(p) for p in args.generated]
        for path in generated:
            check_video(path)
        if args.reference:
            refs = [("video", Path(p)) for p in pair_up(generated, args.reference, "reference videos")]
            for _, path in refs:
                check_video(path)
        else:
            loaded = {p: load_ground_truth(Path(p)) for p in dict.fromkeys(args.ground_truth)}
            refs = [("poses", (p, *loaded[p])) for p in pair_up(generated, args.ground_truth, "ground-truth files")]
        first = decode_first_frame_size(generated[0])
        choice = IntrinsicsChoice(args, first)
        if args.method != "direct":  # pycolmap import errors before any work
            from camclone_jax.eval import poses

            poses._import_pycolmap()
    except (InputError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    rows = []
    for i, (gen, ref) in enumerate(zip(generated, refs)):
        try:
            row = evaluate_pair(i, gen, ref, args, choice)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except ValueError as err:  # e.g. intrinsics outside the image
            row = {"pair": i, "generated": str(gen), "reference": str(ref[1] if ref[0] == "video" else ref[1][0]),
                   "status": "failed", "message": str(err), "notes": []}
        rows.append(row)
        states = [e.get("status", "?") for e in row.get("trials", [])] or [row["status"]]
        print(f"[{i + 1}/{len(generated)}] {gen.name}: {', '.join(states)}", file=sys.stderr)
    aggregate(rows)
    summary = summary_of(rows)
    print(format_table(rows, summary, args))
    if args.json is not None:
        report = {"method": args.method, "mapper": args.mapper if args.method == "sfm" else None,
                  "dsp_sift": not args.no_dsp, "pycolmap": pycolmap_info(), "stride": args.stride,
                  "trials": args.trials,
                  "summary": summary, "pairs": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def decode_first_frame_size(path: Path) -> tuple[int, int]:
    from camclone_jax.sample.video import _decode_frames

    frame = _decode_frames(str(path), 0, 1)[0]
    return frame.shape[1], frame.shape[0]


if __name__ == "__main__":
    sys.exit(main())
