"""train.repatch: 1x1x1 tokens that equal their coarse parents, a head that averages its sub-pixels, the rest kept."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from camclone_jax.models import DiTConfig
from camclone_jax.models.loading import load_dit, load_dit_params, read_config, save_dit
from camclone_jax.train import repatch
from tests.train.test_deepen import model_with, random_params


def test_fine_tokens_and_head_match_their_coarse_parents():
    cfg = DiTConfig.tiny("camclone")
    assert cfg.patch_size == (1, 2, 2)
    params = random_params(cfg)
    coarse = model_with(cfg, params)
    fine = model_with(cfg.replace(patch_size=(1, 1, 1)), repatch.repatch_params(params, cfg))

    # A latent constant over each 2x2 cell: each fine token is its cell's coarse token.
    cells = jax.random.normal(jax.random.key(0), (1, 2, 3, 2, cfg.in_dim))
    x = jnp.repeat(jnp.repeat(cells, 2, axis=2), 2, axis=3)
    parent = nnx.jit(lambda m, x: m.patch_embedding(x))(coarse, x).reshape(2, 3, 1, 2, 1, cfg.dim)
    child = nnx.jit(lambda m, x: m.patch_embedding(x))(fine, x).reshape(2, 3, 2, 2, 2, cfg.dim)
    assert float(jnp.abs(parent).max()) > 0.1
    np.testing.assert_allclose(child, jnp.broadcast_to(parent, child.shape), atol=1e-5, rtol=1e-5)

    tokens = jax.random.normal(jax.random.key(1), (1, 7, cfg.dim))
    e = jax.random.normal(jax.random.key(2), (1, cfg.dim))
    four = nnx.jit(lambda m, t, e: m.head(t, e))(coarse, tokens, e).reshape(1, 7, 4, cfg.out_dim)
    one = nnx.jit(lambda m, t, e: m.head(t, e))(fine, tokens, e)
    assert float(jnp.abs(four.mean(axis=2) - four[:, :, 0]).max()) > 0.1  # the sub-pixels differ
    np.testing.assert_allclose(one, four.mean(axis=2), atol=1e-5, rtol=1e-5)


def test_cli_writes_a_runnable_folder_and_refuses_bad_arguments(tmp_path, capsys):
    cfg = DiTConfig.tiny("t2v")
    params = random_params(cfg)
    source = save_dit(tmp_path / "src", cfg, params)
    assert repatch.main([str(source), str(tmp_path / "fine")]) == 0
    assert "(1, 2, 2) -> (1, 1, 1)" in capsys.readouterr().out
    fine_cfg = read_config(tmp_path / "fine")
    assert fine_cfg == cfg.replace(patch_size=(1, 1, 1))
    fine = load_dit_params(tmp_path / "fine")
    for key in ("blocks", "text_embedding", "time_embedding", "time_projection"):
        jax.tree.map(np.testing.assert_array_equal, fine[key], params[key])
    np.testing.assert_array_equal(fine["head"]["modulation"], params["head"]["modulation"])
    out = load_dit(tmp_path / "fine")(jnp.ones((1, 2, 4, 6, 16)), jnp.array([500.0]), jnp.ones((1, 5, 32)))
    assert out.shape == (1, 2, 4, 6, 16) and bool(jnp.all(jnp.isfinite(out)))

    assert repatch.main([str(source), str(tmp_path / "fine")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert repatch.main([str(tmp_path / "fine"), str(tmp_path / "finer")]) == 2
    assert "already has 1x1x1 patches" in capsys.readouterr().err
