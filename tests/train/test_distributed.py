"""Multi-device and multi-process training through `train()`, against the 1-device run.

Every run is a subprocess of tests/train/distributed_worker.py (the `python -m camclone_jax.train` command line
with in-memory batches), started together at module setup so that they share the machine's cores:
  one:   1 process, 1 CPU device (the reference; no mesh)
  mesh8: 1 process, 8 forced CPU devices, config.sharding.mesh data=2 fsdp=4
  two:   2 processes x 1 CPU device, jax.distributed over a loopback coordinator (gloo collectives), fsdp=2;
         each process feeds its half of every global batch and both write to the same workdir.
All train the tiny camclone DiT for 3 steps on the same global batches of 8; every run restores its step-3
checkpoint bit for bit, and the 2-process checkpoint also restores on one device here. fp32 throughout; sharded
runs sum in another order, so losses match to 1e-5 relative and trained weights to 2e-5 absolute (measured on
CPU: loss <= 2.1e-7 relative, weights <= 2.1e-6).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(ROOT, "tests", "train", "distributed_worker.py")
STEPS, LOSS_RTOL, WEIGHT_ATOL = 3, 1e-5, 2e-5
TIMEOUT_S = 300  # per run; a healthy run takes ~15-40 s on 2 CPU cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Run:
    """Worker processes of one run, started at once; `result()` waits and loads process 0's .npz."""

    def __init__(self, name: str, base: Path, *, devices: int = 1, processes: int = 1, flags: tuple = ()):
        self.name, self.workdir, self.out = name, base / name, base / f"{name}.npz"
        env = {k: v for k, v in os.environ.items()
               if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
                   PYTHONPATH=ROOT, TQDM_DISABLE="1")
        cmd = [sys.executable, WORKER, f"--config={ROOT}/configs/tiny.py:variant=camclone",
               f"--workdir={self.workdir}", f"--out={self.out}", f"--config.total_steps={STEPS}",
               "--config.ckpt_every=2", "--config.log_every=1", "--config.input.batch_size=8", *flags]
        if processes > 1:
            cmd += [f"--coordinator=127.0.0.1:{_free_port()}", f"--num_processes={processes}"]
        self.logs = [base / f"{name}.{i}.log" for i in range(processes)]
        self.procs = []
        for i, log in enumerate(self.logs):
            extra = [f"--process_id={i}"] if processes > 1 else []
            with open(log, "w") as f:
                self.procs.append(subprocess.Popen(cmd + extra, cwd=ROOT, env=env, stdout=f,
                                                   stderr=subprocess.STDOUT))
        self.t0, self.wall_s, self._result = time.perf_counter(), None, None

    def _report(self) -> str:
        return "\n".join(f"--- {self.name} process {i} (rc {p.returncode}), last lines of {log}:\n"
                         + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                         for i, (p, log) in enumerate(zip(self.procs, self.logs)))

    def result(self) -> dict:
        if self._result is None:
            # Poll all processes: one that fails leaves its peer waiting in a collective, so stop at once.
            while any(p.poll() is None for p in self.procs) and not any(p.returncode for p in self.procs):
                if time.perf_counter() - self.t0 > TIMEOUT_S:
                    self.kill()
                    pytest.fail(f"run {self.name} timed out after {TIMEOUT_S} s\n{self._report()}")
                time.sleep(0.2)
            self.wall_s = time.perf_counter() - self.t0
            if any(p.returncode for p in self.procs) or not self.out.exists():
                self.kill()
                pytest.fail(f"run {self.name} failed\n{self._report()}")
            with np.load(self.out) as z:
                self._result = {k: z[k] for k in z.files}
            print(f"{self.name}: {self.wall_s:.1f} s wall, train {float(self._result['train_s']):.1f} s")
        return self._result

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("distributed")
    started = {
        "one": _Run("one", base),
        "two": _Run("two", base, processes=2),
        "mesh8": _Run("mesh8", base, devices=8,
                      flags=("--config.sharding.mesh.data=2", "--config.sharding.mesh.fsdp=4")),
    }
    yield started
    for run in started.values():
        run.kill()


def _weights(result: dict) -> dict:
    return {k: v for k, v in result.items() if k.startswith("w/")}


def _flat_weights(tree) -> dict:
    """The worker's `w/<path>` naming of a pytree's leaves, as numpy arrays."""
    import jax

    return {"w/" + "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _restore_on_one_device(workdir: Path):
    """(state, data_state, step) of the newest checkpoint under `workdir`, restored onto this process's first
    device; the restore target's shapes come from `jax.eval_shape` of the tiny camclone TrainState."""
    import jax
    from flax import nnx

    from camclone_jax.models import WanDiT
    from camclone_jax.train import checkpoint
    from camclone_jax.train.step import init_state
    from configs import tiny
    from configs.common import model_config

    config = tiny.get_config("variant=camclone")
    cfg = model_config(config)
    shapes = jax.eval_shape(lambda: init_state(WanDiT(cfg, rngs=nnx.Rngs(0)), config.optimizer.trainable,
                                               config.optimizer)[1])
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
    return checkpoint.restore_latest(workdir, target)


def _assert_matches_one_device(run: dict, one: dict) -> None:
    assert list(run["steps"]) == list(one["steps"]) == list(range(1, STEPS + 1))
    print("losses", one["losses"].tolist(), run["losses"].tolist(),
          "max rel diff", float(np.max(np.abs(run["losses"] / one["losses"] - 1))))
    np.testing.assert_allclose(run["losses"], one["losses"], rtol=LOSS_RTOL, atol=0)
    assert len(set(np.round(one["losses"], 6))) == STEPS  # distinct batches: the run trains on each of them
    w_run, w_one = _weights(run), _weights(one)
    assert w_run.keys() == w_one.keys() and w_one
    diff = max(float(np.max(np.abs(w_run[k] - w_one[k]))) for k in w_one)
    moved = max(float(np.max(np.abs(w_one[k]))) for k in w_one)
    print("max weight diff", diff)
    assert diff < WEIGHT_ATOL and moved > 0, (diff, moved)


def _assert_checkpoint(result: dict, workdir: Path) -> None:
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, STEPS]  # every ckpt_every=2 steps, and the last one
    assert int(result["ckpt_step"]) == STEPS and int(result["ckpt_data_index"]) == STEPS
    assert float(result["restore_maxdiff"]) == 0.0  # bit-identical restore into the run's own shardings


def test_two_processes_on_localhost_match_one_process(runs):
    one, two = runs["one"].result(), runs["two"].result()
    assert int(one["process_count"]) == 1 and int(one["device_count"]) == 1
    assert int(two["process_count"]) == 2 and int(two["device_count"]) == 2 and int(two["local_device_count"]) == 1
    assert bool(two["split_across_processes"])  # fsdp shards the state over the two processes
    _assert_matches_one_device(two, one)
    workdir = runs["two"].workdir
    _assert_checkpoint(two, workdir)
    # Both processes ran in the same workdir: one metrics row per step (process 0 writes them), no leftovers.
    rows = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == STEPS, rows
    assert not [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]
    # The 2-process checkpoint also restores on another topology (this process, one device): the same weights.
    state, data_state, step = _restore_on_one_device(workdir)
    assert step == STEPS and data_state == {"index": STEPS} and int(state.step) == STEPS
    restored = _flat_weights(state.trainable)
    assert restored.keys() == _weights(two).keys()
    for k, v in restored.items():
        np.testing.assert_array_equal(v, two[k], err_msg=k)


def test_train_on_an_eight_device_mesh_matches_one_device(runs):
    one, mesh8 = runs["one"].result(), runs["mesh8"].result()
    assert int(mesh8["device_count"]) == 8 and int(mesh8["process_count"]) == 1
    meshes = mesh8["meshes"].tolist()  # config.sharding.mesh reached the mesh that train() built
    assert meshes == [repr(sorted(dict(data=2, fsdp=4, tensor=1, sequence=1).items()))], meshes
    _assert_matches_one_device(mesh8, one)
    _assert_checkpoint(mesh8, runs["mesh8"].workdir)
