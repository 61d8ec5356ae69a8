"""Synthetic CamCloneMaster training plumbing: dataset -> encoders folder -> `train` on raw videos (2 steps)."""

from __future__ import annotations

import importlib
import math

import pytest
from flax import nnx

from camclone_jax.data import encoders as E
from camclone_jax.data import synthetic as S
from camclone_jax.models.loading import checkpoint_kind, load_clip, load_umt5, save_model
from camclone_jax.models.text_prompts import SPIECE
from camclone_jax.models.wan_vae import WanVAE, tiny_vae
from configs import common


def _config(arg):
    return importlib.import_module("configs.synthetic_camclone").get_config(arg)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_train")
    data = root / "data"
    S.generate(data, locations=4, test_locations=4, frames=5, height=32, width=48, cameras=2, progress=False)
    cfg = tiny_vae()
    vae = WanVAE(cfg, rngs=nnx.Rngs(0))
    save_model(root / "vae", cfg, nnx.state(vae, nnx.Param).to_pure_dict())
    enc = E.build_encoders(root / "vae", root / "enc", seed=0, captions=E.dataset_captions(data))
    return root, data, enc


def test_encoders_folder_layout(synth):
    _, _, enc = synth
    assert {checkpoint_kind(enc / sub) for sub in ("vae", "umt5", "clip")} == {"vae", "umt5", "clip"}
    assert (enc / "umt5" / SPIECE).is_file()
    config = _config("runlocal")
    cfg = common.model_config(config)
    assert load_umt5(enc / "umt5").config.dim == cfg.text_dim
    clip = load_clip(enc / "clip").config
    assert clip.dim == cfg.image_dim and (clip.image_size // clip.patch_size) ** 2 + 1 == cfg.num_image_tokens


def test_train_two_steps_on_raw_videos(synth, tmp_path):
    from camclone_jax.train.loop import train

    _, data, enc = synth
    config = _config(f"runlocal,data={data / 'train.csv'},encoders={enc}")
    assert config.input.format == "videos" and config.total_steps == 2
    config.model.overrides.num_layers = 2  # the config's model at half depth: a shorter compile, same code paths
    _, history = train(config, tmp_path / "run")
    assert [row["step"] for row in history] == [1, 2]
    assert all(math.isfinite(row["loss"]) for row in history)
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()


def test_stages():
    base, motion = _config(None), _config("stage=motion,init=/some/base")
    rotation = _config("stage=rotation,init=/some/motion,latents=/some/rotation_latents")
    stage2 = _config("stage=camclone,init=/some/dit")
    assert base.optimizer.trainable == motion.optimizer.trainable == rotation.optimizer.trainable == ()
    assert base.model_init == "" and rotation.model_init == "/some/motion"
    assert stage2.optimizer.trainable == ("self_attn",) and stage2.model_init == "/some/dit"
    assert motion.model_init == "/some/base"
    assert base.input.content_dropout == stage2.input.content_dropout == 0.5
    # upstream's flow recipe for base; per-sample t, shift 3, unweighted for the stages that learn the camera
    assert (base.flow.per_sample_timesteps, base.flow.shift, base.flow.weighting) == (False, 5.0, "bsmntw")
    for later in (motion, rotation, stage2):
        assert (later.flow.per_sample_timesteps, later.flow.shift, later.flow.weighting) == (True, 3.0, "none")
    assert motion.optimizer.schedule == "cosine" and motion.optimizer.decay_steps > motion.total_steps
    # the rotation stage runs its cosine to the end
    assert (rotation.optimizer.schedule, rotation.optimizer.decay_steps, rotation.total_steps) == ("cosine", 6000,
                                                                                                 6000)
    scenes = _config("stage=scenes,init=/some/camclone,latents=/some/scenes_latents")
    assert scenes.optimizer.trainable == () and scenes.model_init == "/some/camclone"
    assert (scenes.input.batch_size, scenes.input.cache, scenes.optimizer.lr) == (32, True, 1e-3)
    assert (scenes.optimizer.decay_steps, scenes.total_steps) == (7900, 7900) and not rotation.input.cache
    assert (scenes.flow.per_sample_timesteps, scenes.flow.shift, scenes.flow.weighting) == (True, 3.0, "none")
    for stage in ("camclone", "motion", "rotation", "scenes"):
        with pytest.raises(ValueError, match="init="):
            _config(f"stage={stage}")
    with pytest.raises(ValueError, match="unknown stage"):
        _config("stage=lora")
    latents = _config("latents=/some/latents")  # precomputed input instead of the raw CSV
    assert (latents.input.format, latents.input.data) == ("latents", "/some/latents")
    assert (base.input.format, base.input.data) == ("videos", "/tmp/synth/train.csv")


def test_encoders_cli_rejects_a_non_vae_folder(synth, tmp_path, capsys):
    root, data, enc = synth
    for bad in (enc / "umt5", data, tmp_path / "missing"):
        with pytest.raises(SystemExit) as e:
            E.main(["--vae", str(bad), "--out", str(tmp_path / "out")])
        assert e.value.code == 2
        assert "--vae" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
