r"""Wan2.1 text-to-video, 14B (preset `wan_t2v_14b`).

Used to sample from the released weights and for plain full fine-tuning. At fp32 the weights alone are 57 GB and
AdamW adds twice that, so parameters and optimizer state are FSDP-sharded over every device.

Train (one host, 8 GPUs):
  python -m camclone_jax.train --config configs/wan_t2v_14b.py --workdir /tmp/wan_t2v_14b
Local smoke run (same model, batch 1, 5-frame 128x128 clips; needs the memory of a full host):
  python -m camclone_jax.train --config configs/wan_t2v_14b.py:runlocal --workdir /tmp/wan14b_local
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.full_size_model_block("wan_t2v_14b", runlocal=arg.runlocal)
    config.model_init = ""  # converted Wan2.1-T2V-14B checkpoint (convert/); "" = random init

    # Batch: global; not from upstream: 1 per GPU x 8 GPUs.
    config.input = common.video_input_block(runlocal=arg.runlocal, batch_size=8)

    config.flow = common.flow_block()

    # Full fine-tuning (trainable=() trains everything); our choice: 10x below the 1.3B example's lr.
    config.optimizer = common.optimizer_block(lr=1e-5, trainable=())
    config.update(common.full_size_run_length(runlocal=arg.runlocal))

    # Wan's own default sampler is UniPC; flow-matching Euler with the same steps / shift / guidance is close.
    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 50, fps=16)  # Wan's sample_fps

    # Weights / grads / AdamW state sharded over every device (FSDP); batch over data x fsdp.
    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
