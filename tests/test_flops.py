"""`camclone_jax.flops` against the model itself: the parameter paths of `WanDiT`, the dot_general FLOPs of the
forward and of the gradient jaxprs (exact), XLA's cost analysis of the compiled forward (matmuls plus
elementwise work, so within a band), and the peak FLOP/s lookup.

Models are `DiTConfig.tiny` widened to E = 256 (head_dim 64) with text_dim 256, so matmuls carry most of the work.
"""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend import core as jax_core
from jax.interpreters import partial_eval as pe

from camclone_jax import flops
from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.train.optim import path_string, split_trainable

FRAMES, SIZE, VIEWS = 2, 16, 2  # target latent 2x16x16: 128 tokens per row before condition frames


def small_config(variant: str, num_layers: int = 2) -> DiTConfig:
    return DiTConfig.tiny(variant, dim=256, ffn_dim=1024, num_heads=4, num_layers=num_layers, text_dim=256,
                          freq_dim=256)


def model_inputs(cfg: DiTConfig, seed: int = 0):
    """(x, t, context, kwargs) for one sample (syncam: VIEWS rows) and the matching flops keyword arguments."""
    rng = np.random.default_rng(seed)
    rows = VIEWS if cfg.has_mvs else 1
    lat = lambda c=16: jnp.asarray(rng.standard_normal((rows, FRAMES, SIZE, SIZE, c)), jnp.float32)
    kwargs = {}
    if cfg.has_image_input:
        kwargs.update(y=lat(cfg.in_dim - cfg.out_dim),
                      clip_feature=jnp.asarray(rng.standard_normal((rows, cfg.num_image_tokens, cfg.image_dim)),
                                               jnp.float32))
    if cfg.variant == "camclone":
        kwargs["cond_latents"] = jnp.concatenate([lat(), lat()], axis=1)  # camera reference | content
    if cfg.variant == "recam":
        kwargs["cond_latents"] = lat()
    if cfg.has_cam_encoder:
        kwargs["cam_emb"] = jnp.asarray(rng.standard_normal((rows, FRAMES, cfg.cam_dim)), jnp.float32)
    if cfg.has_mvs:
        kwargs["num_views"] = VIEWS
    x, t = lat(), jnp.full((rows,), 500.0)
    context = jnp.asarray(rng.standard_normal((rows, 8, cfg.text_dim)), jnp.float32)
    count = dict(tokens=flops.dit_sequence_tokens(cfg, FRAMES, SIZE, SIZE), batch=rows,
                 frames=flops.dit_sequence_frames(cfg, FRAMES), num_views=VIEWS if cfg.has_mvs else 1)
    return (x, t, context, kwargs), count


def dot_flops(jaxpr, trips: int = 1) -> int:
    """2 x multiply-adds of every dot_general in `jaxpr` and its sub-jaxprs, scan bodies times their length."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += trips * 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contracting)
        inner = trips * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    total += dot_flops(sub.jaxpr, inner)
                elif isinstance(sub, jax_core.Jaxpr):
                    total += dot_flops(sub, inner)
    return total


VARIANTS = ("t2v", "i2v", "camclone", "recam", "syncam")


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_paths_are_the_models(variant):
    # The trainable filter is applied to these paths, so a missed or misspelt one would miscount dW.
    cfg = small_config(variant)
    model = jax.eval_shape(lambda: nnx.state(WanDiT(cfg, rngs=nnx.Rngs(0)), nnx.Param).to_pure_dict())
    paths = {path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(model)[0]}
    assert set(flops.dit_parameter_paths(cfg)) == paths
    weights = {mm.weight for mm in flops.dit_matmuls(cfg, tokens=8, frames=1 if cfg.has_cam_encoder else None)}
    assert weights - {None} <= paths


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_flops_equal_the_jaxpr_dots(variant):
    cfg = small_config(variant, num_layers=2)
    (x, t, context, kwargs), count = model_inputs(cfg)
    graphdef, state = nnx.split(WanDiT(cfg, rngs=nnx.Rngs(0)))
    jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(x, t, context, **kwargs))(state)
    assert flops.dit_forward_flops(cfg, **count) == dot_flops(jaxpr.jaxpr)


# Ours counts matmuls only; XLA adds norms, RoPE, softmax, modulation (1-2 % here). One layer: XLA counts a
# while body once, whatever its trip count.
XLA_BAND = 0.05


@pytest.mark.parametrize("variant", ["t2v", "camclone", "recam", "syncam"])
def test_forward_flops_match_xla_cost_analysis(variant):
    cfg = small_config(variant, num_layers=1)
    (x, t, context, kwargs), count = model_inputs(cfg)
    graphdef, state = nnx.split(WanDiT(cfg, rngs=nnx.Rngs(0)))
    views = kwargs.pop("num_views", 1)
    forward = jax.jit(lambda s, x, t, c, kw: nnx.merge(graphdef, s)(x, t, c, num_views=views, **kw))
    xla = forward.lower(state, x, t, context, kwargs).compile().cost_analysis()["flops"]
    ours = flops.dit_forward_flops(cfg, **count)
    assert (1 - XLA_BAND) * xla <= ours <= xla, (ours, xla, ours / xla)
    # The band is narrow enough to notice a missing FFN.
    without_ffn = ours - sum(mm.flops for mm in flops.dit_matmuls(cfg, **count) if mm.weight
                             and "/ffn/" in mm.weight)
    assert without_ffn < (1 - XLA_BAND) * xla


TRAIN_CASES = [
    ("t2v", ()),
    ("t2v", ("self_attn",)),
    ("camclone", ()),
    ("camclone", ("self_attn",)),
    ("camclone", ("cross_attn",)),  # the image / text keys and values get gradients, the text MLP does not
    ("camclone", ("img_emb",)),
    ("recam", ("cam_encoder", "projector", "self_attn")),
    ("recam", ("head",)),  # head/modulation: the head's input gradient, nothing below
    ("syncam", ("cam_encoder", "projector", "mvs_attn", "modulation_mvs")),
    ("syncam", ("norm_k", "time_embedding")),
]


@pytest.mark.parametrize("variant,trainable", TRAIN_CASES)
def test_train_flops_equal_the_gradient_jaxpr_dots(variant, trainable):
    cfg = small_config(variant, num_layers=2)
    (x, t, context, kwargs), count = model_inputs(cfg)
    graphdef, trained, frozen = split_trainable(WanDiT(cfg, rngs=nnx.Rngs(0)), trainable)

    def loss(trained, frozen):
        return jnp.mean(jnp.square(nnx.merge(graphdef, trained, frozen)(x, t, context, **kwargs)))

    closed = jax.make_jaxpr(jax.value_and_grad(loss))(trained, frozen)
    jaxpr, _ = pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
    assert flops.dit_train_flops(cfg, trainable=trainable, **count) == dot_flops(jaxpr)


@pytest.mark.parametrize("preset", ["wan_t2v_1_3b", "camclonemaster"])
def test_train_flops_relative_to_forward_at_training_size(preset):
    cfg = getattr(DiTConfig, preset)()
    count = dict(tokens=flops.dit_sequence_tokens(cfg, 21, 60, 104), batch=1)  # 81 frames at 480x832
    forward = flops.dit_forward_flops(cfg, **count)
    everything = flops.dit_train_flops(cfg, trainable=(), **count)
    assert 0.99 * 3 * forward < everything <= 3 * forward  # less only the input gradients of the first layers
    self_attention = flops.dit_train_flops(cfg, trainable=("self_attn",), **count)
    assert 2 * forward < self_attention < 3 * forward


def test_sequence_tokens_count_the_condition_frames():
    shape = (21, 60, 104)  # 81 frames at 480x832: 21 x 30 x 52 tokens
    assert flops.dit_sequence_tokens(DiTConfig.wan_t2v_1_3b(), *shape) == 21 * 30 * 52
    assert flops.dit_sequence_tokens(DiTConfig.syncammaster(), *shape) == 21 * 30 * 52
    assert flops.dit_sequence_tokens(DiTConfig.recammaster(), *shape) == 2 * 21 * 30 * 52
    assert flops.dit_sequence_tokens(DiTConfig.camclonemaster(), *shape) == 3 * 21 * 30 * 52
    assert flops.dit_sequence_frames(DiTConfig.camclonemaster(), 21) == 63
    with pytest.raises(ValueError, match="patch size"):
        flops.dit_sequence_tokens(DiTConfig.wan_t2v_1_3b(), 21, 61, 104)
    with pytest.raises(ValueError, match="frames="):
        flops.dit_forward_flops(DiTConfig.recammaster(), tokens=2 * 21 * 30 * 52)


def test_peak_flops_lookup_and_overrides(monkeypatch):
    gpu = lambda kind: types.SimpleNamespace(platform="gpu", device_kind=kind)
    monkeypatch.delenv(flops.PEAK_TFLOPS_ENV, raising=False)
    assert flops.peak_flops_per_second(gpu("NVIDIA H100 80GB HBM3")) == 989e12
    assert flops.peak_flops_per_second(gpu("NVIDIA H100 80GB HBM3"), "float32") == 495e12
    assert flops.peak_flops_per_second(gpu("NVIDIA H100 PCIe")) == 756e12
    assert flops.peak_flops_per_second(gpu("NVIDIA H200")) == 989e12
    assert flops.peak_flops_per_second(gpu("NVIDIA A100-SXM4-80GB")) == 312e12
    tpu = lambda kind: types.SimpleNamespace(platform="tpu", device_kind=kind)
    assert flops.peak_flops_per_second(tpu("TPU v4")) == 275e12
    assert flops.peak_flops_per_second(tpu("TPU v5 lite")) == 197e12
    assert flops.peak_flops_per_second(tpu("TPU v5")) == 459e12
    assert flops.peak_flops_per_second(tpu("TPU v6 lite")) == 918e12
    assert flops.peak_flops_per_second(gpu("Some Future GPU")) is None
    assert flops.peak_flops_per_second(jax.devices("cpu")[0]) is None
    assert flops.peak_flops_per_second(jax.devices("cpu")[0], override_tflops=1.5) == 1.5e12
    monkeypatch.setenv(flops.PEAK_TFLOPS_ENV, "123")
    assert flops.peak_flops_per_second(gpu("NVIDIA H100 80GB HBM3")) == 123e12
    assert flops.peak_flops_per_second(override_tflops=2.0) == 2e12  # the argument wins over the variable
