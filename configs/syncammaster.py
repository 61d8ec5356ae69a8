r"""SynCamMaster: synchronized multi-camera video generation (several views of one scene at once).

Wan2.1-T2V-1.3B (preset `syncammaster`, variant "syncam"): views are folded into the batch, and every block gains
multi-view attention across views (`mvs_attn`, `modulation_mvs`) with a `cam_encoder` and a zero-init
`projector`. Trained: parameters whose path contains "cam_encoder", "projector", "mvs_attn" or
"modulation_mvs"; the Wan backbone, `self_attn` included, stays frozen.

Train (one host, 8 GPUs):
  python -m camclone_jax.train --config configs/syncammaster.py --workdir /tmp/syncammaster
Local smoke run (one device, one 2-view sample, 5-frame 128x128 clips):
  python -m camclone_jax.train --config configs/syncammaster.py:runlocal --workdir /tmp/syncam_local
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.full_size_model_block("syncammaster", runlocal=arg.runlocal)
    config.model_init = ""  # converted checkpoint (convert/) to start from; "" = random init

    # Global count of multi-view samples, each num_views videos. Not in our spec; 1 per GPU x 8 as ReCamMaster.
    config.input = common.video_input_block(runlocal=arg.runlocal, batch_size=8)

    config.camera = ml_collections.ConfigDict()
    config.camera.num_views = 2  # views per sample; the model sees batch_size * num_views videos
    config.camera.translation_scale = 200.0  # camera-to-world translations are divided by this before cam_encoder

    config.flow = common.flow_block()

    config.optimizer = common.optimizer_block(
        lr=1e-4, trainable=("cam_encoder", "projector", "mvs_attn", "modulation_mvs"))
    # The frozen weights (most of the model) in bf16, half their memory; the trained ones stay fp32 master weights.
    config.optimizer.frozen_dtype = "bfloat16"
    config.update(common.full_size_run_length(runlocal=arg.runlocal))

    # Upstream writes its videos at 30 fps although the data is 15 fps.
    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 50, fps=30)

    # 1.3B fits per GPU: FSDP over every device, (samples x views) over data x fsdp.
    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
