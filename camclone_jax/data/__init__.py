"""Synthetic training / evaluation data.

- `trajectories`: random CameraClone-style camera trajectories (pans, tilts, rolls, translations, arcs,
  splines; constant or variable speed) as poses relative to the first frame.
- `render`: procedural textured rooms with static and moving boxes / spheres, and a vectorised numpy pinhole
  ray caster with known intrinsics.
- `synthetic`: the dataset writer and CLI (`python -m camclone_jax.data.synthetic --out DIR`): CameraClone
  triples (train.csv / test.csv), MultiCamVideo-style camera JSON and per-video ground-truth cameras.
"""
