"""train.deepen: the deepened DiT computes what its source computed, with twice the blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.models.loading import load_dit, load_dit_params, save_dit
from camclone_jax.train import deepen


def random_dit(variant: str, directory):
    cfg = DiTConfig.tiny(variant)
    params = nnx.state(WanDiT(cfg, rngs=nnx.Rngs(0)), nnx.Param).to_pure_dict()
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    # Every parameter random (the zero-initialised head, camera encoder and projectors too), so equal outputs
    # prove the identity blocks and not a zero camera branch.
    params = jax.tree.unflatten(tree, [0.2 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)])
    return save_dit(directory, cfg, params)


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
def test_deepened_model_equals_source(variant, tmp_path):
    source = random_dit(variant, tmp_path / "src")
    assert deepen.main([str(source), str(tmp_path / "deep")]) == 0
    a, b = load_dit(source), load_dit(tmp_path / "deep")
    assert b.config.num_layers == 2 * a.config.num_layers
    args, kw = inputs(variant)
    out_a, out_b = a(*args, **kw), b(*args, **kw)
    assert float(jnp.abs(out_a).max()) > 0.1
    np.testing.assert_allclose(out_b, out_a, atol=1e-5, rtol=1e-5)

    src, deep = load_dit_params(source)["blocks"], load_dit_params(tmp_path / "deep")["blocks"]
    np.testing.assert_array_equal(deep["self_attn"]["q"]["kernel"][1], src["self_attn"]["q"]["kernel"][0])
    np.testing.assert_array_equal(deep["ffn"]["fc_out"]["kernel"][2], src["ffn"]["fc_out"]["kernel"][1])
    for path in deepen.residual_outputs(variant):  # the copies' last residual projections make them the identity
        node = deep
        for key in path:
            node = node[key]
        assert not np.any(node["kernel"][1::2]) and not np.any(node["bias"][1::2]) and np.any(node["kernel"][::2])


def test_refuses_existing_output_and_factor_one(tmp_path, capsys):
    source = random_dit("t2v", tmp_path / "src")
    (tmp_path / "taken").mkdir()
    assert deepen.main([str(source), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert deepen.main([str(source), str(tmp_path / "one"), "--factor", "1"]) == 2
    assert "--factor must be at least 2" in capsys.readouterr().err
