"""Blocks shared by every config: `parse_arg`, the model / sharding / optimizer blocks, and `model_config`.

A config file reads

    def get_config(arg=None):
      arg = common.parse_arg(arg, runlocal=False)
      config = ml_collections.ConfigDict()
      config.model = common.model_block("camclonemaster", dtype="bfloat16")
      config.sharding = common.sharding_block(fsdp=-1)
      config.optimizer = common.optimizer_block(lr=5e-5, trainable=("self_attn",))
      ...
      return common.finalize(config)

and the program builds the model with `common.model_config(config)`, a frozen `DiTConfig`: layers get that
small object, never the run config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import ml_collections

from camclone_jax import sharding
from camclone_jax.models import DiTConfig, get_preset

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


def strict_bool(text: str) -> bool:
    """'True'/'true'/'1'/'yes' -> True, 'False'/'false'/'0'/'no'/'' -> False; anything else raises."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"cannot read {text!r} as a bool; use true/false")


def _converter(default: Any):
    if isinstance(default, bool):  # before int: bool is an int subclass
        return strict_bool
    if isinstance(default, (int, float, str)):
        return type(default)
    raise TypeError(f"parse_arg default {default!r} has no obvious type; pass (default, convert_fn)")


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parses `get_config`'s single string argument into a locked ConfigDict of typed values (big_vision).

    `spec` maps each option to its default, whose type converts the string (bool strictly), or to a
    `(default, convert_fn)` pair. Accepted forms of `arg`:

      "variant=camclone,runlocal=True"   named options, comma separated
      "runlocal"                          a bare option name means True
      "camclone"                          a bare non-name value is the value of the first spec entry
      None or ""                          all defaults

    Unknown option names raise, so that a typo on the command line does not silently fall back to a default.
    """
    spec = {k: v if isinstance(v, tuple) else (v, _converter(v)) for k, v in spec.items()}
    arg = (arg or "").strip()
    if arg and "," not in arg and "=" not in arg:
        arg = f"{arg}=True" if arg in spec or not spec else f"{next(iter(spec))}={arg}"
    raw = {}
    for item in filter(None, (s.strip() for s in arg.split(","))):
        key, value = item.split("=", 1) if "=" in item else (item, "True")
        raw[key.strip()] = value.strip()
    unknown = set(raw) - set(spec)
    if unknown:
        raise ValueError(f"unknown config args {sorted(unknown)}; known: {sorted(spec)}")
    values = {k: fn(raw[k]) if k in raw else default for k, (default, fn) in spec.items()}
    return ml_collections.ConfigDict(values).lock()


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Locks `config` (recursively), so that overriding a key that does not exist raises instead of adding it."""
    config.lock()
    return config


# Model ------------------------------------------------------------------------------------------------------
def model_block(preset: str, **overrides: Any) -> ml_collections.ConfigDict:
    """`config.model`: a preset name from `camclone_jax.models.presets` plus DiTConfig field overrides.

    Architecture numbers are never written here; overrides are for run-time numerics (dtype, attention
    backend, remat) and for test sizes. Names are checked now, values when `model_config` builds the DiTConfig.
    """
    _check_override_names(overrides)
    return ml_collections.ConfigDict({"preset": preset, "overrides": dict(overrides)})


def full_size_model_block(preset: str, *, runlocal: bool) -> ml_collections.ConfigDict:
    """`config.model` of every full-size Wan run (1.3B and 14B, the camera models included).

    fp32 master weights for AdamW; bf16 compute, as Wan runs (and upstream trains) its DiT, with norms,
    modulation and RoPE kept fp32 inside the model; the platform's best attention kernel ("auto": splash on TPU,
    cuDNN flash attention on GPU, else XLA); every block rematerialised, as upstream's gradient checkpointing (an
    81-frame 480p clip is 32,760 tokens, and the camera models put 2 or 3 clips on the frame axis). A `runlocal`
    smoke run keeps XLA attention and no remat.
    """
    return model_block(preset, param_dtype="float32", dtype="bfloat16", attention="xla" if runlocal else "auto",
                       remat="none" if runlocal else "full")


def full_size_run_length(*, runlocal: bool) -> dict[str, int]:
    """Steps, logging and checkpoint cadence of a full-size run, for `config.update`: 10,000 steps (upstream
    gives no count: set it per run, `--config.total_steps=N`), a log line every 50 and a checkpoint every 1,000
    steps, the newest 3 kept; a `runlocal` smoke run takes 10 steps, logs each and checkpoints every 5."""
    return {"total_steps": 10 if runlocal else 10_000, "log_every": 1 if runlocal else 50,
            "ckpt_every": 5 if runlocal else 1_000, "keep_checkpoints": 3}


def _check_override_names(overrides) -> None:
    known = {f.name for f in dataclasses.fields(DiTConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown DiTConfig overrides {sorted(unknown)}; known fields: {sorted(known)}")


def model_config(config: ml_collections.ConfigDict) -> DiTConfig:
    """The frozen `DiTConfig` of a run config (`config.model.preset` + `config.model.overrides`)."""
    overrides = config.model.overrides.to_dict()
    _check_override_names(overrides)
    return get_preset(config.model.preset, **overrides)


# Sharding ---------------------------------------------------------------------------------------------------
def sharding_block(*, data: int = 1, fsdp: int = -1, tensor: int = 1, sequence: int = 1,
                   dit_rules: sharding.Rules = sharding.DIT_RULES) -> ml_collections.ConfigDict:
    """`config.sharding`: the mesh shape over `sharding.MESH_AXES` and the logical-axis rules of the DiT.

    One mesh axis may be -1: it takes all devices the others leave (`mesh_shape`), so a config does not
    hard-code the host's device count. The rules table maps the model's logical names to those mesh axes.
    """
    mesh = {"data": data, "fsdp": fsdp, "tensor": tensor, "sequence": sequence}
    assert tuple(mesh) == sharding.MESH_AXES, "keep the mesh block in step with sharding.MESH_AXES"
    return ml_collections.ConfigDict({"mesh": mesh, "dit_rules": tuple(dit_rules)})


def mesh_shape(mesh: ml_collections.ConfigDict | dict, num_devices: int) -> dict[str, int]:
    """Concrete axis sizes for `sharding.make_mesh`: the one -1 axis becomes num_devices / product(others)."""
    shape = {k: int(v) for k, v in dict(mesh).items()}
    free = [k for k, v in shape.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {free}")
    fixed = math.prod(v for v in shape.values() if v != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"{num_devices} devices do not divide by the fixed mesh axes {shape}")
        shape[free[0]] = num_devices // fixed
    if math.prod(shape.values()) != num_devices:
        raise ValueError(f"mesh {shape} needs {math.prod(shape.values())} devices, have {num_devices}")
    return shape


# Optimizer --------------------------------------------------------------------------------------------------
def optimizer_block(*, lr: float, trainable: tuple[str, ...] = (), b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8, weight_decay: float = 0.01, grad_clip_norm: float = 0.0,
                    warmup_steps: int = 0, schedule: str = "constant") -> ml_collections.ConfigDict:
    """`config.optimizer`: AdamW and the set of trained parameters.

    The defaults are torch.optim.AdamW's (betas 0.9/0.999, eps 1e-8, weight decay 0.01): the upstream
    DiffSynth-based trainers call `AdamW(trainable_params, lr=lr)` and nothing else, with a constant learning
    rate, no warmup and no gradient clipping (Lightning's default); 0.0 disables clipping here.

    `trainable`: a parameter is trained iff its path (e.g. "blocks/self_attn/q/kernel") contains one of these
    substrings, as upstream's `any(k in name for k in ...)`; an empty tuple trains every parameter.
    """
    return ml_collections.ConfigDict({
        "name": "adamw", "lr": lr, "b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay,
        "grad_clip_norm": grad_clip_norm, "warmup_steps": warmup_steps, "schedule": schedule,
        "decay_steps": 0,  # cosine schedule only
        "accumulate_steps": 1,  # micro-batches per update (optax.MultiSteps)
        "ema_decay": 0.0,  # > 0 keeps an EMA of the trainable weights in the train state
        "frozen_dtype": "",  # e.g. "bfloat16": store the frozen weights so (trained ones stay in param_dtype)
        "trainable": tuple(trainable),
    })


def video_input_block(*, runlocal: bool, batch_size: int) -> ml_collections.ConfigDict:
    """Clip shape of every full-size config: upstream's 81 frames at 480x832, or a 5-frame 128x128 local run."""
    block = ml_collections.ConfigDict()
    block.format = "latents"  # or "videos": read the raw dataset and encode each batch in the trainer
    block.data = ""  # "latents": folder from `python -m camclone_jax.train.precompute`; "videos": the dataset
    block.encoders = ""  # "videos": folder with vae/ umt5/ (clip/ for camclone) from `python -m convert`
    block.batch_size = 1 if runlocal else batch_size  # global
    block.num_frames = 5 if runlocal else 81  # 4k+1 pixel frames -> k+1 latent frames (21 for 81)
    block.height = 128 if runlocal else 480  # pixels; multiple of 16 (VAE /8, patch /2): latent 60
    block.width = 128 if runlocal else 832  # latent 104; 30x52 tokens per latent frame
    return block


def flow_block() -> ml_collections.ConfigDict:
    """Training noise: DiffSynth's FlowMatchScheduler (shift 5, sigma_min 0) on a 1000-step grid, t uniform on
    the grid, loss weighted by its bell-shaped "bsmntw" training weight."""
    return ml_collections.ConfigDict(dict(
        num_train_timesteps=1000, shift=5.0, weighting="bsmntw",  # "none": unweighted MSE
        timestep_sampling="grid",  # or "logit_normal": sigma = shift(sigmoid(n)), n ~ N(0, 1)
        per_sample_timesteps=False,  # upstream: one t per optimiser step, shared by the batch
        bf16_timesteps=True,  # upstream rounds t to bf16 before the lookups and the time embedding
    ))


def sample_block(*, num_steps: int, fps: int, cfg_scale: float = 5.0, shift: float = 5.0) -> ml_collections.ConfigDict:
    """Flow-matching Euler sampling with classifier-free guidance on the text only (the unconditional branch
    swaps in the negative prompt; image / reference / source conditioning stays)."""
    return ml_collections.ConfigDict(dict(sampler="euler", num_steps=num_steps, shift=shift, cfg_scale=cfg_scale,
                                          cfg_on="text", fps=fps))
