"""Sequence parallelism (Ulysses all-to-all over heads) and the attention backends.

On 8 forced CPU devices the DiT's tokens are split over the mesh's `sequence` axis; forward outputs and the
gradients of every parameter must equal the unsharded ones. The splash kernel (Pallas, interpret mode off TPU)
must equal the XLA path, alone and inside sequence-parallel `shard_map`s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camclone_jax.models.attention import dot_product_attention, resolve_backend

SEQUENCE_PARALLEL = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from camclone_jax import sharding
    from camclone_jax.models import DiTConfig, WanDiT

    jax.config.update("jax_default_matmul_precision", "highest")
    assert len(jax.devices()) == 8
    variant, backend = sys.argv[1], sys.argv[2]
    meshes = [dict(eval(f"dict({m})")) for m in sys.argv[3:]]
    # 8 heads so that 8 sequence shards x 1 tensor shard divide them; head_dim 16.
    cfg = DiTConfig.tiny(variant, dim=128, num_heads=8, ffn_dim=256, attention=backend)
    model = WanDiT(cfg, rngs=nnx.Rngs(0))
    for i, var in enumerate([model.head.head.kernel] + ([model.blocks.projector.kernel] if variant == "syncam" else [])):
        var.set_value(jax.random.normal(jax.random.key(i), var.shape) * 0.2)
    rng = np.random.default_rng(0)
    B = 4
    x = jnp.asarray(rng.standard_normal((B, 2, 4, 8, 16)), jnp.float32)  # 2 x 2 x 4 = 16 tokens per frame
    text = jnp.asarray(rng.standard_normal((B, 8, 32)), jnp.float32)
    cam = jnp.asarray(rng.standard_normal((B, 2, 12)), jnp.float32) * 0.1
    kw = dict(t2v={}, recam=dict(cond_latents=x[:, ::-1], cam_emb=cam), syncam=dict(cam_emb=cam, num_views=2),
              camclone=dict(y=jnp.asarray(rng.standard_normal((B, 2, 4, 8, 20)), jnp.float32),
                            clip_feature=jnp.asarray(rng.standard_normal((B, 257, 1280)), jnp.float32),
                            cond_latents=jnp.concatenate([x[:, ::-1], x * 0.5], axis=1)))[variant]
    t = jnp.linspace(10.0, 900.0, B)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, x):
        out = nnx.merge(graphdef, params, rest)(x, t, text, **kw)
        return jnp.mean(jnp.square(out - x)), out

    grad_fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (l0, out0), g0 = grad_fn(params, x)

    for shape in meshes:
        mesh = sharding.make_mesh(shape)
        with sharding.use_mesh(mesh):
            assert sharding.sequence_parallel_size() == shape["sequence"]
            p = jax.device_put(params, sharding.param_shardings(params, mesh))
            xs = jax.device_put(x, jax.NamedSharding(mesh, sharding.logical_to_spec(("batch", None, None, None, None))))
            fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
            text_hlo = fn.lower(p, xs).as_text()
            assert "all_to_all" in text_hlo or "all-to-all" in text_hlo, "no all-to-all: not sequence parallel"
            (l1, out1), g1 = fn(p, xs)
        out_err = float(jnp.max(jnp.abs(out1 - out0)) / jnp.max(jnp.abs(out0)))
        grad_err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                       for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)))
        print("ERR", ",".join(f"{k}={v}" for k, v in shape.items()), out_err, grad_err)
    print("ok")
""")


SAMPLING = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from camclone_jax.models import DiTConfig, WanDiT
    from camclone_jax.sample.denoise import Sampler, denoise, noise_like
    from camclone_jax.sample.__main__ import parse_mesh

    jax.config.update("jax_default_matmul_precision", "highest")
    model = WanDiT(DiTConfig.tiny("t2v", dim=128, num_heads=8, ffn_dim=256), rngs=nnx.Rngs(0))
    model.head.head.kernel.set_value(jax.random.normal(jax.random.key(1), model.head.head.kernel.shape) * 0.2)
    rng = np.random.default_rng(0)
    text, negative = (jnp.asarray(rng.standard_normal((1, 8, 32)), jnp.float32) for _ in range(2))
    noise = noise_like(0, (1, 2, 4, 8, 16))
    sampler = Sampler("unipc", steps=3, shift=3.0, cfg_scale=5.0)
    expected = denoise(model, noise, text, negative, sampler, progress=False)
    mesh = parse_mesh("data=2,sequence=-1")  # cond / uncond over data, 16 tokens per frame over 4 devices
    assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 1, "sequence": 4}, mesh.shape
    out = denoise(model, noise, text, negative, sampler, progress=False, mesh=mesh)
    err = float(jnp.max(jnp.abs(out - expected)) / jnp.max(jnp.abs(expected)))
    print("ERR data=2,sequence=4", err)
    print("ok")
""")


def _run_8_devices(*args: str, script: str = SEQUENCE_PARALLEL) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.rstrip().endswith("ok"), run.stdout
    return run.stdout


def _errors(stdout: str) -> dict[str, list[float]]:
    """mesh -> [relative output error, relative gradient error (forward scripts only)] from the ERR lines."""
    rows = [line.split()[1:] for line in stdout.splitlines() if line.startswith("ERR ")]
    return {mesh: [float(x) for x in errs] for mesh, *errs in rows}


def _check_sequence_parallel(*args: str) -> None:
    errors = _errors(_run_8_devices(*args))
    assert sorted(errors) == sorted(args[2:]), errors  # every mesh ran
    for mesh, (out_err, grad_err) in errors.items():
        assert out_err < 1e-5 and grad_err < 1e-4, (mesh, out_err, grad_err)


def test_sequence_sharded_forward_and_gradients_equal_unsharded():
    # One head per shard, the tightest split; data x sequence meshes: tests/train/test_step.py and -m slow below.
    _check_sequence_parallel("camclone", "xla", "sequence=8")


def test_sampling_over_a_data_x_sequence_mesh_equals_one_device():
    (err,), = _errors(_run_8_devices(script=SAMPLING)).values()
    assert err < 1e-5, err


def test_bad_mesh_spec_is_a_clear_error():
    from camclone_jax.sample.__main__ import CLIError, parse_mesh

    with pytest.raises(CLIError, match="unknown axes \\['seq'\\]"):
        parse_mesh("seq=2")
    with pytest.raises(CLIError, match="needs 3 devices, have 1"):
        parse_mesh("sequence=3")


@pytest.mark.slow  # ~30 s: Pallas interpret mode; splash == xla is checked directly below, Ulysses with xla above
def test_splash_kernel_inside_sequence_parallel_shard_map():
    _check_sequence_parallel("recam", "splash", "fsdp=2,sequence=4")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["t2v", "recam", "syncam"])
def test_sequence_parallel_every_variant_and_mesh(variant):
    _check_sequence_parallel(variant, "xla", "sequence=8", "data=2,sequence=4", "fsdp=2,sequence=4")


@pytest.mark.parametrize("length,keys", [(40, 40), (300, 77), (600, 600)])
def test_splash_equals_xla_forward_and_gradient(length, keys):
    """Lengths that are not multiples of the block (padding masked by segment ids), short text-like keys, and
    two 512-blocks (600 -> 1024 padded)."""
    rng = np.random.default_rng(length)
    q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.float32)
               for s in ((2, length, 2, 16), (2, keys, 2, 16), (2, keys, 2, 16)))
    cot = jnp.asarray(rng.standard_normal((2, length, 2, 16)), jnp.float32)

    def run(backend):
        f = lambda q, k, v: jnp.sum(dot_product_attention(q, k, v, backend) * cot)  # noqa: E731
        return dot_product_attention(q, k, v, backend), jax.grad(f, argnums=(0, 1, 2))(q, k, v)

    (out_x, grads_x), (out_s, grads_s) = run("xla"), run("splash")
    np.testing.assert_allclose(out_s, out_x, atol=2e-5)
    for a, b in zip(grads_s, grads_x, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("length,keys", [(300, 300), (257, 40)])
def test_blockwise_xla_attention_equals_one_shot(length, keys, monkeypatch):
    """Long sequences take query blocks with a recomputing backward (a small budget forces 7-38 blocks here,
    the last one padded); forward and gradients equal the one-shot logits path."""
    from camclone_jax.models import attention

    rng = np.random.default_rng(length)
    q, k, v = (jnp.asarray(rng.standard_normal(s), jnp.float32)
               for s in ((2, length, 3, 16), (2, keys, 3, 16), (2, keys, 3, 16)))
    cot = jnp.asarray(rng.standard_normal((2, length, 3, 16)), jnp.float32)

    def run():
        f = lambda q, k, v: jnp.sum(jnp.sin(dot_product_attention(q, k, v, "xla")) * cot)  # noqa: E731
        return jax.jit(lambda q, k, v: (dot_product_attention(q, k, v, "xla"),
                                        jax.grad(f, argnums=(0, 1, 2))(q, k, v)))(q, k, v)

    out_full, grads_full = run()
    monkeypatch.setattr(attention, "XLA_LOGITS_BUDGET", 6 * keys * 8)  # 8-token query blocks
    assert attention.query_block(6, length, keys) == 8
    out_blocks, grads_blocks = run()
    np.testing.assert_allclose(out_blocks, out_full, atol=1e-6)
    for a, b in zip(grads_blocks, grads_full, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6 * float(jnp.max(jnp.abs(b))))


def test_query_blocks_are_even_and_within_the_budget():
    """The fewest blocks the logits budget allows, split evenly: padding stays under one token per block."""
    from camclone_jax.models.attention import XLA_LOGITS_BUDGET, query_block

    for rows, length, keys in ((32, 1440, 512), (32, 1440, 1440), (12, 1950, 1950), (24, 98280, 98280), (4, 100, 7)):
        block = query_block(rows, length, keys)
        blocks = -(-length // block)
        assert rows * block * keys <= max(XLA_LOGITS_BUDGET, rows * 8 * keys)
        assert blocks * block - length < blocks
        assert blocks == 1 or rows * -(-length // (blocks - 1)) * keys > XLA_LOGITS_BUDGET  # none fewer fit
    assert query_block(32, 1440, 512) == 720 and query_block(1, 100, 10) == 100


def test_auto_backend_is_xla_on_cpu_and_names_are_checked():
    assert resolve_backend("auto") == "xla" and resolve_backend("auto", jnp.bfloat16) == "xla"
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        resolve_backend("flash")


def test_tokens_or_heads_that_do_not_split_over_the_sequence_axis_are_a_clear_error():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    script = textwrap.dedent("""
        import jax.numpy as jnp
        from camclone_jax import sharding
        from camclone_jax.models.attention import dot_product_attention
        attend = lambda q, k, v: dot_product_attention(q, k, v, "xla")
        with sharding.use_mesh(sharding.make_mesh({"sequence": 4})):
            for shape in ((1, 30, 8, 16), (1, 32, 6, 16)):  # 30 tokens, or 6 heads, over 4 devices
                x = jnp.ones(shape)
                try:
                    sharding.per_device_attention(attend, x, x, x, self_attention=True)
                except ValueError as err:
                    print("refused:", err)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "token count (30) divisible by 4" in run.stdout and "heads (6) by 4" in run.stdout, run.stdout
