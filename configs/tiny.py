r"""Test-sized DiT of any variant (preset `tiny`: width 64, 2 blocks) for CPU tests and plumbing checks.

The `variant` arg picks the DiT variant (t2v, i2v, camclone, recam, syncam); the variant's run settings (trained
parameters, content dropout, camera scaling, views) are the ones of the matching full config, so a tiny run
exercises the same code paths. runlocal (default) keeps clips and step counts minimal for unit tests.

Tests (8 fake CPU devices):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest tests -q
Run on one host (e.g. a 5-step overfit of the CamCloneMaster path):
  python -m camclone_jax.train --config configs/tiny.py:variant=camclone --workdir /tmp/tiny_camclone
"""

import ml_collections

from configs import common

# What each variant trains, as in configs/{camclonemaster,recammaster,syncammaster}.py; () trains everything.
_TRAINABLE = {
    "t2v": (),
    "i2v": (),
    "camclone": ("self_attn",),
    "recam": ("cam_encoder", "projector", "self_attn"),
    "syncam": ("cam_encoder", "projector", "mvs_attn", "modulation_mvs"),
}


def get_config(arg=None):
    arg = common.parse_arg(arg, variant="t2v", runlocal=True)
    if arg.variant not in _TRAINABLE:
        raise ValueError(f"tiny config: unknown variant {arg.variant!r}; known: {sorted(_TRAINABLE)}")
    config = ml_collections.ConfigDict()
    config.seed = 0

    # fp32 compute so that tests can compare against fp32 references; XLA attention runs on CPU.
    config.model = common.model_block("tiny", variant=arg.variant, param_dtype="float32", dtype="float32",
                                      attention="xla", remat="none")
    config.model_init = ""  # always random init

    config.input = ml_collections.ConfigDict()
    config.input.format = "latents"  # or "videos" (raw dataset, encoded in the trainer by input.encoders)
    config.input.data = ""  # latent shards (camclone_jax.train.precompute); tests pass batches directly
    config.input.encoders = ""
    config.input.batch_size = 8  # global; divides 1, 2, 4 or 8 devices (tests fake 8 CPU devices)
    config.input.num_frames = 5 if arg.runlocal else 17  # 4k+1 pixel frames -> 2 (or 5) latent frames
    config.input.height = 32 if arg.runlocal else 64  # pixels; multiple of 16: 2x2 (4x4) tokens per frame
    config.input.width = 32 if arg.runlocal else 64
    if arg.variant == "camclone":
        config.input.content_dropout = 0.5  # as configs/camclonemaster.py
    if arg.variant in ("recam", "syncam"):
        config.camera = ml_collections.ConfigDict()
        # As configs/recammaster.py (/100) and configs/syncammaster.py (/200, 2 views).
        config.camera.translation_scale = 100.0 if arg.variant == "recam" else 200.0
        if arg.variant == "syncam":
            config.camera.num_views = 2

    config.flow = common.flow_block()

    config.optimizer = common.optimizer_block(lr=1e-3, trainable=_TRAINABLE[arg.variant])  # high: overfit fast
    config.total_steps = 5 if arg.runlocal else 200  # 5 = the overfit test's step count
    config.log_every = 1
    config.ckpt_every = 5 if arg.runlocal else 100
    config.keep_checkpoints = 3

    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 20, fps=16)  # Wan's sample_fps

    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)  # all devices on fsdp
    return common.finalize(config)
