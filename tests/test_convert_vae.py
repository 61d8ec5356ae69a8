"""`python -m convert` for the Wan VAE: Wan2.1_VAE.pth and diffusers folders, round trip, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from camclone_jax.models.loading import load_dit, load_vae, read_vae_config  # noqa: E402
from camclone_jax.models.wan_vae import VAEConfig, tiny_vae, wan_vae  # noqa: E402
from convert import convert, export  # noqa: E402
from convert.keymap_vae import detect_vae_config, diffusers_vae_to_original  # noqa: E402
from convert.state_dict_io import ConversionError  # noqa: E402
from convert.vae import expected_torch_shapes  # noqa: E402
from tests import oracles  # noqa: E402

QUIET = dict(log=lambda *_: None)


def random_state_dict(cfg: VAEConfig, seed=0, dtype=torch.float32) -> dict[str, "torch.Tensor"]:
    gen = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=gen).to(dtype) for key, shape in expected_torch_shapes(cfg).items()}


def test_key_table_matches_the_reference_modules():
    """Every original key and shape of the full-size VAE, as diffsynth's module declares them; every diffusers
    key renames onto one of them."""
    module = oracles.diffsynth_module("models.wan_video_vae")
    with torch.device("meta"):
        original = {k: tuple(v.shape) for k, v in module.VideoVAE_().state_dict().items()}
        from diffusers import AutoencoderKLWan
        diffusers = AutoencoderKLWan().state_dict()
    assert expected_torch_shapes(wan_vae()) == original
    assert len(original) == 194
    renamed, unknown = diffusers_vae_to_original(diffusers)
    assert not unknown and {k: tuple(v.shape) for k, v in renamed.items()} == original
    assert detect_vae_config({k: np.empty(s, np.float32) for k, s in original.items()}) == wan_vae()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_bit_exact(dtype, tmp_path):
    state = random_state_dict(tiny_vae(), dtype=dtype)
    torch.save({"model_state": state}, tmp_path / "Wan2.1_VAE.pth")  # DiffSynth's wrapped layout
    cfg = convert(tmp_path / "Wan2.1_VAE.pth", tmp_path / "jax", **QUIET)
    assert cfg.replace(param_dtype="float32") == tiny_vae() and read_vae_config(tmp_path / "jax") == cfg
    export(tmp_path / "jax", tmp_path / "back.safetensors", **QUIET)
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_exported_diffusers_vae_loads_into_the_original_module(tmp_path):
    from diffusers import AutoencoderKLWan

    ref = oracles.randomize_(AutoencoderKLWan(base_dim=8).eval())
    ref.save_pretrained(tmp_path / "vae")
    convert(tmp_path / "vae", tmp_path / "jax", **QUIET)
    export(tmp_path / "jax", tmp_path / "original.safetensors", **QUIET)
    module = oracles.diffsynth_module("models.wan_video_vae")
    original = module.VideoVAE_(dim=8)
    original.load_state_dict(load_file(str(tmp_path / "original.safetensors")), strict=True)
    assert torch.equal(original.decoder.upsamples[7].time_conv.weight,
                       ref.decoder.up_blocks[1].upsamplers[0].time_conv.weight)


def test_bad_vae_checkpoints_name_the_offending_keys(tmp_path):
    state = random_state_dict(tiny_vae())
    del state["decoder.middle.1.proj.bias"]
    state["decoder.head.2.weight"] = torch.zeros(3, 8, 3, 3, 2)
    state["decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ConversionError) as err:
        convert(tmp_path / "bad.pth", tmp_path / "jax", **QUIET)
    message = str(err.value)
    assert "bad.pth does not match a Wan VAE" in message
    assert "missing keys (1): decoder.middle.1.proj.bias" in message
    assert "unexpected keys (1): decoder.extra.weight" in message
    assert "decoder.head.2.weight: expected (3, 8, 3, 3, 3), got (3, 8, 3, 3, 2)" in message


def test_cli_converts_a_vae_and_keeps_it_apart_from_dits(tmp_path):
    torch.save(random_state_dict(tiny_vae(), seed=2), tmp_path / "Wan2.1_VAE.pth")
    ok = subprocess.run([sys.executable, "-m", "convert", str(tmp_path / "Wan2.1_VAE.pth"), str(tmp_path / "jax")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "model      Wan VAE: dim 8, z_dim 16" in ok.stdout
    assert load_vae(tmp_path / "jax").config == tiny_vae()
    with pytest.raises(ValueError, match="holds a converted vae, not a DiT; load it with load_vae"):
        load_dit(tmp_path / "jax")
    bad = subprocess.run([sys.executable, "-m", "convert", str(tmp_path / "Wan2.1_VAE.pth"), str(tmp_path / "x"),
                          "--variant", "t2v"], capture_output=True, text=True)
    assert bad.returncode == 2 and "holds a VAE; --variant applies to DiT checkpoints only" in bad.stderr


def test_loaded_vae_runs_in_bfloat16(tmp_path):
    torch.save(random_state_dict(tiny_vae(), seed=3), tmp_path / "vae.pth")
    convert(tmp_path / "vae.pth", tmp_path / "jax", **QUIET)
    import jax.numpy as jnp
    from camclone_jax.models.wan_vae import encode

    vae32, vae16 = load_vae(tmp_path / "jax"), load_vae(tmp_path / "jax", dtype="bfloat16")
    clip = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 5, 16, 16, 3)), jnp.float32)
    z32, z16 = encode(vae32, clip), encode(vae16, clip)
    assert z16.dtype == jnp.float32 and np.isfinite(np.asarray(z16)).all()
    assert oracles.rel_max_err(z16, z32) < 0.05
