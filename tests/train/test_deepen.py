"""train.deepen: the deepened DiT computes what its source computed, with twice the blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.models.loading import load_dit, load_dit_params, save_dit
from camclone_jax.train import deepen


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    cfg = DiTConfig.tiny("camclone")
    model = WanDiT(cfg, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param).to_pure_dict()
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    # Every parameter random (zero-initialised heads and gates too), so equal outputs prove the identity blocks.
    params = jax.tree.unflatten(tree, [0.2 * jax.random.normal(k, p.shape) for k, p in zip(keys, leaves)])
    return save_dit(tmp_path_factory.mktemp("src") / "dit", cfg, params)


def test_deepened_model_equals_source(source, tmp_path):
    assert deepen.main([str(source), str(tmp_path / "deep")]) == 0
    a, b = load_dit(source), load_dit(tmp_path / "deep")
    assert b.config.num_layers == 2 * a.config.num_layers
    k = jax.random.split(jax.random.key(2), 5)
    inputs = dict(y=jax.random.normal(k[1], (1, 2, 4, 4, 20)), clip_feature=jax.random.normal(k[2], (1, 257, 1280)),
                  cond_latents=jax.random.normal(k[3], (1, 4, 4, 4, 16)))
    x, t, text = jax.random.normal(k[0], (1, 2, 4, 4, 16)), jnp.array([700.0]), jax.random.normal(k[4], (1, 5, 32))
    out_a, out_b = a(x, t, text, **inputs), b(x, t, text, **inputs)
    assert float(jnp.abs(out_a).max()) > 0.1
    np.testing.assert_allclose(out_b, out_a, atol=1e-5, rtol=1e-5)

    src, deep = load_dit_params(source)["blocks"], load_dit_params(tmp_path / "deep")["blocks"]
    np.testing.assert_array_equal(deep["self_attn"]["q"]["kernel"][1], src["self_attn"]["q"]["kernel"][0])
    np.testing.assert_array_equal(deep["self_attn"]["o"]["kernel"][2], src["self_attn"]["o"]["kernel"][1])
    for module, proj in deepen.ZEROED:  # the copies' residual outputs, which make them the identity
        assert not np.any(deep[module][proj]["kernel"][1::2]) and not np.any(deep[module][proj]["bias"][1::2])


def test_refuses_existing_output_and_factor_one(source, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert deepen.main([str(source), str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert deepen.main([str(source), str(tmp_path / "one"), "--factor", "1"]) == 2
    assert "--factor must be at least 2" in capsys.readouterr().err
