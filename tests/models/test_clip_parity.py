"""CLIPVisionEncoder vs diffsynth 2.1.12's `WanImageEncoder` (original keys), through the real converter, fp32,
every parameter randomised: the tower on preprocessed pixels, the whole `encode_image` path from a non-square
image, PyTorch-bicubic preprocessing, converter round trips and key checks."""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from unittest import mock

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from flax import nnx  # noqa: E402

from camclone_jax.models.clip_vision import (CLIP_MEAN, CLIP_STD, CLIPVisionConfig, CLIPVisionEncoder, clip_vit_h_14,  # noqa: E402
                                             preprocess, resize_bicubic, tiny_clip)
from camclone_jax.models.loading import load_clip  # noqa: E402
from convert import convert  # noqa: E402
from convert.clip import (detect_clip_config, is_clip_state, params_to_torch, torch_to_params,  # noqa: E402
                          visual_only)
from convert.state_dict_io import ConversionError, read_state_dict  # noqa: E402
from tests import oracles  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-5  # relative max error
CFG = tiny_clip()
TINY_SIZES = dict(image_size=CFG.image_size, patch_size=CFG.patch_size, vision_dim=CFG.dim,
                  vision_heads=CFG.num_heads, vision_layers=CFG.num_layers, embed_dim=32)


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """`torchvision` / `torchvision.transforms` with just what diffsynth's CLIP module touches; `Normalize` has
    torchvision's semantics, (x - mean[:, None, None]) / std[:, None, None]."""
    transforms = types.ModuleType("torchvision.transforms")

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, x):
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
            return (x - mean) / std

    class Compose:
        def __init__(self, transforms):
            self.transforms = transforms

    class Unused:
        def __init__(self, *args, **kwargs):
            pass

    transforms.Normalize, transforms.Compose, transforms.Resize, transforms.ToTensor = Normalize, Compose, Unused, Unused
    transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    root = types.ModuleType("torchvision")
    root.transforms = transforms
    return {"torchvision": root, "torchvision.transforms": transforms}


def diffsynth_clip_module():
    """diffsynth's `models.wan_video_image_encoder`; a torchvision stand-in is in sys.modules only while it
    is imported (torchvision is not installed, and must not look installed to other tests)."""
    name = "diffsynth.models.wan_video_image_encoder"
    if name in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return oracles.diffsynth_module("models.wan_video_image_encoder")
    stand_in = _torchvision_stand_in()
    sys.modules.update(stand_in)
    try:
        return oracles.diffsynth_module("models.wan_video_image_encoder")
    finally:
        for key in stand_in:
            sys.modules.pop(key, None)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny `WanImageEncoder` (randomised) and the JAX encoder converted from its checkpoint-style pickle
    (`visual.*` plus stand-in `textual.*` keys and `log_scale`, as in the released file)."""
    module = diffsynth_clip_module()
    factory = functools.partial(module.clip_xlm_roberta_vit_h_14, **TINY_SIZES)
    with mock.patch.object(module, "clip_xlm_roberta_vit_h_14", factory):
        ref = module.WanImageEncoder().eval()
    oracles.randomize_(ref.model.visual, seed=5)
    ckpt = {k[len("model."):]: v for k, v in ref.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    ckpt.update({"textual.token_embedding.weight": torch.randn(11, 8, generator=gen),
                 "textual.blocks.0.attn.q.weight": torch.randn(8, 8, generator=gen)})
    path = tmp_path_factory.mktemp("clip") / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    torch.save(ckpt, path)
    state, _ = read_state_dict(path)
    assert is_clip_state(state)
    visual, dropped = visual_only(state)
    assert dropped == 3  # two textual.* keys and log_scale
    assert detect_clip_config(visual, num_heads=CFG.num_heads) == CFG
    assert convert(path, path.parent / "jax", num_heads=CFG.num_heads, log=lambda *_: None) == CFG
    return ref, load_clip(path.parent / "jax")


def images(batch, height, width, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)


def test_tower_on_preprocessed_pixels(pair):
    ref, model = pair
    pixels = np.random.default_rng(1).normal(size=(2, CFG.image_size, CFG.image_size, 3)).astype(np.float32)
    with torch.no_grad():
        expected = ref.model.visual(oracles.to_torch(pixels).permute(0, 3, 1, 2), use_31_block=True).numpy()
    actual = nnx.jit(lambda m, x: m.encode_pixels(x))(model, jnp.asarray(pixels))
    assert actual.shape == (2, CFG.num_tokens, CFG.dim) and actual.dtype == jnp.float32
    assert oracles.rel_max_err(actual, expected) < TOL


def test_encode_image_from_non_square_input(pair):
    ref, model = pair
    x = images(2, 40, 72, seed=2)
    with torch.no_grad():
        expected = ref.encode_image([t[None] for t in oracles.to_torch(x).permute(0, 3, 1, 2)]).numpy()
    actual = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
    assert oracles.rel_max_err(actual, expected) < TOL


@pytest.mark.parametrize("src, dst", [((40, 72), (56, 56)), ((300, 500), (224, 224)), ((9, 7), (224, 100))])
def test_resize_matches_torch_bicubic(src, dst):
    x = images(2, *src, seed=3)
    expected = F.interpolate(oracles.to_torch(x).permute(0, 3, 1, 2), size=dst, mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1).numpy()
    assert oracles.rel_max_err(resize_bicubic(jnp.asarray(x), dst), expected) < TOL


def test_preprocess_normalises_like_clip():
    x = images(1, 56, 56, seed=4)
    expected = (x * 0.5 + 0.5 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    np.testing.assert_allclose(preprocess(jnp.asarray(x), CFG), expected, rtol=1e-5, atol=2e-6)  # same size: no-op resize


def _visual_state(pair) -> dict[str, np.ndarray]:
    ref, _ = pair
    return {k[len("model."):]: v.numpy() for k, v in ref.state_dict().items() if k.startswith("model.visual.")}


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_round_trip_is_bit_exact(pair, dtype):
    state = {k: v.astype(dtype) for k, v in _visual_state(pair).items()}
    back = params_to_torch(torch_to_params(state, CFG), CFG)
    used = {k for k in state if not k.startswith(("visual.post_norm", "visual.head", "visual.transformer.2."))}
    assert set(back) == used
    for key in used:
        assert back[key].dtype == dtype and back[key].shape == state[key].shape
        assert np.array_equal(back[key].view(np.uint8), np.ascontiguousarray(state[key]).view(np.uint8)), key


def test_diffsynth_wrapper_keys_and_missing_key(pair):
    ref, _ = pair
    wrapper = {k: v.numpy() for k, v in ref.state_dict().items()}  # `model.visual.*`, `model.log_scale`
    state, dropped = visual_only({**wrapper, "textual.head.0.weight": np.zeros((2, 2), np.float32)})
    assert dropped == 2 and all(k.startswith("visual.") for k in state)
    assert not is_clip_state(["blocks.0.self_attn.q.weight", "patch_embedding.weight"])
    del state["visual.transformer.1.attn.to_qkv.weight"]
    state["visual.transformer.0.mlp.0.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as err:
        torch_to_params(state, CFG)
    assert "visual.transformer.1.attn.to_qkv.weight" in str(err.value)
    assert "visual.transformer.0.mlp.0.bias: expected (256,), got (3,)" in str(err.value)
    state["visual.textual_leftover"] = np.zeros(1, np.float32)
    with pytest.raises(ConversionError, match="visual.textual_leftover"):
        torch_to_params(state, CFG)


def test_config_json_and_full_size_shapes():
    cfg = clip_vit_h_14()
    assert CLIPVisionConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="clip_vision"):
        CLIPVisionConfig.from_json('{"model": "wan_vae", "dim": 8}')
    model = nnx.eval_shape(lambda: CLIPVisionEncoder(cfg, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    out = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params,
                         jax.ShapeDtypeStruct((1, 480, 832, 3), jnp.float32))
    assert out.shape == (1, 257, 1280) and out.dtype == jnp.float32
    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n_params == 632_076_800 - 19_677_440 - 2 * 1280 - 1280 * 1024  # tower minus last block, post_norm, head


@pytest.mark.slow
def test_full_vit_h_matches_diffsynth():
    """Full-size `WanImageEncoder` (ViT-H/14, random weights), one 120 x 208 image, fp32 (opt in: -m slow)."""
    module = diffsynth_clip_module()
    ref = module.WanImageEncoder().eval()
    oracles.randomize_(ref.model.visual, seed=6)
    x = images(1, 120, 208, seed=7)
    with torch.no_grad():
        expected = ref.encode_image([oracles.to_torch(x).permute(0, 3, 1, 2)]).numpy()
    state, dropped = visual_only({k: v.numpy() for k, v in ref.state_dict().items()})
    assert dropped == 1  # model.log_scale
    cfg = detect_clip_config(state)
    assert cfg == clip_vit_h_14()
    params = torch_to_params(state, cfg, source="diffsynth WanImageEncoder")
    del ref, state
    model = nnx.eval_shape(lambda: CLIPVisionEncoder(cfg, rngs=nnx.Rngs(0)))
    values = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(values, jax.tree.map(jnp.asarray, params))
    nnx.update(model, values)
    del params
    actual = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))
    err = oracles.rel_max_err(actual, expected)
    print(f"full ViT-H relative max error {err:.2e}")
    assert actual.shape == (1, 257, 1280) and err < TOL
