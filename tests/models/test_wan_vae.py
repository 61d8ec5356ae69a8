"""WanVAE without torch: bounded memory of the chunked scan, causality, tiling, and bad-input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models.wan_vae import VAEConfig, WanVAE, decode, encode, param_count, tiny_vae, wan_vae


@pytest.fixture(scope="module")
def vae():
    return WanVAE(tiny_vae(), rngs=nnx.Rngs(0))


def video(batch=1, frames=9, height=32, width=48, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batch, frames, height, width, 3)), jnp.float32)


def test_full_size_parameter_count_matches_the_checkpoint():
    assert param_count(wan_vae()) == 126_892_531  # spec wan.md 5.1


def compiled_memory(fn, cfg: VAEConfig, *shapes):
    """XLA's buffer assignment for `fn(vae, *inputs)`: (temporary bytes, argument + output bytes)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0))))
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    stats = jax.jit(lambda st, *a: fn(nnx.merge(graphdef, st), *a)).lower(state, *args).compile().memory_analysis()
    return stats.temp_size_in_bytes, stats.argument_size_in_bytes + stats.output_size_in_bytes


@pytest.mark.slow  # two 33-frame VAE compiles, 11 s: a memory property, kept off the default suite
def test_chunked_memory_grows_with_chunk_size_not_frame_count():
    """Between 9 and 33 frames the scratch memory may grow by about the size of the (longer) input and output,
    which the scan re-stacks, but not by the activations of the 24 extra frames."""
    cfg = VAEConfig(dim=32)
    h, w = 64, 64
    enc9, io9 = compiled_memory(lambda m, x: m.encode(x), cfg, (1, 9, h, w, 3))
    enc33, io33 = compiled_memory(lambda m, x: m.encode(x), cfg, (1, 33, h, w, 3))
    one_activation_per_frame = h * w * cfg.dim * 4  # the first conv's output alone, per frame
    assert enc33 - enc9 <= 2 * (io33 - io9)
    assert enc33 - enc9 < 0.1 * 24 * one_activation_per_frame

    dec3, io3 = compiled_memory(lambda m, z: m.decode(z), cfg, (1, 3, h // 8, w // 8, 16))
    dec9, io9 = compiled_memory(lambda m, z: m.decode(z), cfg, (1, 9, h // 8, w // 8, 16))
    assert dec9 - dec3 <= 2 * (io9 - io3)
    assert dec9 - dec3 < 0.1 * 24 * one_activation_per_frame


def test_encoder_and_decoder_are_causal(vae):
    """Spec wan.md 5.4: the first 5 frames encode to the first 2 latents of 9 frames, and 2 latents decode to
    the first 5 frames of 3."""
    clip = video(frames=9)
    np.testing.assert_allclose(encode(vae, clip[:, :5]), encode(vae, clip)[:, :2], rtol=0, atol=1e-5)
    latents = jnp.asarray(np.random.default_rng(1).standard_normal((1, 3, 4, 6, 16)), jnp.float32)
    np.testing.assert_allclose(decode(vae, latents[:, :2]), decode(vae, latents)[:, :5], rtol=0, atol=1e-5)
    assert not np.allclose(encode(vae, clip.at[:, 8].set(0.0))[:, 2], encode(vae, clip)[:, 2])


def test_one_tile_covering_the_frame_equals_untiled(vae):
    clip = video(frames=5, height=32, width=48)
    latents = encode(vae, clip)
    np.testing.assert_allclose(encode(vae, clip, tile_size=(4, 6), tile_stride=(2, 3)), latents, rtol=0, atol=1e-6)
    np.testing.assert_allclose(decode(vae, latents, tile_size=(8, 8), tile_stride=(4, 4)), decode(vae, latents),
                               rtol=0, atol=1e-6)


def test_tiled_decode_keeps_shape_and_range_and_rejects_bad_strides(vae):
    latents = jnp.asarray(np.random.default_rng(2).standard_normal((2, 2, 8, 12, 16)), jnp.float32)
    tiled = decode(vae, latents, tile_size=(6, 8), tile_stride=(3, 4))
    assert tiled.shape == (2, 5, 64, 96, 3)
    assert float(jnp.max(jnp.abs(tiled))) <= 1.0
    with pytest.raises(ValueError, match="tile_stride"):
        decode(vae, latents, tile_size=(6, 8), tile_stride=(7, 4))


@pytest.mark.parametrize("shape, match", [
    ((1, 6, 32, 48, 3), "4k\\+1 frames .* got 6; trim to 5"),
    ((1, 0, 32, 48, 3), "4k\\+1 frames"),
    ((1, 5, 30, 48, 3), "divisible by 8, got 30x48"),
    ((1, 5, 32, 44, 3), "divisible by 8, got 32x44"),
    ((1, 5, 32, 48, 4), "\\[batch, frames, height, width, 3\\].*got shape \\(1, 5, 32, 48, 4\\)"),
    ((5, 32, 48, 3), "got shape \\(5, 32, 48, 3\\)"),
])
def test_encode_rejects_bad_video(vae, shape, match):
    with pytest.raises(ValueError, match=match):
        encode(vae, jnp.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 2, 4, 6, 4), (2, 4, 6, 16)])
def test_decode_rejects_bad_latents(vae, shape):
    with pytest.raises(ValueError, match="latents of shape \\[batch, frames, height, width, 16\\]"):
        decode(vae, jnp.zeros(shape))


def test_config_rejects_other_latent_widths():
    with pytest.raises(ValueError, match="z_dim must be 16"):
        VAEConfig(z_dim=4)
