"""UMT5Encoder vs PyTorch oracles through the converter, fp32, every parameter randomised (norms included):
transformers' `UMT5EncoderModel` (HF naming) and diffsynth 2.1.12's `WanTextEncoder` (Wan's original naming).
Batch 2 with different lengths past max_distance (128), so every relative-position bucket is used."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ml_dtypes  # noqa: E402
from flax import nnx  # noqa: E402

from camclone_jax.models.umt5 import UMT5Config, UMT5Encoder, tiny_umt5, umt5_xxl  # noqa: E402
from camclone_jax.models.loading import load_umt5  # noqa: E402
from convert import convert  # noqa: E402
from convert.state_dict_io import ConversionError, read_safetensors  # noqa: E402
from convert.umt5 import (detect_umt5_config, expected_torch_shapes, is_umt5_state, params_to_torch,  # noqa: E402
                          to_original_naming, torch_to_params)
from tests import oracles  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-5  # relative max error
LENGTH, LENGTHS = 160, (160, 37)


def load_encoder(path) -> UMT5Encoder:
    """A checkpoint file (HF or original naming) through `python -m convert`'s function and `load_umt5`."""
    state, unknown = to_original_naming(read_safetensors(path))
    assert not unknown and is_umt5_state(state)
    cfg = convert(path, path.parent / f"{path.stem}_jax", log=lambda *_: None)
    assert cfg == detect_umt5_config(state)
    return load_umt5(path.parent / f"{path.stem}_jax")


def inputs(vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, (len(LENGTHS), LENGTH)).astype(np.int32)
    mask = (np.arange(LENGTH)[None] < np.asarray(LENGTHS)[:, None]).astype(np.int32)
    return np.where(mask == 1, ids, 0), mask


def compare(got, want, mask):
    valid = mask.astype(bool)
    err_valid = oracles.rel_max_err(got[valid], want[valid])
    err_all = oracles.rel_max_err(got, want)
    print(f"rel max err: valid {err_valid:.2e}, all positions {err_all:.2e}")
    assert err_valid <= TOL and err_all <= TOL


def test_matches_transformers_umt5_encoder(tmp_path):
    import transformers

    cfg = tiny_umt5()
    hf_cfg = transformers.UMT5Config(vocab_size=cfg.vocab_size, d_model=cfg.dim, d_kv=cfg.head_dim, d_ff=cfg.dim_ffn,
                                     num_layers=cfg.num_layers, num_heads=cfg.num_heads, feed_forward_proj="gated-gelu",
                                     relative_attention_num_buckets=cfg.num_buckets,
                                     relative_attention_max_distance=cfg.max_distance, layer_norm_epsilon=cfg.eps,
                                     dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
    ref = oracles.randomize_(transformers.UMT5EncoderModel(hf_cfg).eval(), seed=1)
    ref.save_pretrained(tmp_path / "hf")  # as google/umt5-xxl is stored: one of the tied embedding keys
    encoder = load_encoder(tmp_path / "hf" / "model.safetensors")
    assert encoder.config == cfg
    ids, mask = inputs(cfg.vocab_size)
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask)).last_hidden_state
    compare(np.asarray(nnx.jit(lambda m, i, k: m(i, k))(encoder, ids, mask)), want.numpy(), mask)


def test_matches_diffsynth_wan_text_encoder(tmp_path):
    cfg = tiny_umt5()
    module = oracles.diffsynth_module("models.wan_video_text_encoder")
    ref = module.WanTextEncoder(vocab=cfg.vocab_size, dim=cfg.dim, dim_attn=cfg.dim_attn, dim_ffn=cfg.dim_ffn,
                                num_heads=cfg.num_heads, num_layers=cfg.num_layers, num_buckets=cfg.num_buckets,
                                shared_pos=False, dropout=0.0)
    oracles.randomize_(ref.eval(), seed=2)
    oracles.save_state_dict(ref, tmp_path / "models_t5_umt5-xxl-enc.safetensors")
    encoder = load_encoder(tmp_path / "models_t5_umt5-xxl-enc.safetensors")
    assert encoder.config == cfg
    ids, mask = inputs(cfg.vocab_size, seed=1)
    with torch.no_grad():
        want = ref(torch.from_numpy(ids).long(), torch.from_numpy(mask))
    compare(np.asarray(nnx.jit(lambda m, i, k: m(i, k))(encoder, ids, mask)), want.numpy(), mask)


def test_key_table_matches_the_reference_modules():
    """Full-size key names and shapes as diffsynth's original module and transformers' HF module declare them."""
    import transformers

    module = oracles.diffsynth_module("models.wan_video_text_encoder")
    hf_cfg = transformers.UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    with torch.device("meta"):
        original = {k: tuple(v.shape) for k, v in module.WanTextEncoder().state_dict().items()}
        hf = transformers.UMT5EncoderModel(hf_cfg).state_dict()
    assert expected_torch_shapes(umt5_xxl()) == original and len(original) == 24 * 10 + 2
    renamed, unknown = to_original_naming({k: np.empty(0) for k in hf})
    assert not unknown and set(renamed) == set(original)
    assert detect_umt5_config({k: np.empty(s, np.float32) for k, s in original.items()}) == umt5_xxl()
    assert is_umt5_state(original) and is_umt5_state(hf) and not is_umt5_state(["blocks.0.self_attn.q.weight"])


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_round_trip_is_bit_exact(dtype):
    cfg = tiny_umt5()
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(dtype) for k, s in expected_torch_shapes(cfg).items()}
    params = torch_to_params(state, cfg)
    assert params["blocks"]["attn"]["q"]["kernel"].dtype == dtype
    back = params_to_torch(params, cfg)
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key].view(np.uint8), value.view(np.uint8)), key


def test_hf_tied_embedding_either_key_and_mismatch():
    cfg = tiny_umt5()
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in expected_torch_shapes(cfg).items()}
    hf = {"encoder.final_layer_norm.weight": state["norm.weight"],
          "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
              state["blocks.0.pos_embedding.embedding.weight"]}
    for key in ("shared.weight", "encoder.embed_tokens.weight"):
        renamed, _ = to_original_naming({**hf, key: state["token_embedding.weight"]})
        assert renamed["token_embedding.weight"] is state["token_embedding.weight"]
    with pytest.raises(ConversionError, match="tie"):
        to_original_naming({**hf, "shared.weight": state["token_embedding.weight"],
                            "encoder.embed_tokens.weight": state["token_embedding.weight"] + 1})
    renamed, unknown = to_original_naming({**hf, "decoder.block.0.layer.0.SelfAttention.q.weight": np.zeros(1)})
    assert unknown == ["decoder.block.0.layer.0.SelfAttention.q.weight"]


def test_bad_checkpoint_names_every_offending_key():
    cfg = tiny_umt5()
    state = {k: np.zeros(s, np.float32) for k, s in expected_torch_shapes(cfg).items()}
    del state["blocks.1.ffn.fc2.weight"]
    state["blocks.0.attn.q.weight"] = np.zeros((3, 3), np.float32)
    state["blocks.0.extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(ConversionError) as err:
        torch_to_params(state, cfg, source="t5.pth")
    message = str(err.value)
    for text in ("t5.pth", "blocks.1.ffn.fc2.weight", "blocks.0.extra.weight", "blocks.0.attn.q.weight: expected"):
        assert text in message


def test_config_json_round_trip():
    cfg = tiny_umt5().replace(param_dtype="bfloat16")
    assert UMT5Config.from_json(cfg.to_json()) == cfg and '"model": "umt5"' in cfg.to_json()
    with pytest.raises(ValueError, match="umT5"):
        UMT5Config.from_json('{"model": "wan_vae", "dim": 8}')
