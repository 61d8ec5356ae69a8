r"""A tiny CamCloneMaster DiT trained from scratch on the synthetic CameraClone dataset, on a CPU.

Variant "camclone" (camera-reference and content latents concatenated after the noisy target on the frame axis,
first-frame image conditioning through the tiny CLIP), width 128, 4 blocks of 4 heads (head_dim 32), 1.38M
parameters, on the synthetic VAE and the frozen random tiny umT5 / CLIP of `python -m camclone_jax.data.encoders`.
Content dropout 0.5 trains I2V (content zeroed) and V2V in one model. Input: precomputed latents (`latents=DIR`
from `python -m camclone_jax.train.precompute`, ~15x cheaper per step on a CPU) or raw videos encoded in the
trainer (`data=.../train.csv`, the default).

The paper trains in two stages after Wan's pretraining; with no pretrained tiny Wan there are four, `stage`
picks one:
  base      every weight trained from random init (optimizer.trainable = ()) with upstream's flow recipe (one t
            per batch, shift 5, the bell-shaped weight): it learns the first frame and a video prior, and hardly
            reads the camera reference
  motion    every weight again, from the base run exported to a converted DiT folder (`init=`), with a flow
            recipe meant to make the reference pay (the three changes were made together, not ablated): one t
            per sample instead of per batch (less loss noise at batch 8), shift 3 and no loss weight (more and
            undiminished high-noise steps, where only the reference tells the motion); lr 1e-3 on a 9000-step
            cosine
  rotation  every weight again, from the exported motion run, with the motion recipe, on the triples whose
            target camera only turns (latents precomputed from the dataset's train_rotation.csv): after the mixed
            motion stage the DiT turned far less than its reference on them; lr 5e-4 on a 6000-step cosine
  camclone  only every block's self_attn trained (as configs/camclonemaster.py), from the exported rotation run,
            with the motion stage's flow recipe, on all the triples
  scenes    every weight again, from the exported camclone run, with the motion recipe, on the turning triples
            of 360 more locations (15 more seeds of the generator, `python -m camclone_jax.data.combine`): the
            864 turning triples of the 96 locations were memorised at batch 32 (train loss 0.45 -> 0.1, loss on
            unseen scenes ~1.9); batch 32, lr 1e-3 on a 7900-step cosine, records cached in memory. Sized for a
            GPU: ~30 steps/s on one H100 (a 1.4M-parameter DiT is bound by the host, not the GPU), ~4 h on 2 CPU
            cores

Frames: 17 (4k+1) at the dataset's 64x96 (multiples of 16), i.e. 5 latent frames of 4x6 tokens, x3 clips on the
frame axis; batch 8, 32 for scenes (it splits over data x fsdp). The whole chain (README "A small trained model"):

  python -m camclone_jax.data.synthetic --out data/synthc --locations 96 --test-locations 8 --frames 17 \
      --detail coarse --seed 1
  python -m camclone_jax.train --config configs/synthetic_vae.py:data=data/synthc --workdir runs/vae
  python -m camclone_jax.data.encoders --vae runs/vae/vae --out data/synthc_enc --data data/synthc
  python -m camclone_jax.train.precompute --kind camclone --data data/synthc/train.csv --vae data/synthc_enc/vae \
      --text-encoder data/synthc_enc/umt5 --tokenizer data/synthc_enc/umt5 --clip data/synthc_enc/clip \
      --out data/synthc_lat --frames 17 --height 64 --width 96
  python -m camclone_jax.train --workdir runs/base \
      --config configs/synthetic_camclone.py:latents=data/synthc_lat,encoders=data/synthc_enc
  python -m camclone_jax.train.export runs/base ckpt/synthc_base
  python -m camclone_jax.train --workdir runs/motion --config \
      configs/synthetic_camclone.py:stage=motion,init=ckpt/synthc_base,latents=data/synthc_lat,encoders=data/synthc_enc
  python -m camclone_jax.train.export runs/motion ckpt/synthc_motion
  python -m camclone_jax.train.precompute ...  (as above, --data data/synthc/train_rotation.csv
      --out data/synthc_lat_rotation)
  python -m camclone_jax.train --workdir runs/rotation --config configs/synthetic_camclone.py:stage=rotation,\
init=ckpt/synthc_motion,latents=data/synthc_lat_rotation,encoders=data/synthc_enc
  python -m camclone_jax.train.export runs/rotation ckpt/synthc_rotation
  python -m camclone_jax.train --workdir runs/camclone --config configs/synthetic_camclone.py:stage=camclone,\
init=ckpt/synthc_rotation,latents=data/synthc_lat,encoders=data/synthc_enc
  python -m camclone_jax.train.export runs/camclone ckpt/synthc_camclone --dtype bfloat16
  python -m camclone_jax.data.synthetic --out data/synthc_more/sS ... --locations 24 --seed S  (S = 101..115)
  python -m camclone_jax.data.combine data/synthc_more/train_rotation.csv data/synthc_more/s*/train_rotation.csv
  python -m camclone_jax.train.precompute ...  (--data data/synthc_more/train_rotation.csv
      --out data/synthc_lat_scenes --dtype bfloat16)
  python -m camclone_jax.train --workdir runs/scenes --config configs/synthetic_camclone.py:stage=scenes,\
init=ckpt/synthc_camclone,latents=data/synthc_lat_scenes,encoders=data/synthc_enc
(the shipped base run took three resumed legs, README "A small trained model").
`patch=1` trains 1x1x1 patches instead of Wan's 1x2x2: 8x12 tokens per latent frame, so that a camera motion
of one latent pixel moves the tokens; 4x the tokens, a step ~4x slower (2.1-2.2 s against 0.5 s at batch 8).
Started from the motion DiT (`python -m camclone_jax.train.repatch`), 2,000 motion steps did not make it read
the reference better (README "A small trained model"); from scratch, with the motion recipe from step 0,
it read it no better than 1x2x2 at a like step count (probe gain 8.0 % at step 3,000; pans +0.1 %).
Smoke run (2 steps, 5-frame 32x48 clips, batch 1): add `runlocal` to the config args.
"""

import ml_collections

from configs import common

# stage -> optimizer.trainable; () trains everything
STAGES = {"base": (), "motion": (), "rotation": (), "camclone": ("self_attn",), "scenes": ()}
TEXT_DIM = 64  # camclone_jax.models.umt5.tiny_umt5().dim
IMAGE_DIM = 64  # camclone_jax.models.clip_vision.tiny_clip().dim; 224 px -> 257 tokens (the DiT's default)


def get_config(arg=None):
    arg = common.parse_arg(arg, stage="base", runlocal=False, data="/tmp/synth/train.csv",
                           encoders="/tmp/synth_enc", init="", latents="", patch=2)
    if arg.stage not in STAGES:
        raise ValueError(f"synthetic_camclone: unknown stage {arg.stage!r}; known: {sorted(STAGES)}")
    if arg.patch not in (1, 2):
        raise ValueError(f"synthetic_camclone: patch={arg.patch}; expected 2 (Wan's 1x2x2 patches) or 1 (1x1x1)")
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = common.model_block(
        "tiny", variant="camclone", dim=128, ffn_dim=512, num_heads=4, num_layers=4, freq_dim=64,
        text_dim=TEXT_DIM, image_dim=IMAGE_DIM, num_image_tokens=257,
        param_dtype="float32", dtype="float32", attention="xla", remat="none",  # fp32 on CPU
        **({"patch_size": (1, 1, 1)} if arg.patch == 1 else {}))
    # motion and camclone start from the previous stage's exported run (module doc); base from random init.
    config.model_init = arg.init if arg.stage != "base" else ""
    if arg.stage != "base" and not arg.init and not arg.runlocal:
        raise ValueError(f"synthetic_camclone stage={arg.stage} needs init=DIR: the previous stage's run exported "
                         "with `python -m camclone_jax.train.export RUN_DIR DIR`")

    config.input = ml_collections.ConfigDict()
    if arg.latents:  # precomputed once (module doc): a CPU step is then ~15x cheaper than encoding each batch
        config.input.format = "latents"
        config.input.data = arg.latents
    else:
        config.input.format = "videos"  # raw dataset, encoded in the trainer by input.encoders
        config.input.data = arg.data  # the synthetic dataset's train.csv (camclone_jax.data.synthetic)
    config.input.encoders = arg.encoders  # vae/ umt5/ clip/ from `python -m camclone_jax.data.encoders`
    config.input.batch_size = 1 if arg.runlocal else 32 if arg.stage == "scenes" else 8  # global
    config.input.num_frames = 5 if arg.runlocal else 17  # 4k+1 pixel frames -> 2 (5) latent frames
    config.input.height = 32 if arg.runlocal else 64  # pixels; multiple of 16
    config.input.width = 48 if arg.runlocal else 96
    config.input.content_dropout = 0.5  # p of zeroing the content latents (I2V); as configs/camclonemaster.py
    # latents only: keep the decoded records in memory (a GPU step outruns the array_record reads)
    config.input.cache = arg.stage == "scenes"
    config.input.read_threads = 8 if arg.stage == "scenes" else 4

    config.flow = common.flow_block()
    if arg.stage != "base":  # the motion recipe (module doc)
        config.flow.per_sample_timesteps = True
        config.flow.shift = 3.0
        config.flow.weighting = "none"

    # (lr, schedule, total steps) per stage. The shipped base run: 2500 steps at 3e-4, resumed at 1e-3 to 3500
    # (the loss had flattened), then to 5000 at flow shift 1 (README "A small trained model"). The motion run
    # stops at step 7000 of its 9000-step cosine, the lr then at 12 % of its peak (the CPU session's time).
    lr, schedule, steps = {"base": (3e-4, "constant", 3500), "motion": (1e-3, "cosine", 7000),
                           "rotation": (5e-4, "cosine", 6000), "camclone": (1e-4, "constant", 400),
                           "scenes": (1e-3, "cosine", 7900)}[arg.stage]
    config.optimizer = common.optimizer_block(lr=lr, trainable=STAGES[arg.stage], grad_clip_norm=1.0,
                                              warmup_steps=0 if arg.runlocal else 100,
                                              schedule="constant" if arg.runlocal else schedule)
    if schedule == "cosine":
        config.optimizer.decay_steps = 9000 if arg.stage == "motion" else steps
    config.total_steps = 2 if arg.runlocal else steps
    config.log_every = 1 if arg.runlocal else 25
    config.ckpt_every = 2 if arg.runlocal else 500
    config.keep_checkpoints = 2

    # The synthetic clips are 15 fps.
    config.sample = common.sample_block(num_steps=4 if arg.runlocal else 30, fps=15)

    config.sharding = common.sharding_block(data=1, fsdp=-1, tensor=1, sequence=1)
    return common.finalize(config)
