"""Axis letters used in shape legends, and the logical axis names that parameters and activations carry.

Letter legend (used in every model docstring and einsum):
  B batch (views are folded into it for SynCamMaster)   F latent frames   H, W latent height / width
  C channels   L video tokens   S context tokens (text, image)   N heads   D head_dim   E model dim (`dim`)

Model code names axes with the constants below and nothing else; `camclone_jax.sharding` is the only module
that maps them to mesh axes. No jax.sharding import belongs here.
"""

# Activations.
BATCH = "batch"
LENGTH = "length"  # video tokens; the sequence-parallel axis
CONTEXT = "context"  # text / image tokens

# Parameters (and the feature axis of activations).
EMBED = "embed"  # model width E
HEADS = "heads"  # the flattened N*D output of q/k/v, input of o
MLP = "mlp"  # FFN hidden width
MODULATION = "modulation"  # the 6*E time projection output
TEXT_EMBED = "text_embed"  # umT5 width (4096) entering the text MLP
IMAGE_EMBED = "image_embed"  # CLIP width (1280) entering img_emb
LAYERS = "layers"  # the stacked (scanned) block axis

ALL = (BATCH, LENGTH, CONTEXT, EMBED, HEADS, MLP, MODULATION, TEXT_EMBED, IMAGE_EMBED, LAYERS)
