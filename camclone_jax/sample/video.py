"""Video and image input/output for sampling (numpy + PIL + PyAV only; spec `camera_control.md` section 3).

Shapes: T frames, H height, W width, 3 RGB channels; arrays are channels-last `[T, H, W, 3]` (house style).
Float videos live in [-1, 1] (float32); encoded pixels are uint8.

Loading (identical in ReCamMaster, SynCamMaster and CamCloneMaster):
1. `scale = max(width / W, height / H)`; resize the PIL frame to `(round(W*scale), round(H*scale))` with
   PIL's bilinear filter (torchvision's `resize` on a PIL image calls exactly this, including PIL's wider
   support when downscaling). `round` is Python's (half to even), as upstream.
2. Centre crop with torchvision's anchor `int(round((size - target) / 2.0))` (same round).
   Worked example: 1280x1280 -> scale 0.65 -> 832x832 -> top offset 176 -> 480x832.
3. Upstream then resizes to (height, width) again, a no-op after the crop (PIL returns a copy), so it is skipped.
4. `ToTensor` + `Normalize(0.5, 0.5)`: `(x / 255 - 0.5) / 0.5` evaluated in float32, bit for bit.
Frame counts: CamCloneMaster pads by repeating the last frame (`short="pad"`, index `min(i, count - 1)`);
ReCamMaster / SynCamMaster need the full clip (`short="error"`).

Output: `uint8 = clip((x + 1) * 127.5, 0, 255)` (truncating cast), H.264 yuv420p mp4 at fps 30 by default.
"""

from __future__ import annotations

import os
import tempfile

import av
import numpy as np
from PIL import Image

__all__ = [
    "read_video",
    "read_image",
    "to_uint8",
    "write_video",
    "side_by_side",
    "make_test_video",
    "resize_and_crop",
]

# imageio-ffmpeg's `quality=5` (upstream's writer setting) maps to `-crf int((1 - 5/10) * 51) = 25` for libx264.
_X264_CRF = "25"


def _check_geometry(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value <= 0 or value % 16:
            raise ValueError(f"{name} must be a positive multiple of 16 (VAE 8x and patch 2x), got {value!r}")


def _check_num_frames(num_frames: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be of the form 4k+1 (1, 5, ..., 81) for the causal VAE, "
                         f"got {num_frames!r}")


def _crop_anchor(size: int, target: int) -> int:
    # torchvision `center_crop`: int(round((image - crop) / 2.0)), Python round (half to even).
    return int(round((size - target) / 2.0))


def resize_and_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 RGB frame [h, w, 3] (or a PIL image) to cover (height, width), then centre crop.

    Resize uses PIL bilinear (torchvision's PIL path); returns uint8 [height, width, 3].
    """
    if isinstance(frame, Image.Image):
        image = frame.convert("RGB")
    else:
        image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    w, h = image.size
    scale = max(width / w, height / h)
    new_w, new_h = round(w * scale), round(h * scale)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    if new_w < width or new_h < height:  # cannot happen for finite scale; guard against float surprises
        raise ValueError(f"resized frame {new_w}x{new_h} is smaller than the target {width}x{height}")
    top, left = _crop_anchor(new_h, height), _crop_anchor(new_w, width)
    return np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.uint8)


def _normalise_video_frame(pixels: np.ndarray) -> np.ndarray:
    # ToTensor: float32(x) / 255; Normalize(mean=0.5, std=0.5): (t - 0.5) / 0.5, each op rounded to float32.
    t = pixels.astype(np.float32) / np.float32(255.0)
    return (t - np.float32(0.5)) / np.float32(0.5)


def _decode_frames(path: str, start: int, count: int) -> list[np.ndarray]:
    """Decode frames [start, start + count) as uint8 RGB arrays; fewer if the file ends earlier."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"video file not found: {path}")
    frames: list[np.ndarray] = []
    try:
        with av.open(path, mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= start:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= count:  # stop early: only decode what is needed
                    break
    except av.FFmpegError as e:
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(f"video file not found: {path}") from e
        raise ValueError(f"cannot read video {path}: {e}") from e
    return frames


def read_video(path, height: int = 480, width: int = 832, num_frames: int = 81, short: str = "pad",
               start: int = 0) -> np.ndarray:
    """Load `num_frames` consecutive frames from `start` as float32 [T, H, W, 3] in [-1, 1].

    short="pad": a clip with fewer frames repeats its last frame (CamCloneMaster, `min(i, count - 1)`).
    short="error": a clip with fewer frames raises ValueError (ReCamMaster / SynCamMaster skip such clips).
    """
    path = os.fspath(path)
    _check_geometry(height, width)
    _check_num_frames(num_frames)
    if short not in ("pad", "error"):
        raise ValueError(f"short must be 'pad' or 'error', got {short!r}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    frames = _decode_frames(path, start, num_frames)
    found = len(frames)
    if found == 0:
        raise ValueError(f"no frames decoded from {path} at or after frame {start}")
    if found < num_frames and short == "error":
        raise ValueError(f"video {path} has {found} frames from frame {start}, but {num_frames} are needed "
                         f"(this model needs the full clip; use a longer video or fewer frames)")
    out = np.empty((num_frames, height, width, 3), dtype=np.float32)
    processed = [_normalise_video_frame(resize_and_crop(f, height, width)) for f in frames]
    for i in range(num_frames):
        out[i] = processed[min(i, found - 1)]
    return out


def read_image(path, height: int = 480, width: int = 832) -> np.ndarray:
    """Load an image as float32 [H, W, 3] in [-1, 1]: same resize + crop, then `x * (2/255) - 1`.

    Matches DiffSynth's `preprocess_image`: float32 pixels times the double 2/255 (cast to float32), minus 1.
    """
    path = os.fspath(path)
    _check_geometry(height, width)
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            pixels = resize_and_crop(image.convert("RGB"), height, width)
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e
    return pixels.astype(np.float32) * np.float32(2 / 255) - np.float32(1)


def to_uint8(video: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8 via `clip((x + 1) * 127.5, 0, 255)`.

    The cast truncates (no rounding), as upstream's `.clip(0, 255).numpy().astype(np.uint8)` and the spec.
    """
    x = np.asarray(video, dtype=np.float32)
    return np.clip((x + np.float32(1)) * np.float32(127.5), 0, 255).astype(np.uint8)


def _pick_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _encode(path: str, pixels: np.ndarray, fps: int) -> None:
    _, h, w, _ = pixels.shape
    codec = _pick_codec()
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": _X264_CRF}
        else:
            stream.bit_rate = max(1_000_000, 8 * w * h * fps // 10)
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def write_video(path, video: np.ndarray, fps: int = 30) -> str:
    """Write [T, H, W, 3] video (float in [-1, 1], or uint8) as an H.264 yuv420p mp4; returns the path.

    Encodes to a temporary file in the destination folder and renames it into place only on success.
    H and W must be even (yuv420p). fps defaults to 30 as upstream (datasets are 15 fps).
    """
    path = os.fspath(path)
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
        raise ValueError(f"write_video expects [T, H, W, 3] with T >= 1, got shape {video.shape}")
    if video.shape[1] % 2 or video.shape[2] % 2:
        raise ValueError(f"yuv420p needs even height and width, got {video.shape[1]}x{video.shape[2]}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pixels = video if video.dtype == np.uint8 else to_uint8(video)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
    os.close(fd)
    try:
        _encode(tmp, pixels, int(fps))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def side_by_side(*videos: np.ndarray) -> np.ndarray:
    """Concatenate videos [T, H, W_i, 3] along width (e.g. camera reference | content | result)."""
    if not videos:
        raise ValueError("side_by_side needs at least one video")
    arrays = [np.asarray(v) for v in videos]
    for i, a in enumerate(arrays):
        if a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"side_by_side: video {i} must be [T, H, W, 3], got shape {a.shape}")
    t, h = arrays[0].shape[:2]
    for i, a in enumerate(arrays[1:], start=1):
        if a.shape[:2] != (t, h):
            raise ValueError(f"side_by_side: video {i} has T, H = {a.shape[:2]}, video 0 has {(t, h)}; "
                             f"all videos need the same frame count and height")
    return np.concatenate(arrays, axis=2)


def frame_grid(rows: list[tuple[str, np.ndarray]], path, columns: int = 5, scale: int = 2) -> str:
    """PNG of labelled videos [T, H, W, 3] in [-1, 1]: one row per (label, video), `columns` frames from the
    first to the last, each pixel `scale` x `scale` (the README's side-by-side figures); returns the path."""
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("frame_grid needs at least one (label, video) row")
    t, h, w = np.asarray(rows[0][1]).shape[:3]
    picks = np.linspace(0, t - 1, columns).round().astype(int)
    label_w = 8 + 6 * max(len(label) for label, _ in rows)  # PIL's default bitmap font is ~6 px a character
    canvas = Image.new("RGB", (label_w + columns * w * scale, len(rows) * h * scale), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, video) in enumerate(rows):
        if np.asarray(video).shape[:3] != (t, h, w):
            raise ValueError(f"frame_grid: row {label!r} is {np.asarray(video).shape[:3]}, row 0 is {(t, h, w)}")
        frames = np.concatenate([np.asarray(video)[c] for c in picks], axis=1)
        img = Image.fromarray(np.clip(np.round((frames + 1.0) * 127.5), 0, 255).astype(np.uint8))
        canvas.paste(img.resize((img.width * scale, img.height * scale), Image.NEAREST), (label_w, r * h * scale))
        draw.text((4, r * h * scale + h * scale // 2 - 5), label, fill="black")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    canvas.save(path)
    return path


def make_test_video(path, frames: int, height: int, width: int, fps: int = 15, seed: int = 0) -> str:
    """Write a small procedural clip (moving colour gradient plus a bouncing square); returns the path."""
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"make_test_video needs frames >= 1 and a size of at least 8x8, got "
                         f"{frames}x{height}x{width}")
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    colour = rng.integers(64, 256, size=3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = max(4, min(height, width) // 4)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        s = t / max(frames, 2)
        for c in range(3):
            wave = np.sin(2 * np.pi * (xx / width + yy / (2 * height) + s) + phase[c])
            video[t, :, :, c] = (127.5 + 100 * wave).astype(np.uint8)
        top = int((height - side) * abs(np.sin(np.pi * s + phase[0])))
        left = int((width - side) * s)
        video[t, top:top + side, left:left + side] = colour
    return write_video(path, video, fps=fps)
