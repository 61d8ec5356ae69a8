"""`python -m camclone_jax.sample --demo`: the whole CamCloneMaster V2V pipeline with nothing downloaded.

Builds tiny random-weight models of every network the task uses (DiT, VAE, umT5 with a sentencepiece model
trained on the spot, CLIP), writes two procedural clips (a camera reference and a content video), reads them
back through the same loader as real inputs, samples, and writes camera ref | content | result as one mp4.
The weights are untrained: the result is structured noise, not a video of anything. It shows the plumbing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from camclone_jax.models import DiTConfig, WanDiT
from camclone_jax.models.clip_vision import CLIPVisionEncoder, tiny_clip
from camclone_jax.models.text_prompts import PromptTokenizer
from camclone_jax.models.umt5 import UMT5Encoder, tiny_umt5
from camclone_jax.models.wan_vae import WanVAE, tiny_vae
from camclone_jax.sample.conditions import NEGATIVE_PROMPT
from camclone_jax.sample.denoise import Sampler
from camclone_jax.sample.tasks import Inputs, Models, generate
from camclone_jax.sample.video import make_test_video, read_video, side_by_side, write_video

PROMPT = "A red ball bounces across a colourful striped wall while the camera pans to the right."
CORPUS = [PROMPT, NEGATIVE_PROMPT, "a camera slowly pans across a mountain lake at sunrise",
          "zoom in on the car driving through the city at night", "一只猫在窗台上睡觉。"]
FRAMES, HEIGHT, WIDTH = 33, 128, 192


def train_tokenizer(folder: Path, corpus: list[str] = CORPUS, vocab_size: int = 200) -> PromptTokenizer:
    """A tiny unigram sentencepiece model with umT5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 20), model_prefix=str(folder / "spiece"), vocab_size=vocab_size,
        hard_vocab_limit=False, model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, minloglevel=2)
    return PromptTokenizer(folder)


def tiny_models(tokenizer: PromptTokenizer, variant: str = "camclone", seed: int = 0) -> Models:
    """Random tiny networks wired like the real ones (umT5 width = DiT text width, CLIP width = image width)."""
    umt5, clip = tiny_umt5(), tiny_clip().replace(image_size=224)  # 224 px: the DiT's 257 image tokens
    rngs = nnx.Rngs(seed)
    dit = WanDiT(DiTConfig.tiny(variant, text_dim=umt5.dim, image_dim=clip.dim), rngs=rngs)
    head = dit.head.head.kernel  # a fresh head is zero (upstream init): the velocity would be 0 everywhere
    head.set_value(jax.random.normal(jax.random.key(seed), head.shape) * 0.05)
    return Models(dit=dit, vae=WanVAE(tiny_vae(), rngs=rngs), text_encoder=UMT5Encoder(umt5, rngs=rngs),
                  tokenizer=tokenizer, clip=CLIPVisionEncoder(clip, rngs=rngs))


def run_demo(output: str | Path = "out/demo.mp4", steps: int = 20, seed: int = 0, frames: int = FRAMES,
             height: int = HEIGHT, width: int = WIDTH, progress: bool = True) -> Path:
    output = Path(output)
    print("camclone_jax demo: CamCloneMaster V2V on TINY RANDOM-WEIGHT models (nothing is downloaded).")
    print("The weights are untrained, so the result is not a meaningful video; it shows the pipeline runs end "
          "to end: procedural videos -> VAE -> umT5 + CLIP -> DiT denoising -> VAE decode -> mp4.")
    start = time.perf_counter()
    inputs_dir = output.with_name(output.stem + "_inputs")
    ref_path = make_test_video(inputs_dir / "camera_reference.mp4", frames, height, width, seed=seed + 1)
    content_path = make_test_video(inputs_dir / "content.mp4", frames, height, width, seed=seed + 2)
    size = dict(height=height, width=width, num_frames=frames)
    inputs = Inputs(prompt=PROMPT, ref_video=read_video(ref_path, **size),
                    content_video=read_video(content_path, **size))
    with tempfile.TemporaryDirectory() as tmp:
        models = tiny_models(train_tokenizer(Path(tmp)), seed=seed)
    videos = generate(models, "camclone", inputs, sampler=Sampler("euler", steps, 5.0, 5.0), seed=seed,
                      progress=progress, **size)
    result = videos[0]
    write_video(output, side_by_side(inputs.ref_video, inputs.content_video, result), fps=15)
    print(f"{frames} frames of {height}x{width}, {steps} Euler steps, in {time.perf_counter() - start:.1f} s; "
          f"result mean {result.mean():+.3f}, std {result.std():.3f}, finite {bool(np.isfinite(result).all())}")
    print(f"wrote {output} (camera reference | content | result) and the inputs in {inputs_dir}/")
    return output
