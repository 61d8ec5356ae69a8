"""Command line: `python -m camclone_jax.train --config configs/tiny.py:variant=camclone --workdir DIR
[--config.total_steps=20 ...]`.

Multi-host: `jax.distributed.initialize()` runs when `--coordinator` (or JAX_COORDINATOR_ADDRESS) is given, or on
a cluster jax detects by itself when `--distributed` is passed; `--num_processes` / `--process_id` complete the
explicit form. Every process runs the same command (bar its `--process_id`), e.g. two processes on one machine
(CPU: gloo collectives): `... --coordinator 127.0.0.1:12355 --num_processes 2 --process_id 0` and the same with
`--process_id 1` (tests/train/test_distributed.py runs this).
"""

from __future__ import annotations

import logging
import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/tiny.py:variant=camclone",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics.jsonl, tb/")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "multi-host: coordinator address host:port "
                                   "(default $JAX_COORDINATOR_ADDRESS)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-host: this process's index")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with auto-detection "
                                 "(SLURM, TPU pods, ...)")
flags.mark_flags_as_required(["config", "workdir"])


def maybe_initialize_distributed() -> bool:
    import jax

    coordinator = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not (coordinator or _DISTRIBUTED.value):
        return False
    kwargs = {}
    if coordinator:
        kwargs["coordinator_address"] = coordinator
    num = _NUM_PROCESSES.value or os.environ.get("JAX_NUM_PROCESSES")
    pid = _PROCESS_ID.value if _PROCESS_ID.value is not None else os.environ.get("JAX_PROCESS_ID")
    if num is not None:
        kwargs["num_processes"] = int(num)
    if pid is not None:
        kwargs["process_id"] = int(pid)
    if jax.config.jax_cpu_collectives_implementation is None:
        # Cross-process collectives on CPU (e.g. a localhost run) need an implementation; gloo is jax's
        # default in recent versions, and the setting only affects the CPU backend.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def main(argv) -> None:
    del argv
    logging.basicConfig(level=logging.INFO)
    maybe_initialize_distributed()
    if _CONFIG.value.get("task") == "vae":  # configs/synthetic_vae.py: a Wan VAE from scratch
        from camclone_jax.train.vae_train import train_vae

        train_vae(_CONFIG.value, _WORKDIR.value)
        return
    from camclone_jax.train.loop import train

    train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
