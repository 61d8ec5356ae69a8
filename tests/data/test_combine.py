"""camclone_jax.data.combine: CameraClone CSVs of several folders as one."""

import csv

import pytest

from camclone_jax.data import combine as C
from camclone_jax.train.data import camclone_index


def _dataset(root, rows):
    root.mkdir(parents=True)
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_path", "caption", "ref_video_path", "content_video_path"])
        for target, ref, content in rows:
            for name in (target, ref, content):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(b"")
            writer.writerow([target, f"caption of {target}", ref, content])
    return root / "train.csv"


def _resolved(csv_path):
    items, root = camclone_index(csv_path)
    return [((root / i.target).resolve(), (root / i.ref).resolve(), (root / i.content).resolve(), i.caption)
            for i in items]


def test_combined_rows_point_at_the_same_files(tmp_path):
    a = _dataset(tmp_path / "s1", [("train/loc0/cam01.mp4", "train/loc1/cam01.mp4", "train/loc0/cam02.mp4")])
    b = _dataset(tmp_path / "deep" / "s2", [("train/loc0/cam01.mp4", "train/loc1/cam01.mp4", "train/loc0/cam03.mp4"),
                                            ("train/loc2/cam05.mp4", "train/loc3/cam05.mp4", "train/loc2/cam01.mp4")])
    out = tmp_path / "combined" / "rot.csv"  # a sibling folder: the rewritten paths go up first
    assert C.main([str(out), str(a), str(b)]) == 0
    assert _resolved(out) == _resolved(a) + _resolved(b)
    assert len({row[0] for row in _resolved(out)}) == 3  # same relative names, different files


def test_missing_video_names_the_csv_and_line(tmp_path, capsys):
    a = _dataset(tmp_path / "s1", [("v/a.mp4", "v/b.mp4", "v/c.mp4"), ("v/d.mp4", "v/e.mp4", "v/f.mp4")])
    (tmp_path / "s1" / "v" / "e.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=r"train.csv line 3: ref_video_path 'v/e.mp4'"):
        C.combine(tmp_path / "out.csv", [a])
    assert C.main([str(tmp_path / "out.csv"), str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv: no such CSV" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
