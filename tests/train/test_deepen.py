"""train.deepen: the deepened DiT computes what its source computed, with more blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.models.loading import abstract_dit, load_dit_params, read_config, save_dit
from camclone_jax.train import deepen


def random_params(cfg: DiTConfig) -> dict:
    # Every parameter random (the zero-initialised head, camera encoder and projectors too), so equal outputs
    # prove the identity blocks and not a zero camera branch. numpy draws: one jax.random op per shape compiles.
    rng = np.random.default_rng(1)
    shapes = nnx.state(abstract_dit(cfg), nnx.Param).to_pure_dict()
    return jax.tree.map(lambda p: 0.2 * rng.standard_normal(p.shape, dtype=np.float32), shapes)


def model_with(cfg: DiTConfig, params: dict) -> WanDiT:
    model = abstract_dit(cfg)
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    nnx.update(model, state)
    return model


def inputs(variant: str):
    k = jax.random.split(jax.random.key(2), 6)
    batch = 2 if variant == "syncam" else 1
    x, text = jax.random.normal(k[0], (batch, 2, 4, 4, 16)), jax.random.normal(k[1], (batch, 5, 32))
    kw = {"camclone": dict(y=jax.random.normal(k[2], (1, 2, 4, 4, 20)),
                           clip_feature=jax.random.normal(k[3], (1, 257, 1280)),
                           cond_latents=jax.random.normal(k[4], (1, 4, 4, 4, 16))),
          "recam": dict(cond_latents=jax.random.normal(k[4], (1, 2, 4, 4, 16)),
                        cam_emb=jax.random.normal(k[5], (1, 2, 12))),
          "syncam": dict(cam_emb=jax.random.normal(k[5], (2, 2, 12)), num_views=2)}[variant]
    return (x, jnp.array([700.0]), text), kw


@pytest.mark.parametrize("variant", ["camclone", "recam", "syncam"])
def test_deepened_model_equals_source(variant):
    cfg = DiTConfig.tiny(variant)
    params = random_params(cfg)
    blocks = deepen.deepen_params(params["blocks"], 2, variant)
    a = model_with(cfg, params)
    b = model_with(cfg.replace(num_layers=2 * cfg.num_layers), {**params, "blocks": blocks})
    args, kw = inputs(variant)
    views = kw.pop("num_views", 1)
    out_a, out_b = (nnx.jit(lambda m, args, kw: m(*args, **kw, num_views=views))(m, args, kw) for m in (a, b))
    assert float(jnp.abs(out_a).max()) > 0.1
    np.testing.assert_allclose(out_b, out_a, atol=1e-5, rtol=1e-5)

    src = params["blocks"]
    np.testing.assert_array_equal(blocks["self_attn"]["q"]["kernel"][1], src["self_attn"]["q"]["kernel"][0])
    np.testing.assert_array_equal(blocks["ffn"]["fc_out"]["kernel"][2], src["ffn"]["fc_out"]["kernel"][1])
    for path in deepen.residual_outputs(variant):  # the copies' last residual projections make them the identity
        node = blocks
        for key in path:
            node = node[key]
        assert not np.any(node["kernel"][1::2]) and not np.any(node["bias"][1::2]) and np.any(node["kernel"][::2])


def test_cli_writes_a_loadable_folder_and_refuses_bad_arguments(tmp_path, capsys):
    cfg = DiTConfig.tiny("t2v")
    params = random_params(cfg)
    source = save_dit(tmp_path / "src", cfg, params)
    assert deepen.main([str(source), str(tmp_path / "deep"), "--factor", "3"]) == 0
    assert read_config(tmp_path / "deep").num_layers == 3 * cfg.num_layers
    deep = load_dit_params(tmp_path / "deep")["blocks"]
    fc_in = params["blocks"]["ffn"]["fc_in"]["kernel"]
    np.testing.assert_array_equal(deep["ffn"]["fc_in"]["kernel"][3:6], np.repeat(fc_in[1:2], 3, axis=0))
    assert "6 blocks (from 2)" in capsys.readouterr().out

    assert deepen.main([str(source), str(tmp_path / "deep")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert deepen.main([str(source), str(tmp_path / "one"), "--factor", "1"]) == 2
    assert "--factor must be at least 2" in capsys.readouterr().err
