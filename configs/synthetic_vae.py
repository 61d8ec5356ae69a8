r"""A tiny Wan VAE trained from scratch on the synthetic dataset (reconstruction: L1 + MSE + a small KL).

Same architecture as Wan2.1's VAE (x4 time / x8 space, 16 latent channels, causal chunks), width 8 and one
residual block per stage: 668k parameters, 2.7 MB in fp32. 6000 single-frame steps (batches of 8 random 32x32
crops, ~25 steps/s on 2 CPU cores), then 1500 steps of 2 random 9-frame 32x32 crops (two causal time chunks,
~2.4 steps/s): ~15 min in all, 19.0 dB PSNR on held-out 17-frame clips of the coarse-detail dataset.
camclone_jax/train/vae_train.py trains it and exports a converted VAE directory (load_vae) with the latent
statistics re-estimated on the training clips.

  python -m camclone_jax.data.synthetic --out data/synthc --locations 96 --test-locations 8 --frames 17 \
      --detail coarse --seed 1
  python -m camclone_jax.train --config configs/synthetic_vae.py:data=data/synthc --workdir runs/vae
  # resumes from runs/vae/checkpoints when run again; the export lands in runs/vae/vae
  python -m camclone_jax.train --config configs/synthetic_vae.py:runlocal --workdir /tmp/vae_smoke

Stage `decoder` fine-tunes the decoder of an exported VAE with the encoder frozen (vae_train: every latent
stays bit-identical, so DiTs trained on them keep working): 6000 steps of the same 9-frame 32x32 crops at lr
1e-3 (cosine), ~3 steps/s on 2 CPU cores:

  python -m camclone_jax.train --workdir runs/vae_decoder \
      --config configs/synthetic_vae.py:stage=decoder,data=data/synthc,init=runs/vae/vae
"""

import ml_collections

from configs import common


STAGES = ("vae", "decoder")


def get_config(arg=None):
    arg = common.parse_arg(arg, stage="vae", runlocal=False, data="/tmp/synth", init="")
    if arg.stage not in STAGES:
        raise ValueError(f"synthetic_vae: unknown stage {arg.stage!r}; known: {STAGES}")
    decoder = arg.stage == "decoder"
    config = ml_collections.ConfigDict()
    config.task = "vae"  # camclone_jax.train dispatches to vae_train.train_vae
    config.seed = 0
    config.trainable = "decoder" if decoder else "all"
    config.init_from = arg.init  # a VAE export (`stage=decoder` needs one)

    # VAEConfig field overrides (camclone_jax.models.wan_vae); dim_mult / temporal_downsample stay Wan's.
    config.vae = ml_collections.ConfigDict(dict(dim=8, num_res_blocks=1))

    config.input = ml_collections.ConfigDict()
    config.input.data = arg.data  # synthetic dataset folder: train.csv / test.csv
    config.input.num_frames = 5 if arg.runlocal else 9  # 4k+1 frames: random windows of the 33-frame clips
    config.input.height = 64  # the synthetic frames (multiples of 8); evaluation and statistics use whole frames
    config.input.width = 96
    config.input.crop_height = 32  # training batches: random crops (0: whole frames)
    config.input.crop_width = 32
    config.input.batch_size = 2
    # Image phase first (vae_train.train_vae): at 1e-3..1e-2 the clip-only run sat on the mean-colour plateau
    # (13-14 dB) for 1000+ steps; 6000 single-frame steps (~4 min) reach ~22 dB, then the clips learn time.
    # A decoder fine-tune starts from a trained VAE: clips only.
    config.input.image_steps = 0 if arg.runlocal or decoder else 6000
    config.input.image_batch_size = 8
    config.input.flip = True  # random horizontal flips
    config.input.max_videos = 0  # 0: every video of the split

    # Decode the posterior mean: sampled at the initial logvar ~ 0 the noise (std ~1) drowned mu (std ~2.4) and a
    # CPU run stalled at 13.6 dB; the DiT only needs a good deterministic code, and the export re-normalises it.
    config.loss = ml_collections.ConfigDict(dict(l1=1.0, mse=1.0, kl=1e-6, sample_posterior=False))

    config.total_steps = ml_collections.FieldReference(20 if arg.runlocal else 6000 if decoder else 7500)
    # PyTorch's small default conv init: at 1e-3 the net could not even overfit one batch (15 dB after 150
    # steps); 3e-3 reached 23 dB.
    config.optimizer = common.optimizer_block(lr=1e-3 if decoder else 3e-3, weight_decay=1e-4, grad_clip_norm=1.0,
                                              warmup_steps=5 if arg.runlocal else 100 if decoder else 50,
                                              schedule="cosine")
    config.optimizer.decay_steps = config.get_ref("total_steps")  # cosine to 0 at the last step
    config.log_every = 1 if arg.runlocal else 25
    config.ckpt_every = 10 if arg.runlocal else 500
    config.keep_checkpoints = 2
    config.eval_every = 0 if arg.runlocal else 500  # PSNR on held-out clips (input.data/test.csv)
    config.eval_clips = 4 if arg.runlocal else 16
    config.eval_split = "test"

    config.export = ml_collections.ConfigDict(dict(enabled=True, dir="", stats_clips=8 if arg.runlocal else 80))
    return common.finalize(config)
