"""`python -m camclone_jax.sample.demo`: packaging a demo folder from a run (the demo itself: tests/sample/test_cli.py)."""

import json

import numpy as np
import pytest

from camclone_jax.sample import demo
from camclone_jax.sample.demo import ASSETS
from camclone_jax.sample.video import read_video


def test_package_then_run(dataset, tmp_path, capsys):
    out = tmp_path / "demo_assets"
    assert demo.main(["--encoders", str(ASSETS), "--dit", str(ASSETS / "dit"), "--data", str(dataset),
                      "--row", "1", "--out", str(out), "--shift", "3", "--camera-scale", "2"]) == 0
    example = json.loads((out / "example" / "example.json").read_text())
    rows = (dataset / "test.csv").read_text().strip().splitlines()
    target_path = rows[2].split(",")[0]  # row 1 after the header
    assert example["source"]["test_csv_row"] == 1 and example["source"]["video_path"] == target_path
    assert example["sampler_shift"] == 3.0 and (example["frames"], example["height"]) == (9, 64)
    assert example["camera_scale"] == 2.0 and demo.camera_scale(out) == 2.0
    shipped = read_video(out / "example" / "target.mp4", num_frames=9, height=64, width=96)
    np.testing.assert_array_equal(shipped, read_video(dataset / target_path, num_frames=9, height=64, width=96))
    assert "reference_camera" in example and example["reference_camera"] != example["content_camera"]
    assert (out / "dit" / "config.json").read_bytes() == (ASSETS / "dit" / "config.json").read_bytes()
    assert "wrote" in capsys.readouterr().out


def test_package_ships_another_vae(dataset, tmp_path):
    import shutil

    tuned = tmp_path / "tuned_vae"
    shutil.copytree(ASSETS / "vae", tuned)
    (tuned / "latent_stats.json").write_text('{"latents": "kept from the shipped VAE (decoder fine-tune)"}')
    out = demo.package_demo(ASSETS, ASSETS / "dit", dataset, 1, tmp_path / "demo_assets", shift=3.0, vae=tuned)
    assert (out / "vae" / "latent_stats.json").read_text() == (tuned / "latent_stats.json").read_text()
    assert (out / "umt5" / "config.json").read_bytes() == (ASSETS / "umt5" / "config.json").read_bytes()


def test_package_refuses_a_missing_row(dataset, tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--encoders", str(ASSETS), "--dit", str(ASSETS / "dit"), "--data", str(dataset),
                   "--row", "999", "--out", str(tmp_path / "x")])
