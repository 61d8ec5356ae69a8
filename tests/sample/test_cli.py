"""`python -m camclone_jax.sample`: every task end to end on tiny checkpoints made by the real converter,
bad inputs refused with a clear message and nothing half-written, `--help`, and the demo.

The models are random torch-named state dicts built from the converter's own shape tables (weights scaled small,
norm weights around 1, so the outputs stay finite), saved as safetensors and converted with `convert.convert`;
their sizes fit together like the shipped demo's (umT5 width 64 = DiT text width, CLIP width 64 at 224 px =
the DiT's 257 image tokens).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from camclone_jax.models import DiTConfig
from camclone_jax.models.clip_vision import tiny_clip
from camclone_jax.models.umt5 import tiny_umt5
from camclone_jax.models.wan_vae import tiny_vae
from camclone_jax.sample import checkpoints
from camclone_jax.sample.__main__ import main
from camclone_jax.sample.demo import ASSETS, run_demo, train_tokenizer
from camclone_jax.sample.video import make_test_video, write_video
from convert import clip as convert_clip_shapes
from convert import convert
from convert import umt5 as convert_umt5_shapes
from convert import vae as convert_vae_shapes
from convert.dit import expected_torch_shapes as dit_shapes
from convert.state_dict_io import write_safetensors

REPO = Path(__file__).resolve().parents[2]
QUIET = dict(log=lambda *_: None)
FRAMES, HEIGHT, WIDTH = 9, 32, 48
FAST = ["--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--steps", "2", "--quiet"]
DIT_VARIANTS = ("t2v", "i2v", "camclone", "recam", "syncam")


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """std 0.05 everywhere, except norm scales (1-D `*norm*.weight`, VAE `gamma`) which are 1 + 0.05 noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        value = rng.standard_normal(shape).astype(np.float32) * np.float32(0.05)
        leaf = key.rsplit(".", 2)
        if key.endswith(".gamma") or ("norm" in key and leaf[-1] == "weight" and len(shape) == 1):
            value += np.float32(1.0)
        out[key] = value
    return out


def make_checkpoints(root: Path) -> Path:
    """root/enc/{vae,umt5(+spiece.model),clip} shared, and root/<variant>/dit for each DiT variant; the camclone,
    i2v, t2v and syncam folders link the encoders in (the `--models DIR` layout); recam gets only dit/ and is run
    with explicit --vae / --text-encoder / --tokenizer."""
    src = root / "torch"
    src.mkdir()
    umt5_cfg, clip_cfg = tiny_umt5(), tiny_clip().replace(image_size=224)
    encoders = {"vae": convert_vae_shapes.expected_torch_shapes(tiny_vae()),
                "umt5": convert_umt5_shapes.expected_torch_shapes(umt5_cfg),
                # The file holds every block; the model runs `used_layers` of them (as Wan's CLIP).
                "clip": convert_clip_shapes.expected_torch_shapes(clip_cfg.replace(used_layers=clip_cfg.num_layers))}
    for seed, (name, shapes) in enumerate(encoders.items()):
        write_safetensors(random_weights(shapes, seed), src / f"{name}.safetensors")
        options = dict(num_heads=clip_cfg.num_heads) if name == "clip" else {}
        convert(src / f"{name}.safetensors", root / "enc" / name, **options, **QUIET)
    train_tokenizer(root / "enc" / "umt5")
    for seed, variant in enumerate(DIT_VARIANTS, start=10):
        cfg = DiTConfig.tiny(variant, text_dim=umt5_cfg.dim, image_dim=clip_cfg.dim)
        state = random_weights(dit_shapes(cfg), seed)
        write_safetensors(state, src / f"{variant}.safetensors")
        # Tiny image models read as plain i2v from their shapes: name the CamCloneMaster variant.
        found = convert(src / f"{variant}.safetensors", root / variant / "dit", num_heads=cfg.num_heads,
                        variant="camclone" if variant == "camclone" else None, **QUIET)
        assert found.variant == variant
        if variant != "recam":
            for name in encoders:
                (root / variant / name).symlink_to(root / "enc" / name, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)  # resized + cropped to 32x48
    Image.fromarray(image).save(folder / "first.png")
    junk = folder / "not_a_video.mp4"
    junk.write_text("this is a text file, not an mp4\n")
    return {"ref": Path(make_test_video(folder / "ref.mp4", FRAMES, HEIGHT, WIDTH, seed=1)),
            "content": Path(make_test_video(folder / "content.mp4", FRAMES, 48, 64, seed=2)),
            "short": Path(make_test_video(folder / "short.mp4", 5, HEIGHT, WIDTH, seed=3)),
            "image": folder / "first.png", "junk": junk}


def run_cli(*args, expect: int = 0, capsys=None) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err if capsys is not None else ""
    assert code == expect, f"exit code {code}, stderr: {err}"
    return err


def read_mp4(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def check_output(path: Path, width: int, plot: bool = False) -> np.ndarray:
    frames = read_mp4(path)
    assert frames.shape == (FRAMES, HEIGHT, width, 3), frames.shape
    assert frames.std() > 0  # not a constant (e.g. NaN-clipped) picture
    plot_file = path.with_name(path.stem + "_cameras.png")
    assert plot_file.is_file() == plot
    if plot:
        with Image.open(plot_file) as im:
            im.load()
            assert im.size[0] > 0 and im.size[1] > 0
    assert not list(path.parent.glob("*.part"))
    return frames


# Every task writes a real mp4 ------------------------------------------------------------------------------
def test_t2v_writes_video_and_is_reproducible(ckpt, tmp_path, capsys):
    outputs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / f"t2v_{name}.mp4"
        run_cli("t2v", "--models", ckpt / "t2v", "--prompt", "a cat surfing", "--seed", seed, "--cfg-scale", 1,
                "--output", out, *FAST, capsys=capsys)
        outputs[name] = check_output(out, WIDTH)
    # Same seed: the same video up to rounding. Bit equality failed once under a loaded CI (10 % of pixels off):
    # XLA:CPU's multi-threaded fusions may sum in another order, and the lossy codec spreads a last-bit change.
    # Another seed changes pixels by ~30 levels on average, so a seed that is ignored still fails here.
    same, other = (np.abs(outputs[k].astype(np.int16) - outputs["a"]).mean() for k in ("b", "c"))
    assert same < 1.0 and other > 10.0, f"mean |difference| in 8-bit levels: same seed {same}, another {other}"


def test_i2v(ckpt, media, tmp_path, capsys):
    out = tmp_path / "i2v.mp4"
    run_cli("i2v", "--models", ckpt / "i2v", "--image", media["image"], "--prompt", "a boat",
            "--output", out, "--side-by-side", *FAST, capsys=capsys)
    check_output(out, 2 * WIDTH)


@pytest.mark.parametrize("camera_scale", ["1", "2.5"])
def test_camclone_v2v(ckpt, media, tmp_path, capsys, camera_scale):
    out = tmp_path / "camclone_v2v.mp4"
    run_cli("camclone", "--models", ckpt / "camclone", "--ref-video", media["ref"], "--content-video",
            media["content"], "--prompt", "a red car", "--output", out, "--side-by-side", "--camera-scale",
            camera_scale, *FAST, capsys=capsys)
    check_output(out, 3 * WIDTH)


def test_camclone_i2v_pads_a_short_reference(ckpt, media, tmp_path, capsys):
    """I2V (image only), and the camera reference has 5 < 9 frames: CamCloneMaster repeats its last frame."""
    out = tmp_path / "camclone_i2v.mp4"
    run_cli("camclone", "--models", ckpt / "camclone", "--ref-video", media["short"], "--image", media["image"],
            "--prompt", "a red car", "--output", out, "--side-by-side", *FAST, capsys=capsys)
    check_output(out, 3 * WIDTH)


def recam(ckpt, media, out, trajectory, *extra, capsys=None):
    enc = ckpt / "enc"
    return run_cli("recam", "--dit", ckpt / "recam" / "dit", "--vae", enc / "vae", "--text-encoder", enc / "umt5",
                   "--tokenizer", enc / "umt5" / "spiece.model", "--source-video", media["ref"], "--trajectory",
                   trajectory, "--prompt", "a street", "--output", out, *extra, *FAST, capsys=capsys)


@pytest.mark.parametrize("trajectory", ["9", "pan:20"])
def test_recam_with_explicit_checkpoint_flags(ckpt, media, tmp_path, capsys, trajectory):
    out = tmp_path / "recam" / "result.mp4"  # the output folder does not exist yet
    recam(ckpt, media, out, trajectory, capsys=capsys)
    check_output(out, WIDTH, plot=True)


def test_recam_side_by_side_with_camera_guidance(ckpt, media, tmp_path, capsys):
    out = tmp_path / "recam_sbs.mp4"
    recam(ckpt, media, out, "1", "--side-by-side", "--camera-scale", "2", capsys=capsys)
    check_output(out, 2 * WIDTH, plot=True)  # source | result


def test_syncam(ckpt, tmp_path, capsys):
    out = tmp_path / "syncam.mp4"
    run_cli("syncam", "--models", ckpt / "syncam", "--views", "az", "--prompt", "an elephant", "--output", out,
            *FAST, capsys=capsys)
    check_output(out, 2 * WIDTH, plot=True)  # two views side by side


# Bad input: a clear message, exit code 2, nothing written, and no model loaded ----------------------------
@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although the inputs were already known to be bad")

    for name in ("load_dit", "load_vae", "load_umt5", "load_clip"):
        monkeypatch.setattr(checkpoints, name, refuse)


BAD = {
    "unreadable_video": (["recam", "--models", "{recam_models}", "--source-video", "{junk}", "--trajectory", "1"],
                         "cannot read video"),
    "unreadable_camclone_ref": (["camclone", "--models", "{camclone}", "--ref-video", "{junk}", "--image",
                                 "{image}"], "cannot read video"),
    "short_recam_source": (["recam", "--models", "{recam_models}", "--source-video", "{short}", "--trajectory", "1"],
                           "has 5 frames from frame 0, but 9 are needed"),
    "size_not_16": (["t2v", "--models", "{t2v}", "--height", "40"], "multiples of 16, got 40x48"),
    "size_not_16_video": (["camclone", "--models", "{camclone}", "--ref-video", "{ref}", "--image", "{image}",
                           "--width", "50"], "width must be a positive multiple of 16"),
    "frames_not_4k1": (["t2v", "--models", "{t2v}", "--frames", "8"], "4k+1"),
    "frames_not_4k1_video": (["recam", "--models", "{recam_models}", "--source-video", "{ref}", "--trajectory", "1",
                              "--frames", "10"], "4k+1"),
    "missing_checkpoint_dir": (["t2v", "--models", "{missing}"], "dit checkpoint directory not found"),
    "missing_vae_dir": (["t2v", "--dit", "{t2v}/dit", "--vae", "{missing}", "--text-encoder", "{enc}/umt5"],
                        "vae checkpoint directory not found"),
    "wrong_folder_kind": (["t2v", "--dit", "{t2v}/dit", "--vae", "{enc}/umt5", "--text-encoder", "{enc}/umt5"],
                          "holds a converted umt5, not the vae expected for --vae"),
    "recam_with_camclone_weights": (["recam", "--models", "{camclone}", "--source-video", "{ref}", "--trajectory",
                                     "1"], "task 'recam' needs recam weights, but --dit"),
    "t2v_with_recam_weights": (["t2v", "--dit", "{recam}/dit", "--vae", "{enc}/vae", "--text-encoder", "{enc}/umt5"],
                               "task 't2v' needs t2v weights, but --dit"),
    "camclone_without_content": (["camclone", "--models", "{camclone}", "--ref-video", "{ref}"],
                                 "camclone needs --content-video (V2V) or --image (I2V)"),
    "bad_trajectory": (["recam", "--models", "{recam_models}", "--source-video", "{ref}", "--trajectory",
                        "spin:20"], "malformed camera spec 'spin:20'"),
    "camera_guidance_t2v": (["t2v", "--models", "{t2v}", "--camera-scale", "2"],
                            "camera guidance (camera scale 2) works for the tasks camclone, recam, not 't2v'"),
    "output_not_mp4": (["t2v", "--models", "{t2v}", "--output", "{out_dir}/result.avi"],
                       "--output must end in .mp4"),
}


@pytest.fixture(scope="module")
def recam_models(ckpt, tmp_path_factory) -> Path:
    """A `--models DIR` layout for the ReCamMaster weights (the shared one has dit/ only)."""
    root = tmp_path_factory.mktemp("recam_models")
    (root / "dit").symlink_to(ckpt / "recam" / "dit", target_is_directory=True)
    for name in ("vae", "umt5"):
        (root / name).symlink_to(ckpt / "enc" / name, target_is_directory=True)
    return root


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_cleanly(case, ckpt, media, recam_models, tmp_path, capsys, no_loading):
    args, message = BAD[case]
    out_dir = tmp_path / "out"
    names = dict(t2v=ckpt / "t2v", camclone=ckpt / "camclone", recam=ckpt / "recam", enc=ckpt / "enc",
                 recam_models=recam_models, missing=tmp_path / "no_such_dir", out_dir=out_dir,
                 **{k: v for k, v in media.items()})
    argv = [a.format(**names) for a in args]
    if "--output" not in argv:
        argv += ["--output", str(out_dir / "result.mp4")]
    argv = [argv[0], *FAST, "--prompt", "x", *argv[1:]]  # the case's own --height / --frames come last and win
    start = time.perf_counter()
    err = run_cli(*argv, expect=2, capsys=capsys)
    assert time.perf_counter() - start < 10  # refused before any heavy work
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not (out_dir / "result.mp4").exists()
    assert not out_dir.exists() or not list(out_dir.glob("*.part")) and not list(out_dir.glob(".*.part"))


def test_bad_input_exit_code_of_the_real_process(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = tmp_path / "out" / "t2v.mp4"
    done = subprocess.run([sys.executable, "-m", "camclone_jax.sample", "t2v", "--models", str(tmp_path / "nope"),
                           "--prompt", "x", "--output", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error: dit checkpoint directory not found" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


# --help --------------------------------------------------------------------------------------------------
def test_help_mentions_every_task_and_the_key_options():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    top = subprocess.run([sys.executable, "-m", "camclone_jax.sample", "--help"], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=120)
    assert top.returncode == 0, top.stderr
    for word in ("t2v", "i2v", "camclone", "recam", "syncam", "--demo", "--trajectory", "--views", "--side-by-side"):
        assert word in top.stdout, word
    sub = subprocess.run([sys.executable, "-m", "camclone_jax.sample", "recam", "--help"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=120)
    assert sub.returncode == 0, sub.stderr
    for word in ("--source-video", "--trajectory", "--camera", "--side-by-side", "--models", "--frames", "--seed"):
        assert word in sub.stdout, word


# --demo --------------------------------------------------------------------------------------------------
def test_demo_samples_the_shipped_example(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["--demo", "--demo-output", str(out), "--demo-steps", "2"]) == 0
    example = json.loads((ASSETS / "example" / "example.json").read_text())
    frames = read_mp4(out)  # camera reference | content | result | true target
    assert frames.shape == (example["frames"], example["height"], 4 * example["width"], 3)
    assert out.with_suffix(".png").is_file() and not list(tmp_path.glob("*.part"))
    printed = capsys.readouterr().out
    assert example["reference_camera"] in printed and "PSNR against the true target" in printed
    # the shift the DiT was trained at, the guidance the folder names
    assert (f"2 Euler steps (shift {example['sampler_shift']:g}, camera guidance "
            f"{example.get('camera_scale', 1):g})") in printed


def test_demo_without_assets_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="example.json not found"):
        run_demo(tmp_path / "demo.mp4", models=tmp_path)


# --trajectory-from: the camera path of another video ----------------------------------------------------------
def _pan_clip(path: Path, frames: int, height: int, width: int, angle: float = 20.0):
    """A rendered synthetic scene filmed by a camera panning `angle` degrees; -> (mp4 path, true relative c2w)."""
    from camclone_jax.data import render, synthetic
    from camclone_jax.data.trajectories import Trajectory

    rel = Trajectory("pan", {"angle": angle}, {"mode": "constant"}).relative_poses(frames)
    intr = render.Intrinsics.from_fov(width, height, 60.0)
    video, _ = synthetic.render_video(synthetic.make_location(0, 0), rel, intr, supersample=1)
    return Path(write_video(path, video.astype(np.float32) / 127.5 - 1.0, fps=15)), rel, intr


def test_trajectory_from_video_recovers_a_pan(tmp_path):
    from camclone_jax.sample.camera import trajectory_from_video

    path, rel, intr = _pan_clip(tmp_path / "pan.mp4", 17, 96, 144)
    poses = trajectory_from_video(path, 17, height=96, width=144, method="homography",
                                  intrinsics=(intr.fx, intr.fy, intr.cx, intr.cy))
    angle = lambda a, b: np.degrees(np.arccos(np.clip((np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2, -1, 1)))
    errors = [angle(p, r) for p, r in zip(poses, rel, strict=True)]
    assert max(errors) < 1.0, errors  # the pan reaches 20 degrees
    assert angle(poses[-1], np.eye(4)) > 15


def test_recam_with_trajectory_from_video(ckpt, media, tmp_path, capsys, monkeypatch):
    """The CLI path: the estimate (here at the clip's own 96x144, the test run's 32x48 is too small for SIFT)
    becomes the cam_emb and the plot; a video with no features is a clean error naming it."""
    from camclone_jax.sample import camera

    path, _, _ = _pan_clip(tmp_path / "pan.mp4", FRAMES, 96, 144)
    real = camera.trajectory_from_video
    seen = {}

    def at_clip_size(video, frames, **kw):
        seen.update(kw)
        return real(video, frames, **{**kw, "height": 96, "width": 144})

    monkeypatch.setattr(camera, "trajectory_from_video", at_clip_size)
    out = tmp_path / "from_video.mp4"
    enc = ckpt / "enc"
    run_cli("recam", "--dit", ckpt / "recam" / "dit", "--vae", enc / "vae", "--text-encoder", enc / "umt5",
            "--tokenizer", enc / "umt5" / "spiece.model", "--source-video", media["ref"], "--trajectory-from", path,
            "--trajectory-method", "homography", "--prompt", "a room", "--output", out, *FAST, capsys=capsys)
    check_output(out, WIDTH, plot=True)
    assert seen["method"] == "homography"

    grey = write_video(tmp_path / "grey.mp4", np.zeros((FRAMES, 96, 144, 3), np.float32), fps=15)
    err = run_cli("recam", "--dit", ckpt / "recam" / "dit", "--vae", enc / "vae", "--text-encoder", enc / "umt5",
                  "--tokenizer", enc / "umt5" / "spiece.model", "--source-video", media["ref"], "--trajectory-from",
                  grey, "--trajectory-method", "homography", "--prompt", "x", "--output", tmp_path / "no.mp4",
                  *FAST, expect=2, capsys=capsys)
    assert "could not estimate the camera path of" in err and "grey.mp4" in err
    assert not (tmp_path / "no.mp4").exists()
