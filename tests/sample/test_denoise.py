"""The shared denoising loop: one compilation for the whole loop, batched text guidance, camera guidance against a
static camera, seeded noise, argument checks. (Parity of whole loops with diffusers is in test_pipeline_parity.py.)"""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.sample import denoise as denoise_module
from camclone_jax.sample.denoise import Sampler, denoise, noise_like

SHAPE = (1, 2, 4, 6, 16)


@pytest.fixture(scope="module")
def dit():
    model = WanDiT(DiTConfig.tiny("t2v"), rngs=nnx.Rngs(0))
    head = model.head.head.kernel  # upstream initialises the head to 0, which would make every velocity 0
    head.set_value(jax.random.normal(jax.random.key(1), head.shape) * 0.1)
    return model


def texts(seed=0, batch=1):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((batch, 8, 32)).astype(np.float32)
    return text, rng.standard_normal((batch, 8, 32)).astype(np.float32)


@pytest.mark.parametrize("solver", ["euler", "unipc", "flow_euler"])
def test_the_loop_compiles_once_and_moves_the_latents(dit, solver, caplog):
    text, negative = texts()
    noise = noise_like(0, SHAPE)
    before = denoise_module._step._cache_size()
    graphdef, params = nnx.split(dit)
    loaded = nnx.merge(graphdef, jax.device_put(params, jax.devices()[0]))  # committed, as a loaded checkpoint
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        out = denoise(loaded, noise, text, negative, Sampler(solver, steps=4, shift=3.0), progress=False)
    assert denoise_module._step._cache_size() == before + 1  # traced on step 0, reused for steps 1-3
    # ... and compiled once: step 1's inputs (step 0's outputs) are committed as step 0's were
    assert sum("Compiling jit(_step)" in r.getMessage() for r in caplog.records) == 1
    assert out.shape == SHAPE and np.isfinite(np.asarray(out)).all()
    assert np.abs(np.asarray(out) - np.asarray(noise)).max() > 1e-2
    np.testing.assert_array_equal(np.asarray(noise), np.asarray(noise_like(0, SHAPE)))  # the caller's noise survives


def test_guidance_is_on_text_only(dit):
    text, negative = texts(1)
    noise = noise_like(3, SHAPE)
    plain = denoise(dit, noise, text, None, Sampler("euler", 3, cfg_scale=1.0), progress=False)
    # Same text in both branches: uncond + g (cond - uncond) = cond whatever g is.
    same = denoise(dit, noise, text, text, Sampler("euler", 3, cfg_scale=7.0), progress=False)
    np.testing.assert_allclose(np.asarray(same), np.asarray(plain), atol=1e-5)
    guided = denoise(dit, noise, text, negative, Sampler("euler", 3, cfg_scale=7.0), progress=False)
    assert np.abs(np.asarray(guided) - np.asarray(plain)).max() > 1e-3


def test_batched_samples_are_independent(dit):
    text, negative = texts(2, batch=2)
    noise = noise_like(4, (2, *SHAPE[1:]))
    both = denoise(dit, noise, text, negative, Sampler("euler", 2), progress=False)
    one = denoise(dit, noise[1:], text[1:], negative[1:], Sampler("euler", 2), progress=False)
    np.testing.assert_allclose(np.asarray(both[1:]), np.asarray(one), atol=1e-5)


def test_seeded_noise_is_reproducible():
    np.testing.assert_array_equal(np.asarray(noise_like(7, SHAPE)), np.asarray(noise_like(7, SHAPE)))
    assert not np.array_equal(np.asarray(noise_like(7, SHAPE)), np.asarray(noise_like(8, SHAPE)))


def test_bad_arguments_are_named(dit):
    with pytest.raises(ValueError, match="unknown solver 'ddim'"):
        Sampler("ddim")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Sampler(steps=0)
    text, negative = texts(batch=2)
    with pytest.raises(ValueError, match="text batch 2 != latent batch 1"):
        denoise(dit, noise_like(0, SHAPE), text, negative, Sampler(steps=1), progress=False)
    with pytest.raises(ValueError, match="needs negative_text"):
        denoise(dit, noise_like(0, SHAPE), text[:1], None, Sampler(steps=1), progress=False)


@pytest.fixture(scope="module")
def recam():
    """A tiny ReCamMaster whose camera branch is random, so its camera condition changes the velocity."""
    model = WanDiT(DiTConfig.tiny("recam"), rngs=nnx.Rngs(0))
    for index, (_, var) in enumerate(nnx.state(model, nnx.Param).flat_state()):
        var.set_value(jax.random.normal(jax.random.key(index), var.get_value().shape) * 0.2)
    return model


def camera_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return dict(cond_latents=rng.standard_normal(SHAPE).astype(np.float32),
                cam_emb=rng.standard_normal((1, SHAPE[1], 12)).astype(np.float32))


def test_camera_guidance_extrapolates_from_the_static_camera(recam):
    text, negative = texts(5)
    noise = noise_like(5, SHAPE)
    conditions = camera_inputs()
    static = dict(cam_emb=np.zeros_like(conditions["cam_emb"]))

    def run(cfg=1.0, cam=1.0, static_camera=static, steps=1):
        sampler = Sampler("euler", steps, cfg_scale=cfg, camera_scale=cam)
        return np.asarray(denoise(recam, noise, text, negative if cfg != 1 else None, sampler,
                                  static_camera=static_camera, progress=False, **conditions))

    plain = run()
    # A "static" camera equal to the real one: cond - static = 0, whatever the scale.
    np.testing.assert_allclose(run(cam=4.0, static_camera=dict(cam_emb=conditions["cam_emb"])), plain, atol=1e-5)
    # One Euler step is affine in the guided velocity: out(g) = out(1) + (g - 1) (out(2) - out(1)).
    step = run(cam=2.0) - plain
    assert np.abs(step).max() > 1e-3
    np.testing.assert_allclose(run(cam=3.5) - plain, 2.5 * step, atol=1e-5)
    # The camera term is taken from the text-conditional pass, so it adds on to text guidance unchanged.
    np.testing.assert_allclose(run(cfg=6.0, cam=2.0) - run(cfg=6.0), step, atol=1e-5)
    assert np.isfinite(run(cfg=6.0, cam=2.0, steps=3)).all()


def test_camera_guidance_arguments_are_checked(recam):
    text, _ = texts()
    conditions = camera_inputs()
    sampler = Sampler("euler", 1, cfg_scale=1.0, camera_scale=2.0)
    with pytest.raises(ValueError, match="camera_scale=2.0 needs static_camera"):
        denoise(recam, noise_like(0, SHAPE), text, None, sampler, progress=False, **conditions)
    with pytest.raises(ValueError, match=r"static_camera entries \['y'\] are not conditions"):
        denoise(recam, noise_like(0, SHAPE), text, None, sampler, progress=False,
                static_camera=dict(y=np.zeros(3, np.float32)), **conditions)
    with pytest.raises(ValueError, match=r"static_camera\['cam_emb'\] must have the shape of cam_emb \[1, 2, 12\]"):
        denoise(recam, noise_like(0, SHAPE), text, None, sampler, progress=False,
                static_camera=dict(cam_emb=np.zeros((1, 3, 12), np.float32)), **conditions)
