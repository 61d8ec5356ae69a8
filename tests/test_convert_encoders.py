"""`python -m convert` on the umT5 and CLIP checkpoints: detection, bf16 round trip through the CLI, errors."""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np

from camclone_jax.models.clip_vision import tiny_clip
from camclone_jax.models.loading import checkpoint_kind, load_clip, load_umt5
from camclone_jax.models.umt5 import tiny_umt5
from convert import clip, umt5
from convert.state_dict_io import read_safetensors, write_safetensors


def random_state(shapes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(ml_dtypes.bfloat16) for k, s in shapes.items()}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert", *map(str, args)], capture_output=True, text=True)


def test_umt5_and_clip_checkpoints_round_trip_through_the_cli(tmp_path):
    text = random_state(umt5.expected_torch_shapes(tiny_umt5()), seed=0)
    # The file holds every block (Wan runs all but the last) and the text tower.
    image = random_state(clip.expected_torch_shapes(tiny_clip().replace(used_layers=tiny_clip().num_layers)), seed=1)
    image["textual.token_embedding.weight"] = np.zeros((4, 4), ml_dtypes.bfloat16)
    write_safetensors(text, tmp_path / "umt5.safetensors")
    write_safetensors(image, tmp_path / "clip.safetensors")

    done = run_cli(tmp_path / "umt5.safetensors", tmp_path / "umt5")
    assert done.returncode == 0, done.stderr
    assert "umT5 encoder: dim 64, 2 layers, 4 heads" in done.stdout and "stored as bfloat16" in done.stdout
    done = run_cli(tmp_path / "clip.safetensors", tmp_path / "clip", "--num-heads", tiny_clip().num_heads)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 non-visual tensors and 12 visual ones" in done.stdout and "CLIP ViT visual tower: dim 64" in done.stdout
    assert (checkpoint_kind(tmp_path / "umt5"), checkpoint_kind(tmp_path / "clip")) == ("umt5", "clip")
    assert load_umt5(tmp_path / "umt5").config.dim == 64 and load_clip(tmp_path / "clip").config.dim == 64

    for name, want in (("umt5", text), ("clip", image)):
        done = run_cli("--to-torch", tmp_path / name, tmp_path / f"{name}_back.safetensors")
        assert done.returncode == 0, done.stderr
        back = read_safetensors(tmp_path / f"{name}_back.safetensors")
        for key, value in back.items():
            assert value.dtype == want[key].dtype and np.array_equal(value.view(np.uint16), want[key].view(np.uint16))
        kept = umt5.expected_torch_shapes(tiny_umt5()) if name == "umt5" else clip.expected_torch_shapes(tiny_clip())
        assert sorted(back) == sorted(kept)


def test_dit_options_are_refused_for_encoders(tmp_path):
    write_safetensors(random_state(umt5.expected_torch_shapes(tiny_umt5()), seed=2), tmp_path / "t5.safetensors")
    done = run_cli(tmp_path / "t5.safetensors", tmp_path / "x", "--variant", "t2v")
    assert done.returncode == 2 and "holds a umT5 text encoder; --variant applies to DiT checkpoints" in done.stderr
