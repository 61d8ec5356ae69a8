"""Camera trajectories and embeddings (camclone_jax/sample/camera.py) against spec camera_control.md 5.5-5.6,
6.4 and 6.7."""

import json
import math

import numpy as np
import pytest

from camclone_jax.sample import camera


def _rel(rot=np.eye(3), t=(0.0, 0.0, 0.0)):
    return camera.make_pose(rot, t)


def _yaw(deg):  # forward turns right by deg: forward = (sin, 0, cos)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _pitch_up(deg):  # forward tilts up by deg: forward = (0, -sin, cos)
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


# Spec 5.6 table: final relative motion at frame 80 (OpenCV camera axes, metres), with the table's rounding.
SPEC_END_POSES = {
    1: _rel(_yaw(19.9)),
    2: _rel(_yaw(-19.9)),
    3: _rel(_pitch_up(9.9)),
    4: _rel(_pitch_up(-9.9)),
    5: _rel(t=(0, 0, 1.988)),
    6: _rel(t=(0, 0, -1.988)),
    7: _rel(_pitch_up(-14.0), (0, -0.994, 0)),
    8: _rel(_pitch_up(14.0), (0, 0.994, 0)),
    9: _rel(_yaw(29.8), (-1.988, 0, 0.533)),
    10: _rel(_yaw(-29.8), (1.988, 0, 0.533)),
}

# Frame 80 of upstream ReCamMaster example_test_data/cameras/camera_extrinsics.json (frame 0 of every camera is
# "[1 0 0 0] [-0 1 0 0] [0 -0 1 0] [3390 1380 240 1] "), to run the end poses through the real conversion.
FRAME0 = "[1 0 0 0] [-0 1 0 0] [0 -0 1 0] [3390 1380 240 1] "
UPSTREAM_FRAME80 = {
    1: "[0.940432 0.339982 0 0] [-0.339982 0.940432 0 0] [0 -0 1 0] [3390 1380 240 1] ",
    2: "[0.940432 -0.339982 0 0] [0.339982 0.940432 -0 0] [0 0 1 0] [3390 1380 240 1] ",
    3: "[0.984995 -2.13821e-50 0.17258 0] [2.69953e-34 1 -1.54074e-33 0] [-0.17258 1.56421e-33 0.984995 0] "
       "[3390 1380 240 1] ",
    4: "[0.984995 0 -0.17258 0] [-0 1 0 0] [0.17258 0 0.984995 0] [3390 1380 240 1] ",
    5: "[1 0 0 0] [-0 1 0 0] [0 -0 1 0] [3588.76 1380 240 1] ",
    6: "[1 0 0 0] [-0 1 0 0] [0 -0 1 0] [3191.24 1380 240 1] ",
    7: "[0.970496 0 -0.241117 0] [-0 1 0 0] [0.241117 0 0.970496 0] [3390 1380 339.379 1] ",
    8: "[0.970496 0 0.241117 0] [-0 1 0 0] [-0.241117 -0 0.970496 0] [3390 1380 140.621 1] ",
    9: "[0.867575 0.497306 0 0] [-0.497306 0.867575 0 0] [0 -0 1 0] [3443.26 1181.24 240 1] ",
    10: "[0.867575 -0.497306 0 0] [0.497306 0.867575 -0 0] [0 0 1 0] [3443.26 1578.76 240 1] ",
}


@pytest.mark.parametrize("preset", range(1, 11))
def test_preset_end_pose_matches_spec_table(preset):
    traj = camera.recam_preset_trajectory(preset)
    assert traj.shape == (81, 4, 4)
    np.testing.assert_allclose(traj[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(traj[-1], SPEC_END_POSES[preset], atol=1e-3)


@pytest.mark.parametrize("preset", range(1, 11))
def test_preset_end_pose_matches_upstream_json_strings(preset):
    ue = np.stack([camera.parse_ue_matrix(FRAME0), camera.parse_ue_matrix(UPSTREAM_FRAME80[preset])])
    expected = camera.relative_poses(camera.ue_to_opencv(ue))[1]
    np.testing.assert_allclose(camera.recam_preset_trajectory(preset)[-1], expected, atol=1e-4)


def test_preset_embeddings_match_spec_examples():
    # Spec 5.5 "example embeddings ... at latent frame 20", four decimals.
    examples = {
        1: [0.9404, 0, 0.34, 0, 0, 1, 0, 0, -0.34, 0, 0.9404, 0],
        5: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1.9876],
        9: [0.8676, 0, 0.4973, -1.9876, 0, 1, 0, 0, -0.4973, 0, 0.8676, 0.5326],
    }
    for preset, row in examples.items():
        emb = camera.recam_cam_emb(preset)
        assert emb.shape == (21, 12) and emb.dtype == np.float32
        np.testing.assert_allclose(emb[0], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], atol=1e-7)
        np.testing.assert_allclose(emb[20], row, atol=1e-3)


def test_pan_angle_grows_linearly():
    # Spec 5.6: cam01 yaw 0, 4.0, 8.0, 11.9, 15.9, 19.9° at latent frames 0, 4, 8, 12, 16, 20.
    emb = camera.recam_cam_emb(1)
    yaw = np.degrees(np.arctan2(emb[:, 2], emb[:, 10]))
    np.testing.assert_allclose(yaw[::4], [0, 4.0, 8.0, 11.9, 15.9, 19.9], atol=0.05)


def _write_synthetic_json(path, frames=9):
    # cam01: UE yaw +90° (forward = +Y, right = -X, up = +Z), position (100k, 200, 300) cm at frame k.
    #   A (rows forward, right, up, position) = [[0 1 0 0] [-1 0 0 0] [0 0 1 0] [100k 200 300 1]].
    #   M = Aᵀ has columns forward (0,1,0), right (-1,0,0), up (0,0,1), position.
    #   C = M[:, [1,2,0,3]] with column 1 negated and position / 100:
    #       C_k = [[-1, 0, 0, k], [0, 0, 1, 2], [0, -1, 0, 3], [0, 0, 0, 1]]   (det of the rotation = -1)
    #   Rel_k = C_0⁻¹ C_k: same rotation, so R = I and t = R_0ᵀ (k, 0, 0) = (-k, 0, 0): the camera faces +Y with
    #   +X on its left, so moving along +X is moving left by k metres.
    # cam02: static identity camera at the origin.
    data = {
        f"frame{k}": {
            "cam01": f"[0 1 0 0] [-1 0 -0 0] [0 0 1 0] [{100 * k} 200 300 1] ",
            "cam02": "[1 0 0 0] [-0 1 0 0] [0 -0 1 0] [0 0 0 1] ",
        }
        for k in range(frames)
    }
    path.write_text(json.dumps(data))
    return path


def test_json_conversion_by_hand(tmp_path):
    path = _write_synthetic_json(tmp_path / "cams.json")
    c2ws = camera.load_camera_json(path, 1)
    assert c2ws.shape == (9, 4, 4)
    expected_2 = np.array([[-1, 0, 0, 2], [0, 0, 1, 2], [0, -1, 0, 3], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(c2ws[2], expected_2, atol=1e-12)
    assert np.linalg.det(c2ws[2, :3, :3]) == pytest.approx(-1.0)
    emb = camera.recam_cam_emb(path, camera="cam01")  # frames 0, 4, 8 -> 3 latent frames
    expected = [[1, 0, 0, -k, 0, 1, 0, 0, 0, 0, 1, 0] for k in (0, 4, 8)]
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    # Training-style reference (another camera's frame 0, spec 5.5). cam02 (UE identity at the origin) becomes
    # C_ref with axes right = UE +Y, down = UE -Z, forward = UE +X. cam01 at frame 4 sits at UE (4, 2, 3) m ->
    # (right 2, down -3, forward 4) in cam02's frame, and faces UE +Y = cam02's right: R = [[0,0,1],[0,1,0],
    # [-1,0,0]] (right = -forward_ref, down = down_ref, forward = right_ref). Latent frame 0 is not the identity.
    train = camera.recam_embedding(c2ws, reference=camera.load_camera_json(path, "cam02")[0])
    np.testing.assert_allclose(train[1], [0, 0, 1, 2, 0, 1, 0, -3, -1, 0, 0, 4], atol=1e-6)
    assert not np.allclose(train[0], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    # SynCamMaster divides by 200.
    np.testing.assert_allclose(camera.load_camera_json(path, 1, divisor=200.0)[2, :3, 3], [1, 1, 1.5])


def test_relative_poses_are_proper_rotations():
    ue = np.stack([camera.parse_ue_matrix(FRAME0), camera.parse_ue_matrix(UPSTREAM_FRAME80[9])])
    rel = camera.relative_poses(camera.ue_to_opencv(ue))
    assert np.linalg.det(rel[1, :3, :3]) == pytest.approx(1.0, abs=1e-5)


def test_embedding_frame_count():
    assert camera.recam_cam_emb(3).shape == (21, 12)
    assert camera.recam_cam_emb(3, num_frames=49).shape == (13, 12)
    assert camera.recam_cam_emb("7").shape == (21, 12)
    assert camera.recam_cam_emb("pan:10").shape == (21, 12)


def test_spec_strings():
    np.testing.assert_allclose(camera.trajectory_from_spec("pan:20")[-1], _rel(_yaw(20)), atol=1e-12)
    np.testing.assert_allclose(camera.trajectory_from_spec("tilt:-15")[-1], _rel(_pitch_up(-15)), atol=1e-12)
    np.testing.assert_allclose(camera.trajectory_from_spec("zoom:0.3")[40], _rel(t=(0, 0, 0.15)), atol=1e-12)
    np.testing.assert_allclose(camera.trajectory_from_spec("translate:1,-2,3")[-1], _rel(t=(1, -2, 3)))
    # orbit:30 about a point 4 m ahead: moves right, turns left, keeps the pivot on the optical axis.
    end = camera.trajectory_from_spec("orbit:30")[-1]
    np.testing.assert_allclose(end[:3, :3], _yaw(-30), atol=1e-12)
    np.testing.assert_allclose(end[:3, 3], [4 * 0.5, 0, 4 - 4 * math.cos(math.radians(30))], atol=1e-12)
    np.testing.assert_allclose(end[:3, 3] + 4 * end[:3, 2], [0, 0, 4], atol=1e-12)
    both = camera.trajectory_from_spec(" pan:20 + zoom:1 ")[-1]
    np.testing.assert_allclose(both, _rel(_yaw(20)) @ _rel(t=(0, 0, 1)), atol=1e-12)
    np.testing.assert_allclose(camera.recam_cam_emb("zoom:1.9876"), camera.recam_cam_emb(5), atol=1e-6)


def test_syncam_presets_match_spec():
    # Spec 6.7: view 1 relative to view 0 (/200).
    expected = {
        "az": _rel(_yaw(30), (-0.75, 0, 0.201)),
        "el": _rel(_pitch_up(-20), (0, -0.546, 0)),
        "dis": _rel(t=(0, 0, -0.5)),
    }
    for name, pose in expected.items():
        emb = camera.syncam_preset(name)
        assert emb.shape == (2, 21, 12) and emb.dtype == np.float32
        np.testing.assert_allclose(emb[0], np.tile([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], (21, 1)), atol=1e-7)
        np.testing.assert_allclose(emb[1], np.tile(pose[:3].ravel(), (21, 1)), atol=1e-3)


def test_syncam_static_cameras_match_spec_table():
    cams = camera.syncam_static_cameras()
    positions = {1: (12960.2, 1250, -570), 2: (12930.2, 1177.65, -570), 3: (12920, 1100, -570),
                 5: (12960.2, 950, -570), 9: (12820, 1100, -570), 10: (12720, 1100, -570)}
    for i, pos in positions.items():
        np.testing.assert_allclose(cams[i][3, :3], pos, atol=0.1)
    for i, z in {6: -517.1, 7: -460.8, 8: -396.8}.items():
        assert cams[i][3, 2] == pytest.approx(z, abs=0.1)
    # Upstream SynCamMaster JSON string of cam01: "[0.866025 -0.5 0 0] [0.5 0.866025 -0 0] [0 0 1 0] ..."
    np.testing.assert_allclose(cams[1][:3, :3], [[0.866025, -0.5, 0], [0.5, 0.866025, 0], [0, 0, 1]], atol=1e-6)


def test_syncam_embedding_any_view_count():
    views = np.stack([camera.trajectory_from_spec(s) for s in ("pan:0", "pan:10", "zoom:1")])
    emb = camera.syncam_embedding(views)
    assert emb.shape == (3, 21, 12)
    np.testing.assert_allclose(emb[2, -1], _rel(t=(0, 0, 1))[:3].ravel(), atol=1e-6)


@pytest.mark.parametrize("bad", [0, 11, "12"])
def test_unknown_recam_preset(bad):
    with pytest.raises(ValueError, match="unknown ReCamMaster preset"):
        camera.recam_cam_emb(bad)


def test_unknown_syncam_preset():
    with pytest.raises(ValueError, match="unknown SynCamMaster preset 'azimuth'"):
        camera.syncam_preset("azimuth")


@pytest.mark.parametrize("spec, match", [
    ("pan", "not OP:VALUES"), ("spin:3", "not OP:VALUES"), ("pan:x", "non-numeric"),
    ("translate:1,2", "translate takes 3"), ("orbit:1,2,3", "orbit takes 1-2"), ("pan:nan", "finite"),
])
def test_malformed_spec(spec, match):
    with pytest.raises(ValueError, match=match):
        camera.trajectory_from_spec(spec)


def test_malformed_json(tmp_path):
    path = _write_synthetic_json(tmp_path / "cams.json")
    with pytest.raises(ValueError, match=r"cams\.json: field frame0\.cam03 is missing"):
        camera.load_camera_json(path, 3)
    with pytest.raises(ValueError, match="pass camera= to pick one"):
        camera.recam_cam_emb(path)
    data = json.loads(path.read_text())
    data["frame2"]["cam01"] = "[1 0 0 0] [0 1 0 0] [0 0 1 0]"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"cams\.json: field frame2\.cam01: expected 4 bracketed rows"):
        camera.load_camera_json(path, "cam01")
    data["frame2"]["cam01"] = "[1 0 0 0] [0 1 0 0] [0 0 1 0] [a 0 0 1]"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"field frame2\.cam01: non-numeric"):
        camera.load_camera_json(path, 1)
    del data["frame3"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not contiguous"):
        camera.load_camera_json(path, 2)
    (tmp_path / "broken.json").write_text("{frame0: ")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        camera.load_camera_json(tmp_path / "broken.json", 1)
    with pytest.raises(ValueError, match=r"cannot read camera JSON .*missing\.json"):
        camera.load_camera_json(tmp_path / "missing.json", 1)
