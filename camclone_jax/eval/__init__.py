"""Camera-accuracy evaluation: RotErr / TransErr / CamMC (spec `cami2v_metrics.md` 8.3) from poses estimated
with COLMAP/GLOMAP SfM (pycolmap, spec 8.2), or for rotation-only clips a homography estimator (pycolmap) or
direct whole-frame alignment (numpy / scipy; works on blurred video). `estimators.estimate_poses` picks one by
name.

`metrics` is numpy-only; `poses` needs pycolmap (`pip install 'camclone_jax[eval]'`) when an estimator runs.
CLI: `python -m camclone_jax.eval --help`.
"""

from camclone_jax.eval.metrics import (
    camera_metrics,
    cammc,
    normalise_translations,
    relative_to_first,
    rot_err,
    trans_err,
    translation_scale,
)
from camclone_jax.eval.direct_rotation import estimate_rotations_direct
from camclone_jax.eval.estimators import METHODS, estimate_poses
from camclone_jax.eval.poses import (
    Intrinsics,
    PoseEstimate,
    estimate_poses_sfm,
    estimate_rotations_homography,
)

__all__ = [
    "camera_metrics",
    "cammc",
    "normalise_translations",
    "relative_to_first",
    "rot_err",
    "trans_err",
    "translation_scale",
    "Intrinsics",
    "PoseEstimate",
    "estimate_poses_sfm",
    "estimate_rotations_homography",
    "estimate_rotations_direct",
    "estimate_poses",
    "METHODS",
]
