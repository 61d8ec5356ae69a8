r"""CamCloneMaster: camera-controlled video generation by cloning the camera motion of a reference video.

Wan2.1-T2V-1.3B adapted to image input (preset `camclonemaster`, variant "camclone"): the camera-reference and
content latents are concatenated after the noisy target on the frame axis, and only every block's
`self_attn` is trained.

Train (one host, 8 GPUs):
  python -m camclone_jax.train.loop --config configs/camclonemaster.py --workdir /tmp/camclonemaster
Local smoke run (one device, batch 1, 5-frame 128x128 clips):
  python -m camclone_jax.train.loop --config configs/camclonemaster.py:runlocal --workdir /tmp/camclone_local
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.model_block(
        "camclonemaster",
        param_dtype="float32",  # fp32 master weights for AdamW
        dtype="bfloat16",  # upstream trains under bf16; norms, modulation and RoPE stay fp32 inside the model
        attention="xla" if arg.runlocal else "cudnn",  # cuDNN flash attention on GPU; XLA runs on any backend
        # Upstream trains with gradient checkpointing; one sample is 3 clips x 32,760 tokens on the frame axis.
        remat="none" if arg.runlocal else "full",
    )
    config.model_init = ""  # converted checkpoint (convert/) to start from; "" = random init

    config.input = ml_collections.ConfigDict()
    config.input.batch_size = 1 if arg.runlocal else 32  # global: 4 per GPU x 8 GPUs upstream
    config.input.num_frames = 5 if arg.runlocal else 81  # 4k+1 pixel frames -> k+1 latent frames (21 for 81)
    config.input.height = 128 if arg.runlocal else 480  # pixels; multiple of 16 (VAE /8, patch /2): latent 60
    config.input.width = 128 if arg.runlocal else 832  # latent 104; 30x52 tokens per latent frame
    config.input.content_dropout = 0.5  # p of zeroing the content latents (the I2V case): one model, I2V and V2V

    # Training noise: DiffSynth's FlowMatchScheduler (shift 5, sigma_min 0) on a 1000-step grid, t uniform on
    # the grid, loss weighted by its bell-shaped "bsmntw" training weight.
    config.flow = ml_collections.ConfigDict()
    config.flow.num_train_timesteps = 1000
    config.flow.shift = 5.0
    config.flow.weighting = "bsmntw"

    config.optimizer = common.optimizer_block(lr=5e-5, trainable=("self_attn",))
    config.total_steps = 10 if arg.runlocal else 10_000  # not given upstream; set per run
    config.log_every = 1 if arg.runlocal else 50
    config.ckpt_every = 5 if arg.runlocal else 1_000

    config.sample = ml_collections.ConfigDict()
    config.sample.sampler = "euler"  # flow-matching Euler, as upstream's inference
    config.sample.num_steps = 4 if arg.runlocal else 50
    config.sample.shift = 5.0  # sigma shift of the sampling schedule
    config.sample.cfg_scale = 5.0
    config.sample.cfg_on = "text"  # the unconditional branch drops only the prompt; reference latents stay
    config.sample.fps = 30  # frame rate of the written video (upstream's save_video)

    # 1.3B fits per GPU: FSDP over every device, batch over data x fsdp (4 samples per GPU at 8 GPUs).
    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
