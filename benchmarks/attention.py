"""Self-attention alone: the XLA backend's one-shot and blockwise paths against PyTorch SDPA, forward and
forward + backward, at one sequence length (default 5,850 tokens: a CamCloneMaster clip of 9 frames at
240x416, 12 heads of 128 as in Wan 1.3B).

Usage:
    python -m benchmarks.attention [--tokens 5850] [--heads 12] [--head-dim 128] [--repeats 3]

One process, fp32, B=1, min of `--repeats` after a warm-up; JAX synchronised with `block_until_ready`.
The one-shot path is forced by lifting `attention.XLA_LOGITS_BUDGET`; the default budget picks the blockwise
path with its recomputing backward whenever the logits would exceed it.
"""

from __future__ import annotations

import argparse
import time


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--tokens", type=int, default=5850)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from camclone_jax.models import attention

    shape = (1, args.tokens, args.heads, args.head_dim)
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal(shape, dtype=np.float32)) for _ in range(3))
    default_budget = attention.XLA_LOGITS_BUDGET
    rows = []
    for budget, name in ((2**62, "jax xla, one-shot logits"), (default_budget, "jax xla, blockwise")):
        attention.XLA_LOGITS_BUDGET = budget
        attend = lambda q, k, v: attention.dot_product_attention(q, k, v, "xla")  # noqa: E731
        fwd = jax.jit(attend)
        bwd = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v)), argnums=(0, 1, 2)))
        rows.append((name, _best(lambda: jax.block_until_ready(fwd(q, k, v)), args.repeats),
                     _best(lambda: jax.block_until_ready(bwd(q, k, v)), args.repeats)))
    attention.XLA_LOGITS_BUDGET = default_budget

    tq, tk, tv = (torch.tensor(np.asarray(x)).transpose(1, 2).requires_grad_() for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows.append(("torch sdpa", _best(lambda: sdpa(tq, tk, tv), args.repeats),
                 _best(lambda: sdpa(tq, tk, tv).sum().backward(), args.repeats)))

    print(f"self-attention, {args.tokens} tokens, {args.heads} heads x {args.head_dim}, fp32, min of "
          f"{args.repeats}; torch threads {torch.get_num_threads()}\n")
    print("| path | forward s | forward + backward s |\n|---|---|---|")
    for name, f, fb in rows:
        print(f"| {name} | {f:.2f} | {fb:.2f} |")


if __name__ == "__main__":
    main()
