"""Logical axes -> mesh: every large parameter is sharded, every name is declared, and a sharded forward on 8
forced CPU devices equals the single-device one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from camclone_jax import axes
from camclone_jax.models import DiTConfig
from camclone_jax.models.loading import abstract_dit
from camclone_jax.sharding import DIT_RULES, logical_to_spec, param_specs


def _params(cfg):
    return nnx.state(abstract_dit(cfg), nnx.Param)


def test_every_logical_name_is_declared_and_ruled():
    for variant in ("i2v", "syncam", "recam"):
        for _, var in _params(DiTConfig.tiny(variant)).flat_state():
            names = var.get_metadata()["out_sharding"]
            assert len(names) == len(var.get_value().shape)
            assert set(names) - {None} <= set(axes.ALL), names
    assert {name for name, _ in DIT_RULES} == set(axes.ALL)


def test_every_parameter_over_1_mib_is_sharded():
    for cfg in (DiTConfig.wan_t2v_1_3b(), DiTConfig.camclonemaster(), DiTConfig.syncammaster()):
        params = _params(cfg)
        specs = dict(param_specs(params).flat_state())
        for path, var in params.flat_state():
            value = var.get_value()
            if np.prod(value.shape) * value.dtype.itemsize > 2**20:
                assert specs[path] != PartitionSpec(*([None] * len(value.shape))), path


def test_a_mesh_axis_is_used_once_per_spec():
    assert logical_to_spec((axes.BATCH, axes.EMBED), DIT_RULES) == PartitionSpec(("data", "fsdp"), None)
    assert logical_to_spec((axes.EMBED, axes.HEADS), DIT_RULES) == PartitionSpec("fsdp", "tensor")


SHARDED_FORWARD = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from camclone_jax.models import DiTConfig, WanDiT
    from camclone_jax.sharding import make_mesh, param_shardings, use_mesh

    assert len(jax.devices()) == 8
    variant = sys.argv[1]
    cfg = DiTConfig.tiny(variant)
    model = WanDiT(cfg, rngs=nnx.Rngs(0))
    for i, var in enumerate([model.head.head.kernel] + ([model.blocks.projector.kernel] if variant == "syncam" else [])):
        var.set_value(jax.random.normal(jax.random.key(i), var.shape) * 0.2)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 2, 4, 4, 16)), jnp.float32)
    args = (x, jnp.linspace(10.0, 900.0, 4), jnp.asarray(rng.standard_normal((4, 8, 32)), jnp.float32))
    cam = jnp.asarray(rng.standard_normal((4, 2, 12)), jnp.float32)
    kw = dict(recam=dict(cond_latents=x[:, ::-1], cam_emb=cam), syncam=dict(cam_emb=cam, num_views=2), t2v={})[variant]
    graphdef, state = nnx.split(model)
    forward = lambda state, *a: nnx.merge(graphdef, state)(*a, **kw)
    expected = jax.jit(forward)(state, *args)

    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    with use_mesh(mesh):
        shardings = param_shardings(state, mesh)
        sharded_state = jax.device_put(state, shardings)
        q = sharded_state["blocks"]["self_attn"]["q"]["kernel"].get_value()
        assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor"), q.sharding
        assert q.addressable_shards[0].data.shape == (2, 32, 32)
        out = jax.jit(forward)(sharded_state, *args)
    err = float(jnp.max(jnp.abs(out - expected)) / jnp.max(jnp.abs(expected)))
    assert err < 1e-5, err
    print("ok", err)
""")


@pytest.mark.parametrize("variant", ["t2v", "recam", "syncam"])
def test_sharded_forward_on_8_cpu_devices_matches_single_device(variant):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", SHARDED_FORWARD, variant], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


SAVE_FROM_DEVICE_7 = textwrap.dedent("""
import sys
import jax
from flax import nnx
from camclone_jax.models.loading import save_model
from camclone_jax.models.wan_vae import WanVAE, tiny_vae
params = nnx.state(WanVAE(tiny_vae(), rngs=nnx.Rngs(0)), nnx.Param).to_pure_dict()
save_model(sys.argv[1], tiny_vae(), jax.device_put(params, jax.devices()[7]))
""")


def test_a_folder_saved_on_other_devices_loads_onto_this_one(tmp_path):
    # Orbax records each array's device beside it; restoring without a target sharding tried to rebuild that
    # device ("Topology mismatch"), which a shipped folder saved on cpu:0 hit on a GPU.
    import jax

    from camclone_jax.models.loading import load_vae
    from camclone_jax.models.wan_vae import WanVAE, tiny_vae

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", SAVE_FROM_DEVICE_7, str(tmp_path / "vae")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = nnx.state(load_vae(tmp_path / "vae"), nnx.Param).to_pure_dict()
    expected = nnx.state(WanVAE(tiny_vae(), rngs=nnx.Rngs(0)), nnx.Param).to_pure_dict()
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected), strict=True):
        assert got.devices() == {jax.devices()[0]}
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
