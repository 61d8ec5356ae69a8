"""WanVAE vs PyTorch oracles (diffsynth 2.1.12 original keys, diffusers AutoencoderKLWan), through the real
converter, fp32, every parameter randomised: chunked encode/decode for 1, 5 and 9 frames, non-square, batch 2,
and DiffSynth's tiled encode/decode."""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from camclone_jax.models.loading import load_vae  # noqa: E402
from camclone_jax.models.wan_vae import LATENTS_MEAN, LATENTS_STD, decode, encode, tiny_vae  # noqa: E402
from convert import convert  # noqa: E402
from tests import oracles  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-5  # relative max error
WIDTH = tiny_vae().dim
QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope="module")
def diffsynth_pair(tmp_path_factory):
    """diffsynth's WanVideoVAE wrapper (normalisation, tiling) around a width-8 original-key VideoVAE_, and the
    JAX model converted from its `Wan2.1_VAE.pth`-style pickle."""
    module = oracles.diffsynth_module("models.wan_video_vae")
    with mock.patch.object(module, "VideoVAE_", functools.partial(module.VideoVAE_, dim=WIDTH)):
        ref = module.WanVideoVAE()
    oracles.randomize_(ref.model, seed=3)
    directory = tmp_path_factory.mktemp("diffsynth_vae")
    torch.save(ref.model.state_dict(), directory / "Wan2.1_VAE.pth")
    convert(directory / "Wan2.1_VAE.pth", directory / "jax", **QUIET)
    return ref, load_vae(directory / "jax")


@pytest.fixture(scope="module")
def diffusers_pair(tmp_path_factory):
    from diffusers import AutoencoderKLWan

    ref = oracles.randomize_(AutoencoderKLWan(base_dim=WIDTH, z_dim=16).eval(), seed=4)
    directory = tmp_path_factory.mktemp("diffusers_vae")
    ref.save_pretrained(directory / "vae")
    convert(directory / "vae", directory / "jax", **QUIET)
    return ref, load_vae(directory / "jax")


@nnx.jit
def decode_unclamped(vae, latents):
    return vae.decode(latents, clamp=False)


def random_video(batch, frames, height=32, width=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, frames, height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encode_decode_match_diffsynth(diffsynth_pair, frames):
    ref, vae = diffsynth_pair
    video = random_video(2, frames, seed=frames)
    with torch.no_grad():
        want = oracles.channels_last(ref.encode(oracles.channels_first(video), "cpu"))
    latents = np.asarray(encode(vae, jnp.asarray(video)))
    assert latents.shape == (2, (frames - 1) // 4 + 1, 4, 6, 16)
    assert oracles.rel_max_err(latents, want) <= TOL

    z = oracles.channels_first(want)
    with torch.no_grad():
        want_video = oracles.channels_last(ref.decode(z, "cpu"))  # clamped
        want_raw = oracles.channels_last(ref.model.decode(z, ref.scale))  # before the clamp
    got = np.asarray(decode(vae, jnp.asarray(want)))
    assert got.shape == video.shape
    assert oracles.rel_max_err(got, want_video) <= TOL
    raw = np.asarray(decode_unclamped(vae, jnp.asarray(want)))
    assert oracles.rel_max_err(raw, want_raw) <= TOL
    np.testing.assert_array_equal(got, np.clip(raw, -1, 1))


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encode_decode_match_diffusers(diffusers_pair, frames):
    ref, vae = diffusers_pair
    video = random_video(2, frames, height=40, width=24, seed=10 + frames)
    mean = torch.tensor(LATENTS_MEAN).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(LATENTS_STD).view(1, 16, 1, 1, 1)
    with torch.no_grad():  # diffusers returns the raw posterior; its Wan pipelines normalise like this
        mu = ref.encode(oracles.channels_first(video)).latent_dist.mode()
        want = oracles.channels_last((mu - mean) * inv_std)
    latents = np.asarray(encode(vae, jnp.asarray(video)))
    assert oracles.rel_max_err(latents, want) <= TOL

    with torch.no_grad():
        want_video = oracles.channels_last(ref.decode(oracles.channels_first(want) / inv_std + mean).sample)
    assert oracles.rel_max_err(decode(vae, jnp.asarray(want)), want_video) <= TOL


def test_tiled_encode_decode_match_diffsynth(diffsynth_pair):
    """A 2x2 grid of tiles, the right column cut to the image; both blend ramps are exercised."""
    ref, vae = diffsynth_pair
    tile_size, tile_stride = (4, 6), (2, 4)
    video = random_video(1, 5, height=48, width=64, seed=5)
    with torch.no_grad():
        want = oracles.channels_last(ref.encode(oracles.channels_first(video), "cpu", tiled=True,
                                                tile_size=tile_size, tile_stride=tile_stride))
        want_video = oracles.channels_last(ref.decode(oracles.channels_first(want), "cpu", tiled=True,
                                                      tile_size=tile_size, tile_stride=tile_stride))
    latents = encode(vae, jnp.asarray(video), tile_size=tile_size, tile_stride=tile_stride)
    assert oracles.rel_max_err(latents, want) <= TOL
    got = decode(vae, jnp.asarray(want), tile_size=tile_size, tile_stride=tile_stride)
    assert oracles.rel_max_err(got, want_video) <= TOL
    # Tiles see only their own neighbourhood (and attend only within themselves): tiled is not untiled.
    assert oracles.rel_max_err(latents, encode(vae, jnp.asarray(video))) > 1e-3


@pytest.mark.slow
def test_full_size_vae_matches_diffsynth(tmp_path):
    """The 126.9M-parameter Wan2.1 VAE on a 5-frame 64x96 clip, through the converter."""
    module = oracles.diffsynth_module("models.wan_video_vae")
    ref = module.WanVideoVAE()
    oracles.randomize_(ref.model, seed=5)
    torch.save(ref.model.state_dict(), tmp_path / "Wan2.1_VAE.pth")
    convert(tmp_path / "Wan2.1_VAE.pth", tmp_path / "jax", **QUIET)
    vae = load_vae(tmp_path / "jax")
    video = random_video(1, 5, height=64, width=96, seed=6)
    with torch.no_grad():
        want = oracles.channels_last(ref.encode(oracles.channels_first(video), "cpu"))
        want_video = oracles.channels_last(ref.model.decode(oracles.channels_first(want), ref.scale))
    assert oracles.rel_max_err(encode(vae, jnp.asarray(video)), want) <= TOL
    assert oracles.rel_max_err(decode_unclamped(vae, jnp.asarray(want)), want_video) <= TOL
