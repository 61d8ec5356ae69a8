"""Synthetic dataset generator: trajectory rules, ray caster, projection, output layout, determinism, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import math

import numpy as np
import pytest

from camclone_jax.data import render as R
from camclone_jax.data import synthetic as S
from camclone_jax.data import trajectories as T
from camclone_jax.sample.camera import load_camera_json


def _rngs(n):
    return [np.random.default_rng(i) for i in range(n)]


# --- Trajectories -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,index,axis", [("pan", 3, 1), ("tilt", 4, 0), ("roll", 5, 2)])
def test_basic_rotation_angles_in_range(kind, index, axis):
    for rng in _rngs(50):
        traj = T.random_trajectory(kind, rng)
        angle = traj.spec["angle"]
        assert 5.0 <= abs(angle) <= 75.0
        rel = traj.relative_poses(17)
        np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
        np.testing.assert_allclose(rel[-1][:3, 3], 0.0, atol=1e-12)
        # the rotation is about the named camera axis, by the drawn angle
        np.testing.assert_allclose(rel[-1][:3, axis], np.eye(3)[axis], atol=1e-12)
        cos = (np.trace(rel[-1][:3, :3]) - 1) / 2
        assert math.degrees(math.acos(np.clip(cos, -1, 1))) == pytest.approx(abs(angle), abs=1e-6)
    pan = T.Trajectory("pan", {"angle": 30.0}, {"mode": "constant"}).relative_poses(5)[-1]
    np.testing.assert_allclose(pan[:3, 2], [math.sin(math.radians(30)), 0, math.cos(math.radians(30))], atol=1e-12)
    tilt = T.Trajectory("tilt", {"angle": 20.0}, {"mode": "constant"}).relative_poses(5)[-1]
    assert tilt[1, 2] < 0  # tilt up: forward gains -y (up in OpenCV axes)


def test_translations_along_one_axis():
    for rng in _rngs(30):
        traj = T.random_trajectory("translate", rng)
        rel = traj.relative_poses(9)
        k = "xyz".index(traj.spec["axis"])
        assert 0.4 <= abs(traj.spec["distance"]) <= 1.2
        np.testing.assert_allclose(rel[-1][:3, :3], np.eye(3), atol=1e-12)
        expected = np.zeros(3)
        expected[k] = traj.spec["distance"]
        np.testing.assert_allclose(rel[-1][:3, 3], expected, atol=1e-12)


@pytest.mark.parametrize("direction", ["left", "right", "up"])
def test_arcs_orbit_a_point_ahead(direction):
    traj = T.Trajectory("arc", {"direction": direction, "angle": 40.0, "radius": 4.0}, {"mode": "constant"})
    centre = np.array([0.0, 0.0, 4.0])
    rel = traj.relative_poses(21)
    for pose in rel:
        to_centre = centre - pose[:3, 3]
        assert np.linalg.norm(to_centre) == pytest.approx(4.0, abs=1e-9)  # on the circle
        np.testing.assert_allclose(pose[:3, 2], to_centre / 4.0, atol=1e-9)  # looking at the centre
    end = rel[-1][:3, 3]
    if direction == "left":
        assert end[0] < 0
    elif direction == "right":
        assert end[0] > 0
    else:
        assert end[1] < 0  # rises (y down)
    # ReCamMaster preset 9 (arc left, 29.8 deg, 4 m): t = (-1.988, 0, 0.533)
    p9 = T.Trajectory("arc", {"direction": "left", "angle": 29.8, "radius": 4.0}, {"mode": "constant"})
    np.testing.assert_allclose(p9.relative_poses(3)[-1][:3, 3], [-1.988, 0, 0.529], atol=2e-3)


def test_splines_pass_through_keypoints():
    for rng in _rngs(20):
        traj = T.random_trajectory("spline", rng)
        keys = np.asarray(traj.spec["keypoints"])
        n = len(keys) - 1
        assert 2 <= n <= 4
        np.testing.assert_allclose(keys[0], 0.0)
        np.testing.assert_allclose(traj.params(np.arange(n + 1) / n), keys, atol=1e-9)
        # smooth: small steps between dense samples, no jumps at the knots
        dense = traj.params(np.linspace(0, 1, 401))
        assert np.abs(np.diff(dense, axis=0)).max() < 0.05 * max(1.0, np.abs(keys).max())
    # constant speed: frame t of T sits at s = t / (T - 1); keypoint k at frame k (T - 1) / n
    traj = T.Trajectory("spline", {"keypoints": [[0] * 6, [1, 0, 0, 10, 0, 0], [0, -0.5, 1, 0, 5, 0]]},
                        {"mode": "constant"})
    rel = traj.relative_poses(9)
    np.testing.assert_allclose(rel[4], T.pose_from_params([1, 0, 0, 10, 0, 0]), atol=1e-12)
    np.testing.assert_allclose(rel[8], T.pose_from_params([0, -0.5, 1, 0, 5, 0]), atol=1e-12)


def test_variable_speed_follows_the_multicamvideo_formula():
    u = np.linspace(0, 1, 2001)
    for a in (1.0, -2.5, 4.0):
        speed = {"mode": "variable", "a": a}
        s = T.progress(u, speed)
        # ReCamMaster README: L_i = L_start + (L_end - L_start) (1 - exp(-a i / f)) / (1 - exp(-a))
        np.testing.assert_allclose(s, (1 - np.exp(-a * u)) / (1 - np.exp(-a)), rtol=1e-12, atol=1e-15)
        assert s[0] == 0 and s[-1] == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.diff(s) > 0)  # never stops or reverses
        assert (s[len(u) // 2] > 0.5) == (a > 0)  # a > 0 starts fast, a < 0 starts slow
        np.testing.assert_allclose(np.gradient(s, u), T.speed_of(u, speed), rtol=2e-3)
        # a pan at variable speed: yaw at frame t is angle * s(t / (T - 1))
        rel = T.Trajectory("pan", {"angle": 40.0}, speed).relative_poses(33)
        yaw = np.degrees(np.arctan2(rel[:, 0, 2], rel[:, 2, 2]))
        np.testing.assert_allclose(yaw, 40.0 * T.progress(np.linspace(0, 1, 33), speed), atol=1e-9)
    np.testing.assert_allclose(T.progress(u, {"mode": "constant"}), u)
    modes = {T.random_speed(rng)["mode"] for rng in _rngs(20)}
    assert modes == {"constant", "variable"}


def test_group_of_ten_cameras():
    trajs = S.group_trajectories(0, 0, 10)
    assert [t.kind for t in trajs] == list(T.DEFAULT_KINDS)
    again = S.group_trajectories(0, 0, 10)
    assert [t.to_json() for t in trajs] == [t.to_json() for t in again]
    assert [t.to_json() for t in trajs] != [t.to_json() for t in S.group_trajectories(0, 1, 10)]


# --- Ray caster -------------------------------------------------------------------------------------------

def _flat(rgb):
    return R.Texture(rgb, rgb, flat=True)


def _room(objects=(), indoor=False):
    ground = R.Texture(R.COLOURS["green"], R.COLOURS["white"], cell=0.5, seed=3)
    walls = tuple(_flat(R.COLOURS[c]) for c in ("red", "blue", "yellow", "purple"))
    return R.Scene(10.0, 10.0, 4.0, indoor, ground, walls, _flat(R.COLOURS["grey"]), tuple(objects),
                   light=(0.0, 0.0, 1.0), ambient=0.5)


def test_ground_hit_gets_the_ground_texture():
    scene = _room()
    intr = R.Intrinsics.from_fov(48, 32, 60.0)
    c2w = S.look_pose([0.0, 0.0, 2.0], 0.0, math.radians(-30.0))
    image, buf = R.render(scene, c2w, intr, buffers=True)
    for i, j in ((31, 24), (20, 5), (25, 40)):
        u, v = j + 0.5, i + 0.5
        d = c2w[:3, :3] @ np.array([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, 1.0])
        t = -2.0 / d[2]
        hit = c2w[:3, 3] + t * d
        assert hit[2] == pytest.approx(0.0, abs=1e-9)
        assert buf["ids"][i, j] == R.GROUND
        assert buf["depth"][i, j] == pytest.approx(t, rel=1e-4)
        expected = scene.ground(hit[None, :2].astype(np.float32))[0]  # light straight above: shade 1
        np.testing.assert_allclose(image[i, j], np.clip(expected * 255 + 0.5, 0, 255).astype(np.uint8), atol=1)
    # the ray through the image centre hits the ground h / tan(30 deg) ahead
    centre = R.project(np.array([2.0 / math.tan(math.radians(30)), 0.0, 0.0]), c2w, intr)
    np.testing.assert_allclose(centre[:2], [intr.cx, intr.cy], atol=1e-9)
    # rays above the horizon see a wall (or the sky above it); none sees the ground
    assert set(np.unique(buf["ids"][0])) <= {R.SKY, R.WALL0, R.WALL0 + 1, R.WALL0 + 2, R.WALL0 + 3}


def test_sphere_and_box_occlude_the_ground():
    intr = R.Intrinsics.from_fov(48, 32, 60.0)
    c2w = S.look_pose([0.0, 0.0, 1.0], 0.0, 0.0)  # level camera at 1 m looking along +x
    sphere = R.Sphere((3.0, 0.0, 1.0), 0.5, _flat(R.COLOURS["red"]))
    box = R.Box((6.0, 0.0, 1.0), (0.5, 0.5, 0.5), 30.0, _flat(R.COLOURS["blue"]))
    _, buf = R.render(_room([sphere, box]), c2w, intr, buffers=True)
    i, j = 16, 24  # pixel centre (24.5, 16.5): a ray just right of and below the axis
    assert buf["ids"][i, j] == R.OBJECT0
    assert buf["depth"][i, j] == pytest.approx(2.5, abs=0.02)
    # without the sphere the same ray reaches the box; the box is 30 deg yawed: face at x = 6 - 0.5 / cos 30
    _, buf = R.render(_room([box]), c2w, intr, buffers=True)
    assert buf["ids"][i, j] == R.OBJECT0
    d = c2w[:3, :3] @ np.array([(24.5 - intr.cx) / intr.fx, (16.5 - intr.cy) / intr.fy, 1.0])
    rot = R._rotz(30.0).astype(np.float64)  # box-to-world
    o_local, d_local = rot.T @ (c2w[:3, 3] - [6.0, 0.0, 1.0]), rot.T @ d
    t1, t2 = (-0.5 - o_local) / d_local, (0.5 - o_local) / d_local
    t_in = np.minimum(t1, t2).max()
    assert t_in == pytest.approx(6.0 - 0.5 / math.cos(math.radians(30)), abs=0.05)
    assert buf["depth"][i, j] == pytest.approx(t_in, rel=1e-4)
    # a moving sphere changes position over clip time
    mover = R.Sphere((3.0, 0.0, 1.0), 0.4, _flat(R.COLOURS["red"]), motion=R.Motion("line", b=(0.0, 2.0, 0.0)))
    _, b0 = R.render(_room([mover]), c2w, intr, u=0.0, buffers=True)
    _, b1 = R.render(_room([mover]), c2w, intr, u=0.5, buffers=True)
    assert b0["ids"][16, 24] == R.OBJECT0 and b1["ids"][16, 24] != R.OBJECT0


def test_projection_matches_the_rendered_marker():
    intr = R.Intrinsics.from_fov(96, 64, 60.0)
    rng = np.random.default_rng(0)
    traj = T.Trajectory("spline", {"keypoints": [[0] * 6, [0.5, -0.3, 0.5, 20, -10, 15], [-0.5, 0, 1, -25, 5, -20]]},
                        {"mode": "variable", "a": 2.0})
    start = S.look_pose([-4.0, 0.5, 1.6], 0.0, math.radians(-8))
    hits = 0
    for pose in start @ traj.relative_poses(9):
        for _ in range(3):
            point = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), rng.uniform(0.3, 1.5)])
            uvz = R.project(point, pose, intr)
            if not (2 <= uvz[0] < intr.width - 2 and 2 <= uvz[1] < intr.height - 2 and uvz[2] > 0):
                continue
            marker = R.Sphere(tuple(point), 0.06, _flat((1.0, 0.0, 0.0)))
            _, buf = R.render(_room([marker]), pose, intr, buffers=True)
            i, j = int(uvz[1]), int(uvz[0])
            assert buf["ids"][i, j] == R.OBJECT0, (uvz, point)
            assert buf["depth"][i, j] == pytest.approx(uvz[2] - 0.06, abs=0.03)
            hits += 1
    assert hits >= 10


def test_texture_has_detail():
    loc = S.make_location(0, 0)
    intr = R.Intrinsics.from_fov(96, 64)
    image = R.render(loc["scene"], loc["start"], intr).astype(np.float32)
    grad = np.abs(np.diff(image, axis=1)).mean()
    assert grad > 8.0  # plenty of edges for feature matching
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500


def test_coarse_detail_same_scene_smoother_texture():
    fine, coarse = S.make_location(0, 0), S.make_location(0, 0, detail="coarse")
    assert fine["caption"] == coarse["caption"]
    np.testing.assert_array_equal(fine["start"], coarse["start"])
    assert fine["info"]["objects"] == coarse["info"]["objects"]
    intr = R.Intrinsics.from_fov(96, 64)
    grads = {}
    for name, loc in (("fine", fine), ("coarse", coarse)):
        image, buf = R.render(loc["scene"], loc["start"], intr, buffers=True)
        grads[name] = np.abs(np.diff(image.astype(np.float32), axis=1)).mean()
        grads[name + "_ids"] = buf["ids"]
    np.testing.assert_array_equal(grads["fine_ids"], grads["coarse_ids"])  # the same geometry, pixel for pixel
    assert grads["coarse"] < 0.7 * grads["fine"], grads
    with pytest.raises(ValueError, match="texture detail"):
        S.make_location(0, 0, detail="smooth")


# --- Dataset output ---------------------------------------------------------------------------------------

SMALL = dict(locations=4, test_locations=4, frames=5, height=32, width=48, cameras=3, supersample=1,
             progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = S.generate(out, seed=1, **SMALL)
    return out, summary


def test_layout_loads_with_the_project_readers(dataset):
    from camclone_jax.sample.video import read_video
    from camclone_jax.train.data import camclone_index, multicam_index

    out, summary = dataset
    seen = {}
    for split, locs in (("train", range(0, 4)), ("test", range(0, 4))):
        items, root = camclone_index(out / f"{split}.csv")
        assert root == out
        assert len(items) == len(locs) * 3 * 3  # 3 cameras x 3 other locations of the group
        for item in items:
            t_loc, t_cam = item.target.split("/")[1], item.target.split("/")[-1]
            r_loc, r_cam = item.ref.split("/")[1], item.ref.split("/")[-1]
            c_loc, c_cam = item.content.split("/")[1], item.content.split("/")[-1]
            assert all(p.startswith(split + "/") and (root / p).is_file() for p in (item.target, item.ref, item.content))
            assert r_cam == t_cam and r_loc != t_loc  # same trajectory, other location
            assert c_loc == t_loc and c_cam != t_cam  # same location, other trajectory
            assert item.caption
        seen[split] = {i.target.split("/")[1] for i in items}
        assert seen[split] == {S.loc_name(k) for k in locs}
    scenes = [json.loads((out / s / S.loc_name(0) / "scene.json").read_text()) for s in ("train", "test")]
    assert scenes[0]["trajectories"] != scenes[1]["trajectories"]  # test trajectories are new too
    assert scenes[0]["caption"] != scenes[1]["caption"]  # and so are the scenes

    folder = out / "train" / S.loc_name(1)
    for cam in ("cam01", "cam03"):
        gt = json.loads((folder / "cameras" / f"{cam}.json").read_text())
        c2w = np.asarray(gt["c2w"])
        assert c2w.shape == (5, 4, 4)
        np.testing.assert_allclose(load_camera_json(folder / S.CAMERA_JSON, cam), c2w, atol=1e-7)
        np.testing.assert_allclose(np.linalg.det(c2w[:, :3, :3]), 1.0, atol=1e-9)
        intr = gt["intrinsics"]
        assert (intr["width"], intr["height"], intr["cx"], intr["cy"]) == (48, 32, 24.0, 16.0)
        # the relative trajectory is the group's, the absolute one starts at this location's start pose
        np.testing.assert_allclose(np.linalg.inv(c2w[0]) @ c2w, np.asarray(gt["rel"]), atol=1e-9)
        video = read_video(folder / "videos" / f"{cam}.mp4", height=32, width=48, num_frames=5, short="error")
        assert video.shape == (5, 32, 48, 3)
    # the same trajectory at two locations of a group: same relative poses, different start
    gt_a = json.loads((out / "train" / S.loc_name(0) / "cameras" / "cam02.json").read_text())
    gt_b = json.loads((out / "train" / S.loc_name(2) / "cameras" / "cam02.json").read_text())
    np.testing.assert_allclose(gt_a["rel"], gt_b["rel"])
    assert not np.allclose(gt_a["c2w"][0], gt_b["c2w"][0])

    # the decoded mp4 is close to the rendered frames
    loc = S.make_location(1, 1)
    traj = S.group_trajectories(1, 0, 3)[0]
    frames, _ = S.render_video(loc, traj.relative_poses(5), R.Intrinsics.from_fov(48, 32), 1)
    decoded = read_video(folder / "videos" / "cam01.mp4", height=32, width=48, num_frames=5)
    assert hashlib.sha256(frames.tobytes()).hexdigest() == summary["video_sha256"]["train/loc0001/videos/cam01.mp4"]
    assert np.abs(decoded - (frames / 127.5 - 1)).mean() < 0.25  # lossy H.264 at CRF 25, tiny frames

    videos, scenes_idx, train_dir = multicam_index(out)
    assert len(videos) == 4 * 3 and train_dir == out / "train" and len(scenes_idx) == 4


def test_rotation_index_holds_the_rows_whose_target_only_turns(tmp_path):
    from camclone_jax.eval.heldout import cameras_json, is_rotation_only

    S.generate(tmp_path, **(SMALL | dict(cameras=4, test_locations=0)), write_mp4=False)  # pan tilt roll translate
    with open(tmp_path / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "train_rotation.csv", newline="") as f:
        rotation = list(csv.DictReader(f))
    # judged by the ground-truth poses (no camera translation), not by the trajectory's name
    assert rotation == [r for r in rows if is_rotation_only(cameras_json(tmp_path / r["video_path"]))]
    assert 0 < len(rotation) < len(rows) and len(rotation) == 4 * 3 * 3  # 3 of 4 cameras turn


def test_deterministic(tmp_path, dataset):
    out, summary = dataset
    again = S.generate(tmp_path / "again", seed=1, write_mp4=False, **SMALL)
    assert again["video_sha256"] == summary["video_sha256"]
    for name in ("train.csv", "test.csv", "metadata.csv", "dataset.json", "test/loc0001/cameras/camera_extrinsics.json",
                 "train/loc0002/cameras/cam02.json", "train/loc0003/scene.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    other = S.generate(tmp_path / "other", seed=2, write_mp4=False, **(SMALL | {"test_locations": 0}))
    assert set(other["video_sha256"].values()).isdisjoint(summary["video_sha256"].values())
    # the train split does not depend on the size of the test split
    train_only = S.generate(tmp_path / "train_only", seed=1, write_mp4=False, **(SMALL | {"test_locations": 0}))
    assert train_only["video_sha256"] == {k: v for k, v in summary["video_sha256"].items() if k.startswith("train/")}
    assert (tmp_path / "train_only" / "train.csv").read_bytes() == (out / "train.csv").read_bytes()


@pytest.mark.parametrize("override,message", [
    ({"frames": 6}, r"4k\+1"), ({"height": 40}, "multiple of 16"), ({"width": 50}, "multiple of 16"),
    ({"locations": 3}, "multiple of 4"), ({"cameras": 1}, "2..10")])
def test_bad_arguments(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        S.generate(tmp_path, **(SMALL | override))


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        S.main(["--out", str(tmp_path), "--frames", "6"])
    assert exc.value.code == 2
    assert "4k+1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        S.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "train.csv" in text and "--test-locations" in text
    assert S.main(["--out", str(tmp_path / "cli"), "--locations", "4", "--test-locations", "0", "--frames", "5",
                   "--height", "16", "--width", "16", "--cameras", "2", "--supersample", "1", "--no-progress"]) == 0
    assert (tmp_path / "cli" / "train" / "loc0003" / "videos" / "cam02.mp4").is_file()
