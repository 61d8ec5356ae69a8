"""One process of a (possibly multi-process) tiny camclone training run, for tests/train/test_distributed.py.

It goes through the command line of `python -m camclone_jax.train` (its flags, `--config` overrides and
`jax.distributed` setup), then trains on in-memory batches instead of a dataset:

    python tests/train/distributed_worker.py --config configs/tiny.py:variant=camclone --workdir DIR \
        --out run.npz [--config.total_steps=3 --config.sharding.mesh.data=2 --config.sharding.mesh.fsdp=4]
    ... --coordinator 127.0.0.1:PORT --num_processes 2 --process_id I     # one command per process

Every process builds the same deterministic model and fixed global batches as tests/train/test_loop.py
(the model of `setup("camclone")`, built under jit with the same values; `fixed_batch(cfg, seed=s)` with
`config.input.batch_size` rows), keeps its process-local
rows `[pid * B / n, (pid + 1) * B / n)` of each global batch and calls `train()`. Afterwards all processes
restore the newest checkpoint (a collective, with the run's shardings) and compare it with the trained state.
Process 0 writes `--out` (.npz): the logged steps and losses, the final trainable weights gathered to the host
(keys `w/<path>`), device / process counts, the mesh, whether the state was split across processes, and the
restore check. Devices per process come from the environment (XLA_FLAGS=--xla_force_host_platform_device_count).
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from camclone_jax.train import __main__ as cli  # noqa: E402  (defines --config, --workdir, --coordinator, ...)

_OUT = flags.DEFINE_string("out", None, ".npz written by process 0")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 3, "distinct global batches, cycled")
flags.mark_flags_as_required(["out"])


def _gather(tree, n: int):
    """Host numpy copies of a (possibly cross-process sharded) pytree, on every process."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if n > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _model(variant: str = "camclone", seed: int = 0, head_scale: float = 0.05):
    """The model of tests/train/test_step.py's `setup(variant, seed, head_scale)`, built under `nnx.jit`: the same
    values (jax's random streams do not depend on jit), in about half the time of the op-by-op init."""
    import jax
    from flax import nnx

    from camclone_jax.models import WanDiT
    from configs import tiny
    from configs.common import model_config

    cfg = model_config(tiny.get_config(f"variant={variant}"))
    model = nnx.jit(lambda: WanDiT(cfg, rngs=nnx.Rngs(seed)))()
    head = model.head.head.kernel
    head.set_value(jax.random.normal(jax.random.key(seed + 1), head.shape) * head_scale)
    return cfg, model


def main(argv) -> None:
    del argv
    t0 = time.perf_counter()
    distributed = cli.maybe_initialize_distributed()
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from camclone_jax.train import checkpoint
    from camclone_jax.train.loop import train
    from tests.train.test_step import fixed_batch

    config, workdir = cli._CONFIG.value, cli._WORKDIR.value
    n, pid = jax.process_count(), jax.process_index()
    assert distributed == (n > 1), (distributed, n)
    global_batch = int(config.input.batch_size)
    assert global_batch % n == 0, f"global batch {global_batch} does not split over {n} processes"
    cfg, model = _model()  # the model of tests/train/test_loop.py (random, non-zero head)
    rows = slice(pid * global_batch // n, (pid + 1) * global_batch // n)
    batches = []
    for s in range(_NUM_BATCHES.value):
        batch = fixed_batch(cfg, batch=global_batch, seed=s)
        batches.append({k: np.asarray(v)[rows] for k, v in batch.items()})

    t_train = time.perf_counter()
    state, history = train(config, workdir, batches=batches, model=model)
    t_train = time.perf_counter() - t_train

    # The newest checkpoint restores (every process takes part) and equals the trained state.
    restored = checkpoint.restore_latest(workdir, checkpoint.abstract(state))
    assert restored is not None, f"no checkpoint under {workdir}"
    restored_state, data_state, ckpt_step = restored
    leaves, restored_leaves = _gather((jax.tree.leaves(state), jax.tree.leaves(restored_state)), n)
    restore_diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                       for a, b in zip(leaves, restored_leaves, strict=True) if np.size(a))

    trainable = _gather(state.trainable, n)
    flat = {"w/" + "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(trainable)[0]}
    meshes = {repr(sorted(dict(x.sharding.mesh.shape).items())) for x in jax.tree.leaves(state)
              if hasattr(x.sharding, "mesh")}
    split = any(not x.is_fully_addressable for x in jax.tree.leaves(state))
    if pid == 0:
        np.savez(_OUT.value, steps=np.array([h["step"] for h in history]),
                 losses=np.array([h["loss"] for h in history], np.float64),
                 process_count=n, device_count=jax.device_count(), local_device_count=jax.local_device_count(),
                 meshes=np.array(sorted(meshes)), split_across_processes=split,
                 ckpt_step=ckpt_step, ckpt_data_index=int(data_state.get("index", -1)),
                 restore_maxdiff=restore_diff, train_s=t_train, total_s=time.perf_counter() - t0, **flat)
    print(f"process {pid}/{n}: steps {[h['step'] for h in history]} losses {[h['loss'] for h in history]} "
          f"meshes {sorted(meshes)} train {t_train:.1f}s", flush=True)
    if n > 1:
        multihost_utils.sync_global_devices("distributed_worker done")  # no process exits while others read


if __name__ == "__main__":
    app.run(main)
