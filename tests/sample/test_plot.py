"""Camera pose plots (camclone_jax/sample/plot.py): valid RGB PNGs, time colouring, input validation."""

import math

import numpy as np
import pytest
from PIL import Image

from camclone_jax.sample import camera
from camclone_jax.sample.plot import plot_cameras


def _load(path):
    with Image.open(path) as img:
        img.load()
        return img


def _counts(img):
    px = np.asarray(img).astype(int)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    red = int(((r > 200) & (g < 80) & (b < 80)).sum())
    blue = int(((b > 200) & (r < 80) & (g < 80)).sum())
    return red, blue


def _syncam_views(name="az"):
    cams = camera.syncam_static_cameras()
    views = np.stack([camera.ue_to_opencv(cams[i], divisor=200) for i in camera.SYNCAM_PRESETS[name]])
    return np.linalg.inv(views[0]) @ views  # in the target camera's OpenCV frame, as the embedding sees them


def _check_png(path, size):
    img = _load(path)
    assert img.mode == "RGB" and img.size == size
    assert len(img.getcolors(maxcolors=1 << 16) or [None, None]) > 1
    return img


@pytest.mark.parametrize("preset", [1, 5, 9])
def test_recam_trajectory(tmp_path, preset):
    traj = camera.recam_preset_trajectory(preset)
    assert traj.shape == (81, 4, 4)
    out = plot_cameras(traj, tmp_path / "traj.png", title=camera.RECAM_PRESET_NAMES[preset])
    assert out == str(tmp_path / "traj.png")
    red, blue = _counts(_check_png(out, (960, 480)))
    assert red > 20 and blue > 20  # end of the path is red, start blue
    assert [p.name for p in tmp_path.iterdir()] == ["traj.png"]  # no temp file left behind


def test_different_trajectories_differ(tmp_path):
    a = plot_cameras(camera.recam_preset_trajectory(1), tmp_path / "a.png", size=(640, 320))
    b = plot_cameras(camera.recam_preset_trajectory(5), tmp_path / "b.png", size=(640, 320))
    assert not np.array_equal(np.asarray(_load(a)), np.asarray(_load(b)))


def test_syncam_views_with_labels(tmp_path):
    views = _syncam_views("az")
    out = plot_cameras(views, tmp_path / "views.png", title="az", labels=["target", "condition"], size=(800, 400))
    red, blue = _counts(_check_png(out, (800, 400)))
    assert red > 10 and blue > 10
    raw = np.stack([camera.ue_to_opencv(m, divisor=200) for m in camera.syncam_static_cameras().values()])
    _check_png(plot_cameras(raw[:, :3], tmp_path / "all.png", labels=[f"cam{i:02d}" for i in range(1, 11)]),
               (960, 480))  # absolute [N, 3, 4] poses in world coordinates also plot


def test_pure_pan_all_positions_equal(tmp_path):
    traj = camera.recam_preset_trajectory(2)
    assert np.allclose(traj[:, :3, 3], 0.0)
    red, blue = _counts(_check_png(plot_cameras(traj, tmp_path / "pan.png"), (960, 480)))
    assert red > 10 and blue > 10


def test_single_camera(tmp_path):
    _check_png(plot_cameras(np.eye(4)[None], tmp_path / "one.png"), (960, 480))


@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 3), (2, 2, 4), (0, 4, 4), (1, 2, 4, 4)])
def test_bad_shape_raises(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\[N, 4, 4\]"):
        plot_cameras(np.zeros(shape), tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_raises(tmp_path):
    traj = camera.recam_preset_trajectory(1)
    traj[3, 0, 3] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        plot_cameras(traj, tmp_path / "nan.png")
    traj[3, 0, 3] = math.inf
    with pytest.raises(ValueError, match=r"\(81, 4, 4\)"):
        plot_cameras(traj, tmp_path / "inf.png")
    with pytest.raises(ValueError, match="labels"):
        plot_cameras(np.stack([np.eye(4)] * 2), tmp_path / "lab.png", labels=["only one"])
    assert list(tmp_path.iterdir()) == []
