"""Wan prompt handling: cleaning, umT5 tokenisation (vs transformers on a tiny sentencepiece model), the
missing-tokenizer error, and zeroing past each prompt's length in `encode_prompts`."""

from __future__ import annotations

import numpy as np
import pytest

from camclone_jax.models.text_prompts import PromptTokenizer, clean_prompt, encode_prompts
from camclone_jax.sample.demo import train_tokenizer

spm = pytest.importorskip("sentencepiece")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A camera slowly pans across a mountain lake at sunrise.",
    "Ein Hund läuft im Park & spielt mit einem Ball.",
    "一只猫在窗台上睡觉。",
    "Zoom in on the red car driving fast through the city at night.",
    "Cinematic shot, golden hour lighting, 4K, highly detailed, shallow depth of field.",
]
PROMPTS = [
    "A camera pans over a lake at sunrise, with a dog running",
    "  Zoom   in:\tthe red car &amp;amp; the city\n at night  ",
    "一只猫 在 Park",
    "",
    "fox " * 40,  # longer than max_length below: truncated, EOS kept
]


@pytest.fixture(scope="module")
def spiece_dir(tmp_path_factory):
    """A tiny unigram sentencepiece model with umT5's special ids (pad 0, eos 1, unk 2, no bos)."""
    directory = tmp_path_factory.mktemp("umt5_tokenizer")
    train_tokenizer(directory, CORPUS, vocab_size=120)
    return directory


def test_clean_prompt():
    assert clean_prompt("  a   cat\t\n on  a mat ") == "a cat on a mat"
    assert clean_prompt("Tom &amp;amp; Jerry &lt;3") == "Tom & Jerry <3"  # HTML-unescaped twice
    assert clean_prompt("cafÃ©") == "café"  # ftfy repairs mojibake
    assert clean_prompt("") == ""


def test_tokenizer_pads_truncates_and_appends_eos(spiece_dir):
    tok = PromptTokenizer(spiece_dir)
    ids, mask = tok(PROMPTS, max_length=16)
    assert ids.dtype == mask.dtype == np.int32 and ids.shape == mask.shape == (len(PROMPTS), 16)
    lengths = mask.sum(1)
    for row, n in enumerate(lengths):
        assert (mask[row, :n] == 1).all() and (mask[row, n:] == 0).all()
        assert ids[row, n - 1] == 1 and (ids[row, n:] == 0).all()
    assert lengths[3] == 1  # empty prompt: just </s>
    assert lengths[4] == 16  # truncated to 15 pieces + </s>
    assert (PromptTokenizer(spiece_dir / "spiece.model")(PROMPTS)[0] == tok(PROMPTS)[0]).all()


@pytest.mark.torch
@pytest.mark.parametrize("max_length", [16, 512])
def test_tokenizer_matches_transformers(spiece_dir, max_length):
    transformers = pytest.importorskip("transformers")
    ref = transformers.T5Tokenizer.from_pretrained(str(spiece_dir))
    ids, mask = PromptTokenizer(spiece_dir)(PROMPTS, max_length=max_length)
    want = ref([clean_prompt(p) for p in PROMPTS], padding="max_length", truncation=True, max_length=max_length,
               add_special_tokens=True, return_attention_mask=True)
    np.testing.assert_array_equal(ids, np.asarray(want["input_ids"]))
    np.testing.assert_array_equal(mask, np.asarray(want["attention_mask"]))


def test_missing_tokenizer_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no spiece\.model.*google/umt5-xxl"):
        PromptTokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.model does not exist"):
        PromptTokenizer(tmp_path / "nope.model")


def test_encode_prompts_zeroes_rows_past_each_length(spiece_dir):
    from flax import nnx

    from camclone_jax.models.umt5 import UMT5Encoder, tiny_umt5

    encoder = UMT5Encoder(tiny_umt5(), rngs=nnx.Rngs(0))
    embeddings, lengths = encode_prompts(encoder, PromptTokenizer(spiece_dir), PROMPTS[:2], text_len=64)
    embeddings = np.asarray(embeddings)
    assert embeddings.shape == (2, 64, 64) and embeddings.dtype == np.float32
    assert lengths[0] != lengths[1]
    for row, n in enumerate(lengths):
        assert np.all(embeddings[row, n:] == 0.0) and not np.signbit(embeddings[row, n:]).any()
        assert np.all(np.abs(embeddings[row, :n]).max(axis=-1) > 0)
