"""End-to-end sampling parity with diffusers' Wan pipelines on tiny random models, fp32.

`denoise` (+ `image_condition` for I2V) vs `WanPipeline` / `WanImageToVideoPipeline` with output_type="latent":
the same noise, text embeddings (zero past each prompt's length) and CLIP image embeddings, 10 steps, UniPC and
FlowMatch Euler, guided and unguided. Every model is a randomised diffusers module (norms, biases and the head
included) converted through the real converter and loaded with `load_dit` / `load_vae`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import jax.numpy as jnp  # noqa: E402

from camclone_jax.models import DiTConfig  # noqa: E402
from camclone_jax.models.loading import load_dit, load_vae  # noqa: E402
from camclone_jax.models.wan_vae import tiny_vae  # noqa: E402
from camclone_jax.sample.conditions import image_condition  # noqa: E402
from camclone_jax.sample.denoise import Sampler, denoise  # noqa: E402
from convert import convert  # noqa: E402
from tests import oracles  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-4  # relative max error of the final latents after 10 steps
QUIET = dict(log=lambda *_: None)
STEPS, SHIFT = 10, 3.0
FRAMES, HEIGHT, WIDTH = 9, 32, 48  # -> 3 x 4 x 6 latents
PROMPT_LEN, NEGATIVE_LEN = 7, 11


def diffusers_scheduler(solver: str):
    if solver == "unipc":
        return diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 num_train_timesteps=1000, flow_shift=SHIFT)
    return diffusers.FlowMatchEulerDiscreteScheduler(shift=SHIFT)


def text_embeddings(cfg: DiTConfig, length: int, seed: int) -> np.ndarray:
    """[1, text_len, text_dim], zero past `length` rows, as the umT5 features Wan pads."""
    out = np.zeros((1, cfg.text_len, cfg.text_dim), np.float32)
    out[0, :length] = np.random.default_rng(seed).standard_normal((length, cfg.text_dim))
    return out


def latent_noise(seed: int) -> np.ndarray:
    shape = (1, (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8, 16)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def converted_dit(variant: str, seed: int, directory):
    cfg = DiTConfig.tiny(variant)
    reference = oracles.diffusers_wan(cfg, seed=seed)
    reference.save_pretrained(directory / "diffusers")
    convert(directory / "diffusers", directory / "jax", variant=variant, **QUIET)
    return cfg, reference, load_dit(directory / "jax")


@pytest.fixture(scope="module")
def t2v(tmp_path_factory):
    return converted_dit("t2v", 11, tmp_path_factory.mktemp("t2v_dit"))


@pytest.fixture(scope="module")
def i2v(tmp_path_factory):
    cfg, reference, dit = converted_dit("i2v", 12, tmp_path_factory.mktemp("i2v_dit"))
    from diffusers import AutoencoderKLWan

    ref_vae = oracles.randomize_(AutoencoderKLWan(base_dim=tiny_vae().dim, z_dim=16).eval(), seed=13)
    directory = tmp_path_factory.mktemp("i2v_vae")
    ref_vae.save_pretrained(directory / "vae")
    convert(directory / "vae", directory / "jax", **QUIET)
    return cfg, reference, dit, ref_vae, load_vae(directory / "jax")


def assert_matches(got, want, what: str):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != diffusers {want.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite latents"
    assert np.abs(want).max() > 1e-2, f"{what}: diffusers latents are ~0, the comparison would be vacuous"
    err = oracles.rel_max_err(got, want)
    assert err <= TOL, f"{what}: relative max error {err:.3e} > {TOL:.0e} after {STEPS} steps"


@pytest.mark.parametrize("solver, cfg_scale", [("unipc", 5.0), ("flow_euler", 5.0), ("unipc", 1.0)])
def test_t2v_matches_wan_pipeline(t2v, solver, cfg_scale):
    cfg, reference, dit = t2v
    text, negative = text_embeddings(cfg, PROMPT_LEN, 1), text_embeddings(cfg, NEGATIVE_LEN, 2)
    noise = latent_noise(3)
    pipe = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=reference,
                                 scheduler=diffusers_scheduler(solver))
    pipe.set_progress_bar_config(disable=True)
    want = pipe(prompt_embeds=oracles.to_torch(text), negative_prompt_embeds=oracles.to_torch(negative),
                height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=cfg_scale,
                latents=oracles.channels_first(noise), output_type="latent", return_dict=False)[0]
    got = denoise(dit, jnp.asarray(noise), jnp.asarray(text), jnp.asarray(negative) if cfg_scale != 1 else None,
                  Sampler(solver, STEPS, SHIFT, cfg_scale), progress=False)
    assert_matches(np.asarray(got), oracles.channels_last(want), f"T2V {solver} cfg {cfg_scale}")


def test_i2v_matches_wan_image_to_video_pipeline(i2v):
    from PIL import Image

    cfg, reference, dit, ref_vae, vae = i2v
    text, negative = text_embeddings(cfg, PROMPT_LEN, 4), text_embeddings(cfg, NEGATIVE_LEN, 5)
    noise = latent_noise(6)
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image_embeds = rng.standard_normal((1, cfg.num_image_tokens, cfg.image_dim)).astype(np.float32)

    pipe = diffusers.WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=ref_vae,
                                             scheduler=diffusers_scheduler("unipc"), image_processor=None,
                                             image_encoder=None, transformer=reference)
    pipe.set_progress_bar_config(disable=True)
    # The pipeline needs `image` for its VAE condition but its check_inputs refuses `image` together with
    # `image_embeds`; so the CLIP embeddings come in through its (image_encoder-less) `encode_image` instead.
    pipe.encode_image = lambda *_: oracles.to_torch(image_embeds)
    want = pipe(image=Image.fromarray(pixels), prompt_embeds=oracles.to_torch(text),
                negative_prompt_embeds=oracles.to_torch(negative),
                height=HEIGHT, width=WIDTH, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=5.0,
                latents=oracles.channels_first(noise), output_type="latent", return_dict=False)[0]

    image = pixels[None].astype(np.float32) / 255.0 * 2.0 - 1.0  # diffusers' VaeImageProcessor mapping
    y = image_condition(vae, jnp.asarray(image), FRAMES)
    assert y.shape == (*noise.shape[:-1], 20)
    got = denoise(dit, jnp.asarray(noise), jnp.asarray(text), jnp.asarray(negative),
                  Sampler("unipc", STEPS, SHIFT, 5.0), progress=False, y=y, clip_feature=jnp.asarray(image_embeds))
    assert_matches(np.asarray(got), oracles.channels_last(want), "I2V unipc cfg 5.0")
