r"""Wan2.1 image-to-video, 14B (preset `wan_i2v_14b`): 36 input channels (noisy | mask | image latent) and the
CLIP image branch in every cross-attention. The 480P and 720P releases share this architecture.

The run is `configs/wan_t2v_14b.py`'s (full fine-tuning, FSDP over every device, lr 1e-5) on this preset; the
trainer reads the variant and feeds the first frame's latent and CLIP features. Wan's own I2V sampler is UniPC
with 40 steps and shift 3.0 at 480p; we keep one set of defaults for every Wan config (50 Euler steps, shift 5).

Train (one host, 8 GPUs):
  python -m camclone_jax.train --config configs/wan_i2v_14b.py --workdir /tmp/wan_i2v_14b
Local smoke run (same model, batch 1, 5-frame 128x128 clips; needs the memory of a full host):
  python -m camclone_jax.train --config configs/wan_i2v_14b.py:runlocal --workdir /tmp/wan_i2v_local
"""

from configs import common, wan_t2v_14b


def get_config(arg=None):
    config = wan_t2v_14b.get_config(arg)
    runlocal = common.parse_arg(arg, runlocal=False).runlocal
    with config.unlocked():
        config.model = common.full_size_model_block("wan_i2v_14b", runlocal=runlocal)
    # config.model_init: a converted Wan2.1-I2V-14B checkpoint (convert/); "" = random init
    return common.finalize(config)
