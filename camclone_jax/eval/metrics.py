"""Camera-accuracy metrics RotErr, TransErr and CamMC (spec `cami2v_metrics.md` section 8.3), numpy only.

Conventions (spec 8.2 step 6 and 8.3):
- Inputs are camera-to-world (c2w) poses [T, 4, 4] in OpenCV camera axes (x right, y down, z forward), one per
  frame, e.g. the inverse of COLMAP's / RealEstate10K's world-to-camera matrices.
- Both trajectories are first expressed relative to their own first frame: `Ĉ_i = C_0⁻¹ C_i = [R_i | t_i]`,
  so `Ĉ_0 = I`, `t_i` is camera i's centre in camera-0 coordinates. This is the *only* alignment the protocol
  applies (no Umeyama / Sim(3), no rotation alignment; spec 8.2 step 6).
- Translation normalisation (8.3): `s(traj) = max_i ‖t_i‖₂ + 1e-9`, `t̃_i = t_i / s(traj)`; for TransErr and
  CamMC (the `_rel` variants) each trajectory is normalised by its **own** maximum.
- All three metrics are **sums over frames** (frame 0 contributes 0). Upstream sums over 16 frames; with other
  frame counts the sum grows with T, so always state T next to a number (spec 12 item 7).

    RotErr   = Σ_i arccos(clamp((tr(R_ref,iᵀ R_gen,i) − 1) / 2, −1, 1))         radians
    TransErr = Σ_i ‖ t_gen,i / s(gen) − t_ref,i / s(ref) ‖₂                      unitless, ≤ 2 per frame
    CamMC    = Σ_i ‖ [R_gen,i | t̃_gen,i] − [R_ref,i | t̃_ref,i] ‖_F (3×4)          unitless

`ref` is the annotation (ground truth) in upstream's protocol; the metrics are symmetric in (gen, ref) except
that each side is normalised by its own scale, which is symmetric too.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCALE_EPS",
    "as_poses",
    "relative_to_first",
    "translation_scale",
    "normalise_translations",
    "rotation_angles",
    "rot_err",
    "trans_err",
    "cammc",
    "camera_metrics",
]

SCALE_EPS = 1e-9  # spec 8.3: s = max_i ‖t_i‖ + 1e-9


def as_poses(poses, name: str = "poses") -> np.ndarray:
    """Check and convert to float64 [T, 4, 4] (a [T, 3, 4] input is completed with a [0, 0, 0, 1] row)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)) or poses.shape[0] < 1:
        raise ValueError(f"{name} must be [T, 4, 4] or [T, 3, 4] with T >= 1, got shape {poses.shape}")
    if poses.shape[1] == 3:
        bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (poses.shape[0], 1, 4))
        poses = np.concatenate([poses, bottom], axis=1)
    return poses


def relative_to_first(c2w) -> np.ndarray:
    """`Ĉ_i = C_0⁻¹ C_i` for c2w poses [T, 4, 4] (spec 8.2 step 6, 8.3); Ĉ_0 = I. NaN frames stay NaN."""
    c2w = as_poses(c2w, "c2w")
    if not np.all(np.isfinite(c2w[0])):
        raise ValueError("the first frame's pose is missing (NaN); poses cannot be made relative to it")
    return np.linalg.inv(c2w[0]) @ c2w


def translation_scale(t) -> float:
    """`s = max_i ‖t_i‖₂ + 1e-9` over translations [T, 3] (spec 8.3)."""
    t = np.asarray(t, dtype=np.float64)
    return float(np.max(np.linalg.norm(t, axis=-1)) + SCALE_EPS)


def normalise_translations(t, reference=None) -> np.ndarray:
    """`t_i / s(reference)` (spec 8.3); the reference defaults to `t` itself (the `_rel` metrics)."""
    t = np.asarray(t, dtype=np.float64)
    return t / translation_scale(t if reference is None else reference)


def rotation_angles(R_gen, R_ref) -> np.ndarray:
    """Per-frame geodesic angle `arccos(clamp((tr(R_refᵀ R_gen) − 1)/2, −1, 1))` in radians, [T] (spec 8.3)."""
    R_gen, R_ref = np.asarray(R_gen, np.float64), np.asarray(R_ref, np.float64)
    if R_gen.shape != R_ref.shape or R_gen.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be [T, 3, 3], got {R_gen.shape} and {R_ref.shape}")
    trace = np.einsum("...ji,...ji->...", R_ref, R_gen)  # tr(R_refᵀ R_gen)
    return np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))


def rot_err(R_gen, R_ref) -> float:
    """RotErr (spec 8.3): Σ_i of the geodesic angle between R_gen,i and R_ref,i, **radians**.

    Takes relative rotations [T, 3, 3] (or relative poses [T, 4, 4], whose rotation blocks are used)."""
    R_gen, R_ref = np.asarray(R_gen, np.float64), np.asarray(R_ref, np.float64)
    if R_gen.shape[-2:] == (4, 4) or R_gen.shape[-2:] == (3, 4):
        R_gen = R_gen[..., :3, :3]
    if R_ref.shape[-2:] == (4, 4) or R_ref.shape[-2:] == (3, 4):
        R_ref = R_ref[..., :3, :3]
    return float(np.sum(rotation_angles(R_gen, R_ref)))


def trans_err(t_gen, t_ref) -> float:
    """TransErr = TransErr_rel (spec 8.3): Σ_i ‖t_gen,i / s(gen) − t_ref,i / s(ref)‖₂, each trajectory
    normalised by its **own** max-norm. Takes relative translations [T, 3] (camera centres in camera-0 axes)."""
    t_gen, t_ref = np.asarray(t_gen, np.float64), np.asarray(t_ref, np.float64)
    if t_gen.shape != t_ref.shape or t_gen.shape[-1] != 3:
        raise ValueError(f"translations must both be [T, 3], got {t_gen.shape} and {t_ref.shape}")
    diff = normalise_translations(t_gen) - normalise_translations(t_ref)
    return float(np.sum(np.linalg.norm(diff, axis=-1)))


def cammc(rel_gen, rel_ref) -> float:
    """CamMC = CamMC_rel (spec 8.3): Σ_i ‖[R_gen,i | t̃_gen,i] − [R_ref,i | t̃_ref,i]‖_F over the 3×4 blocks,
    translations normalised by each trajectory's own max-norm. Takes relative poses [T, 4, 4] (or [T, 3, 4]).

    Closed form per frame (spec 8.3): sqrt(8·sin²(θ_i/2) + ‖Δt̃_i‖²)."""
    rel_gen, rel_ref = as_poses(rel_gen, "rel_gen"), as_poses(rel_ref, "rel_ref")
    if rel_gen.shape != rel_ref.shape:
        raise ValueError(f"trajectories differ in length: {rel_gen.shape[0]} vs {rel_ref.shape[0]} frames")
    a, b = rel_gen[:, :3, :].copy(), rel_ref[:, :3, :].copy()
    a[:, :, 3] = normalise_translations(a[:, :, 3])
    b[:, :, 3] = normalise_translations(b[:, :, 3])
    return float(np.sum(np.linalg.norm((a - b).reshape(len(a), -1), axis=-1)))


def camera_metrics(c2w_gen, c2w_ref) -> dict:
    """All three metrics from absolute c2w trajectories [T, 4, 4] (spec 8.2 step 6 + 8.3).

    Each trajectory is made relative to its own first frame, then RotErr / TransErr / CamMC are computed.
    Raises ValueError for different lengths or missing (non-finite) poses — upstream drops such videos
    (spec 8.2 step 8); callers here count them as failures instead.
    Returns {"RotErr", "TransErr", "CamMC", "num_frames", "rot_err_deg_per_frame"} (the last is a [T] list,
    a diagnostic, not part of the protocol)."""
    c2w_gen, c2w_ref = as_poses(c2w_gen, "c2w_gen"), as_poses(c2w_ref, "c2w_ref")
    if c2w_gen.shape != c2w_ref.shape:
        raise ValueError(f"trajectories differ in length: {c2w_gen.shape[0]} vs {c2w_ref.shape[0]} frames")
    for name, poses in (("generated", c2w_gen), ("reference", c2w_ref)):
        missing = np.flatnonzero(~np.all(np.isfinite(poses), axis=(1, 2)))
        if missing.size:
            raise ValueError(f"{name} trajectory has {missing.size} missing pose(s) (frames {missing.tolist()})")
    rel_gen, rel_ref = relative_to_first(c2w_gen), relative_to_first(c2w_ref)
    angles = rotation_angles(rel_gen[:, :3, :3], rel_ref[:, :3, :3])
    return {
        "RotErr": float(np.sum(angles)),
        "TransErr": trans_err(rel_gen[:, :3, 3], rel_ref[:, :3, 3]),
        "CamMC": cammc(rel_gen, rel_ref),
        "num_frames": int(len(c2w_gen)),
        "rot_err_deg_per_frame": np.degrees(angles).tolist(),
    }
