"""`python -m camclone_jax.eval.heldout`: the held-out table of the trained synthetic CamCloneMaster.

Runs the real CLI with the shipped models (camclone_jax/assets/synthetic) on a tiny freshly generated dataset
(1 sampling step, the direct-alignment estimator: seconds), and checks the report against independent computations:
the baselines' PSNR, the ground-truth row, the failure counts and the written files.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from camclone_jax.eval import heldout
from camclone_jax.models.loading import load_vae
from camclone_jax.models.wan_vae import decode, encode
from camclone_jax.sample.demo import ASSETS
from camclone_jax.sample.video import read_video


def test_select_triples_spreads_and_checks_paths(dataset, tmp_path):
    rows = (dataset / "test.csv").read_text().strip().splitlines()[1:]
    picked = heldout.select_triples(dataset, "test", 3)
    assert [t.row for t in picked] == [0, round((len(rows) - 1) / 2), len(rows) - 1]
    assert all(t.target_cameras.is_file() for t in picked)
    assert picked[0].target_cameras.name == picked[0].target.stem + ".json"
    with pytest.raises(FileNotFoundError, match="python -m camclone_jax.data.synthetic"):
        heldout.select_triples(tmp_path, "test", 3)
    (dataset / "test" / "loc0000" / "videos" / "cam01.mp4").rename(tmp_path / "moved.mp4")
    try:
        with pytest.raises(FileNotFoundError, match="cam01.mp4 is missing"):
            heldout.select_triples(dataset, "test", 1000)
    finally:
        (tmp_path / "moved.mp4").rename(dataset / "test" / "loc0000" / "videos" / "cam01.mp4")


def test_rotation_only_selection(dataset):
    index = heldout.read_triples(dataset, "test")
    assert all(heldout.is_rotation_only(t.target_cameras) for t in index)  # the fixture renders pan, tilt, roll
    moved = index[0].target_cameras
    original = moved.read_text()
    cameras = json.loads(original)
    cameras["c2w"][-1][0][3] += 0.25  # the last frame steps sideways: no longer a pure rotation
    try:
        moved.write_text(json.dumps(cameras))
        picked = heldout.select_triples(dataset, "test", 1000, rotation_only=True)
        assert [t.row for t in picked] == [t.row for t in index if t.target_cameras != moved]
        assert len(heldout.select_triples(dataset, "test", 1000)) == len(index)
    finally:
        moved.write_text(original)


def test_cli_report(dataset, tmp_path, capsys):
    out = tmp_path / "report"
    assert heldout.main(["--models", str(ASSETS), "--data", str(dataset), "--out", str(out), "--num", "2",
                         "--steps", "1", "--method", "direct", "sfm", "--rotation-only", "--examples", "1",
                         "--no-progress"]) == 0
    report = json.loads((out / "results.json").read_text())
    vae = load_vae(ASSETS / "vae")
    assert len(report["rows"]) == 2 and report["methods"] == ["direct", "sfm"] and report["num_frames"] == 9
    for row in report["rows"]:
        systems = row["systems"]
        assert set(systems) == set(heldout.SYSTEMS)
        assert systems["ground_truth"]["PSNR"] == pytest.approx(10 * np.log10(4 / 1e-12))  # the target itself
        content, target = (read_video(row[k], height=64, width=96, num_frames=9) for k in ("content", "target"))
        assert systems["content"]["PSNR"] == pytest.approx(heldout.psnr(content, target), abs=1e-4)
        round_trip = np.asarray(decode(vae, encode(vae, jnp.asarray(target)[None])))[0]
        assert systems["vae_round_trip"]["PSNR"] == pytest.approx(heldout.psnr(round_trip, target), abs=1e-3)
        for name in heldout.GENERATED:
            assert (out / "videos" / f"row{row['row']:04d}_{name}.mp4").is_file()
    for method in ("direct", "sfm"):
        summary = report["summary"][method]
        for name in heldout.SYSTEMS:
            entries = [r["systems"][name][method] for r in report["rows"]]
            assert summary[name]["failed"] == sum(e["status"] != "ok" for e in entries)
            ok = [e["RotErr"] for e in entries if e["status"] == "ok"]
            assert summary[name]["RotErr"] == (pytest.approx(np.mean(ok)) if ok else None)
    assert len(list((out / "examples").glob("*.png"))) == 1
    table = (out / "results.md").read_text()
    assert all(label in table for label, _ in heldout.SYSTEMS.values())
    assert "poses: sfm" in table and "poses: direct" in table
    # The direct estimator poses the true renders (its own error) where the SIFT-based ones need more texture.
    assert report["summary"]["direct"]["ground_truth"]["failed"] == 0
    printed = capsys.readouterr().out
    assert "model V2V RotErr / baseline (sfm)" in printed and "2 rotation-only held-out triples" in printed
    kinds = {r["trajectory"] for r in report["rows"]}
    assert kinds <= {"pan", "tilt", "roll"} and all(f"| {k} |" in printed for k in kinds)
    assert "| target trajectory | triples | model V2V: RotErr (direct)" in printed
    shipped = json.loads((ASSETS / "example" / "example.json").read_text())
    assert f"1 Euler steps at shift {shipped['sampler_shift']:g}" in printed
    assert report["args"]["shift"] == str(shipped["sampler_shift"])  # the folder's sampling settings by default
    assert report["args"]["camera_scale"] == str(float(shipped.get("camera_scale", 1.0)))


def test_ratios():
    summary = {"model_v2v": {"RotErr": 1.0}, "content": {"RotErr": 4.0}, "static_ref": {"RotErr": None}}
    assert heldout.ratios(summary) == {"content": 0.25, "static_ref": None}


def test_paired_ratios_use_only_clips_both_posed():
    def row(model, content, static):
        entry = lambda v: {"status": "failed"} if v is None else {"status": "ok", "RotErr": v}
        return {"systems": {"model_v2v": {"direct": entry(model)}, "content": {"direct": entry(content)},
                            "static_ref": {"direct": entry(static)}}}

    rows = [row(1.0, 4.0, 2.0), row(None, 8.0, 2.0), row(3.0, 4.0, None)]
    paired = heldout.paired_ratios(rows, "direct")
    assert paired["content"] == (pytest.approx(2.0 / 4.0), 2)  # rows 0 and 2
    assert paired["static_ref"] == (pytest.approx(1.0 / 2.0), 1)  # row 0 only
    assert heldout.paired_ratios([row(None, 1.0, 1.0)], "direct")["content"] == (None, 0)
    unpaired = {"model_v2v": {"RotErr": 2.0}, "content": {"RotErr": 16 / 3}, "static_ref": {"RotErr": 2.0}}
    line = heldout.format_ratios({"rows": rows, "summary": {"direct": unpaired}}, "direct")
    assert line.endswith("content 0.38, static reference 1.00; over the clips both were posed on: content 0.50 "
                         "(2 clips), static reference 0.50 (1 clips)")


def test_by_trajectory_means_and_failures():
    def row(kind, model, static, content):
        entry = lambda v: {"status": "failed"} if v is None else {"status": "ok", "RotErr": v}
        return {"trajectory": kind, "systems": {"model_v2v": {"direct": entry(model)},
                                                "static_ref": {"direct": entry(static)},
                                                "content": {"direct": entry(content)}}}

    rows = [row("pan", 2.0, 2.0, 5.0), row("tilt", 3.0, 6.0, 7.0), row("tilt", None, 4.0, 9.0)]
    table = heldout.by_trajectory(rows, "direct")
    assert table["pan"] == {"triples": 1, "model_v2v": 2.0, "model_v2v_failed": 0, "static_ref": 2.0,
                            "static_ref_failed": 0, "content": 5.0, "content_failed": 0}
    assert table["tilt"] == {"triples": 2, "model_v2v": 3.0, "model_v2v_failed": 1, "static_ref": 5.0,
                             "static_ref_failed": 0, "content": 8.0, "content_failed": 0}
    text = heldout.format_by_trajectory(rows, "direct")
    assert "| tilt | 2 | 3.00 (1 failed) | 5.00 | 8.00 |" in text and "| pan | 1 | 2.00 | 2.00 | 5.00 |" in text
