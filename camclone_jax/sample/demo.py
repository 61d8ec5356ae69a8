"""`python -m camclone_jax.sample --demo`: CamCloneMaster V2V with the small model trained in this repository.

Everything ships with the package (camclone_jax/assets/synthetic, a few MB, nothing is downloaded): a tiny
Wan VAE and a tiny CamCloneMaster DiT trained on the synthetic CameraClone dataset
(`python -m camclone_jax.data.synthetic ... --detail coarse`, configs/synthetic_vae.py and
configs/synthetic_camclone.py; README "A small trained model"), the frozen random tiny umT5 / CLIP they were
trained with, and one held-out triple (a scene and a camera trajectory never seen in training): the camera
reference, the content video and the true target render. The demo re-shoots the content along the reference's
camera and writes camera reference | content | result | true target as one mp4, plus a PNG of five frames.

`train_tokenizer` trains the tiny sentencepiece model that the encoders folder and the tests use.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from camclone_jax.models.text_prompts import PromptTokenizer
from camclone_jax.sample.conditions import NEGATIVE_PROMPT

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "synthetic"  # dit/ vae/ umt5/ clip/ example/
CORPUS = ["A red ball bounces across a colourful striped wall while the camera pans to the right.", NEGATIVE_PROMPT,
          "a camera slowly pans across a mountain lake at sunrise",
          "zoom in on the car driving through the city at night", "一只猫在窗台上睡觉。"]


def train_tokenizer(folder: Path, corpus: list[str] = CORPUS, vocab_size: int = 200) -> PromptTokenizer:
    """A tiny unigram sentencepiece model with umT5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 20), model_prefix=str(folder / "spiece"), vocab_size=vocab_size,
        hard_vocab_limit=False, model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, minloglevel=2)
    return PromptTokenizer(folder)


def _example_setting(models: str | Path, key: str, default: float) -> float:
    example = Path(models) / "example" / "example.json"
    return float(json.loads(example.read_text()).get(key, default)) if example.is_file() else default


def sampler_shift(models: str | Path) -> float:
    """The σ shift a demo folder's DiT was trained with (example/example.json `sampler_shift`); 5, upstream's, for
    folders without one."""
    return _example_setting(models, "sampler_shift", 5.0)


def camera_scale(models: str | Path) -> float:
    """The camera guidance a demo folder's DiT samples with (example/example.json `camera_scale`); 1 (off,
    upstream's) for folders without one."""
    return _example_setting(models, "camera_scale", 1.0)


def run_demo(output: str | Path = "out/demo.mp4", steps: int = 30, seed: int = 0, models: str | Path = ASSETS,
             progress: bool = True, guidance: float | None = None) -> Path:
    """Samples the shipped held-out example with the shipped models (module doc); returns the mp4 path.
    `guidance`: the camera guidance scale (default: the folder's `camera_scale`)."""
    from camclone_jax.eval.heldout import psnr
    from camclone_jax.sample.checkpoints import CheckpointPaths, load_models
    from camclone_jax.sample.denoise import Sampler
    from camclone_jax.sample.tasks import Inputs, generate
    from camclone_jax.sample.video import frame_grid, read_video, side_by_side, write_video

    models, output = Path(models), Path(output)
    example_dir = models / "example"
    if not (example_dir / "example.json").is_file():
        raise FileNotFoundError(f"{example_dir}/example.json not found: the demo needs the trained models and "
                                f"the example clips of camclone_jax/assets/synthetic (a broken install?)")
    example = json.loads((example_dir / "example.json").read_text())
    size = dict(num_frames=example["frames"], height=example["height"], width=example["width"])
    clips = {name: read_video(example_dir / example[name], **size) for name in ("reference", "content", "target")}
    print(f"camclone_jax demo: CamCloneMaster V2V with the tiny model trained on synthetic scenes ({models}).")
    print(f"held-out example: camera reference = {example['reference_camera']}; content = the same scene as the "
          f"target along another path ({example['content_camera']})")
    start = time.perf_counter()
    loaded = load_models("camclone", CheckpointPaths.resolve(models), attention="xla")
    inputs = Inputs(prompt=example["caption"], ref_video=clips["reference"], content_video=clips["content"])
    shift = sampler_shift(models)
    guidance = camera_scale(models) if guidance is None else guidance
    result = generate(loaded, "camclone", inputs, sampler=Sampler("euler", steps, shift, 1.0, guidance), seed=seed,
                      tiled=False, progress=progress, **size)[0]
    write_video(output, side_by_side(clips["reference"], clips["content"], result, clips["target"]), fps=15)
    grid = frame_grid([("camera reference", clips["reference"]), ("content", clips["content"]),
                       ("result", result), ("true target", clips["target"])], output.with_suffix(".png"))
    print(f"{size['num_frames']} frames of {size['height']}x{size['width']}, {steps} Euler steps (shift {shift:g}, "
          f"camera guidance {guidance:g}), "
          f"in {time.perf_counter() - start:.1f} s; PSNR against the true target: result "
          f"{psnr(result, clips['target']):.1f} dB, content unchanged {psnr(clips['content'], clips['target']):.1f} dB")
    print(f"wrote {output} (camera reference | content | result | true target) and {grid}")
    return output


def package_demo(encoders: str | Path, dit: str | Path, data: str | Path, row: int, out: str | Path = ASSETS,
                 num_frames: int | None = None, shift: float = 5.0, vae: str | Path | None = None,
                 guidance: float = 1.0) -> Path:
    """Assembles the shipped demo folder `out`: dit/ (an exported run), vae/ umt5/ clip/ (the encoders folder the
    DiT was trained with; `vae` replaces its vae/, e.g. by a decoder fine-tune of it) and example/ (row `row`
    of the held-out DATA/test.csv: reference, content and target clips plus example.json with the caption, the
    cameras' descriptions from the ground truth, the sampling σ shift `shift`, which should be the DiT's
    training flow.shift, and the camera guidance scale `guidance` the demo samples with)."""
    import shutil

    from camclone_jax.eval.heldout import cameras_json, check_files, read_triples

    encoders, dit, data, out = Path(encoders), Path(dit), Path(data), Path(out)
    triples = read_triples(data, "test")
    if not 0 <= row < len(triples):
        raise ValueError(f"{data}/test.csv has no row {row} (rows 0..{len(triples) - 1})")
    triple = triples[row]
    check_files(triple, data / "test.csv")
    out.mkdir(parents=True, exist_ok=True)
    for name, source in (("dit", dit), ("vae", Path(vae) if vae else encoders / "vae"), ("umt5", encoders / "umt5"),
                         ("clip", encoders / "clip")):
        if not source.is_dir():
            raise FileNotFoundError(f"{source} not found (package_demo needs {name}/)")
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(source, out / name)
    example = out / "example"
    shutil.rmtree(example, ignore_errors=True)
    example.mkdir()
    meta = json.loads((data / "dataset.json").read_text())["args"]
    describe = lambda video: json.loads(cameras_json(video).read_text())["trajectory"]["description"]
    for name, video in (("reference", triple.ref), ("content", triple.content), ("target", triple.target)):
        shutil.copyfile(video, example / f"{name}.mp4")
    source_row = {"video_path": triple.target, "caption": triple.caption, "ref_video_path": triple.ref,
                  "content_video_path": triple.content}
    (example / "example.json").write_text(json.dumps({
        "caption": triple.caption, "frames": num_frames or meta["frames"], "height": meta["height"],
        "width": meta["width"], "reference": "reference.mp4", "content": "content.mp4", "target": "target.mp4",
        "reference_camera": describe(triple.ref), "content_camera": describe(triple.content),
        "sampler_shift": shift, "camera_scale": guidance,
        "source": {"dataset": meta, "test_csv_row": row,
                   **{k: str(v.relative_to(data)) if isinstance(v, Path) else v for k, v in source_row.items()}}},
        indent=1) + "\n")
    return out


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m camclone_jax.sample.demo",
                                     description="Assemble the shipped demo folder (package_demo); run the demo "
                                                 "itself with `python -m camclone_jax.sample --demo`.")
    parser.add_argument("--encoders", required=True, help="vae/ umt5/ clip/ the DiT was trained with")
    parser.add_argument("--dit", required=True, help="the exported DiT (python -m camclone_jax.train.export)")
    parser.add_argument("--data", required=True, help="the synthetic dataset (its test.csv gives the example)")
    parser.add_argument("--row", type=int, required=True, help="row of test.csv to ship as the example")
    parser.add_argument("--out", default=str(ASSETS), help=f"default {ASSETS}")
    parser.add_argument("--shift", type=float, default=5.0,
                        help="σ shift the demo samples with: the DiT's training flow.shift (default 5)")
    parser.add_argument("--camera-scale", type=float, default=1.0,
                        help="camera guidance scale the demo samples with (default 1: off)")
    parser.add_argument("--vae", help="ship this VAE instead of ENCODERS/vae: a decoder fine-tune of it "
                                      "(configs/synthetic_vae.py stage=decoder), which keeps the DiT's latents")
    args = parser.parse_args(argv)
    try:
        out = package_demo(args.encoders, args.dit, args.data, args.row, args.out, shift=args.shift, vae=args.vae,
                           guidance=args.camera_scale)
        print(f"wrote {out}")
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
