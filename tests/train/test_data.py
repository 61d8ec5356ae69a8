"""grain pipelines on tiny on-the-fly datasets in the three layouts (9 frames at 32x48 px)."""

import csv
import json

import numpy as np
import pytest

from camclone_jax.sample.camera import load_camera_json, recam_embedding, syncam_embedding
from camclone_jax.sample.video import make_test_video, read_video
from camclone_jax.train import data

FRAMES, H, W = 9, 32, 48
SIZE = dict(num_frames=FRAMES, height=H, width=W)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_camera_json(path, frames=FRAMES, cameras=3, scene=0):
    # Camera c: UE yaw 30·c degrees, moving 10·k cm along X per frame; rows (forward, right, up, position).
    data_ = {}
    for k in range(frames):
        entry = {}
        for c in range(1, cameras + 1):
            a = np.deg2rad(30.0 * c)
            rows = [[np.cos(a), np.sin(a), 0, 0], [-np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0],
                    [10 * k + 100 * c + scene, 50 * c, 170, 1]]
            entry[f"cam{c:02d}"] = " ".join("[" + " ".join(f"{v:.6g}" for v in r) + "]" for r in rows) + " "
        data_[f"frame{k}"] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data_))
    return path


def make_camclone(root, n=4, corrupt=True):
    """CameraClone CSV with n triplets; the last row's target is a text file renamed .mp4 (if `corrupt`)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        for role, frames in (("t", FRAMES - 2 if i == 1 else FRAMES), ("r", FRAMES), ("c", FRAMES)):
            make_test_video(root / f"{role}{i}.mp4", frames, H, W, seed=10 * i + ord(role))
        rows.append([f"t{i}.mp4", f"caption {i}", f"r{i}.mp4", str(root / f"c{i}.mp4")])  # one absolute path
    if corrupt:
        (root / "bad.mp4").write_text("this is not a video")
        rows.append(["bad.mp4", "broken", "r0.mp4", "c0.mp4"])
    return write_csv(root / "CamCloneDataset.csv", data.CAMCLONE_COLUMNS, rows)


def make_multicam(root, scenes=2, cameras=3, short=None, corrupt=None, syncam=False):
    """metadata.csv + train/f24_aperture5/scene{s}/{videos,cameras}; `short`/`corrupt` = (scene, camera)."""
    rows, rotation = [], {}
    for s in range(1, scenes + 1):
        scene = root / "train" / "f24_aperture5" / f"scene{s}"
        write_camera_json(scene / data.CAMERA_JSON, cameras=cameras, scene=s)
        for c in range(1, cameras + 1):
            path = scene / "videos" / f"cam{c:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            if (s, c) == corrupt:
                path.write_text("not a video")
            else:
                make_test_video(path, FRAMES - 4 if (s, c) == short else FRAMES, H, W, seed=100 * s + c)
            rows.append([f"f24_aperture5/scene{s}/videos/cam{c:02d}.mp4", f"scene {s} camera {c}"])
        # cam01/cam02 close, cam03 40° away in azimuth: valid pairs (1, 2) and (2, 1) only.
        rotation[f"scene{s}"] = {f"traj{c}": {"rz": [0, 10, 50][c - 1], "ry": 5} for c in range(1, cameras + 1)}
    if syncam:
        (root / "train" / data.ROTATION_JSON).write_text(json.dumps(rotation))
    write_csv(root / data.METADATA_CSV, data.METADATA_COLUMNS, rows)
    return root


def take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def test_camclone_examples_padding_and_skips(tmp_path):
    csv_path = make_camclone(tmp_path / "cc")
    ds = data.make_dataset("camclone", csv_path, batch_size=2, seed=0, process_index=0, process_count=1,
                           num_epochs=1, **SIZE)
    batches = list(ds)
    assert [len(b["caption"]) for b in batches] == [2, 2]
    assert batches[-1]["skipped"] == 1  # the corrupt target; cumulative
    b = batches[0]
    assert b["target"].shape == b["ref"].shape == b["content"].shape == (2, FRAMES, H, W, 3)
    assert b["target"].dtype == np.float32
    by_caption = {c: t for batch in batches for c, t in zip(batch["caption"], batch["target"])}
    assert set(by_caption) == {f"caption {i}" for i in range(4)}
    np.testing.assert_array_equal(by_caption["caption 1"], read_video(tmp_path / "cc/t1.mp4", **SIZE))
    np.testing.assert_array_equal(by_caption["caption 1"][-1], by_caption["caption 1"][-3])  # padded


def test_missing_csv_column_is_a_clear_error(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["video_path", "caption", "ref_video_path"], [["a", "b", "c"]])
    with pytest.raises(ValueError, match=r"x\.csv.*content_video_path"):
        data.make_dataset("camclone", path, batch_size=1, seed=0, **SIZE)
    write_csv(tmp_path / data.METADATA_CSV, ["file_name", "caption"], [["a", "b"]])
    with pytest.raises(ValueError, match=r"metadata\.csv.*\['text'\]"):
        data.make_dataset("recam", tmp_path, batch_size=1, seed=0, **SIZE)


def test_recam_pairs_cameras_and_skips_short_and_corrupt(tmp_path):
    root = make_multicam(tmp_path / "mc", short=(1, 3), corrupt=(2, 2))
    ds = data.make_dataset("recam", root, batch_size=1, seed=3, process_index=0, process_count=1, num_epochs=1,
                           **SIZE)
    it = iter(ds)
    batches = list(it)
    # 6 targets; the short and the corrupt video fail as targets, and as a drawn condition for some others.
    # Skips after the last batch show only in the iterator state (the next batch would report them).
    skipped = it.get_state()["skipped"]
    assert len(batches) + skipped == 6 and skipped >= 2 and batches
    assert [b["skipped"] for b in batches] == sorted(b["skipped"] for b in batches)
    train = root / "train"
    for b in batches:
        assert b["target"].shape == b["source"].shape == (1, FRAMES, H, W, 3)
        assert b["cam_emb"].shape == (1, 3, 12) and b["cam_emb"].dtype == np.float32
        scene, cam = int(b["caption"][0].split()[1]), int(b["caption"][0].split()[3])
        videos = train / f"f24_aperture5/scene{scene}/videos"
        np.testing.assert_array_equal(b["target"][0], read_video(videos / f"cam{cam:02d}.mp4", **SIZE))
        matches = [c for c in range(1, 4)
                   if c != cam and (videos / f"cam{c:02d}.mp4").stat().st_size > 100
                   and np.array_equal(b["source"][0], read_video(videos / f"cam{c:02d}.mp4", **SIZE, short="pad"))]
        assert len(matches) == 1
        json_path = videos.parent / data.CAMERA_JSON
        expected = recam_embedding(load_camera_json(json_path, cam),
                                   reference=load_camera_json(json_path, matches[0])[0])
        np.testing.assert_allclose(b["cam_emb"][0], expected, atol=1e-6)
        assert not np.allclose(b["cam_emb"][0, 0], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0])  # reference = cond(0)


def test_syncam_view_pairs(tmp_path):
    root = make_multicam(tmp_path / "sc", syncam=True)
    np.save(root / "train/f24_aperture5/scene2" / data.PAIR_LIST, np.array([[3, 1]]))  # overrides rotation
    _, scenes, _ = data.multicam_index(root, with_pairs=True)
    assert scenes["f24_aperture5/scene1"].pairs == ((1, 2), (2, 1))
    assert scenes["f24_aperture5/scene2"].pairs == ((3, 1),)
    ds = data.make_dataset("syncam", root, batch_size=2, seed=0, process_index=0, process_count=1, num_epochs=1,
                           **SIZE)
    (b,) = list(ds)
    assert b["views"].shape == (2, 2, FRAMES, H, W, 3) and b["cam_emb"].shape == (2, 2, 3, 12)
    assert b["skipped"] == 0
    np.testing.assert_allclose(b["cam_emb"][:, 0], np.tile([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], (2, 3, 1)),
                               atol=1e-6)
    i = b["caption"].index("scene 2 camera 3")  # view 0's caption
    json_path = root / "train/f24_aperture5/scene2" / data.CAMERA_JSON
    c2ws = np.stack([load_camera_json(json_path, c, data.SYNCAM_DIVISOR) for c in (3, 1)])
    np.testing.assert_allclose(b["cam_emb"][i], syncam_embedding(c2ws), atol=1e-6)


def _order(ds, n):
    return [c for b in take(ds, n) for c in b["caption"]]


def test_determinism_sharding_and_epochs(tmp_path):
    root = make_multicam(tmp_path / "mc", scenes=3)  # 9 videos
    make = lambda seed, **kw: data.make_dataset("recam", root, batch_size=3, seed=seed, read_threads=2,  # noqa: E731
                                                **(dict(process_index=0, process_count=1) | kw), **SIZE)
    first = _order(make(0), 6)  # two epochs
    assert first == _order(make(0), 6)
    assert first != _order(make(1), 6)
    assert sorted(first[:9]) == sorted(first[9:]) and first[:9] != first[9:]  # each epoch reshuffled
    shards = [[c for b in make(0, process_index=p, process_count=2, num_epochs=1) for c in b["caption"]]
              for p in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(first[:9])


def test_iterator_state_round_trip(tmp_path):
    csv_path = make_camclone(tmp_path / "cc")  # includes a skipped row, so the counter is restored too
    ds = data.make_dataset("camclone", csv_path, batch_size=2, seed=5, process_index=0, process_count=1,
                           read_threads=2, **SIZE)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # JSON-able, as a checkpoint stores it
    expected = [next(it) for _ in range(3)]
    restored = iter(ds)
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        assert got["caption"] == want["caption"] and got["skipped"] == want["skipped"]
        for key in ("target", "ref", "content"):
            np.testing.assert_array_equal(got[key], want[key])


def test_all_unreadable_fails_instead_of_spinning(tmp_path):
    (tmp_path / "bad.mp4").write_text("x")
    path = write_csv(tmp_path / "x.csv", data.CAMCLONE_COLUMNS, [["bad.mp4", "c", "bad.mp4", "bad.mp4"]])
    ds = data.make_dataset("camclone", path, batch_size=1, seed=0, process_index=0, process_count=1, **SIZE)
    with pytest.raises(RuntimeError, match="consecutive"):
        next(iter(ds))
