"""The training loop: model + TrainState + jitted step + data + checkpoints + metrics, resumable.

    from camclone_jax.train.loop import train
    state, history = train(config, workdir)               # data from config.input.data (latents or videos)
    state, history = train(config, workdir, batches=[...])  # ready batches in step.py's format (tests)

Resume: the newest checkpoint under `workdir/checkpoints` restores the state and the data position; the rng of
step i is `fold_in(key(config.seed), i)`, so a resumed run draws the same noise as an uninterrupted one. A list
(or other sequence) of ready batches is read as `batches[i % len(batches)]` at step i; a plain iterator is read
from where it stands. Metrics every `config.log_every` steps (loss, weighted loss, lr, grad norm, t, steps/s,
tokens/s, model TFLOP/s per device, MFU where the device's peak is known or `config.peak_tflops` is set,
skipped samples) go to stdout, `workdir/metrics.jsonl` and TensorBoard (`tensorboard --logdir workdir/tb`).
A non-finite loss raises `NonFiniteLossError` before any state from that step is saved: the last good
checkpoint stays the newest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from camclone_jax import flops, sharding
from camclone_jax.models import WanDiT
from camclone_jax.train import checkpoint, export
from camclone_jax.train.step import StepConfig, batch_shardings, init_state, jit_train_step, state_shardings
from configs import common


# Dataset keys (data.py, latent mode) -> step keys (step.py); keys not listed here are dropped.
_BATCH_KEYS = {
    "camclone": {"target": "latents", "ref": "ref_latents", "content": "content_latents", "y": "y",
                 "clip_feature": "clip_feature", "text": "text"},
    "recam": {"target": "latents", "source": "source_latents", "cam_emb": "cam_emb", "text": "text"},
    "syncam": {"views": "latents", "cam_emb": "cam_emb", "text": "text"},
}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; nothing of the failing step was saved."""


def to_step_batch(kind: str, batch: dict) -> dict:
    """A dataset batch (data.py names) -> the step's batch (step.py names), arrays only."""
    return {new: np.asarray(batch[old]) for old, new in _BATCH_KEYS[kind].items()}


def build_model(config) -> nnx.Module:
    """The DiT of `config.model`: random init from `config.seed`, or the converted weights of `config.model_init`."""
    cfg = common.model_config(config)
    if config.get("model_init"):
        from camclone_jax.models.loading import load_dit

        overrides = {k: v for k, v in config.model.overrides.to_dict().items() if k != "variant"}
        return load_dit(config.model_init, **overrides)
    return WanDiT(cfg, rngs=nnx.Rngs(config.seed))


class _Batches:
    """The batch source with a JSON-able position: a dataset iterator (grain state), a sequence (index), or a
    plain iterator (no position). Raw-video batches (`config.input.format = "videos"`) are encoded here."""

    def __init__(self, config, batches, kind: str, *, text_len: int, encoders=None):
        self.kind, self.index, self.seq, self.it = kind, 0, None, None
        self.encoders, self.text_len, self.convert = encoders, text_len, None
        if batches is None:
            inp = config.input
            fmt = inp.get("format", "latents")
            if fmt not in ("latents", "videos"):
                raise ValueError(f'config.input.format must be "latents" or "videos", got {fmt!r}')
            if not inp.get("data"):
                raise ValueError("config.input.data is not set and no batches were given")
            from camclone_jax.train.data import make_dataset

            ds = make_dataset(kind, inp.data, num_frames=inp.num_frames, height=inp.height, width=inp.width,
                              batch_size=inp.batch_size // jax.process_count(), seed=config.seed,
                              latents=fmt == "latents", read_threads=inp.get("read_threads", 4),
                              cache=inp.get("cache", False))
            self.it, self.convert = iter(ds), fmt
            if fmt == "videos" and self.encoders is None:
                from camclone_jax.train.online import load_encoders

                self.encoders = load_encoders(inp.get("encoders"), kind)
        elif isinstance(batches, Sequence):
            self.seq = batches
        else:
            self.it = iter(batches)

    def next(self) -> tuple[dict, int]:
        if self.seq is not None:
            batch = self.seq[self.index % len(self.seq)]
        else:
            batch = next(self.it)
        self.index += 1
        skipped = int(batch.get("skipped", 0)) if isinstance(batch, dict) else 0
        if self.convert == "latents":
            batch = to_step_batch(self.kind, batch)
        elif self.convert == "videos":
            from camclone_jax.train.online import encode_batch

            batch = encode_batch(self.kind, batch, self.encoders, text_len=self.text_len)
        else:
            batch = {k: v for k, v in batch.items() if k not in ("skipped", "caption", "text_len")}
        return batch, skipped

    def get_state(self) -> dict:
        state = {"index": self.index}
        if self.seq is None and hasattr(self.it, "get_state"):
            state["iterator"] = self.it.get_state()
        return state

    def set_state(self, state: dict) -> None:
        self.index = int(state.get("index", 0))
        if "iterator" in state and hasattr(self.it, "set_state"):
            self.it.set_state(state["iterator"])


class _Writers:
    """metrics.jsonl and TensorBoard event files (workdir/tb), process 0 only."""

    def __init__(self, workdir: Path):
        self.enabled = jax.process_index() == 0
        self.jsonl = self.tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.jsonl = open(workdir / "metrics.jsonl", "a")
            self.tb = SummaryWriter(str(workdir / "tb"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        for k, v in metrics.items():
            self.tb.add_scalar(f"train/{k}", v, step)
        self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


class _Throughput:
    """Tokens and model FLOPs of one step, from the first batch's shapes (flops.py: matmul FLOPs, forward and
    backward, no remat recompute), for tokens/s and MFU against the devices' peak (None on CPU: no MFU)."""

    def __init__(self, cfg, batch: dict, trainable, peak_tflops: float | None = None):
        latents = batch["latents"]
        views = latents.shape[1] if cfg.variant == "syncam" else 1
        frames, height, width = latents.shape[-4:-1]
        rows = latents.shape[0] * views * jax.process_count()  # the batch is this process's part
        tokens = flops.dit_sequence_tokens(cfg, frames, height, width)
        self.tokens = rows * tokens
        self.flops = flops.dit_train_flops(cfg, tokens=tokens, batch=rows, trainable=tuple(trainable),
                                           frames=flops.dit_sequence_frames(cfg, frames), num_views=views)
        matmul_dtype = "float32" if cfg.dtype == "float32" else "bfloat16"  # fp16 runs at the bf16 rate
        peak = flops.peak_flops_per_second(dtype=matmul_dtype, override_tflops=peak_tflops or None)
        self.peak = peak * jax.device_count() if peak else None

    def metrics(self, steps_per_s: float) -> dict:
        out = {"tokens_per_s": self.tokens * steps_per_s,
               "tflops_per_s_per_device": self.flops * steps_per_s / jax.device_count() / 1e12}
        if self.peak:
            out["mfu"] = self.flops * steps_per_s / self.peak
        return out


def _put_batch(batch: dict, shardings_: dict | None) -> dict:
    if shardings_ is None:
        return batch
    return {k: jax.make_array_from_process_local_data(shardings_[k], np.asarray(v)) for k, v in batch.items()}


def train(config, workdir: str | Path, *, batches: Iterable[dict] | None = None,
          model: nnx.Module | None = None, encoders=None) -> tuple[Any, list[dict]]:
    """Trains to `config.total_steps` (resuming from `workdir`) -> (final TrainState, logged metrics).

    batches: ready batches in step.py's format (numpy or jax arrays; "skipped" optional) instead of
    `config.input.data`. model: an already built DiT instead of `build_model(config)` (tests, notebooks).
    encoders: VAE / umT5 / tokenizer / CLIP for `config.input.format = "videos"` instead of loading them from
    `config.input.encoders` (online.load_encoders).
    """
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = build_model(config) if model is None else model
    if jax.process_index() == 0:  # what `export.py` rebuilds the DiT from
        (workdir / export.DIT_CONFIG).write_text(model.config.to_json())
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    model_cfg = model.config
    variant = model_cfg.variant
    step_cfg = StepConfig.from_config(config, variant)
    frozen_dtype = config.optimizer.get("frozen_dtype", None) or None
    graphdef, state = init_state(model, config.optimizer.trainable, config.optimizer, frozen_dtype=frozen_dtype,
                                 ema=step_cfg.ema_decay > 0)
    del model

    data = _Batches(config, batches, kind=variant, text_len=model_cfg.text_len, encoders=encoders)
    mesh = st_sh = None
    rules = tuple(tuple(r) if isinstance(r, list) else r for r in config.sharding.get("dit_rules", ())) \
        or sharding.DIT_RULES
    if jax.device_count() > 1:
        mesh = sharding.make_mesh(common.mesh_shape(config.sharding.mesh, jax.device_count()))
        st_sh = state_shardings(graphdef, state, mesh, rules)
        state = jax.device_put(state, st_sh)

    total = int(config.total_steps)
    ckpt = checkpoint.Checkpointer(workdir, every=config.ckpt_every, keep=config.get("keep_checkpoints", 3))
    writers = _Writers(workdir)
    history: list[dict] = []
    try:
        state, data_state, start = ckpt.resume(state)
        if start:
            data.set_state(data_state)

        step_fn = b_sh = None
        base_key = jax.random.key(config.seed)
        log_every = max(1, int(config.get("log_every", 1)))
        t_last, steps_since = time.perf_counter(), 0
        skipped = 0
        for i in tqdm(range(start, total), initial=start, total=total, desc="train",
                      disable=jax.process_index() != 0):
            batch, skipped = data.next()
            if step_fn is None:  # jitted once, with the batch shardings of the first batch
                throughput = _Throughput(model_cfg, batch, config.optimizer.trainable, config.get("peak_tflops"))
                if mesh is not None:
                    b_sh = batch_shardings(batch, mesh)
                step_fn = jit_train_step(graphdef, step_cfg, config.optimizer, mesh=mesh, state_sharding=st_sh,
                                         batch_sharding=b_sh, rules=rules)
            state, metrics = step_fn(state, _put_batch(batch, b_sh), jax.random.fold_in(base_key, i))
            done = i + 1
            steps_since += 1
            must_save = done == total or ckpt.should_save(done)
            if not bool(metrics["finite"]):  # a scalar sync per step: no NaN state is ever saved
                ckpt.wait()
                raise NonFiniteLossError(
                    f"non-finite loss at step {done} (loss={float(metrics['loss'])}, "
                    f"weighted_loss={float(metrics['weighted_loss'])}); nothing of this step was saved, "
                    f"the last checkpoint is step {ckpt.latest_step()} in {workdir / checkpoint.CKPT_DIR}")
            if done % log_every == 0 or done == total:
                metrics = jax.device_get(metrics)
                now = time.perf_counter()
                steps_per_s = steps_since / max(now - t_last, 1e-9)
                row = dict(loss=float(metrics["loss"]), weighted_loss=float(metrics["weighted_loss"]),
                           lr=float(metrics["lr"]), grad_norm=float(metrics["grad_norm"]),
                           t=float(metrics["t"]), steps_per_s=steps_per_s, **throughput.metrics(steps_per_s),
                           skipped=skipped)
                t_last, steps_since = now, 0
                history.append({"step": done, **row})
                writers.write(done, row)
                if jax.process_index() == 0:
                    tqdm.write(f"step {done}: " + " ".join(
                        f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if must_save:
                ckpt.save(done, state, data.get_state(), force=done == total)
    finally:
        writers.close()
        ckpt.close()  # waits for pending async saves: every saved step is complete
    return state, history
