"""RotErr / TransErr / CamMC on hand-built poses (spec `cami2v_metrics.md` 8.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camclone_jax.eval.metrics import (
    SCALE_EPS,
    as_poses,
    camera_metrics,
    cammc,
    normalise_translations,
    relative_to_first,
    rot_err,
    rotation_angles,
    trans_err,
    translation_scale,
)


def axis_angle(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def poses(rotations, translations):
    out = np.tile(np.eye(4), (len(rotations), 1, 1))
    out[:, :3, :3] = rotations
    out[:, :3, 3] = translations
    return out


def random_pose(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    return poses([q], [rng.normal(size=3)])[0]


def trajectory(rng, n=16):
    rots = [axis_angle(rng.normal(size=3), 0.05 * i) for i in range(n)]
    trans = np.cumsum(rng.normal(size=(n, 3)) * 0.1, axis=0)
    return poses(rots, trans)


def test_identity_gives_zero():
    c2w = np.tile(np.eye(4), (16, 1, 1))
    m = camera_metrics(c2w, c2w)
    assert m["RotErr"] == 0 and m["TransErr"] == 0 and m["CamMC"] == 0
    assert m["num_frames"] == 16


def test_same_trajectory_in_other_world_frame_and_scale_gives_zero():
    """Relative-to-first removes the world frame; max-norm normalisation removes the scale (8.2 step 6, 8.3)."""
    rng = np.random.default_rng(0)
    ref = trajectory(rng)
    world = random_pose(rng)
    gen = world @ ref
    gen[:, :3, 3] = (gen[:, :3, 3] - world[:3, 3]) * 3.7 + world[:3, 3]  # uniform scale about the world origin
    m = camera_metrics(gen, ref)
    assert m["RotErr"] < 1e-6  # arccos near 1 amplifies rounding: ~1e-8 per frame
    assert m["TransErr"] < 1e-7  # not exactly 0: s = max‖t‖ + 1e-9
    assert m["CamMC"] < 1e-6


def test_uniformly_scaled_translations_give_zero_trans_err():
    t = np.random.default_rng(1).normal(size=(16, 3))
    t[0] = 0
    assert trans_err(5.0 * t, t) < 1e-7  # the +1e-9 in s(·) leaves ~1e-9 per frame
    assert trans_err(1e-3 * t, t) < 1e-5  # eps relatively larger at small scale


def test_rot_err_known_offsets_in_radians():
    """Frame i of the generated path is rotated by θ_i relative to the reference: RotErr = Σ θ_i (radians)."""
    rng = np.random.default_rng(2)
    thetas = np.array([0.0, 0.01, 0.1, 0.3, math.radians(10.0), 1.0, 3.0])
    R_ref = np.stack([axis_angle(rng.normal(size=3), rng.uniform(0, 2)) for _ in thetas])
    R_gen = np.stack([r @ axis_angle(rng.normal(size=3), th) for r, th in zip(R_ref, thetas)])
    np.testing.assert_allclose(rotation_angles(R_gen, R_ref), thetas, atol=1e-7)
    assert rot_err(R_gen, R_ref) == pytest.approx(thetas.sum(), abs=1e-6)
    # Same angle for the w2c form (transposes) and symmetric in its arguments (spec 8.3 note).
    R_gen_w2c, R_ref_w2c = np.swapaxes(R_gen, 1, 2), np.swapaxes(R_ref, 1, 2)
    assert rot_err(R_gen_w2c, R_ref_w2c) == pytest.approx(thetas.sum(), abs=1e-6)
    assert rot_err(R_ref, R_gen) == pytest.approx(thetas.sum(), abs=1e-6)


def test_rot_err_relative_to_first_frame():
    """A constant rotation offset of the whole path (world change) is removed; an offset growing along the
    path is counted frame by frame: 4° per frame over 5 frames -> (0+4+8+12+16)° in radians."""
    ref = np.tile(np.eye(4), (5, 1, 1))
    gen = poses([axis_angle([0, 1, 0], math.radians(4.0 * i)) for i in range(5)], np.zeros((5, 3)))
    offset = poses([axis_angle([1, 0, 0], 0.7)], [[1.0, 2.0, 3.0]])[0]
    m = camera_metrics(offset @ gen, ref)
    assert m["RotErr"] == pytest.approx(math.radians(40.0), abs=1e-9)
    np.testing.assert_allclose(m["rot_err_deg_per_frame"], [0, 4, 8, 12, 16], atol=1e-6)


def test_translation_normalisation():
    t = np.array([[0.0, 0, 0], [3.0, 4.0, 0], [0, 0, 2.0]])
    assert translation_scale(t) == pytest.approx(5.0 + SCALE_EPS)
    np.testing.assert_allclose(normalise_translations(t), t / 5.0)
    np.testing.assert_allclose(normalise_translations(t, reference=2 * t), t / 10.0)
    # A static camera: s = 1e-9, so the translations stay ~0 and TransErr compares against 0.
    assert trans_err(np.zeros((4, 3)), np.zeros((4, 3))) == 0.0


def test_trans_err_and_cammc_hand_computation():
    # Reference: straight line along x, s(ref) = 2 -> t̃ = 0, (0.5, 0, 0), (1, 0, 0).
    ref = poses([np.eye(3)] * 3, [[0, 0, 0], [1, 0, 0], [2, 0, 0]])
    # Generated: along z, s(gen) = 4 -> t̃ = 0, (0, 0, 0.25), (0, 0, 1); frame 2 also rotated 0.3 rad about z.
    theta = 0.3
    gen = poses([np.eye(3), np.eye(3), axis_angle([0, 0, 1], theta)], [[0, 0, 0], [0, 0, 1], [0, 0, 4]])
    d1, d2 = math.sqrt(0.5 ** 2 + 0.25 ** 2), math.sqrt(2.0)
    m = camera_metrics(gen, ref)
    assert m["RotErr"] == pytest.approx(theta)
    assert m["TransErr"] == pytest.approx(d1 + d2, rel=1e-8)
    # CamMC per frame = sqrt(‖ΔR‖_F² + ‖Δt̃‖²) with ‖R₁ − R₂‖_F = 2√2·sin(θ/2) (spec 8.3 closed form).
    expected = d1 + math.sqrt(8 * math.sin(theta / 2) ** 2 + 2.0)
    assert m["CamMC"] == pytest.approx(expected, rel=1e-8)
    # Explicit Frobenius norm of the 3x4 differences.
    a, b = gen[:, :3, :].copy(), ref[:, :3, :].copy()
    a[:, :, 3] /= 4.0 + SCALE_EPS
    b[:, :, 3] /= 2.0 + SCALE_EPS
    assert cammc(gen, ref) == pytest.approx(sum(np.linalg.norm(a[i] - b[i]) for i in range(3)), rel=1e-12)


def test_trans_err_at_most_two_per_frame():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
        assert trans_err(a, b) <= 2 * 8 + 1e-9


def test_relative_to_first_and_input_checks():
    rng = np.random.default_rng(4)
    c2w = trajectory(rng, 4)
    rel = relative_to_first(c2w)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(c2w[0] @ rel, c2w, atol=1e-12)
    assert as_poses(c2w[:, :3, :]).shape == (4, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        as_poses(np.eye(4))
    with pytest.raises(ValueError, match="length"):
        camera_metrics(c2w, c2w[:3])
    broken = c2w.copy()
    broken[2] = np.nan
    with pytest.raises(ValueError, match="missing"):
        camera_metrics(broken, c2w)
    broken[0] = np.nan
    with pytest.raises(ValueError, match="first frame"):
        relative_to_first(broken)
