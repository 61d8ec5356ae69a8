"""Full-size umT5-XXL forward on CPU with random weights (opt in: -m slow): bf16 parameters (10.6 GiB; fp32
would be 21 GiB), fp32 compute, one 64-token prompt. Prints wall time and peak resident memory.

It runs in a subprocess with XLA's while-loop-invariant code motion off: XLA:CPU otherwise hoists the bf16 -> fp32
cast of every scanned weight out of the layer loop (an 18 GB fp32 copy of the block stack; out of memory at
24 GiB). GPUs compute bf16 natively and need no such flag.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models.text_prompts import encode_prompts
from camclone_jax.models.umt5 import UMT5Encoder, umt5_xxl

pytestmark = pytest.mark.slow


def peak_rss_gib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 2**20


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def random_leaf(seed, shape, dtype, is_scale):
    """Unit-variance uniform noise from an integer hash of the element index: one fused elementwise loop, so no
    temporaries (jax.random's threefry needs several 4-byte arrays per element: out of memory at 24 GiB)."""
    h = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape) + jnp.uint32(seed * 0x9E3779B9 % 2**32)
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35), (16, 0x27D4EB2F)):
        h = (h ^ (h >> shift)) * jnp.uint32(mult)
    noise = ((h >> 8).astype(jnp.float32) / 2**24 - 0.5) * 12**0.5
    return (1 + noise / 10 if is_scale else noise * shape[-2] ** -0.5).astype(dtype)


def random_encoder(cfg) -> UMT5Encoder:
    """Random weights filled one parameter at a time: building the module eagerly or under one jit holds the
    fp32 random bits of every parameter at once (out of memory at 24 GiB)."""
    encoder = nnx.eval_shape(lambda: UMT5Encoder(cfg, rngs=nnx.Rngs(0)))
    values = nnx.state(encoder, nnx.Param)
    seeds = iter(range(1, 1000))
    filled = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.block_until_ready(random_leaf(next(seeds), leaf.shape, leaf.dtype,
                                                             path[-1].key == "scale")), values.to_pure_dict())
    nnx.replace_by_pure_dict(values, filled)
    nnx.update(encoder, values)
    return encoder


class FixedTokenizer:
    def __init__(self, ids, mask):
        self.ids, self.mask = ids, mask

    def __call__(self, prompts, max_length):
        return self.ids, self.mask


def main():
    cfg = umt5_xxl().replace(param_dtype="bfloat16")
    start = time.perf_counter()
    encoder = random_encoder(cfg)
    jax.block_until_ready(nnx.state(encoder))
    built = time.perf_counter()
    length, valid = 64, 41
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, (1, length)).astype(np.int32)
    mask = (np.arange(length)[None] < valid).astype(np.int32)
    out, lengths = encode_prompts(encoder, FixedTokenizer(ids, mask), ["64 tokens"], text_len=length)
    out = np.asarray(jax.block_until_ready(out))
    assert lengths.tolist() == [valid] and not out[0, valid:].any()
    done = time.perf_counter()
    print(f"umT5-XXL: init {built - start:.1f} s, forward (incl. compile) {done - built:.1f} s, "
          f"peak RSS {peak_rss_gib():.1f} GiB")
    assert out.shape == (1, length, cfg.dim) and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() > 0
    print("OK")


def test_full_umt5_xxl_forward_runs_in_bf16_params():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_disable_hlo_passes=while-loop-invariant-code-motion"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, __file__], env=env, cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=1800)
    print(done.stdout[-2000:], done.stderr[-2000:])
    assert done.returncode == 0 and done.stdout.rstrip().endswith("OK")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[2]))
    main()
