"""WanDiT vs PyTorch oracles (diffsynth original keys, diffusers), through the real converter, fp32."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from camclone_jax.models import DiTConfig  # noqa: E402
from camclone_jax.models.loading import load_dit  # noqa: E402
from convert import convert_dit  # noqa: E402
from tests import oracles  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-5  # relative max error


def make_inputs(cfg: DiTConfig, batch=2, frames=3, height=4, width=6, text_lens=(7, 19), seed=0):
    """Random latents / timesteps / text; each prompt's rows past its length are zero, as Wan pads them."""
    rng = np.random.default_rng(seed)
    inputs = dict(
        x=rng.standard_normal((batch, frames, height, width, cfg.out_dim)).astype(np.float32),
        t=np.array([937.0, 41.5][:batch], np.float32),
        context=np.zeros((batch, cfg.text_len, cfg.text_dim), np.float32),
    )
    for b, n in enumerate(text_lens[:batch]):
        inputs["context"][b, :n] = rng.standard_normal((n, cfg.text_dim))
    if cfg.has_image_input:
        inputs["y"] = rng.standard_normal((batch, frames, height, width, cfg.in_dim - cfg.out_dim)).astype(np.float32)
        inputs["clip_feature"] = rng.standard_normal((batch, cfg.num_image_tokens, cfg.image_dim)).astype(np.float32)
    return inputs


def run_jax(model, inputs, trim_text: int | None = None):
    kw = {k: jnp.asarray(v) for k, v in inputs.items() if k not in ("x", "t", "context")}
    context = inputs["context"][:, :trim_text] if trim_text else inputs["context"]
    return np.asarray(model(jnp.asarray(inputs["x"]), jnp.asarray(inputs["t"]), jnp.asarray(context), **kw))


def run_diffsynth(model, inputs):
    kw = {}
    if "y" in inputs:
        kw = dict(y=oracles.channels_first(inputs["y"]), clip_feature=oracles.to_torch(inputs["clip_feature"]))
    with torch.no_grad():
        out = oracles.diffsynth_forward(model, oracles.channels_first(inputs["x"]), oracles.to_torch(inputs["t"]),
                                        oracles.to_torch(inputs["context"]), **kw)
    return oracles.channels_last(out)


def run_diffusers(model, inputs):
    hidden = oracles.channels_first(inputs["x"])
    if "y" in inputs:
        hidden = torch.cat([hidden, oracles.channels_first(inputs["y"])], dim=1)
    kw = dict(encoder_hidden_states_image=oracles.to_torch(inputs["clip_feature"])) if "y" in inputs else {}
    with torch.no_grad():
        out = model(hidden, oracles.to_torch(inputs["t"]), oracles.to_torch(inputs["context"]), return_dict=False,
                    **kw)[0]
    return oracles.channels_last(out)


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_matches_diffsynth_original_keys(variant, tmp_path):
    cfg = DiTConfig.tiny(variant)
    reference = oracles.diffsynth_wan(cfg, seed=1)
    convert_dit(oracles.save_state_dict(reference, tmp_path / "dit.safetensors"), tmp_path / "jax",
                num_heads=cfg.num_heads, variant=variant, log=lambda *_: None)
    model = load_dit(tmp_path / "jax")
    inputs = make_inputs(cfg)
    expected = run_diffsynth(reference, inputs)
    assert np.abs(expected).max() > 1e-2  # the comparison is not between two near-zero tensors
    assert oracles.rel_max_err(run_jax(model, inputs), expected) <= TOL
    # The model zero-pads text itself: passing only the non-padded rows gives the same result.
    assert oracles.rel_max_err(run_jax(model, inputs, trim_text=19), expected) <= TOL


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_matches_diffusers(variant, tmp_path):
    cfg = DiTConfig.tiny(variant)
    reference = oracles.diffusers_wan(cfg, seed=2)
    reference.save_pretrained(tmp_path / "diffusers")
    convert_dit(tmp_path / "diffusers", tmp_path / "jax", variant=variant, log=lambda *_: None)
    model = load_dit(tmp_path / "jax")
    inputs = make_inputs(cfg, frames=2, height=6, width=4, seed=3)
    expected = run_diffusers(reference, inputs)
    assert np.abs(expected).max() > 1e-2
    assert oracles.rel_max_err(run_jax(model, inputs), expected) <= TOL


def test_camclone_equals_diffsynth_on_frame_concatenated_input(tmp_path):
    """CamCloneMaster = the I2V model run on [target | camera reference | content] frames, sliced back."""
    cfg = DiTConfig.tiny("camclone")
    reference = oracles.diffsynth_wan(cfg, seed=4)
    convert_dit(oracles.save_state_dict(reference, tmp_path / "camclone.safetensors"), tmp_path / "jax",
                num_heads=cfg.num_heads, variant="camclone", log=lambda *_: None)
    model = load_dit(tmp_path / "jax")
    inputs = make_inputs(cfg, frames=2, seed=5)
    rng = np.random.default_rng(6)
    ref, content = (rng.standard_normal(inputs["x"].shape).astype(np.float32) for _ in range(2))
    cond = np.concatenate([ref, content], axis=1)
    out = np.asarray(model(jnp.asarray(inputs["x"]), jnp.asarray(inputs["t"]), jnp.asarray(inputs["context"]),
                           y=jnp.asarray(inputs["y"]), clip_feature=jnp.asarray(inputs["clip_feature"]),
                           cond_latents=jnp.asarray(cond)))
    # The oracle sees the concatenation upstream builds: conditions padded with 20 zero channels (y = 0).
    full = dict(inputs, x=np.concatenate([inputs["x"], cond], axis=1),
                y=np.concatenate([inputs["y"], np.zeros((*cond.shape[:4], 20), np.float32)], axis=1))
    expected = run_diffsynth(reference, full)[:, :2]
    assert out.shape == inputs["x"].shape
    assert oracles.rel_max_err(out, expected) <= TOL
