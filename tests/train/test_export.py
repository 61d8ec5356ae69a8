"""Exporting a training run: to a converted directory that samples, and to PyTorch through `python -m convert
--to-torch`, whose file converts back to the trained weights exactly."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from camclone_jax.models.loading import load_dit
from camclone_jax.train.export import main as export_main, trained_params
from camclone_jax.train.loop import train
from convert.__main__ import main as convert_main
from convert.api import convert
from tests.train.test_loop import _batches, _config, _model


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config, cfg = _config(2, ckpt_every=1)
    with config.unlocked():
        config.optimizer.ema_decay = 0.5
    state, _ = train(config, run_dir, batches=_batches(cfg, 2), model=_model())
    return run_dir, state


def test_export_to_a_converted_directory_holds_the_trained_weights(run, tmp_path):
    run_dir, state = run
    assert export_main([str(run_dir), str(tmp_path / "dit")]) == 0
    model = load_dit(tmp_path / "dit")
    params = _flat(nnx.state(model, nnx.Param).to_pure_dict())
    trained = _flat(state.trainable)
    assert trained and set(trained) < set(params)
    for k, v in {**_flat(state.frozen), **trained}.items():
        np.testing.assert_array_equal(params[k], v, err_msg=k)
    # The initial weights differ from the trained ones: the export is not just the frozen model.
    initial = _flat(nnx.state(_model(), nnx.Param).to_pure_dict())
    assert any(not np.array_equal(initial[k], v) for k, v in trained.items())

    _, ema, _ = trained_params(run_dir, use_ema=True)
    ema = _flat(ema)
    for k, v in _flat(state.ema).items():
        np.testing.assert_array_equal(ema[k], v, err_msg=k)
    _, step1, step = trained_params(run_dir, step=1)
    assert step == 1 and any(not np.array_equal(_flat(step1)[k], v) for k, v in trained.items())


def test_to_torch_through_the_converter_round_trips(run, tmp_path):
    run_dir, state = run
    out = tmp_path / "trained.safetensors"
    assert convert_main(["--to-torch", str(run_dir), str(out)]) == 0
    from safetensors.numpy import load_file

    keys = load_file(str(out))
    assert "blocks.0.self_attn.q.weight" in keys and "head.head.weight" in keys
    heads = trained_params(run_dir)[0].num_heads  # tiny heads are not dim / 128, the converter's guess
    cfg = convert(out, tmp_path / "back", num_heads=heads, log=lambda *_: None)
    assert cfg.variant == "camclone"
    back = _flat(nnx.state(load_dit(tmp_path / "back"), nnx.Param).to_pure_dict())
    for k, v in _flat(state.trainable).items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_export_errors_name_what_is_missing(run, tmp_path, capsys):
    run_dir, _ = run
    assert export_main([str(tmp_path), str(tmp_path / "x")]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    assert export_main([str(run_dir), str(tmp_path / "x"), "--step", "7"]) == 2
    assert "has no step 7; it has [1, 2]" in capsys.readouterr().err
