"""The pose estimators by name, for every command that lets its user pick one (`python -m camclone_jax.eval
--method`, `eval.heldout --method`, `sample recam --trajectory-method`).

    sfm         COLMAP SIFT + sequential matching + GLOMAP (pycolmap): the CamI2V protocol, any camera motion
    homography  SIFT matches -> a rotation homography per frame pair (pycolmap): pans / tilts / rolls
    direct      photometric alignment of whole frames (numpy / scipy, no pycolmap): pans / tilts / rolls, and
                still works on blurred video where the two feature-based ones find too few keypoints
"""

from __future__ import annotations

from pathlib import Path

from camclone_jax.eval.poses import PoseEstimate

METHODS = {
    "sfm": "COLMAP/GLOMAP SfM (the CamI2V protocol; any camera motion)",
    "homography": "frame-to-frame homographies of SIFT matches (rotation only)",
    "direct": "direct photometric alignment of whole frames (rotation only; robust to blur)",
}
ROTATION_ONLY = ("homography", "direct")  # translations come back as zero


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown pose estimator {method!r}; choose one of {sorted(METHODS)}")
    return method


def estimate_poses(frames, intrinsics, method: str = "sfm", *, seed: int | None = 0, workdir: Path | None = None,
                   mapper: str = "global", dsp: bool = True) -> PoseEstimate:
    """Camera-to-world poses of `frames` ([T, H, W, 3] uint8, or floats in [-1, 1]) by the estimator `method`
    (module doc). `workdir`, `mapper`, `dsp` are SfM's; `seed` seeds the RANSAC of SfM and homography."""
    from camclone_jax.eval import poses

    check_method(method)
    if method == "direct":
        from camclone_jax.eval.direct_rotation import estimate_rotations_direct

        return estimate_rotations_direct(frames, intrinsics)
    if method == "homography":
        return poses.estimate_rotations_homography(frames, intrinsics, seed=seed)
    return poses.estimate_poses_sfm(frames, intrinsics, workdir, mapper=mapper, dsp=dsp, seed=seed)
