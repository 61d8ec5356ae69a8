"""Tests for camclone_jax.sample.video: PyAV read/write, resize-to-cover + centre crop, padding, errors."""

import os

import av
import numpy as np
import pytest
from PIL import Image

from camclone_jax.sample import video as V


def _ramp_video(t, h, w):
    """Smooth, codec-friendly content in [-1, 1] that changes with t."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(t):
        r = xx / w
        g = yy / h
        b = np.full_like(r, i / max(t - 1, 1))
        frames.append(np.stack([r, g, b], -1) * 1.6 - 0.8)
    return np.stack(frames).astype(np.float32)


def _encode_uint8(path, frames, fps=15):
    """Write uint8 frames losslessly (libx264rgb, qp 0, rgb24) so decoded pixels equal the input exactly."""
    codec = "libx264rgb" if "libx264rgb" in av.codecs_available else None
    if codec is None:
        pytest.skip("libx264rgb not available for lossless test clips")
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        s.options = {"crf": "0", "qp": "0"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())


def test_round_trip(tmp_path):
    vid = _ramp_video(9, 32, 48)
    out = V.write_video(tmp_path / "sub" / "a.mp4", vid)  # parent folder created
    assert os.path.isfile(out)
    assert [p for p in os.listdir(tmp_path / "sub")] == ["a.mp4"]  # no leftover temporary file
    back = V.read_video(out, height=32, width=48, num_frames=9, short="error")
    assert back.shape == (9, 32, 48, 3) and back.dtype == np.float32
    assert back.min() >= -1 and back.max() <= 1
    assert np.abs(back - vid).mean() < 0.03
    with av.open(out) as c:
        assert c.streams.video[0].average_rate == 30  # upstream fps
        assert c.streams.video[0].codec_context.name in ("h264", "mpeg4")


def test_normalisation_bit_compatible(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(1, 16, 16, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(frames, 2, 1), 2, 2)  # 32x32, still fully random per 2x2 block
    path = tmp_path / "lossless.mp4"
    _encode_uint8(path, frames)
    got = V.read_video(path, height=32, width=32, num_frames=1)
    with av.open(str(path)) as c:
        decoded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    ref = (decoded.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(got[0], ref)
    np.testing.assert_array_equal(decoded, frames[0])  # sanity: the test clip is lossless


def test_worked_example_geometry(tmp_path):
    # 1280x1280 -> scale 0.65 -> 832x832 -> top offset 176 -> 480x832 (spec section 3).
    yy, xx = np.mgrid[0:1280, 0:1280]
    frame = np.stack([(xx * 7) % 256, (yy * 3) % 256, (xx + yy) // 10 % 256], -1).astype(np.uint8)
    got = V.resize_and_crop(frame, 480, 832)
    big = np.asarray(Image.fromarray(frame).resize((832, 832), Image.BILINEAR))
    np.testing.assert_array_equal(got, big[176:176 + 480, :])
    assert not np.array_equal(got, big[175:175 + 480, :])
    # through a video file (the lossless codec keeps the pattern exact)
    path = tmp_path / "square.mp4"
    _encode_uint8(path, frame[None])
    vid = V.read_video(path, num_frames=1)
    assert vid.shape == (1, 480, 832, 3)
    ref = (big[176:176 + 480].astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(vid[0], ref)


def test_crop_anchor_follows_torchvision_rounding():
    # odd margins: torchvision uses int(round(margin / 2)), Python round (half to even)
    assert V._crop_anchor(837, 832) == 2  # 2.5 -> 2
    assert V._crop_anchor(839, 832) == 4  # 3.5 -> 4
    frame = np.arange(20 * 40 * 3, dtype=np.uint8).reshape(20, 40, 3)
    got = V.resize_and_crop(frame, 16, 32)  # scale 0.8 -> 32x16, no crop
    np.testing.assert_array_equal(got, np.asarray(Image.fromarray(frame).resize((32, 16), Image.BILINEAR)))


def test_pad_repeats_last_frame(tmp_path):
    path = V.make_test_video(tmp_path / "short.mp4", frames=3, height=32, width=32)
    vid = V.read_video(path, height=32, width=32, num_frames=9, short="pad")
    assert vid.shape == (9, 32, 32, 3)
    for i in range(3, 9):
        np.testing.assert_array_equal(vid[i], vid[2])
    assert not np.array_equal(vid[1], vid[2])
    # start offset: frames from 1 onward, padded with the last
    shifted = V.read_video(path, height=32, width=32, num_frames=5, start=1)
    np.testing.assert_array_equal(shifted[0], vid[1])
    np.testing.assert_array_equal(shifted[4], vid[2])


def test_short_error_message(tmp_path):
    path = V.make_test_video(tmp_path / "short.mp4", frames=3, height=32, width=32)
    with pytest.raises(ValueError, match=r"short\.mp4.*3 frames.*9 are needed"):
        V.read_video(path, height=32, width=32, num_frames=9, short="error")
    with pytest.raises(ValueError, match="short must be"):
        V.read_video(path, height=32, width=32, num_frames=1, short="loop")


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(ValueError, match=r"cannot read video .*notes\.mp4"):
        V.read_video(bad, height=32, width=32, num_frames=1)
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=r"not found: .*nope\.mp4"):
        V.read_video(missing, height=32, width=32, num_frames=1)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        V.read_image(tmp_path / "nope.png", 32, 32)
    with pytest.raises(ValueError, match=r"cannot read image .*notes\.mp4"):
        V.read_image(bad, 32, 32)


def test_bad_size_and_frame_count(tmp_path):
    path = tmp_path / "x.mp4"  # validation happens before the file is touched
    with pytest.raises(ValueError, match="height must be a positive multiple of 16"):
        V.read_video(path, height=470, width=832)
    with pytest.raises(ValueError, match="width must be a positive multiple of 16"):
        V.read_video(path, height=480, width=830)
    with pytest.raises(ValueError, match="4k\\+1"):
        V.read_video(path, num_frames=80)
    with pytest.raises(ValueError, match="multiple of 16"):
        V.read_image(path, 30, 32)


def test_write_video_leaves_no_partial_file(tmp_path):
    dest = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        V.write_video(dest, np.zeros((4, 32, 32), np.float32))
    with pytest.raises(ValueError, match="even"):
        V.write_video(dest, np.zeros((2, 31, 32, 3), np.float32))
    assert os.listdir(tmp_path) == []

    # a failure inside the encoder: the temporary file is removed and nothing reaches the destination
    class Boom(RuntimeError):
        pass

    def failing_encode(path, pixels, fps):
        with open(path, "wb") as f:
            f.write(b"half")
        raise Boom("encoder died")

    orig = V._encode
    V._encode = failing_encode
    try:
        with pytest.raises(Boom):
            V.write_video(dest, np.zeros((2, 32, 32, 3), np.float32))
    finally:
        V._encode = orig
    assert os.listdir(tmp_path) == []
    # an existing output survives a failed overwrite
    V.write_video(dest, np.zeros((1, 32, 32, 3), np.float32))
    size = dest.stat().st_size
    V._encode = failing_encode
    try:
        with pytest.raises(Boom):
            V.write_video(dest, np.ones((2, 32, 32, 3), np.float32))
    finally:
        V._encode = orig
    assert os.listdir(tmp_path) == ["out.mp4"] and dest.stat().st_size == size


def test_to_uint8_truncates_and_clips():
    x = np.array([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0], np.float32)
    np.testing.assert_array_equal(V.to_uint8(x), [0, 0, 127, 254, 255, 255])


def test_side_by_side():
    a, b, c = (np.zeros((5, 16, w, 3), np.float32) for w in (16, 32, 48))
    out = V.side_by_side(a, b + 1, c)
    assert out.shape == (5, 16, 96, 3)
    assert np.all(out[:, :, 16:48] == 1) and np.all(out[:, :, 48:] == 0)
    with pytest.raises(ValueError, match="same frame count and height"):
        V.side_by_side(a, np.zeros((4, 16, 16, 3)))
    with pytest.raises(ValueError, match="same frame count and height"):
        V.side_by_side(a, np.zeros((5, 32, 16, 3)))
    with pytest.raises(ValueError, match="at least one"):
        V.side_by_side()


def test_read_image(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(40, 100, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(pixels).save(path)
    got = V.read_image(path, 32, 64)
    assert got.shape == (32, 64, 3) and got.dtype == np.float32
    # scale = max(64/100, 32/40) = 0.8 -> 80x32, left offset 8
    ref = np.asarray(Image.fromarray(pixels).resize((80, 32), Image.BILINEAR))[:, 8:72]
    np.testing.assert_array_equal(got, ref.astype(np.float32) * np.float32(2 / 255) - np.float32(1))
    assert got.min() >= -1 and got.max() <= 1


def test_make_test_video_moves(tmp_path):
    path = V.make_test_video(tmp_path / "demo.mp4", frames=5, height=32, width=48, seed=3)
    with av.open(path) as c:
        assert c.streams.video[0].average_rate == 15
    vid = V.read_video(path, height=32, width=48, num_frames=5, short="error")
    assert np.abs(vid[4] - vid[0]).mean() > 0.05


def test_frame_grid_places_labelled_rows(tmp_path):
    t, h, w = 9, 8, 12
    red = np.zeros((t, h, w, 3), np.float32)
    red[..., 0] = 1.0  # pure red in [-1, 1]
    ramp = np.broadcast_to(np.linspace(-1, 1, t, dtype=np.float32)[:, None, None, None], (t, h, w, 3))
    path = V.frame_grid([("red", red), ("ramp", ramp)], tmp_path / "sub" / "grid.png", columns=3, scale=2)
    img = np.asarray(Image.open(path).convert("RGB"))
    label_w = img.shape[1] - 3 * w * 2
    assert img.shape[0] == 2 * h * 2 and label_w > 0
    assert tuple(img[3, label_w + 5]) in {(255, 127, 127), (255, 128, 128)}  # red: (1, 0, 0) in [-1, 1]
    # the ramp row shows frames 0, 4, 8: black, mid grey, white
    row = img[h * 2 + 3, label_w::w * 2][:3, 0]
    assert row[0] == 0 and 120 <= row[1] <= 135 and row[2] == 255
    assert img[:, :label_w].min() < 255  # the labels are drawn
    with pytest.raises(ValueError, match="row 'short'"):
        V.frame_grid([("red", red), ("short", red[:3])], tmp_path / "bad.png")
