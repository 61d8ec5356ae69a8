r"""ReCamMaster: re-renders a source video along a new camera trajectory.

Wan2.1-T2V-1.3B (preset `recammaster`, variant "recam"): the clean source-video latents follow the noisy target
on the frame axis, and every block gains a `cam_encoder` (camera pose -> model width) and a `projector` after
self-attention. Trained: parameters whose path contains "cam_encoder", "projector" or "self_attn".

Train (one host, 8 GPUs):
  python -m camclone_jax.train --config configs/recammaster.py --workdir /tmp/recammaster
Local smoke run (one device, batch 1, 5-frame 128x128 clips):
  python -m camclone_jax.train --config configs/recammaster.py:runlocal --workdir /tmp/recam_local
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.full_size_model_block("recammaster", runlocal=arg.runlocal)
    config.model_init = ""  # converted checkpoint (convert/) to start from; "" = random init

    # Batch: global: 1 per GPU x 8 GPUs upstream.
    config.input = common.video_input_block(runlocal=arg.runlocal, batch_size=8)

    config.camera = ml_collections.ConfigDict()
    config.camera.translation_scale = 100.0  # camera-to-world translations are divided by this before cam_encoder

    config.flow = common.flow_block()

    # lr from the README's training command.
    config.optimizer = common.optimizer_block(lr=1e-4, trainable=("cam_encoder", "projector", "self_attn"))
    # The frozen weights (most of the model) in bf16, half their memory; the trained ones stay fp32 master weights.
    config.optimizer.frozen_dtype = "bfloat16"
    config.update(common.full_size_run_length(runlocal=arg.runlocal))

    # Upstream writes its videos at 30 fps although the data is 15 fps.
    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 50, fps=30)

    # 1.3B fits per GPU: FSDP over every device, batch over data x fsdp (1 sample per GPU at 8 GPUs).
    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
