"""Wan2.1's prompt handling: cleaning, umT5 tokenisation, encoding and zeroing past each prompt's length.

Mirrors `wan/modules/t5.py:T5EncoderModel.__call__` with `HuggingfaceTokenizer(name, seq_len=512,
clean='whitespace')` (spec wan.md 6.4). Importable without torch or transformers: the tokenizer is the
sentencepiece model that `google/umt5-xxl` ships (`spiece.model`), read with `sentencepiece` directly.

    embeddings, lengths = encode_prompts(encoder, PromptTokenizer("google-umt5-xxl/"), ["a cat", "a dog ..."])
    # embeddings [B, 512, 4096] fp32, rows >= lengths[b] exactly 0 (what the DiT receives after Wan's zero-pad)
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

PAD_ID, EOS_ID = 0, 1  # umT5: <pad> = 0, </s> = 1, <unk> = 2, no BOS
TEXT_LEN = 512
SPIECE = "spiece.model"


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning: ftfy.fix_text, HTML-unescape twice, strip, collapse whitespace runs."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class PromptTokenizer:
    """umT5 sentencepiece tokenisation as HF `AutoTokenizer("google/umt5-xxl")` does it with
    `padding='max_length', truncation=True, add_special_tokens=True`: pieces truncated to max_length - 1, then
    `</s>` (id 1), then `<pad>` (id 0) up to max_length.

    `path`: a folder holding `spiece.model` (a download of the `google/umt5-xxl` tokenizer files, or Wan2.1's
    `google/umt5-xxl/` folder) or the path of a sentencepiece `.model` file.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        model_file = path / SPIECE if path.is_dir() else path
        if not model_file.is_file():
            where = f"folder {path} holds no {SPIECE}" if path.is_dir() else f"{path} does not exist"
            raise FileNotFoundError(
                f"umT5 tokenizer not found: {where}. Expected the sentencepiece model '{SPIECE}' of the "
                "google/umt5-xxl tokenizer (huggingface.co/google/umt5-xxl, also shipped in Wan2.1's "
                "'google/umt5-xxl/' folder); pass its folder or the .model file.")
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.model_file = model_file

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def __call__(self, prompts: str | Sequence[str], max_length: int = TEXT_LEN,
                 clean: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids, mask), both int32 [B, max_length]."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = np.full((len(prompts), max_length), PAD_ID, np.int32)
        mask = np.zeros((len(prompts), max_length), np.int32)
        for row, text in enumerate(prompts):
            pieces = self.processor.encode(clean_prompt(text) if clean else text)[:max_length - 1] + [EOS_ID]
            ids[row, :len(pieces)] = pieces
            mask[row, :len(pieces)] = 1
        return ids, mask


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, state, ids, mask):
    # jax.jit over the split module rather than nnx.jit: nnx.jit also returns the module's state, which on CPU
    # measured as a full second copy of the weights (22 GiB peak instead of 11.6 for bf16 umT5-XXL).
    out = nnx.merge(graphdef, state)(ids, mask)
    return jnp.where(mask[..., None] != 0, out, 0.0)


def encode_prompts(encoder, tokenizer: PromptTokenizer, prompts: str | Sequence[str],
                   text_len: int = TEXT_LEN) -> tuple[Float[Array, "B S E"], np.ndarray]:
    """Cleans, tokenises and encodes `prompts` -> (embeddings fp32 [B, text_len, dim], lengths int32 [B]).

    The encoder sees all text_len positions with the mask; rows at and after each prompt's length (tokens plus
    `</s>`) are exactly 0, which is what Wan's trim-then-zero-pad hands the DiT.
    """
    ids, mask = tokenizer(prompts, max_length=text_len)
    embeddings = _encode(*nnx.split(encoder), jnp.asarray(ids), jnp.asarray(mask))
    return embeddings, mask.sum(axis=1).astype(np.int32)
