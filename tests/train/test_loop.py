"""The training loop: bit-identical checkpoint restore, resume = uninterrupted run, a NaN loss stops cleanly, and
the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from camclone_jax.train import checkpoint
from camclone_jax.train.loop import NonFiniteLossError, train
from tests.train.test_step import fixed_batch, setup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(total_steps: int, ckpt_every: int = 2):
    config, cfg, _ = setup("camclone")
    with config.unlocked():
        config.total_steps, config.ckpt_every, config.log_every = total_steps, ckpt_every, 1
    return config, cfg


def _batches(cfg, n=3):
    return [fixed_batch(cfg, seed=s) for s in range(n)]  # distinct batches: the data position matters


def _model():
    return setup("camclone")[2]  # random head (a zero head would pass no gradient to the trained self_attn)


def _loss(history, step):
    return next(h["loss"] for h in history if h["step"] == step)


def test_resume_matches_uninterrupted_run_and_restore_is_bit_identical(tmp_path):
    config, cfg = _config(6)
    batches = _batches(cfg)
    full_state, full = train(config, tmp_path / "full", batches=batches, model=_model())

    config4, _ = _config(4)
    state4, first = train(config4, tmp_path / "resumed", batches=batches, model=_model())
    assert [h["step"] for h in first] == [1, 2, 3, 4]
    assert sorted(int(p.name) for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    # The saved step-4 state restores bit for bit, with the data position.
    restored, data_state, step = checkpoint.restore_latest(tmp_path / "resumed", checkpoint.abstract(state4))
    assert step == 4 and data_state == {"index": 4}
    for a, b in zip(jax.tree.leaves(state4), jax.tree.leaves(restored), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    _, second = train(config, tmp_path / "resumed", batches=batches, model=_model())
    assert [h["step"] for h in second] == [5, 6]  # resumed at step 4
    for s in (1, 4):
        assert _loss(first, s) == _loss(full, s)
    for s in (5, 6):
        np.testing.assert_allclose(_loss(second, s), _loss(full, s), rtol=0, atol=1e-7)
    assert len({round(h["loss"], 6) for h in full}) > 3  # the run actually trains / draws different batches
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "weighted_loss", "lr", "grad_norm", "steps_per_s", "skipped"} <= set(rows[0])


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    config, cfg = _config(6)
    good = _batches(cfg, 2)
    bad = dict(good[0], latents=good[0]["latents"].at[0, 0, 0, 0, 0].set(np.nan))
    with pytest.raises(NonFiniteLossError, match=r"step 3\b.*last checkpoint is step 2"):
        train(config, tmp_path, batches=[good[0], good[1], bad, good[0]], model=_model())
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2]
    _, abstract_state = _abstract_state(config)
    state, data_state, step = checkpoint.restore_latest(tmp_path, abstract_state)
    assert step == 2 and int(state.step) == 2 and data_state == {"index": 2}
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.trainable))


def _abstract_state(config):
    from camclone_jax.train.step import init_state

    graphdef, state = init_state(_model(), config.optimizer.trainable, config.optimizer)
    return graphdef, checkpoint.abstract(state)


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "camclone_jax.train", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr  # absl's --help exits with status 1
    assert "--workdir" in out.stdout and "--coordinator" in out.stdout


def test_cli_overrides_and_two_step_run_write_metrics(tmp_path, monkeypatch):
    """The CLI in-process (no latent dataset: building one needs the VAE/text encoders and takes too long here):
    `--config.x=...` overrides reach `train`, which runs 2 steps on in-memory batches and writes metrics.jsonl."""
    from absl import flags

    from camclone_jax.train import __main__ as cli
    from camclone_jax.train import loop

    real_train, seen = loop.train, {}

    def fake_train(config, workdir):
        seen["config"] = config
        cfg = setup("camclone")[1]
        return real_train(config, workdir, batches=_batches(cfg, 2), model=_model())

    monkeypatch.setattr(loop, "train", fake_train)
    argv = ["prog", f"--config={ROOT}/configs/tiny.py:variant=camclone", f"--workdir={tmp_path}",
            "--config.total_steps=2", "--config.ckpt_every=2"]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the overrides from sys.argv
    try:
        flags.FLAGS(argv)
        assert not cli.maybe_initialize_distributed() or os.environ.get("JAX_COORDINATOR_ADDRESS")
        cli.main(argv)
    finally:
        flags.FLAGS.unparse_flags()
    assert seen["config"].total_steps == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / "checkpoints" / "2").is_dir()
    # tokens/s from the batch: 2 samples x (target + ref + content: 3 x 2 latent frames) x 2 x 2 tokens.
    for r in rows:
        np.testing.assert_allclose(r["tokens_per_s"], 2 * 3 * 2 * 2 * 2 * r["steps_per_s"], rtol=1e-9)
        assert r["tflops_per_s_per_device"] > 0 and "mfu" not in r  # CPU: no known peak, no MFU
    scalars = _tensorboard_scalars(tmp_path / "tb")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2]
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [r["loss"] for r in rows], rtol=1e-6)
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s", "train/skipped"} <= set(scalars)


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TFRecord event files under `logdir` (length, crc, Event proto, crc per record)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, list] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
