"""`python -m convert`: formats, naming detection, round trip, and errors that name the offending keys."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

from camclone_jax.models import DiTConfig  # noqa: E402
from camclone_jax.models.loading import load_dit, read_config  # noqa: E402
from convert import convert_dit, export_dit  # noqa: E402
from convert.dit import expected_torch_shapes  # noqa: E402
from convert.state_dict_io import ConversionError  # noqa: E402

QUIET = dict(log=lambda *_: None)


def random_state_dict(cfg: DiTConfig, seed=0, dtype=torch.float32) -> dict[str, "torch.Tensor"]:
    gen = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=gen).to(dtype) for key, shape in expected_torch_shapes(cfg).items()}


@pytest.mark.parametrize("variant", ["t2v", "i2v", "recam", "syncam", "camclone"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_bit_exact(variant, dtype, tmp_path):
    cfg = DiTConfig.tiny(variant)
    state = random_state_dict(cfg, dtype=dtype)
    save_file(state, str(tmp_path / "in.safetensors"))
    found = convert_dit(tmp_path / "in.safetensors", tmp_path / "jax", num_heads=cfg.num_heads, **QUIET)
    # Detection from keys and shapes alone (tiny 64-wide image models read as plain i2v, not CamCloneMaster).
    assert found.variant == ("i2v" if variant == "camclone" else variant)
    assert found.replace(variant=variant, param_dtype="float32") == cfg
    export_dit(tmp_path / "jax", tmp_path / "out.safetensors", **QUIET)
    back = load_file(str(tmp_path / "out.safetensors"))
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


@pytest.mark.parametrize("wrapping", ["plain", "lightning", "module_prefix", "model_prefix"])
def test_reads_torch_pickles_in_their_common_wrappings(wrapping, tmp_path):
    cfg = DiTConfig.tiny("t2v")
    state = random_state_dict(cfg, seed=1)
    payload = {"plain": state, "lightning": {"state_dict": state, "epoch": 3},
               "module_prefix": {f"module.{k}": v for k, v in state.items()},
               "model_prefix": {f"model.{k}": v for k, v in state.items()}}[wrapping]
    torch.save(payload, tmp_path / "dit.ckpt")
    convert_dit(tmp_path / "dit.ckpt", tmp_path / "jax", num_heads=cfg.num_heads, **QUIET)
    model = load_dit(tmp_path / "jax")
    np.testing.assert_array_equal(np.asarray(model.blocks.self_attn.q.kernel[...][1]),
                                  state["blocks.1.self_attn.q.weight"].numpy().T)


def test_detects_camclone_from_a_1_3b_wide_image_model(tmp_path):
    cfg = DiTConfig.camclonemaster(num_layers=1, ffn_dim=32, text_dim=8, freq_dim=8)
    save_file(random_state_dict(cfg), str(tmp_path / "cc.safetensors"))
    assert convert_dit(tmp_path / "cc.safetensors", tmp_path / "jax", **QUIET).variant == "camclone"
    assert read_config(tmp_path / "jax").num_heads == 12


def test_bad_checkpoints_name_every_offending_key(tmp_path):
    cfg = DiTConfig.tiny("t2v")
    state = random_state_dict(cfg)
    del state["blocks.1.ffn.0.bias"]
    del state["head.head.weight"]
    state["blocks.0.surprise.weight"] = torch.zeros(3)
    state["blocks.0.self_attn.q.weight"] = torch.zeros(64, 63)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConversionError) as err:
        convert_dit(tmp_path / "bad.safetensors", tmp_path / "jax", num_heads=2, **QUIET)
    message = str(err.value)
    for key in ("blocks.1.ffn.0.bias", "head.head.weight", "blocks.0.surprise.weight", "blocks.0.self_attn.q.weight",
                "expected (64, 64), got (64, 63)", "bad.safetensors"):
        assert key in message
    assert not (tmp_path / "jax").exists()  # nothing half-written


class NotWeights:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_refuses_pickles_that_are_not_plain_weights(tmp_path):
    torch.save({"patch_embedding.weight": torch.zeros(1), "payload": NotWeights()}, tmp_path / "evil.pth")
    with pytest.raises(ConversionError, match=r"evil\.pth.*weights_only"):
        convert_dit(tmp_path / "evil.pth", tmp_path / "jax", **QUIET)


def test_cli_prints_what_it_found_and_fails_cleanly(tmp_path):
    cfg = DiTConfig.tiny("recam")
    save_file(random_state_dict(cfg), str(tmp_path / "recam.safetensors"))
    ok = subprocess.run([sys.executable, "-m", "convert", str(tmp_path / "recam.safetensors"), str(tmp_path / "jax"),
                         "--num-heads", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "variant    recam" in ok.stdout and "original (Wan / DiffSynth)" in ok.stdout
    back = subprocess.run([sys.executable, "-m", "convert", "--to-torch", str(tmp_path / "jax"),
                           str(tmp_path / "back.safetensors")], capture_output=True, text=True)
    assert back.returncode == 0, back.stderr
    assert len(load_file(str(tmp_path / "back.safetensors"))) == len(expected_torch_shapes(cfg))
    missing = subprocess.run([sys.executable, "-m", "convert", str(tmp_path / "nope.pth"), str(tmp_path / "x")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.pth: no such file" in missing.stderr
