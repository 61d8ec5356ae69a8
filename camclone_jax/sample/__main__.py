"""python -m camclone_jax.sample: camera-controlled video generation with converted Wan2.1 checkpoints.

Tasks (each is a sub-command with its own --help):
  camclone  CamCloneMaster: clone the camera motion of --ref-video. V2V when --content-video is given (re-shoot
            that content with the reference's camera), I2V when only --image is given (animate the image).
  recam     ReCamMaster: re-shoot --source-video along --trajectory: a preset 1-10 (1 pan right, 2 pan left,
            3 tilt up, 4 tilt down, 5 zoom in, 6 zoom out, 7 translate up, 8 translate down, 9 arc left,
            10 arc right), a camera JSON in the MultiCamVideo format (+ --camera), or a spec such as
            "pan:20", "orbit:30+zoom:0.5", "translate:0.5,0,0" (degrees, metres). Needs the full clip.
            Also writes <output>_cameras.png, a plot of the trajectory.
  syncam    SynCamMaster: one prompt, --views az | el | dis (two synchronised cameras 30 deg apart in azimuth,
            20 deg in elevation, or 0.5 m apart in distance); the views are written side by side, plus a plot.
  t2v       Wan2.1 text-to-video.
  i2v       Wan2.1 image-to-video from --image (Wan I2V weights, or CamCloneMaster weights without references).

Checkpoints are folders made by `python -m convert` (see its --help): --models DIR with dit/ vae/ umt5/ clip/
(and the umT5 tokenizer's spiece.model in umt5/ or DIR/), or each with --dit, --vae, --text-encoder,
--tokenizer, --clip. The DiT variant must fit the task (e.g. recam needs ReCamMaster weights).

Defaults follow upstream: 480x832, 81 frames, Wan's Chinese negative prompt, text-only guidance 5.0, seed 0;
the camera tasks sample with DiffSynth's Euler (50 steps, shift 5) and tiled VAE, t2v/i2v with UniPC (t2v 50
steps shift 5; i2v 40 steps shift 3). Videos are written as H.264 mp4 at 30 fps (upstream's choice).

Without any download:  python -m camclone_jax.sample --demo   (the small model trained on synthetic scenes)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from camclone_jax.models.attention import BACKENDS as ATTENTION_BACKENDS
from camclone_jax.sample import camera
from camclone_jax.sample.denoise import SOLVERS, Sampler
from camclone_jax.sample.tasks import DEFAULT_SAMPLERS, TASKS, Inputs, plot_path

EPILOG = """examples:
  python -m camclone_jax.sample --demo
  python -m camclone_jax.sample camclone --models ckpt/camclone --ref-video ref.mp4 --content-video content.mp4 \\
      --prompt "a red car on a coastal road" --output out/camclone.mp4 --side-by-side
  python -m camclone_jax.sample camclone --models ckpt/camclone --ref-video ref.mp4 --image first.png \\
      --prompt "..." --output out/camclone_i2v.mp4
  python -m camclone_jax.sample recam --models ckpt/recam --source-video src.mp4 --trajectory 9 --prompt "..."
  python -m camclone_jax.sample recam --models ckpt/recam --source-video src.mp4 --trajectory "orbit:30+zoom:0.5"
  python -m camclone_jax.sample recam --models ckpt/recam --source-video src.mp4 --trajectory-from drone.mp4
  python -m camclone_jax.sample syncam --models ckpt/syncam --views az --prompt "an elephant walking"
  python -m camclone_jax.sample t2v --models ckpt/wan_t2v_1_3b --prompt "a cat surfing" --frames 49
"""


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


def _common(parser: argparse.ArgumentParser, task: str) -> None:
    sampler = DEFAULT_SAMPLERS[task]
    ckpt = parser.add_argument_group("checkpoints (folders made by `python -m convert`)")
    ckpt.add_argument("--models", metavar="DIR", help="folder with dit/ vae/ umt5/ clip/ sub-folders")
    ckpt.add_argument("--dit", metavar="DIR", help="converted DiT (default: DIR/dit)")
    ckpt.add_argument("--vae", metavar="DIR", help="converted Wan2.1 VAE (default: DIR/vae)")
    ckpt.add_argument("--text-encoder", metavar="DIR", help="converted umT5-XXL (default: DIR/umt5)")
    ckpt.add_argument("--tokenizer", metavar="PATH",
                      help="google/umt5-xxl spiece.model or its folder (default: found in the umT5 folder or DIR)")
    if task in ("i2v", "camclone"):
        ckpt.add_argument("--clip", metavar="DIR", help="converted CLIP ViT-H/14 (default: DIR/clip)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--prompt", required=True, help="what the video shows")
    gen.add_argument("--negative-prompt", default=None,
                     help="default: Wan's Chinese base negative prompt (i2v: with '镜头晃动，' in front), as upstream")
    gen.add_argument("--frames", type=int, default=81, help="frames, of the form 4k+1 (default 81)")
    gen.add_argument("--height", type=int, default=480, help="divisible by 16 (default 480)")
    gen.add_argument("--width", type=int, default=832, help="divisible by 16 (default 832)")
    gen.add_argument("--steps", type=int, default=sampler.steps, help=f"denoising steps (default {sampler.steps})")
    gen.add_argument("--solver", choices=sorted(SOLVERS), default=sampler.solver,
                     help="; ".join(f"{k}: {v}" for k, v in SOLVERS.items()) + f" (default {sampler.solver})")
    gen.add_argument("--shift", type=float, default=sampler.shift, help=f"sigma shift (default {sampler.shift})")
    gen.add_argument("--cfg-scale", type=float, default=sampler.cfg_scale,
                     help="text classifier-free guidance; 1 disables the unconditional pass (default 5.0)")
    gen.add_argument("--camera-scale", type=float, default=1.0,
                     help="camera guidance (camclone, recam): one more pass with the camera held still (a frozen "
                          "reference / the identity trajectory), and the result is pushed away from it by this "
                          "scale; > 1 follows the camera more strongly, 1 disables it (default 1, as upstream)")
    gen.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    gen.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                     help="compute dtype of the networks (bfloat16 on GPU/TPU; default float32)")
    gen.add_argument("--attention", choices=ATTENTION_BACKENDS, default="auto",
                     help="attention kernel: auto = splash on TPU, cuDNN flash on GPU under bfloat16, else xla")
    gen.add_argument("--mesh", default=None, metavar="AXIS=N,...",
                     help="spread the DiT over devices, e.g. 'sequence=8' (tokens over 8 devices, Ulysses attention) "
                          "or 'data=2,sequence=-1' (CFG halves over 2, tokens over the rest); axes data, fsdp, "
                          "tensor, sequence; -1 = the remaining devices (default: one device)")
    gen.add_argument("--no-tiling", action="store_true",
                     help="encode/decode whole frames instead of upstream's (30, 52)-latent VAE tiles")
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=f"out/{task}.mp4", help=f"mp4 to write (default out/{task}.mp4)")
    out.add_argument("--fps", type=int, default=30, help="frame rate of the mp4 (default 30, as upstream)")
    out.add_argument("--side-by-side", action="store_true",
                     help="write the inputs beside the result (camclone: camera ref | content | result; recam: "
                          "source | result; i2v: first frame | result; t2v and syncam have no input video)")
    out.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m camclone_jax.sample", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true",
                        help="CamCloneMaster V2V with the small model trained in this repository on synthetic scenes, "
                             "on a held-out example that ships with it (no download, seconds on a CPU); writes "
                             "out/demo.mp4 (camera reference | content | result | true target) and out/demo.png")
    parser.add_argument("--demo-output", default="out/demo.mp4", help="where --demo writes its video")
    parser.add_argument("--demo-steps", type=int, default=30, help="Euler steps of --demo (default 30)")
    parser.add_argument("--demo-camera-scale", type=float, default=None,
                        help="camera guidance of --demo (default: the shipped example's camera_scale)")
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    helps = {"camclone": "CamCloneMaster: clone the camera motion of a reference video (V2V or I2V)",
             "recam": "ReCamMaster: re-shoot a video along a new camera trajectory",
             "syncam": "SynCamMaster: synchronised multi-view generation",
             "t2v": "Wan2.1 text-to-video", "i2v": "Wan2.1 image-to-video"}
    for task in TASKS:
        sub = tasks.add_parser(task, help=helps[task], description=helps[task] + ".",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        if task == "camclone":
            sub.add_argument("--ref-video", required=True, help="the video whose camera motion is cloned")
            sub.add_argument("--content-video", help="V2V: the content to re-shoot (omit for I2V)")
            sub.add_argument("--image", help="first frame (I2V; in V2V it overrides the content video's frame 0)")
        elif task == "recam":
            sub.add_argument("--source-video", required=True, help="the video to re-shoot (at least --frames long)")
            path = sub.add_mutually_exclusive_group(required=True)
            path.add_argument("--trajectory",
                              help="preset 1-10, a camera JSON path, or a spec like 'pan:20' / 'orbit:30+zoom:0.5'")
            path.add_argument("--trajectory-from", metavar="VIDEO",
                              help="take the camera path of another video (estimated with COLMAP/GLOMAP, or "
                                   "for pans/tilts/rolls with --trajectory-method homography or direct)")
            sub.add_argument("--trajectory-method", choices=("sfm", "homography", "direct"), default="sfm",
                             help="--trajectory-from estimator: sfm (any motion; needs pycolmap), homography "
                                  "(pans/tilts/rolls only, fast; needs pycolmap) or direct (pans/tilts/rolls, "
                                  "whole-frame alignment, works on blurred video); default sfm")
            sub.add_argument("--trajectory-scale", type=float, default=1.0,
                             help="--trajectory-from: SfM paths have no scale; the farthest camera is put this far "
                                  "from the first (presets move 1-2; default 1.0)")
            sub.add_argument("--camera", help="camera key in the JSON (e.g. 3 or cam03) when it holds several")
        elif task == "syncam":
            sub.add_argument("--views", choices=sorted(camera.SYNCAM_PRESETS), default="az",
                             help="camera pair: az (30 deg azimuth), el (20 deg elevation), dis (0.5 m back)")
        elif task == "i2v":
            sub.add_argument("--image", required=True, help="first frame")
        _common(sub, task)
    return parser


def read_inputs(args) -> tuple[Inputs, np.ndarray | None]:
    """Loads and checks the task's videos, images and cameras -> (inputs, camera poses to plot or None)."""
    from camclone_jax.sample.video import read_image, read_video

    size = dict(height=args.height, width=args.width)
    video = lambda path, short: read_video(path, num_frames=args.frames, short=short, **size)
    inputs = Inputs(prompt=args.prompt, negative_prompt=args.negative_prompt)
    poses = None
    if getattr(args, "image", None):
        inputs.image = read_image(args.image, **size)
    if args.task == "camclone":
        inputs.ref_video = video(args.ref_video, "pad")  # CameraClone clips have 77 frames: upstream pads
        if args.content_video:
            inputs.content_video = video(args.content_video, "pad")
        elif not args.image:
            raise CLIError("camclone needs --content-video (V2V) or --image (I2V)")
    elif args.task == "recam":
        if args.trajectory_from:
            poses = camera.trajectory_from_video(args.trajectory_from, args.frames, height=args.height,
                                                 width=args.width, method=args.trajectory_method,
                                                 scale=args.trajectory_scale)
        else:
            poses = camera.recam_trajectory(args.trajectory, args.camera, num_frames=args.frames)
        inputs.cam_emb = camera.recam_embedding(poses)
        inputs.source_video = video(args.source_video, "error")
    elif args.task == "syncam":
        inputs.cam_emb = camera.syncam_preset(args.views, num_frames=args.frames)
        poses = camera.syncam_view_poses(args.views)
    return inputs, poses


def parse_mesh(text: str):
    """'data=2,sequence=-1' -> a device mesh (`sharding.make_mesh`); a bad spec is a CLIError naming it."""
    import jax

    from camclone_jax import sharding
    from configs.common import mesh_shape

    try:
        shape = {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}
        unknown = set(shape) - set(sharding.MESH_AXES)
        if unknown:
            raise ValueError(f"unknown axes {sorted(unknown)}; use {', '.join(sharding.MESH_AXES)}")
        return sharding.make_mesh(mesh_shape({a: shape.get(a, 1) for a in sharding.MESH_AXES}, jax.device_count()))
    except ValueError as err:
        raise CLIError(f"--mesh {text!r}: {err}") from None


def run_task(args) -> list[Path]:
    from camclone_jax.sample.checkpoints import CheckpointPaths, check_checkpoints, load_models
    from camclone_jax.sample.tasks import check_inputs, check_sampler, generate

    sampler = Sampler(args.solver, args.steps, args.shift, args.cfg_scale, args.camera_scale)
    paths = CheckpointPaths.resolve(args.models, dit=args.dit, vae=args.vae, text_encoder=args.text_encoder,
                                    tokenizer=args.tokenizer, clip=getattr(args, "clip", None))
    check_checkpoints(args.task, paths)
    inputs, poses = read_inputs(args)
    check_inputs(args.task, inputs, args.frames, args.height, args.width)
    check_sampler(args.task, sampler)
    output = Path(args.output)
    if output.suffix.lower() != ".mp4":
        raise CLIError(f"--output must end in .mp4, got {output}")
    mesh = parse_mesh(args.mesh) if args.mesh else None

    start = time.perf_counter()
    models = load_models(args.task, paths, dtype=args.dtype, attention=args.attention)
    print(f"loaded {models.variant} models in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    videos = generate(models, args.task, inputs, num_frames=args.frames, height=args.height, width=args.width,
                      sampler=sampler, seed=args.seed, tiled=not args.no_tiling, progress=not args.quiet,
                      mesh=mesh)
    print(f"generated {videos.shape[0]} x {videos.shape[1]} frames of {args.height}x{args.width} in "
          f"{time.perf_counter() - start:.1f} s")
    return write_outputs(args, inputs, videos, poses)


def write_outputs(args, inputs: Inputs, videos: np.ndarray, poses: np.ndarray | None) -> list[Path]:
    from camclone_jax.sample.plot import plot_cameras
    from camclone_jax.sample.video import side_by_side, write_video

    frames = videos.shape[1]
    result = side_by_side(*videos)  # syncam: the views next to each other, as upstream merges them
    if args.side_by_side:
        still = lambda image: np.repeat(image[None], frames, axis=0)
        if args.task == "camclone":
            content = inputs.content_video if inputs.content_video is not None else still(inputs.image)
            result = side_by_side(inputs.ref_video, content, result)
        elif args.task == "recam":
            result = side_by_side(inputs.source_video, result)
        elif args.task == "i2v":
            result = side_by_side(still(inputs.image), result)
    written = [Path(write_video(args.output, result, fps=args.fps))]
    if poses is not None:
        labels = [f"view {i}" for i in range(len(poses))] if args.task == "syncam" else None
        title = (f"ReCamMaster trajectory {args.trajectory or 'of ' + Path(args.trajectory_from).name}"
                 if args.task == "recam"
                 else f"SynCamMaster views '{args.views}' (relative to view 0)")
        written.append(Path(plot_cameras(poses, plot_path(args.output), title=title, labels=labels)))
    for path in written:
        print(f"wrote {path}")
    return written


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo == bool(args.task):
        parser.error("give either --demo or a task (camclone, recam, syncam, t2v, i2v); see --help")
    try:
        if args.demo:
            from camclone_jax.sample.demo import run_demo

            run_demo(args.demo_output, steps=args.demo_steps, guidance=args.demo_camera_scale)
        else:
            run_task(args)
    except (CLIError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
