"""Analytic matmul FLOP counts of the Wan DiT (2 FLOPs per multiply-add) and per-device peak FLOP/s, for the
trainer's tokens/s and MFU metrics and for the benchmarks.

Legend: B DiT batch rows (samples x views for SynCamMaster, which folds views into the batch), L self-attention
tokens per row (target plus appended condition frames), S text rows (`cfg.text_len`: the context is zero-padded
to it), I CLIP tokens (`cfg.num_image_tokens`), E width, Fd FFN width, Fr latent frames of the self-attention
sequence after patching (condition frames included), T = L / Fr tokens per frame, V views, P = prod(patch_size).

Only matmuls are counted: norms, RoPE, softmax, modulation and the optimiser are elementwise and, at training
sizes, a few percent of the work (the tests compare against XLA's own count, which includes them). Every matmul
of one forward is a row of `dit_matmuls` with the parameter path of its weight ("blocks/self_attn/q/kernel", as
`camclone_jax.train.optim.trainable_filter` sees it) or None for the two activation x activation matmuls of
attention (q k^T and weights @ v), so that a trainable filter can be applied to the table. A training step
(`dit_train_flops`) adds, per matmul, one more forward's worth for each operand that needs a gradient. Both
counts equal the dot_general FLOPs of the model's forward and gradient jaxprs (tests/test_flops.py).

Per row of the DiT batch:
  patch_embedding       L x (P*in_dim) x E                 reads the latents
  text_embedding        S x text_dim x E, S x E x E        reads the umT5 features
  time_embedding/proj   1 x freq_dim x E, 1 x E x E, 1 x E x 6E
  img_emb (i2v, camclone)  I x image_dim x image_dim, I x image_dim x E
  per block (x num_layers):
    self_attn           4 x (L x E x E); q k^T and weights @ v: 2 x (L x E x L)
    cross_attn          q, o: L x E x E; k, v: S x E x E; 2 x (L x E x S)
                        i2v, camclone: k_img, v_img: I x E x E; 2 x (L x E x I)
    ffn                 L x E x Fd, L x Fd x E
    recam               cam_encoder Fr x cam_dim x E; projector L x E x E
    syncam              cam_encoder Fr x cam_dim x E; mvs_attn 4 x (L x E x E) and 2 x (L x E x V*T)
                        (each frame's T tokens attend to that frame's tokens in all V views); projector L x E x E
  head                  L x E x P*out_dim                  (all L tokens: condition frames are sliced off later)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence

from camclone_jax.models.presets import DiTConfig

PEAK_TFLOPS_ENV = "CAMCLONE_PEAK_TFLOPS"


@dataclasses.dataclass(frozen=True)
class Matmul:
    """One matmul of the forward, [m, k] @ [k, n], summed over the DiT batch.

    weight: parameter path of the [k, n] operand, or None when it is an activation too (attention).
    lhs / rhs: parameter paths that the activation operands depend on; an operand needs a gradient in the
      backward iff one of them is trained. () for model inputs (latents, text features, CLIP tokens, camera);
      rhs is unused when `weight` is set.
    """

    weight: str | None
    m: int
    k: int
    n: int
    lhs: tuple[str, ...] = ()
    rhs: tuple[str, ...] = ()

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n


def dit_sequence_tokens(cfg: DiTConfig, latent_frames: int, latent_height: int, latent_width: int) -> int:
    """Self-attention tokens per DiT row for a target latent of F x H x W (latent units, before patching).

    recam appends the source video (F more frames); camclone appends the camera reference and the content
    video (2F more; zeros in I2V mode, but still attended), as `train/step.py` and `sample/tasks.py` build
    `cond_latents`. SynCamMaster folds views into the batch, so its rows hold one view each.
    """
    pt, ph, pw = cfg.patch_size
    if latent_frames % pt or latent_height % ph or latent_width % pw:
        raise ValueError(f"latent {latent_frames}x{latent_height}x{latent_width} is not divisible by the patch "
                         f"size {cfg.patch_size}")
    frames = latent_frames * _frame_multiple(cfg)
    return (frames // pt) * (latent_height // ph) * (latent_width // pw)


def dit_sequence_frames(cfg: DiTConfig, latent_frames: int) -> int:
    """Latent frames of the self-attention sequence after patching (Fr above), condition frames included."""
    return latent_frames * _frame_multiple(cfg) // cfg.patch_size[0]


def _frame_multiple(cfg: DiTConfig) -> int:
    return {"recam": 2, "camclone": 3}.get(cfg.variant, 1)


def _linear(path: str) -> tuple[str, ...]:
    return f"{path}/kernel", f"{path}/bias"


def _layer_norm(path: str) -> tuple[str, ...]:
    return f"{path}/scale", f"{path}/bias"


def _attention_params(path: str) -> tuple[str, ...]:
    return (*(p for name in ("q", "k", "v", "o") for p in _linear(f"{path}/{name}")), f"{path}/norm_q/scale",
            f"{path}/norm_k/scale")


def _branches(cfg: DiTConfig) -> dict[str, tuple[str, ...]]:
    """Parameter paths per group; "stream" is everything the residual stream depends on (all but the head)."""
    text = _linear("text_embedding/fc_in") + _linear("text_embedding/fc_out")
    time = _linear("time_embedding/fc_in") + _linear("time_embedding/fc_out") + _linear("time_projection")
    image = (_layer_norm("img_emb/norm_in") + _linear("img_emb/mlp/fc_in") + _linear("img_emb/mlp/fc_out")
             + _layer_norm("img_emb/norm_out")) if cfg.has_image_input else ()
    cross = _attention_params("blocks/cross_attn")
    if cfg.has_image_input:
        cross += _linear("blocks/cross_attn/k_img") + _linear("blocks/cross_attn/v_img") + (
            "blocks/cross_attn/norm_k_img/scale",)
    block = ("blocks/modulation", *_attention_params("blocks/self_attn"), *cross, *_layer_norm("blocks/norm3"),
             *_linear("blocks/ffn/fc_in"), *_linear("blocks/ffn/fc_out"))
    if cfg.has_cam_encoder:
        block += _linear("blocks/cam_encoder") + _linear("blocks/projector")
    if cfg.has_mvs:
        block += (*_attention_params("blocks/mvs_attn"), "blocks/modulation_mvs")
    stream = _linear("patch_embedding") + text + time + image + block
    return dict(text=text, time=time, image=image, stream=stream)


def dit_parameter_paths(cfg: DiTConfig) -> tuple[str, ...]:
    """Every parameter path of `WanDiT(cfg)` (the stacked blocks appear once, without a layer index)."""
    return _branches(cfg)["stream"] + ("head/modulation", *_linear("head/head"))


def dit_matmuls(cfg: DiTConfig, *, tokens: int, batch: int = 1, frames: int | None = None,
                num_views: int = 1) -> list[Matmul]:
    """The matmul table of one forward (module docstring). `frames` (Fr) is needed by the camera variants,
    `num_views` by syncam, where `batch` counts views (it must be a multiple of `num_views`)."""
    if cfg.has_cam_encoder and frames is None:
        raise ValueError(f"the {cfg.variant!r} variant needs frames= (latent frames after patching, condition "
                         f"frames included; see dit_sequence_frames)")
    if frames is not None and tokens % frames:
        raise ValueError(f"tokens={tokens} is not a whole number of frames={frames}")
    if cfg.has_mvs and batch % num_views:
        raise ValueError(f"batch={batch} DiT rows is not a multiple of num_views={num_views}")
    if not cfg.has_mvs and num_views != 1:
        raise ValueError(f"num_views={num_views} needs the 'syncam' variant")
    b, l, e, s, i = batch, tokens, cfg.dim, cfg.text_len, cfg.num_image_tokens
    patch = math.prod(cfg.patch_size)
    deps = _branches(cfg)
    stream, text, time, image = deps["stream"], deps["text"], deps["time"], deps["image"]
    cross = "blocks/cross_attn"
    rows = [
        Matmul("patch_embedding/kernel", b * l, patch * cfg.in_dim, e),
        Matmul("text_embedding/fc_in/kernel", b * s, cfg.text_dim, e),
        Matmul("text_embedding/fc_out/kernel", b * s, e, e, lhs=_linear("text_embedding/fc_in")),
        # One timestep per row (train/step.py repeats t over views); a [1]-shaped t at sampling costs less.
        Matmul("time_embedding/fc_in/kernel", b, cfg.freq_dim, e),
        Matmul("time_embedding/fc_out/kernel", b, e, e, lhs=_linear("time_embedding/fc_in")),
        Matmul("time_projection/kernel", b, e, 6 * e, lhs=time[:4]),
    ]
    if cfg.has_image_input:
        norm_in = _layer_norm("img_emb/norm_in")
        rows += [Matmul("img_emb/mlp/fc_in/kernel", b * i, cfg.image_dim, cfg.image_dim, lhs=norm_in),
                 Matmul("img_emb/mlp/fc_out/kernel", b * i, cfg.image_dim, e,
                        lhs=norm_in + _linear("img_emb/mlp/fc_in"))]

    def attention(prefix: str, keys_per_query: int) -> list[Matmul]:
        # q k^T and weights @ v: per head L x D x keys, summed over the N heads that make up E.
        return ([Matmul(f"{prefix}/{p}/kernel", b * l, e, e, lhs=stream) for p in ("q", "k", "v", "o")]
                + [Matmul(None, b * l, e, keys_per_query, lhs=stream, rhs=stream)] * 2)

    block = attention("blocks/self_attn", l)
    # Keys and values over the text (and CLIP tokens) need a gradient only if their own branch is trained.
    text_k = text + _linear(f"{cross}/k") + (f"{cross}/norm_k/scale",)
    text_v = text + _linear(f"{cross}/v")
    block += [Matmul(f"{cross}/q/kernel", b * l, e, e, lhs=stream),
              Matmul(f"{cross}/o/kernel", b * l, e, e, lhs=stream),
              Matmul(f"{cross}/k/kernel", b * s, e, e, lhs=text),
              Matmul(f"{cross}/v/kernel", b * s, e, e, lhs=text),
              Matmul(None, b * l, e, s, lhs=stream, rhs=text_k),
              Matmul(None, b * l, s, e, lhs=stream, rhs=text_v)]
    if cfg.has_image_input:
        image_k = image + _linear(f"{cross}/k_img") + (f"{cross}/norm_k_img/scale",)
        image_v = image + _linear(f"{cross}/v_img")
        block += [Matmul(f"{cross}/k_img/kernel", b * i, e, e, lhs=image),
                  Matmul(f"{cross}/v_img/kernel", b * i, e, e, lhs=image),
                  Matmul(None, b * l, e, i, lhs=stream, rhs=image_k),
                  Matmul(None, b * l, i, e, lhs=stream, rhs=image_v)]
    block += [Matmul("blocks/ffn/fc_in/kernel", b * l, e, cfg.ffn_dim, lhs=stream),
              Matmul("blocks/ffn/fc_out/kernel", b * l, cfg.ffn_dim, e, lhs=stream)]
    if cfg.has_cam_encoder:
        # Once per block: recam before self-attention, syncam in its multi-view branch.
        block += [Matmul("blocks/cam_encoder/kernel", b * frames, cfg.cam_dim, e),
                  Matmul("blocks/projector/kernel", b * l, e, e, lhs=stream)]
    if cfg.has_mvs:
        block += attention("blocks/mvs_attn", num_views * (l // frames))
    rows += block * cfg.num_layers
    rows.append(Matmul("head/head/kernel", b * l, e, patch * cfg.out_dim, lhs=stream + ("head/modulation",)))
    return rows


def dit_forward_flops(cfg: DiTConfig, *, tokens: int, batch: int = 1, frames: int | None = None,
                      num_views: int = 1) -> float:
    """Matmul FLOPs of one DiT forward over `batch` rows of `tokens` self-attention tokens each
    (`dit_sequence_tokens`). recam / syncam also need `frames` (`dit_sequence_frames`); syncam needs
    `num_views`, with `batch` = samples x views."""
    return sum(mm.flops for mm in dit_matmuls(cfg, tokens=tokens, batch=batch, frames=frames, num_views=num_views))


def is_trainable(path: str, trainable: Sequence[str]) -> bool:
    """As `train.optim.trainable_filter`: a path is trainable iff it contains one of the substrings; () = all."""
    return not trainable or any(name in path for name in trainable)


def dit_train_flops(cfg: DiTConfig, *, tokens: int, batch: int, trainable: tuple[str, ...],
                    frames: int | None = None, num_views: int = 1) -> float:
    """Model FLOPs of one training step (forward + backward, no remat recompute) with the parameters whose
    path contains one of `trainable` trained (() trains all, as `train.optim.trainable_filter`).

    Each matmul costs its forward once more per operand that needs a gradient: the weight iff trainable, an
    activation iff it depends on a trainable parameter (`Matmul.lhs` / `rhs`). So `trainable=()` gives 3x the
    forward less the input gradients of the matmuls that read model inputs, and a frozen text / image branch
    (CamCloneMaster trains only self-attention) costs no backward. The stream's activation gradients are
    counted in every block, as the scanned backward computes them even below the lowest trained parameter.
    """
    total = 0.0
    for mm in dit_matmuls(cfg, tokens=tokens, batch=batch, frames=frames, num_views=num_views):
        rhs_grad = is_trainable(mm.weight, trainable) if mm.weight else _depends_on_trained(mm.rhs, trainable)
        total += mm.flops * (1 + _depends_on_trained(mm.lhs, trainable) + rhs_grad)
    return total


def _depends_on_trained(paths: tuple[str, ...], trainable: Sequence[str]) -> bool:
    return any(is_trainable(p, trainable) for p in paths)


# Peak FLOP/s -----------------------------------------------------------------------------------------------
# Dense (no 2:4 sparsity) per-device peaks in FLOP/s, matched in order against `device_kind` (case-insensitive).
# "float32" is the rate XLA's default matmul precision reaches on fp32 operands: TF32 tensor cores on NVIDIA
# (jax_default_matmul_precision="highest" runs ~7x slower, on CUDA cores: H100 SXM 67e12), one bf16 pass on TPU.
_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    (r"h100.*pcie", {"bfloat16": 756e12, "float32": 378e12}),
    (r"h100.*nvl", {"bfloat16": 835e12, "float32": 418e12}),
    (r"h100|h200|gh200", {"bfloat16": 989e12, "float32": 495e12}),  # SXM; H200 = H100 compute, more HBM
    (r"a100", {"bfloat16": 312e12, "float32": 156e12}),
    (r"tpu v4", {"bfloat16": 275e12, "float32": 275e12}),
    (r"tpu v5 ?(lite|e)", {"bfloat16": 197e12, "float32": 197e12}),
    (r"tpu v5", {"bfloat16": 459e12, "float32": 459e12}),  # v5p reports "TPU v5"
    (r"tpu v6 ?(lite|e)", {"bfloat16": 918e12, "float32": 918e12}),
)


def peak_flops_per_second(device=None, dtype: str = "bfloat16", *, override_tflops: float | None = None
                          ) -> float | None:
    """Dense matmul peak of one device in FLOP/s for `dtype` ("bfloat16" or "float32"), for MFU.

    Order: `override_tflops`, then the environment variable CAMCLONE_PEAK_TFLOPS (both in TFLOP/s, for
    hardware missing here or a clock-limited part), then the table above by `device.device_kind`
    (default device: `jax.devices()[0]`). None for CPUs and unknown devices: MFU is then not reported.
    """
    if override_tflops is not None:
        return float(override_tflops) * 1e12
    if os.environ.get(PEAK_TFLOPS_ENV):
        return float(os.environ[PEAK_TFLOPS_ENV]) * 1e12
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"dtype must be 'bfloat16' or 'float32', got {dtype!r}")
    if device is None:
        import jax
        device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    for pattern, peaks in _PEAKS:
        if re.search(pattern, kind):
            return peaks[dtype]
    return None
