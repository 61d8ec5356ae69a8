"""Camera variants: at their upstream initial values they equal the base model; trained camera weights change
the output; CamCloneMaster runs in I2V and V2V mode; SynCamMaster runs for any number of views."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT

B, F, H, W = 2, 3, 4, 6  # non-square latents, no 30x52 anywhere


def random_model(cfg: DiTConfig, seed: int = 0) -> WanDiT:
    """Fresh model with a random (not zero) output head, so outputs are informative."""
    model = WanDiT(cfg, rngs=nnx.Rngs(seed))
    kernel = model.head.head.kernel
    kernel.set_value(jax.random.normal(jax.random.key(seed + 100), kernel.shape) * 0.1)
    return model


def base_twin(model: WanDiT, variant: str) -> WanDiT:
    """The base model (t2v / camclone -> itself) holding exactly the shared parameters of `model`."""
    base = WanDiT(model.config.replace(variant=variant), rngs=nnx.Rngs(123))
    shared = nnx.state(model, nnx.Param).to_pure_dict()
    for name in ("cam_encoder", "projector", "mvs_attn", "modulation_mvs"):
        shared["blocks"].pop(name, None)
    state = nnx.state(base, nnx.Param)
    nnx.replace_by_pure_dict(state, shared)
    nnx.update(base, state)
    return base


def inputs(seed=0, batch=B, channels=16):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((batch, F, H, W, channels)), jnp.float32),
            jnp.asarray([700.0, 30.0][:batch] if batch <= 2 else rng.uniform(0, 1000, batch), jnp.float32),
            jnp.asarray(rng.standard_normal((batch, 9, 32)), jnp.float32))


def camera(seed=1, batch=B):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, F, 12)), jnp.float32)


def randomize_(model: WanDiT, name: str, seed: int = 7):
    """Random values for one stacked camera submodule (`blocks.<name>`)."""
    module = getattr(model.blocks, name)
    for index, (_, var) in enumerate(nnx.state(module, nnx.Param).flat_state()):
        var.set_value(jax.random.normal(jax.random.key(seed + index), var.get_value().shape) * 0.3)
    nnx.update(module, nnx.state(module))


def max_diff(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)))


def test_recam_at_init_equals_base_on_target_frames_and_camera_changes_it():
    model = random_model(DiTConfig.tiny("recam"))
    base = base_twin(model, "t2v")
    x, t, ctx = inputs()
    source = inputs(seed=5)[0]
    out = model(x, t, ctx, cond_latents=source, cam_emb=camera())
    expected = base(jnp.concatenate([x, source], axis=1), t, ctx)[:, :F]
    assert out.shape == x.shape
    assert max_diff(out, expected) < 1e-5 * float(jnp.max(jnp.abs(expected)))

    randomize_(model, "cam_encoder")
    moved = model(x, t, ctx, cond_latents=source, cam_emb=camera())
    other_camera = model(x, t, ctx, cond_latents=source, cam_emb=camera(seed=2))
    assert max_diff(moved, expected) > 1e-3
    assert max_diff(moved, other_camera) > 1e-3


@pytest.mark.parametrize("views", [2, 4])
def test_syncam_at_init_equals_base_per_view_and_views_interact_when_trained(views):
    model = random_model(DiTConfig.tiny("syncam"))
    base = base_twin(model, "t2v")
    x, t, ctx = inputs(batch=views)
    cam = camera(batch=views)
    out = model(x, t, ctx, cam_emb=cam, num_views=views)
    expected = base(x, t, ctx)
    assert out.shape == x.shape
    assert max_diff(out, expected) < 1e-5 * float(jnp.max(jnp.abs(expected)))

    randomize_(model, "projector")
    randomize_(model, "cam_encoder", seed=11)
    out = model(x, t, ctx, cam_emb=cam, num_views=views)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert max_diff(out, expected) > 1e-3
    # Multi-view attention couples the views: perturbing the last view changes the first view's prediction.
    x_changed = x.at[-1].add(1.0)
    assert max_diff(model(x_changed, t, ctx, cam_emb=cam, num_views=views)[0], out[0]) > 1e-4
    assert max_diff(model(x, t, ctx, cam_emb=camera(seed=3, batch=views), num_views=views), out) > 1e-3


def test_syncam_batches_of_several_samples_keep_samples_independent():
    model = random_model(DiTConfig.tiny("syncam"))
    randomize_(model, "projector")
    x, t, ctx = inputs(batch=4)  # 2 samples x 2 views
    cam = camera(batch=4)
    out = model(x, jnp.full((4,), 300.0), ctx, cam_emb=cam, num_views=2)
    alone = model(x[:2], jnp.full((2,), 300.0), ctx[:2], cam_emb=cam[:2], num_views=2)
    assert max_diff(out[:2], alone) < 1e-5 * float(jnp.max(jnp.abs(alone)))


@pytest.mark.parametrize("mode", ["i2v", "v2v"])
def test_camclone_runs_in_i2v_and_v2v_mode(mode):
    cfg = DiTConfig.tiny("camclone")
    model = random_model(cfg)
    x, t, ctx = inputs()
    rng = np.random.default_rng(3)
    y = jnp.asarray(rng.standard_normal((B, F, H, W, 20)), jnp.float32)
    clip = jnp.asarray(rng.standard_normal((B, cfg.num_image_tokens, cfg.image_dim)), jnp.float32)
    reference = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    content = jnp.zeros_like(x) if mode == "i2v" else jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    out = model(x, t, ctx, y=y, clip_feature=clip, cond_latents=jnp.concatenate([reference, content], axis=1))
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
    # The camera reference is read: a different reference video gives a different prediction.
    other = model(x, t, ctx, y=y, clip_feature=clip,
                  cond_latents=jnp.concatenate([reference[:, ::-1], content], axis=1))
    assert max_diff(out, other) > 1e-4


def test_bad_inputs_name_the_argument_and_shape():
    recam = random_model(DiTConfig.tiny("recam"))
    x, t, ctx = inputs()
    with pytest.raises(ValueError, match="cam_emb"):
        recam(x, t, ctx)
    with pytest.raises(ValueError, match=r"x must be latents \[B, F, H, W, 16\]"):
        recam(x[..., :8], t, ctx, cam_emb=camera())
    with pytest.raises(ValueError, match="divisible by the patch"):
        recam(x[:, :, :3], t, ctx, cam_emb=camera())
    with pytest.raises(ValueError, match="num_views"):
        random_model(DiTConfig.tiny("syncam"))(x[:1].repeat(3, 0), t[:1], ctx[:1].repeat(3, 0),
                                                cam_emb=camera(batch=3), num_views=2)
    with pytest.raises(ValueError, match="clip_feature"):
        random_model(DiTConfig.tiny("i2v"))(x, t, ctx, y=jnp.zeros((B, F, H, W, 20)))
    with pytest.raises(ValueError, match="text_len"):
        random_model(DiTConfig.tiny("t2v"))(x, t, jnp.zeros((B, 600, 32)))
