r"""CamCloneMaster: camera-controlled video generation by cloning the camera motion of a reference video.

Wan2.1-T2V-1.3B adapted to image input (preset `camclonemaster`, variant "camclone"): the camera-reference and
content latents are concatenated after the noisy target on the frame axis, and only every block's
`self_attn` is trained.

Train (one host, 8 GPUs):
  python -m camclone_jax.train --config configs/camclonemaster.py --workdir /tmp/camclonemaster
Local smoke run (one device, batch 1, 5-frame 128x128 clips):
  python -m camclone_jax.train --config configs/camclonemaster.py:runlocal --workdir /tmp/camclone_local
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.full_size_model_block("camclonemaster", runlocal=arg.runlocal)
    config.model_init = ""  # converted checkpoint (convert/) to start from; "" = random init

    # Batch: global: 4 per GPU x 8 GPUs upstream.
    config.input = common.video_input_block(runlocal=arg.runlocal, batch_size=32)
    config.input.content_dropout = 0.5  # p of zeroing the content latents (the I2V case): one model, I2V and V2V

    config.flow = common.flow_block()

    config.optimizer = common.optimizer_block(lr=5e-5, trainable=("self_attn",))
    # The frozen weights (most of the model) in bf16, half their memory; the trained ones stay fp32 master weights.
    config.optimizer.frozen_dtype = "bfloat16"
    config.update(common.full_size_run_length(runlocal=arg.runlocal))

    # Upstream writes its videos at 30 fps although the data is 15 fps.
    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 50, fps=30)

    # 1.3B fits per GPU: FSDP over every device, batch over data x fsdp (4 samples per GPU at 8 GPUs).
    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
