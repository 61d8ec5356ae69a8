"""Training a Wan VAE from scratch with a reconstruction objective (`config.task = "vae"`), and exporting it.

    python -m camclone_jax.train --config configs/synthetic_vae.py --workdir /tmp/vae_run
    from camclone_jax.train.vae_train import train_vae, export_vae
    state, history = train_vae(config, workdir)     # resumes from workdir/checkpoints
    export_vae(workdir, out_dir)                     # a converted VAE directory: load_vae(out_dir) works

Model: `WanVAE(VAEConfig(**config.vae))`, the Wan2.1 causal 3D VAE unchanged (x4 time, x8 space, 16 latent
channels); only its width / number of residual blocks are small.

Objective, per step (one pure jitted function, the state donated): encode a batch of clips [B, T, H, W, 3] in
[-1, 1] to the posterior moments (`quant_conv` output: mu and log-variance, 16 channels each), draw
z = mu + exp(logvar / 2) eps, decode z (no clamp) and minimise
    l1 * mean|x - x_hat| + mse * mean (x - x_hat)^2 + kl * mean KL(N(mu, var) || N(0, 1)).
The encoder / decoder run chunked in time exactly as `WanVAE.encode` / `decode` do (first frame, then 4-frame
pieces; one latent frame at a time), so training sees the causal caches of inference.

Data: the unique videos of `config.input.data`/train.csv (the synthetic dataset's CameraClone index: target,
ref and content columns), decoded once into memory; the batch of step i is a pure function of (seed, i):
random videos, random `num_frames` (4k+1) windows in time, optional random spatial crops
(`input.crop_height/crop_width`: the VAE is convolutional, crops make steps cheap) and horizontal flips. The
data position is the step, so a resumed run sees exactly the batches of an uninterrupted one. Checkpoints
(orbax, async, every `config.ckpt_every` steps, the last `keep_checkpoints` kept) hold (step, params,
opt_state); restores are exact.

Decoder fine-tuning (`config.trainable = "decoder"`, from the export named by `config.init_from`): the
encoder and `quant_conv` are frozen (no gradient through mu, and the optimiser leaves them untouched, weight
decay included), so every latent of the exported VAE stays bit-identical and a DiT trained on them keeps
working, while the decoder and `post_quant_conv` learn to reconstruct sharper video from the same code (as
Stability AI's fine-tuned SD VAE decoders). The export then keeps the latent statistics of `init_from`.

Latent statistics: `WanVAE.encode` normalises with Wan2.1's fixed per-channel `LATENTS_MEAN` / `LATENTS_STD`
(module constants, not parameters). Export therefore measures the per-channel mean m and std s of the trained
posterior mean over `config.export.stats_clips` training clips and folds the affine map mu -> (mu - m) / s *
STD + MEAN into `quant_conv` (mu and log-variance channels) and its inverse into `post_quant_conv`. Both are
1x1x1 convolutions, so the folded model reconstructs exactly as the trained one while `encode` returns
latents with per-channel mean ~0 and std ~1 on the training data, as the DiT expects, and the architecture,
parameter names and constants stay Wan's (the converter, `load_vae` and the DiT pipeline see a normal VAE).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from camclone_jax.models.wan_vae import (LATENTS_MEAN, LATENTS_STD, TIME_STRIDE, VAEConfig, WanVAE, _chunked,
                                         check_video)
from camclone_jax.train import checkpoint
from camclone_jax.train.optim import global_norm, make_optimizer

CKPT_DIR = checkpoint.CKPT_DIR
VAE_CONFIG = "vae_config.json"  # the VAEConfig of the run, written into the workdir (export rebuilds from it)
EXPORT_DIR = "vae"  # default export folder inside the workdir


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; nothing of the failing step was saved."""


@flax.struct.dataclass
class VAEState:
    step: jax.Array
    params: dict  # pure dict of the VAE's nnx.Param leaves (fp32)
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class LossConfig:
    l1: float = 1.0
    mse: float = 1.0
    kl: float = 1e-6
    sample_posterior: bool = True

    @classmethod
    def from_config(cls, config) -> "LossConfig":
        loss = config.get("loss") or {}
        return cls(**{f.name: type(f.default)(loss[f.name]) for f in dataclasses.fields(cls) if f.name in loss})


# Model ---------------------------------------------------------------------------------------------------------
def vae_config(config) -> VAEConfig:
    """VAEConfig from `config.vae` (VAEConfig field overrides; lists become tuples)."""
    fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(config.get("vae") or {}).items()}
    return VAEConfig(**fields)


def posterior(vae: WanVAE, video: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mu, logvar) of the raw (un-normalised) posterior, fp32 [B, F, h, w, z] each; as `WanVAE.encode`."""
    check_video(video)
    moments = vae.quant_conv(_chunked(vae.encoder, video, TIME_STRIDE))[0].astype(jnp.float32)
    z = vae.config.z_dim
    return moments[..., :z], jnp.clip(moments[..., z:], -30.0, 20.0)


def decode_raw(vae: WanVAE, z: jax.Array) -> jax.Array:
    """Video (unclamped, fp32) from a raw latent z (before normalisation); as `WanVAE.decode`."""
    return _chunked(vae.decoder, vae.post_quant_conv(z)[0], 1).astype(jnp.float32)


def loss_fn(params, graphdef, rest, cfg: LossConfig, video, rng, decoder_only: bool = False):
    vae = nnx.merge(graphdef, params, rest)
    mu, logvar = posterior(vae, video)
    if decoder_only:  # XLA then drops the encoder's backward pass
        mu, logvar = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(logvar)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape) if cfg.sample_posterior else mu
    recon = decode_raw(vae, z)
    diff = recon - video
    l1, mse = jnp.mean(jnp.abs(diff)), jnp.mean(jnp.square(diff))
    kl = 0.5 * jnp.mean(jnp.square(mu) + jnp.exp(logvar) - 1.0 - logvar)
    loss = cfg.l1 * l1 + cfg.mse * mse + cfg.kl * kl
    return loss, dict(l1=l1, mse=mse, kl=kl, psnr=psnr_from_mse(jnp.mean(jnp.square(jnp.clip(recon, -1, 1) - video))),
                      mu_std=jnp.std(mu), logvar_mean=jnp.mean(logvar))


def psnr_from_mse(mse):
    """PSNR in dB of [-1, 1] signals (peak-to-peak 2)."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))


def train_step(state: VAEState, video: jax.Array, rng: jax.Array, rest, *, graphdef, cfg: LossConfig,
               tx: optax.GradientTransformation, lr_fn, decoder_only: bool = False) -> tuple[VAEState, dict]:
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, graphdef, rest, cfg, video, rng,
                                                                   decoder_only)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(loss=loss, grad_norm=global_norm(grads), lr=lr_fn(state.step), finite=jnp.isfinite(loss), **aux)
    return VAEState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return tuple(_freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


TRAINABLE = ("all", "decoder")
FROZEN_BY_DECODER_ONLY = ("encoder", "quant_conv")  # top-level VAE modules `trainable="decoder"` keeps fixed


def trainable(config) -> str:
    value = config.get("trainable", "all") or "all"
    if value not in TRAINABLE:
        raise ValueError(f"config.trainable must be one of {TRAINABLE}, got {value!r}")
    if value == "decoder" and not config.get("init_from"):
        raise ValueError("config.trainable='decoder' fine-tunes the decoder of a trained VAE: set config.init_from "
                         "to its export folder (train.vae_train export, or a converted VAE directory)")
    return value


def _decoder_labels(params: dict) -> dict:
    return {k: jax.tree.map(lambda _: "frozen" if k in FROZEN_BY_DECODER_ONLY else "trained", v)
            for k, v in params.items()}


@functools.lru_cache(maxsize=8)
def _jitted_step(graphdef, cfg: LossConfig, optimizer: tuple, decoder_only: bool = False):
    """One jitted step per (model, loss, optimiser) setting, so a resume in the same process reuses the compile."""
    import ml_collections

    from camclone_jax.train.optim import learning_rate

    opt = ml_collections.ConfigDict(dict(optimizer))
    tx = make_optimizer(opt)
    if decoder_only:  # the frozen leaves get zero updates (no AdamW decay either) and no optimiser moments
        tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, _decoder_labels)
    fn = functools.partial(train_step, graphdef=graphdef, cfg=cfg, tx=tx, lr_fn=learning_rate(opt),
                           decoder_only=decoder_only)
    return tx, jax.jit(fn, donate_argnums=0)


def make_step(graphdef, rest, config):
    """(optax transformation, jitted `step(state, video, rng) -> (state, metrics)`)."""
    tx, jitted = _jitted_step(graphdef, LossConfig.from_config(config), _freeze(config.optimizer.to_dict()),
                              trainable(config) == "decoder")
    return tx, functools.partial(jitted, rest=rest)


def initial_params(config, params: dict) -> dict:
    """`params` (a fresh init), or those of the VAE export `config.init_from`, whose config must be the run's
    (the loader then restores into exactly the run's parameter tree)."""
    source = config.get("init_from")
    if not source:
        return params
    from camclone_jax.models.loading import load_vae_params, read_vae_config

    found, wanted = read_vae_config(source), vae_config(config)
    if found != wanted:
        raise ValueError(f"config.init_from={source} holds a VAE with config {found}, but config.vae builds "
                         f"{wanted}")
    return jax.tree.map(lambda ref, x: jnp.asarray(x, ref.dtype), params, load_vae_params(source, wanted))


def init_state(config) -> tuple[nnx.GraphDef, Any, VAEState, Any]:
    """(graphdef, non-param state, VAEState at step 0, jitted step)."""
    vae = WanVAE(vae_config(config), rngs=nnx.Rngs(config.seed))
    graphdef, params, rest = nnx.split(vae, nnx.Param, ...)
    params = initial_params(config, jax.tree.map(jnp.copy, params.to_pure_dict()))
    tx, step_fn = make_step(graphdef, rest, config)
    state = VAEState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    # Committed to the device, as restored checkpoints are: a resumed run then reuses the step's compile.
    return graphdef, rest, jax.device_put(state, jax.devices()[0]), step_fn


# Data ----------------------------------------------------------------------------------------------------------
def video_paths(data_dir: str | Path, split: str = "train") -> list[Path]:
    """The unique videos of `data_dir/{split}.csv` (every path column), sorted; or every mp4 under
    `data_dir/{split}/` when there is no CSV."""
    data_dir = Path(data_dir)
    index = data_dir / f"{split}.csv"
    if index.exists():
        paths = set()
        with open(index, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                paths.update(v for k, v in row.items() if k.endswith("video_path") and v)
        return sorted(data_dir / p for p in paths)
    found = sorted((data_dir / split).rglob("*.mp4"))
    if not found:
        raise FileNotFoundError(f"no {index} and no mp4 under {data_dir / split}: not a synthetic dataset "
                                f"(python -m camclone_jax.data.synthetic --out DIR)")
    return found


class ClipSampler:
    """Random `num_frames` windows of random videos; batch i = f(seed, i). Videos are decoded once, into memory."""

    def __init__(self, data_dir, *, split: str, num_frames: int, height: int, width: int, seed: int,
                 flip: bool = True, max_videos: int = 0, crop: tuple[int, int] | None = None):
        from camclone_jax.sample.video import read_video

        self.paths = video_paths(data_dir, split)
        if max_videos:
            self.paths = self.paths[:max_videos]
        length = max(dataset_frames(data_dir), num_frames)  # read_video pads a shorter clip with its last frame
        self.videos = [read_video(p, height, width, num_frames=length) for p in self.paths]
        self.num_frames, self.seed, self.flip = num_frames, seed, flip
        self.crop = tuple(crop) if crop and all(crop) else None  # training batches only; clips() are whole
        if self.crop and (self.crop[0] > height or self.crop[1] > width or any(c % 8 for c in self.crop)):
            raise ValueError(f"crop {self.crop} must be multiples of 8 within the {height}x{width} frames")

    def __len__(self) -> int:
        return len(self.videos)

    def batch(self, step: int, batch_size: int, num_frames: int | None = None) -> np.ndarray:
        """Batch `step`: random windows of `num_frames` (default the sampler's), random crops and flips."""
        num_frames = num_frames or self.num_frames
        rng = np.random.default_rng([self.seed, step])
        out = []
        for _ in range(batch_size):
            v = self.videos[rng.integers(len(self.videos))]
            start = rng.integers(v.shape[0] - num_frames + 1)
            clip = v[start:start + num_frames]
            if self.crop:
                top = rng.integers(v.shape[1] - self.crop[0] + 1)
                left = rng.integers(v.shape[2] - self.crop[1] + 1)
                clip = clip[:, top:top + self.crop[0], left:left + self.crop[1]]
            if self.flip and rng.random() < 0.5:
                clip = clip[:, :, ::-1]
            out.append(clip)
        return np.stack(out)

    def clips(self, count: int, *, seed: int = 0) -> np.ndarray:
        """`count` fixed clips (video i mod len, a window drawn from `seed`), for evaluation and statistics."""
        rng = np.random.default_rng([self.seed, seed, 12345])
        out = []
        for i in range(count):
            v = self.videos[i % len(self.videos)]
            start = rng.integers(v.shape[0] - self.num_frames + 1)
            out.append(v[start:start + self.num_frames])
        return np.stack(out)


def dataset_frames(data_dir) -> int:
    """Frames per video of a synthetic dataset (its dataset.json), 0 if unknown."""
    meta = Path(data_dir) / "dataset.json"
    return int(json.loads(meta.read_text())["args"]["frames"]) if meta.exists() else 0


# Evaluation ----------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, params, rest, video):
    vae = nnx.merge(graphdef, params, rest)
    mu, _ = posterior(vae, video)
    return jnp.clip(decode_raw(vae, mu), -1.0, 1.0), mu


def reconstruct(graphdef, rest, params, video) -> tuple[np.ndarray, np.ndarray]:
    """(clamped reconstruction from the posterior mean, raw mu) of a video batch."""
    recon, mu = _reconstruct(graphdef, params, rest, jnp.asarray(video))
    return np.asarray(recon), np.asarray(mu)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over clips of the per-clip PSNR (dB, [-1, 1] range)."""
    mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=tuple(range(1, a.ndim)))
    return float(np.mean(10.0 * np.log10(4.0 / np.maximum(mse, 1e-12))))


def _eval_psnr(graphdef, rest, params, clips: np.ndarray, batch_size: int) -> float:
    recon = np.concatenate([reconstruct(graphdef, rest, params, clips[i:i + batch_size])[0]
                            for i in range(0, len(clips), batch_size)])
    return psnr(recon, clips)


class _Metrics:
    """workdir/metrics.jsonl (appended across resumes)."""

    def __init__(self, workdir: Path):
        self.file = open(workdir / "metrics.jsonl", "a") if jax.process_index() == 0 else None

    def write(self, step: int, row: dict) -> None:
        if self.file:
            self.file.write(json.dumps({"step": step, **row}) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


# Training ------------------------------------------------------------------------------------------------------
def make_sampler(config, split: str = "train") -> ClipSampler:
    inp = config.input
    if not inp.get("data"):
        raise ValueError("config.input.data is not set: the synthetic dataset folder "
                         "(python -m camclone_jax.data.synthetic --out DIR)")
    return ClipSampler(inp.data, split=split, num_frames=inp.num_frames, height=inp.height, width=inp.width,
                       seed=config.seed, flip=inp.get("flip", True), max_videos=inp.get("max_videos", 0),
                       crop=(inp.get("crop_height", 0), inp.get("crop_width", 0)))


def train_vae(config, workdir: str | Path, *, sampler: ClipSampler | None = None,
              eval_sampler: ClipSampler | None = None, export: bool | None = None) -> tuple[VAEState, list[dict]]:
    """Trains to `config.total_steps`, resuming from `workdir/checkpoints` -> (final VAEState, logged rows).

    Every `config.log_every` steps: loss, l1, mse, kl, psnr (of the sampled-posterior reconstruction), lr,
    grad norm, steps/s to stdout and workdir/metrics.jsonl; every `config.eval_every` steps (and at the end):
    eval_psnr, the PSNR of the posterior-mean reconstruction of `config.eval_clips` clips of the test split.
    At the end the VAE is exported to `config.export.dir` (default workdir/vae) unless `export` is False.
    """
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    graphdef, rest, state, step_fn = init_state(config)
    if jax.process_index() == 0:
        (workdir / VAE_CONFIG).write_text(vae_config(config).to_json())
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    sampler = sampler or make_sampler(config, "train")
    if eval_sampler is None and config.get("eval_clips", 0):
        try:
            eval_sampler = make_sampler(config, config.get("eval_split", "test"))
        except FileNotFoundError:
            eval_sampler = None
    eval_clips = eval_sampler.clips(config.eval_clips) if eval_sampler is not None else None
    batch_size = int(config.input.batch_size)
    total = int(config.total_steps)
    log_every = max(1, int(config.get("log_every", 10)))
    eval_every = int(config.get("eval_every", 0) or 0)
    ckpt = checkpoint.Checkpointer(workdir, every=config.ckpt_every, keep=config.get("keep_checkpoints", 3))
    writer = _Metrics(workdir)
    history: list[dict] = []
    try:
        state, _, start = ckpt.resume(state)
        if start == 0 and eval_clips is not None:  # the untrained model's PSNR, for reference
            row = {"eval_psnr": _eval_psnr(graphdef, rest, state.params, eval_clips, batch_size)}
            history.append({"step": 0, **row})
            writer.write(0, row)
            print(f"step 0: eval_psnr={row['eval_psnr']:.5g}", flush=True)
        base_key = jax.random.key(config.seed)
        t_last, since = time.perf_counter(), 0
        bar = tqdm(range(start, total), initial=start, total=total, desc="train vae",
                   disable=jax.process_index() != 0)
        image_steps = int(config.input.get("image_steps", 0) or 0)
        image_batch = int(config.input.get("image_batch_size", 0) or batch_size)
        for i in bar:
            # Image phase: single frames take the causal VAE's first-frame path (every conv's last time tap) at
            # ~20x the clip rate, which gets the tiny VAE off the mean-colour plateau before the clip phase.
            video = sampler.batch(i, image_batch, 1) if i < image_steps else sampler.batch(i, batch_size)
            state, metrics = step_fn(state, video, jax.random.fold_in(base_key, i))
            done, since = i + 1, since + 1
            if not bool(metrics["finite"]):
                ckpt.wait()
                raise NonFiniteLossError(
                    f"non-finite VAE loss at step {done} (loss={float(metrics['loss'])}, l1={float(metrics['l1'])}, "
                    f"kl={float(metrics['kl'])}); nothing of this step was saved, the last checkpoint is step "
                    f"{ckpt.latest_step()} in {workdir / CKPT_DIR}; lower optimizer.lr or set "
                    f"optimizer.grad_clip_norm")
            row = None
            if done % log_every == 0 or done == total:
                now = time.perf_counter()
                row = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "finite"}
                row["steps_per_s"] = since / max(now - t_last, 1e-9)
                t_last, since = now, 0
            if eval_clips is not None and ((eval_every and done % eval_every == 0) or done == total):
                row = row or {}
                row["eval_psnr"] = _eval_psnr(graphdef, rest, state.params, eval_clips, batch_size)
            if row is not None:
                history.append({"step": done, **row})
                writer.write(done, row)
                bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}", psnr=f"{row.get('psnr', 0):.1f}")
                if jax.process_index() == 0:
                    tqdm.write(f"step {done}: " + " ".join(f"{k}={v:.5g}" for k, v in row.items()))
            if ckpt.should_save(done) or done == total:
                ckpt.save(done, state, force=True)
    finally:
        writer.close()
        ckpt.close()
    export_cfg = config.get("export") or {}
    if export if export is not None else export_cfg.get("enabled", True):
        out = export_cfg.get("dir") or workdir / EXPORT_DIR
        export_vae(workdir, out, config=config, sampler=sampler, state=state)
    return state, history


# Export --------------------------------------------------------------------------------------------------------
def latent_stats(graphdef, rest, params, clips: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the raw posterior mean over `clips` (all frames and positions)."""
    mus = [reconstruct(graphdef, rest, params, clips[i:i + batch_size])[1] for i in range(0, len(clips), batch_size)]
    flat = np.concatenate([m.reshape(-1, m.shape[-1]) for m in mus]).astype(np.float64)
    return flat.mean(0), flat.std(0)


def fold_latent_stats(params: dict, mean: np.ndarray, std: np.ndarray) -> dict:
    """Params whose `WanVAE.encode` returns (mu - mean) / std and whose `decode` inverts that exactly.

    With a = LATENTS_STD / std and c = LATENTS_MEAN - a * mean, `quant_conv` is made to output mu' = a mu + c
    (and logvar' = logvar + 2 log a, the same posterior), so encode's (mu' - LATENTS_MEAN) / LATENTS_STD is
    (mu - mean) / std; `post_quant_conv` gets its input mapped back by (z' - c) / a.
    """
    params = jax.tree.map(lambda x: np.array(x, np.float64), params)
    a = np.asarray(LATENTS_STD, np.float64) / np.asarray(std, np.float64)
    c = np.asarray(LATENTS_MEAN, np.float64) - a * np.asarray(mean, np.float64)
    z = len(a)
    q = params["quant_conv"]
    q["kernel"][..., :z] *= a
    q["bias"][:z] = q["bias"][:z] * a + c
    q["bias"][z:] += 2.0 * np.log(a)
    p = params["post_quant_conv"]
    w = p["kernel"][0, 0, 0]  # [in, out]
    p["bias"] = p["bias"] - (c / a) @ w
    p["kernel"] = p["kernel"] / a[:, None]
    return jax.tree.map(lambda x: np.asarray(x, np.float32), params)


def _load_run_config(workdir: Path):
    import ml_collections

    return ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))


def export_vae(workdir: str | Path, out_dir: str | Path, *, config=None, sampler: ClipSampler | None = None,
               state: VAEState | None = None, stats_clips: int | None = None) -> dict:
    """Writes the run's VAE (the newest checkpoint, or `state`) with re-estimated latent statistics folded in
    (`fold_latent_stats`; a decoder fine-tune keeps its latents as they are) to `out_dir` as a converted VAE
    directory (`load_vae(out_dir)` loads it), plus `latent_stats.json`. Returns that summary. An existing
    export in `out_dir` is replaced."""
    import shutil

    from camclone_jax.models.loading import CONFIG_FILE, PARAMS_DIR, save_model

    workdir, out_dir = Path(workdir), Path(out_dir)
    config = config or _load_run_config(workdir)
    cfg = VAEConfig.from_json((workdir / VAE_CONFIG).read_text())
    graphdef, rest, init, _ = init_state(config)
    step = int(state.step) if state is not None else None
    if state is None:
        restored = checkpoint.restore_latest(workdir, checkpoint.abstract(init))
        if restored is None:
            raise FileNotFoundError(f"no checkpoint under {workdir / CKPT_DIR} to export")
        state, _, step = restored
    params = jax.device_get(state.params)
    sampler = sampler or make_sampler(config, "train")
    count = int(stats_clips or (config.get("export") or {}).get("stats_clips", 64))
    clips = sampler.clips(count, seed=1)
    mean, std = latent_stats(graphdef, rest, params, clips, int(config.input.batch_size))
    # A decoder fine-tune keeps init_from's (already normalised) latents: refolding would shift them slightly
    # and break the DiTs trained on them.
    keep_latents = trainable(config) == "decoder"
    folded = jax.tree.map(lambda x: np.asarray(x, np.float32), params) if keep_latents else \
        fold_latent_stats(params, mean, std)
    if (out_dir / PARAMS_DIR).exists():
        if json.loads((out_dir / CONFIG_FILE).read_text()).get("model") != cfg.MODEL:
            raise FileExistsError(f"{out_dir} holds something other than a VAE export; choose another out_dir")
        shutil.rmtree(out_dir / PARAMS_DIR)
    save_model(out_dir, cfg, folded)
    summary = {"step": step, "stats_clips": count, "clip_shape": list(clips.shape[1:]),
               "raw_mean": mean.tolist(), "raw_std": std.tolist(),
               "latents": f"kept from {config.get('init_from')} (decoder fine-tune)" if keep_latents
               else "normalised",
               "params": int(sum(np.size(x) for x in jax.tree.leaves(folded)))}
    (out_dir / "latent_stats.json").write_text(json.dumps(summary, indent=2))
    print(f"exported the VAE of step {step} to {out_dir} (latent statistics from {count} clips)", flush=True)
    return summary
