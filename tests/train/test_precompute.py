"""Precompute to ArrayRecord shards with tiny random models; resumability; the latent datasets."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from flax import nnx

from camclone_jax.sample.conditions import clip_features, encode_text, image_condition
from camclone_jax.models.clip_vision import CLIPVisionEncoder, tiny_clip
from camclone_jax.models.umt5 import UMT5Encoder, tiny_umt5
from camclone_jax.models.wan_vae import WanVAE, tiny_vae
from camclone_jax.sample.demo import train_tokenizer
from camclone_jax.sample.video import read_video
from camclone_jax.train import data, precompute
from tests.train.test_data import FRAMES, H, SIZE, W, make_camclone, make_multicam

F, h, w = (FRAMES - 1) // 4 + 1, H // 8, W // 8
TEXT_LEN = 16


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    # demo.tiny_models' encoders without its DiT (precompute never runs it) and with CLIP at its tiny 56 px
    # (17 tokens instead of 257): this fixture dominates the test time.
    rngs = nnx.Rngs(0)
    return SimpleNamespace(vae=WanVAE(tiny_vae(), rngs=rngs), text_encoder=UMT5Encoder(tiny_umt5(), rngs=rngs),
                           clip=CLIPVisionEncoder(tiny_clip(), rngs=rngs),
                           tokenizer=train_tokenizer(tmp_path_factory.mktemp("tok")))


def test_record_codec_round_trip():
    import ml_dtypes

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones((2,), ml_dtypes.bfloat16),
              "c": np.eye(4)}
    out, meta = precompute.decode_record(precompute.encode_record(arrays, {"key": "x"}))
    assert meta == {"key": "x"}
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype
        np.testing.assert_array_equal(out[k], v)


def test_camclone_precompute_resume_and_latent_dataset(tmp_path, models):
    csv_path = make_camclone(tmp_path / "cc")  # 4 triplets (t1 short: padded) + a corrupt target
    out = tmp_path / "lat"
    run = lambda: precompute.precompute("camclone", csv_path, out, models, text_len=TEXT_LEN,  # noqa: E731
                                        shard_size=4, progress=False, **SIZE)
    first = run()
    # 13 videos (4 x 3 + bad.mp4) + 5 captions = 18 jobs -> 5 shards
    assert first["written"] == [0, 1, 2, 3, 4] and first["reused"] == []
    assert [s["key"] for s in first["skipped"]] == ["bad.mp4"]
    assert json.loads((out / "skipped.json").read_text())[0]["key"] == "bad.mp4"
    assert run()["written"] == []  # a rerun is a no-op
    stamp = (out / "shard-00001.array_record").stat().st_mtime_ns
    (out / "shard-00002.json").unlink()  # as if interrupted while writing shard 2
    again = run()
    assert again["written"] == [2] and again["reused"] == [0, 1, 3, 4]
    assert (out / "shard-00001.array_record").stat().st_mtime_ns == stamp

    ds = data.make_dataset("camclone", out, latents=True, batch_size=2, seed=0, process_index=0, process_count=1,
                           num_epochs=1, **SIZE)
    it = iter(ds)
    batches = list(it)
    assert it.get_state()["skipped"] == 1  # the row whose target precompute skipped
    b = batches[0]
    for key in ("target", "ref", "content"):
        assert b[key].shape == (2, F, h, w, 16)
    assert b["y"].shape == (2, F, h, w, 20) and b["clip_feature"].shape[:2] == (2, 17)
    assert b["text"].shape == (2, TEXT_LEN, models.text_encoder.config.dim) and b["text_len"].dtype == np.int32

    # The stored latents equal a direct encode of the same video.
    i = 0
    row = next(r for r in data.camclone_index(csv_path)[0] if r.caption == b["caption"][i])
    video = read_video(csv_path.parent / row.target, **SIZE)[None]
    np.testing.assert_allclose(b["target"][i], precompute.encode_latents(models.vae, video, "camclone")[0],
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(b["y"][i], image_condition(models.vae, video[:, 0], FRAMES)[0], atol=1e-5)
    np.testing.assert_allclose(b["clip_feature"][i], clip_features(models.clip, video[:, 0])[0], atol=1e-5)
    text = encode_text(models.text_encoder, models.tokenizer, [row.caption], text_len=TEXT_LEN)[0]
    np.testing.assert_allclose(b["text"][i], text, atol=1e-5)
    assert np.all(b["text"][i, b["text_len"][i]:] == 0)

    # cache=True: the same batches, and every record is read from disk once however many epochs.
    cached = list(data.make_dataset("camclone", out, latents=True, batch_size=2, seed=0, process_index=0,
                                    process_count=1, num_epochs=1, cache=True, **SIZE))
    assert len(cached) == len(batches)
    for got, want in zip(cached, batches):
        for key in ("target", "ref", "content", "y", "clip_feature", "text", "text_len"):
            np.testing.assert_array_equal(got[key], want[key])
    store = precompute.LatentStore(out, kind="camclone", cache=True, **SIZE)
    reads = []
    source = store.source
    store.source = type("Counting", (), {"__getitem__": lambda self, i: reads.append(i) or source[i]})()
    for _ in range(3):
        np.testing.assert_array_equal(store.video(row.target), b["target"][i])
        np.testing.assert_array_equal(store.text(row.caption)["text"], b["text"][i])
    assert len(reads) == 2  # one video record, one text record


def test_recam_and_syncam_latents(tmp_path, models):
    root = make_multicam(tmp_path / "mc", scenes=2, short=(1, 3), syncam=True)
    out = tmp_path / "lat"
    result = precompute.precompute("recam", root, out, models, text_len=TEXT_LEN, shard_size=8, progress=False,
                                   **SIZE)
    assert [s["key"] for s in result["skipped"]] == ["f24_aperture5/scene1/videos/cam03.mp4"]
    raw = data.make_dataset("recam", root, batch_size=1, seed=4, process_index=0, process_count=1, num_epochs=1,
                            **SIZE)
    lat = data.make_dataset("recam", out, latents=True, batch_size=1, seed=4, process_index=0, process_count=1,
                            num_epochs=1, **SIZE)
    raw_batches, lat_batches = list(raw), list(lat)
    # Same seed, same index: the same pairs, and the same skips (the short clip).
    assert [b["caption"] for b in raw_batches] == [b["caption"] for b in lat_batches]
    for rb, lb in zip(raw_batches, lat_batches):
        assert lb["target"].shape == lb["source"].shape == (1, F, h, w, 16)
        np.testing.assert_array_equal(rb["cam_emb"], lb["cam_emb"])
        np.testing.assert_allclose(lb["target"], precompute.encode_latents(models.vae, rb["target"], "recam"),
                                   atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(lb["source"], precompute.encode_latents(models.vae, rb["source"], "recam"),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="different settings"):
        precompute.precompute("recam", root, out, models, text_len=TEXT_LEN, shard_size=4, progress=False, **SIZE)

    sync_out = tmp_path / "sync"
    precompute.precompute("syncam", root, sync_out, models, text_len=TEXT_LEN, shard_size=8, progress=False,
                          **SIZE)
    ds = data.make_dataset("syncam", sync_out, latents=True, batch_size=2, seed=0, process_index=0,
                           process_count=1, num_epochs=1, **SIZE)
    (b,) = list(ds)
    assert b["views"].shape == (2, 2, F, h, w, 16) and b["cam_emb"].shape == (2, 2, F, 12)
    assert b["text"].shape[:2] == (2, TEXT_LEN) and b["skipped"] == 0


def test_trains_from_precomputed_shards_and_from_raw_videos_alike(tmp_path, models):
    """precompute -> latent dataset -> `train` end to end (the README's training commands, in small), and the same
    run on the raw CSV with the encoders inside the trainer (`input.format = "videos"`): same samples, same
    encodings, so the same losses."""
    from camclone_jax.train.loop import train
    from configs import tiny

    out, csv_path = tmp_path / "lat", make_camclone(tmp_path / "cc")
    precompute.precompute("camclone", csv_path, out, models, text_len=TEXT_LEN, shard_size=4, progress=False,
                          **SIZE)

    def config_for(fmt, data_path):
        config = tiny.get_config("variant=camclone")
        with config.unlocked():
            config.model.overrides.update(text_dim=models.text_encoder.config.dim, image_dim=models.clip.config.dim,
                                          num_image_tokens=models.clip.config.num_tokens, text_len=TEXT_LEN)
            config.input.update(format=fmt, data=str(data_path), batch_size=2, **SIZE)
            config.total_steps, config.ckpt_every = 2, 2
        return config

    state, history = train(config_for("latents", out), tmp_path / "run")
    assert int(state.step) == 2 and [row["step"] for row in history] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in history) and history[-1]["skipped"] >= 1  # bad.mp4's row
    assert (tmp_path / "run" / "metrics.jsonl").is_file()

    _, raw = train(config_for("videos", csv_path), tmp_path / "raw", encoders=models)
    for a, b in zip(history, raw, strict=True):
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-4)
        assert b["skipped"] == a["skipped"]

    with pytest.raises(ValueError, match="config.input.encoders"):
        train(config_for("videos", csv_path), tmp_path / "raw2")


def test_latent_training_needs_no_pyav():
    # Accelerator images often lack PyAV: training and export from precomputed latents must not import it.
    import subprocess
    import sys

    code = ("import sys\n"
            "class NoAV:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'av': raise ImportError('PyAV blocked')\n"
            "sys.meta_path.insert(0, NoAV())\n"
            "import camclone_jax.train.loop, camclone_jax.train.data, camclone_jax.train.precompute\n"
            "import camclone_jax.train.export, camclone_jax.train.__main__\n"
            "assert 'av' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
