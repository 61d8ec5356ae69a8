"""The train step: DiffSynth's training grid and weights, learning on a fixed batch, masked updates, content
dropout, and the sharded step on 8 forced CPU devices against the 1-device step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models import WanDiT
from camclone_jax.train import flow
from camclone_jax.train.step import StepConfig, init_state, jit_train_step, loss_fn
from configs import tiny
from configs.common import model_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def setup(variant: str, seed: int = 0, head_scale: float = 0.05):
    config = tiny.get_config(f"variant={variant}")
    cfg = model_config(config)
    model = WanDiT(cfg, rngs=nnx.Rngs(seed))
    head = model.head.head.kernel  # stands in for a pretrained head: a zero one passes no gradient upstream
    head.set_value(jax.random.normal(jax.random.key(seed + 1), head.shape) * head_scale)
    return config, cfg, model


def fixed_batch(cfg, batch=2, frames=2, size=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    lat = lambda c=16: rng.standard_normal((batch, frames, size, size, c))
    out = dict(latents=lat(), text=rng.standard_normal((batch, 8, cfg.text_dim)))
    if cfg.variant == "camclone":
        out.update(y=lat(20), clip_feature=rng.standard_normal((batch, 257, cfg.image_dim)), ref_latents=lat(),
                   content_latents=lat())
    if cfg.variant == "recam":
        out.update(source_latents=lat(), cam_emb=rng.standard_normal((batch, frames, 12)) * 0.1)
    if cfg.variant == "syncam":
        out.update(latents=rng.standard_normal((batch, 2, frames, size, size, 16)),
                   cam_emb=rng.standard_normal((batch, 2, frames, 12)) * 0.1)
    return {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}


def test_training_grid_matches_diffsynth():
    torch = pytest.importorskip("torch")
    from tests import oracles

    ref = oracles.diffsynth_module("diffusion.flow_match").FlowMatchScheduler("Wan")
    ref.set_timesteps(1000, training=True, shift=5.0)
    grid = flow.training_grid(1000, 5.0)
    np.testing.assert_array_equal(grid.sigmas, ref.sigmas.numpy())
    np.testing.assert_array_equal(grid.timesteps, ref.timesteps.numpy())
    np.testing.assert_allclose(grid.weights, ref.linear_timesteps_weights.numpy(), rtol=1e-5, atol=1e-6)
    # Lookups of bf16-rounded timesteps: the same grid point (hence sigma and weight) as DiffSynth's argmin.
    for k in (0, 5, 9, 10, 100, 500, 998, 999):
        t = torch.tensor([float(grid.timesteps[k])]).to(torch.bfloat16).float()
        want = int(torch.argmin((ref.timesteps - t).abs()))
        assert int(flow.nearest_index(jnp.asarray(grid.timesteps), jnp.asarray(t.numpy()))[0]) == want
    # Indices 0-9 all round to t = 1000 in bf16: sigma 1, weight 0 (spec wan.md 8.6).
    t, sigma, w = flow.draw_timesteps(jax.random.key(0), grid, 1)
    assert t.dtype == jnp.float32 and sigma.shape == w.shape == (1,)
    bf = jnp.asarray(grid.timesteps[:10]).astype(jnp.bfloat16).astype(jnp.float32)
    assert np.all(np.asarray(bf) == 1000.0)


def test_logit_normal_and_per_sample_draws():
    grid = flow.training_grid()
    t, sigma, w = flow.draw_timesteps(jax.random.key(1), grid, 64, per_sample=True, sampling="logit_normal")
    assert len(np.unique(np.asarray(t))) > 20 and np.all((np.asarray(sigma) > 0) & (np.asarray(sigma) <= 1))
    t, _, _ = flow.draw_timesteps(jax.random.key(1), grid, 8)
    assert len(np.unique(np.asarray(t))) == 1  # one t shared by the batch, as upstream


def test_loss_falls_on_a_fixed_batch():
    config, cfg, model = setup("t2v")
    graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer)
    step = jit_train_step(graphdef, StepConfig.from_config(config, "t2v"), config.optimizer)
    batch, key = fixed_batch(cfg), jax.random.key(3)  # fixed batch, noise and timestep
    losses = []
    for _ in range(120):
        state, metrics = step(state, batch, key)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] / 5, f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    assert int(state.step) == 120


@pytest.mark.parametrize("variant", ["camclone", "recam", "syncam"])
def test_frozen_parameters_stay_bit_identical_and_have_no_optimizer_state(variant):
    config, cfg, model = setup(variant)
    graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer)
    frozen0 = jax.tree.map(np.array, state.frozen)
    trainable0 = jax.tree.map(np.array, state.trainable)
    n_trainable = len(jax.tree.leaves(state.trainable))
    moments = [x for x in jax.tree.leaves(state.opt_state) if np.ndim(x) > 0]
    assert len(moments) == 2 * n_trainable  # AdamW mu and nu for the trained leaves, nothing for frozen ones
    assert sum(np.size(x) for x in moments) == 2 * sum(np.size(x) for x in jax.tree.leaves(state.trainable))
    names = ["/".join(map(str, p)) for p, _ in jax.tree_util.tree_flatten_with_path(state.trainable)[0]]
    assert all(any(n in name for n in config.optimizer.trainable) for name in names)

    step = jit_train_step(graphdef, StepConfig.from_config(config, variant), config.optimizer)
    batch = fixed_batch(cfg)
    for i in range(3):
        state, _ = step(state, batch, jax.random.key(i))
    for (path, before), after in zip(jax.tree_util.tree_flatten_with_path(frozen0)[0], jax.tree.leaves(state.frozen)):
        np.testing.assert_array_equal(np.asarray(after), before, err_msg=str(path))
    for (path, before), after in zip(jax.tree_util.tree_flatten_with_path(trainable0)[0],
                                     jax.tree.leaves(state.trainable)):
        assert not np.array_equal(np.asarray(after), before), f"trainable {path} did not change"


def test_content_dropout_zeroes_the_content_stream():
    config, cfg, model = setup("camclone")
    graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer)
    batch = fixed_batch(cfg)
    dropped = StepConfig(variant="camclone", content_dropout=1.0)
    kept = StepConfig(variant="camclone", content_dropout=0.0)
    zero_content = dict(batch, content_latents=jnp.zeros_like(batch["content_latents"]))
    key = jax.random.key(5)
    run = jax.jit(loss_fn, static_argnums=(2, 3))
    loss = lambda c, b: float(run(state.trainable, state.frozen, graphdef, c, b, key)[0])
    assert loss(dropped, batch) == pytest.approx(loss(kept, zero_content), rel=1e-6)
    assert abs(loss(kept, batch) - loss(kept, zero_content)) > 1e-6


MESH_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from camclone_jax import sharding
    from camclone_jax.train.step import StepConfig, init_state, jit_train_step, state_shardings, batch_shardings
    from tests.train.test_step import setup, fixed_batch

    config, cfg, model = setup("camclone")
    scfg = StepConfig.from_config(config, "camclone")
    batch = fixed_batch(cfg, batch=8)
    runs = {}
    # "seq": tokens over the sequence axis too (Ulysses attention inside the jitted step; 2 heads / 2 shards).
    for name, shape in (("one", None), ("mesh", dict(data=2, fsdp=4)), ("seq", dict(data=2, fsdp=2, sequence=2))):
        graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer)
        if shape is None:
            step, run_batch = jit_train_step(graphdef, scfg, config.optimizer), batch
        else:
            mesh = sharding.make_mesh(shape)
            st_sh = state_shardings(graphdef, state, mesh)
            b_sh = batch_shardings(batch, mesh)
            state = jax.device_put(state, st_sh)
            run_batch = jax.device_put(batch, b_sh)
            step = jit_train_step(graphdef, scfg, config.optimizer, mesh=mesh, state_sharding=st_sh,
                                  batch_sharding=b_sh)
            if name == "seq":  # count the all-to-alls traced into the step: proof the tokens are sequence-parallel
                real_all_to_all, traced = jax.lax.all_to_all, []
                jax.lax.all_to_all = lambda *a, **k: traced.append(1) or real_all_to_all(*a, **k)
            if name == "mesh":
                kernel = state.frozen["blocks"]["ffn"]["fc_in"]["kernel"]
                shard = kernel.addressable_shards[0].data
                print("FRACTION", shard.size / kernel.size, kernel.sharding.spec)
        losses = []
        for i in range(3):
            state, m = step(state, run_batch, jax.random.key(i))
            losses.append(float(m["loss"]))
        runs[name] = (losses, jax.tree.map(np.asarray, state.trainable))
        if name == "seq":
            jax.lax.all_to_all = real_all_to_all
            assert traced, "no all-to-all traced: tokens were not sequence-parallel"
    print("LOSSES", runs["one"][0], runs["mesh"][0], runs["seq"][0])
    for name in ("mesh", "seq"):
        err = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(runs["one"][1]),
                                                                jax.tree.leaves(runs[name][1])))
        print(f"MAXDIFF_{name}", err)
""")


def test_sharded_step_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", MESH_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.split()}
    fraction = float(lines["FRACTION"].split()[1])
    assert fraction == pytest.approx(0.25), lines["FRACTION"]  # the FFN kernel's width is split over fsdp=4
    one, mesh, seq = eval(lines["LOSSES"].split(" ", 1)[1].replace("] [", "], ["))
    np.testing.assert_allclose(mesh, one, rtol=1e-5)
    np.testing.assert_allclose(seq, one, rtol=1e-5)
    for name in ("mesh", "seq"):  # fp32; reduction order differs across shards
        assert float(lines[f"MAXDIFF_{name}"].split()[1]) < 1e-5, lines[f"MAXDIFF_{name}"]


@pytest.mark.slow  # bf16 is emulated on these CPUs (14 s); the default suite runs fp32
def test_bf16_compute_with_fp32_master_weights_and_remat():
    """The full configs' numerics on the tiny model: bf16 matmuls, bf16 frozen weights, fp32 trained weights and
    AdamW moments, blocks rematerialised. Remat alone changes nothing (fp32: same loss and update to 1e-6); bf16
    stays within bf16 error of fp32."""
    config, cfg, model = setup("camclone")
    batch = fixed_batch(cfg)
    step_cfg = StepConfig.from_config(config, "camclone")

    def run(model, frozen_dtype=None, steps=2):
        graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer, frozen_dtype=frozen_dtype)
        step = jit_train_step(graphdef, step_cfg, config.optimizer)
        losses = []
        for i in range(steps):
            state, metrics = step(state, batch, jax.random.key(i))
            losses.append(float(metrics["loss"]))
        return state, losses

    ref_state, ref_losses = run(model)
    remat_state, remat_losses = run(_with_config(model, cfg.replace(remat="full")))
    np.testing.assert_allclose(remat_losses, ref_losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat_state.trainable), jax.tree.leaves(ref_state.trainable)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)

    state, losses = run(_with_config(model, cfg.replace(dtype="bfloat16", remat="full")), frozen_dtype="bfloat16")
    assert {a.dtype for a in jax.tree.leaves(state.trainable)} == {jnp.dtype("float32")}
    assert {a.dtype for a in jax.tree.leaves(state.frozen)} == {jnp.dtype("bfloat16")}
    assert {a.dtype for a in jax.tree.leaves(state.opt_state) if np.ndim(a) > 0} == {jnp.dtype("float32")}
    np.testing.assert_allclose(losses, ref_losses, rtol=3e-2)


def _with_config(model, cfg):
    """The same weights under another DiTConfig (dtype / remat are run-time settings, not parameters)."""
    fresh = WanDiT(cfg, rngs=nnx.Rngs(0))
    nnx.update(fresh, nnx.state(model, nnx.Param))
    return fresh
