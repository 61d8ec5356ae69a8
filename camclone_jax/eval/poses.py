"""Camera-pose estimation from video frames for the camera-accuracy metrics (spec `cami2v_metrics.md` 8.2).

Two estimators, both returning a `PoseEstimate` with camera-to-world poses [T, 4, 4] in OpenCV axes
(x right, y down, z forward), NaN for frames that could not be registered:

1. `estimate_poses_sfm` — CamI2V's protocol (spec 8.2 steps 1, 3-6 and checklist 12 item 5) through pycolmap:
   - frames written as `000.png, 001.png, ...` (step 1);
   - COLMAP SIFT with affine shape + domain-size pooling (DSP-SIFT), one shared camera with **fixed** known
     intrinsics (step 3; SIMPLE_PINHOLE `f, cx, cy` as upstream when fx == fy, PINHOLE otherwise);
   - sequential matching with guided matching and up to 65,536 matches (step 4; geometric verification with
     a 4 px RANSAC threshold);
   - GLOMAP's global mapper with intrinsics fixed in bundle adjustment (step 5). pycolmap >= 3.13 ships
     GLOMAP as `pycolmap.global_mapping` (no separate glomap binary); `mapper="incremental"` selects COLMAP's
     incremental mapper instead. GLOMAP 1.0's `--RelPoseEstimation.max_epipolar_error 4` has no separate knob
     in the integrated pipeline: relative poses are decomposed from the verified two-view geometries, whose
     RANSAC threshold is set to 4 px here.
   - poses read per image name, sorted by frame index, inverted to c2w (step 6).
   Failures (no features, no model, unregistered frames, pycolmap errors) never raise: the estimate has
   `success=False` and a `message`, and frames not registered are NaN in `c2w` (upstream drops such videos
   silently, spec 8.2 step 8 / 8.4; callers here count them).
   Degenerate input: for a (nearly) pure rotation (pan / tilt presets) SfM has no baseline. The incremental
   mapper then usually fails to initialise; GLOMAP registers every frame but its rotations are unstable across
   seeds (on a synthetic 16-frame pan+tilt+roll clip: RotErr 0.03-1.6 rad) and its translations are noise that
   the max-norm normalisation inflates to unit scale (spec 8.5). Use estimator 2 for such clips.
   COLMAP labels most pairs of our *translating* synthetic plane scenes PLANAR_OR_PANORAMIC as well, so the
   two-view labels (in `info["two_view_configs"]`) cannot flag the degenerate case automatically.

2. `estimate_rotations_homography` — a fast estimator for rotation-only (pan / tilt / roll) clips, not part
   of the upstream protocol: SIFT features per frame (pycolmap's `Sift`), mutual-nearest-neighbour matching
   with a ratio test between consecutive frames, a LO-RANSAC homography `H` (pycolmap) to select inliers, then
   the relative rotation. For a pure rotation with known K, `x_{i+1} ~ K R_{i+1}ᵀ R_i K⁻¹ x_i`, so
   `M = K⁻¹ H K ∝ R_{i+1}ᵀ R_i`; we use the least-squares rotation between the inliers' bearing vectors
   (Kabsch), which equals the orthonormalised `K⁻¹ H K` for noise-free data and is better conditioned. Rotations
   are chained to the first frame (`R_0 = I`); translations are 0.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "Intrinsics",
    "PoseEstimate",
    "estimate_poses_sfm",
    "estimate_rotations_homography",
    "pycolmap_info",
]


# --- Intrinsics ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, corner-origin convention (pixel (i, j) has centre (i + 0.5, j + 0.5); the
    convention of COLMAP and of RealEstate10K's normalised intrinsics, spec 3.1 / 7.1)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def default(cls, width: int, height: int) -> "Intrinsics":
        """CamI2V's intrinsics for out-of-domain images (spec 3.2): `fx = fy = 0.5·max(H, W)`, centred
        principal point (a 90° field of view along the longer side)."""
        f = 0.5 * max(width, height)
        return cls(f, f, width / 2.0, height / 2.0)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> "Intrinsics":
        """Square pixels with horizontal field of view `fov_deg`, centred principal point."""
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0)

    @classmethod
    def from_any(cls, value, width: int | None = None, height: int | None = None) -> "Intrinsics":
        """From an Intrinsics, a 3x3 K, a (fx, fy, cx, cy) sequence or a dict with those keys; None gives
        `default(width, height)`."""
        if value is None:
            if width is None or height is None:
                raise ValueError("intrinsics are None and no image size was given for the default")
            return cls.default(width, height)
        if isinstance(value, Intrinsics):
            return value
        if isinstance(value, dict):
            try:
                return cls(*(float(value[k]) for k in ("fx", "fy", "cx", "cy")))
            except KeyError as err:
                raise ValueError(f"intrinsics dict needs keys fx, fy, cx, cy; missing {err}") from None
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape == (3, 3):
            return cls(arr[0, 0], arr[1, 1], arr[0, 2], arr[1, 2])
        if arr.shape == (4,):
            return cls(*map(float, arr))
        raise ValueError(f"intrinsics must be a 3x3 K, [fx, fy, cx, cy] or a dict, got shape {arr.shape}")

    def validate(self, width: int, height: int) -> None:
        if not all(map(math.isfinite, (self.fx, self.fy, self.cx, self.cy))) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"intrinsics must be finite with positive focal lengths, got {self}")
        if not (0 <= self.cx <= width and 0 <= self.cy <= height):
            raise ValueError(f"principal point ({self.cx}, {self.cy}) lies outside the {width}x{height} image")


# --- Result ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PoseEstimate:
    """Estimated poses of one clip.

    c2w: [T, 4, 4] float64 camera-to-world (OpenCV axes), NaN for unregistered frames. The world frame and
        (for SfM) the translation scale are arbitrary: compare via `metrics.camera_metrics`, which makes both
        trajectories relative to their first frame and normalises the scale (spec 8.3).
    registered: [T] bool.  success: True only when every frame is registered (upstream needs all frames,
    spec 8.2 step 8).  message: why it failed, or a short summary.  info: diagnostics (feature counts, ...).
    """

    c2w: np.ndarray
    registered: np.ndarray
    success: bool
    message: str
    method: str
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def num_registered(self) -> int:
        return int(np.sum(self.registered))

    @property
    def num_frames(self) -> int:
        return int(len(self.registered))


def _failure(num_frames: int, method: str, message: str, **info) -> PoseEstimate:
    return PoseEstimate(np.full((num_frames, 4, 4), np.nan), np.zeros(num_frames, bool), False, message,
                        method, info)


def _finish(c2w: np.ndarray, method: str, info: dict, extra: str = "") -> PoseEstimate:
    registered = np.all(np.isfinite(c2w), axis=(1, 2))
    n, t = int(registered.sum()), len(registered)
    if n == t:
        message = f"registered all {t} frames" + extra
    elif not registered[0]:
        message = f"first frame not registered ({n}/{t} frames registered)" + extra
    else:
        missing = np.flatnonzero(~registered).tolist()
        message = f"only {n}/{t} frames registered; missing frames {missing}" + extra
    return PoseEstimate(c2w, registered, n == t, message, method, info)


# --- Frames ----------------------------------------------------------------------------------------------

def _as_uint8_frames(frames) -> np.ndarray:
    """[T, H, W, 3] (or [T, H, W]) uint8, or floats in [-1, 1] (the project's video range; values in [0, 1]
    cannot be told apart reliably, so pass uint8 when in doubt) -> uint8 [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        return np.clip(frames, 0, 255).astype(np.uint8)
    x = np.nan_to_num(frames.astype(np.float32))
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _gray(frame: np.ndarray) -> np.ndarray:
    g = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray(g / 255.0, dtype=np.float32)


def pycolmap_info() -> str:
    try:
        import pycolmap
    except ImportError:
        return "pycolmap not installed"
    return f"pycolmap {pycolmap.__version__} ({getattr(pycolmap, 'COLMAP_version', '?')})"


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as err:
        raise ImportError("camera-pose estimation needs pycolmap: pip install 'camclone_jax[eval]' "
                          "(or pip install pycolmap)") from err
    return pycolmap


def _quiet_pycolmap(pycolmap) -> None:
    try:  # glog: only errors to stderr
        pycolmap.logging.minloglevel = 2
    except AttributeError:
        pass


# --- SfM (spec 8.2) --------------------------------------------------------------------------------------

def _prepare(frames, intrinsics):
    """(uint8 frames [T, H, W, 3], checked intrinsics, pycolmap with its logging quietened)."""
    pixels = _as_uint8_frames(frames)
    h, w = pixels.shape[1:3]
    intr = Intrinsics.from_any(intrinsics, w, h)
    intr.validate(w, h)
    pycolmap = _import_pycolmap()
    _quiet_pycolmap(pycolmap)
    return pixels, intr, pycolmap


def estimate_poses_sfm(frames, intrinsics=None, workdir=None, *, mapper: str = "global", dsp: bool = True,
                       num_threads: int = -1, seed: int | None = 0, keep_workdir: bool = False) -> PoseEstimate:
    """Estimate c2w poses [T, 4, 4] of a clip with COLMAP features + sequential matching + GLOMAP (spec 8.2).

    frames: [T, H, W, 3] uint8 (or floats in [-1, 1]).  intrinsics: `Intrinsics`, 3x3 K, (fx, fy, cx, cy) or
    None for `Intrinsics.default` (spec 3.2); held fixed in bundle adjustment (spec 8.2 steps 3, 5).
    workdir: folder for images / database / model (a temporary one, deleted afterwards, when None; an explicit
    one is kept).  mapper: "global" (GLOMAP, the protocol) or "incremental" (COLMAP).  dsp: affine-shape +
    DSP-SIFT as upstream (False: plain SIFT, faster).  seed: RANSAC / mapper seed (None: nondeterministic, like
    upstream's trials, spec 8.4).
    Never raises for SfM failures; returns `success=False` with a message. Raises ValueError for bad inputs and
    ImportError without pycolmap."""
    method = f"sfm-{mapper}"
    if mapper not in ("global", "incremental"):
        raise ValueError(f"mapper must be 'global' or 'incremental', got {mapper!r}")
    pixels, intr, pycolmap = _prepare(frames, intrinsics)
    t = len(pixels)
    if mapper == "global" and not hasattr(pycolmap, "global_mapping"):
        raise ImportError(f"{pycolmap_info()} has no global_mapping (GLOMAP); use mapper='incremental' or "
                          f"pycolmap >= 3.13")

    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="camclone_sfm_")) if own_dir else Path(workdir)
    try:
        return _run_sfm(pycolmap, pixels, intr, root, mapper, dsp, num_threads, seed, method)
    except Exception as err:  # any pycolmap failure becomes a reported failure, not an exception
        return _failure(t, method, f"SfM error: {type(err).__name__}: {err}")
    finally:
        if own_dir and not keep_workdir:
            shutil.rmtree(root, ignore_errors=True)


def _run_sfm(pycolmap, pixels, intr: Intrinsics, root: Path, mapper: str, dsp: bool, num_threads: int,
             seed, method: str) -> PoseEstimate:
    t = len(pixels)
    image_dir, model_dir, database = root / "images", root / "model", root / "database.db"
    image_dir.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    if database.exists():
        database.unlink()  # a stale database would mix in old images
    digits = max(3, len(str(t - 1)))
    names = [f"{i:0{digits}d}.png" for i in range(t)]  # spec 8.2 step 1: 000.png ...
    for name, frame in zip(names, pixels):
        Image.fromarray(frame).save(image_dir / name)

    # Step 3: one camera, fixed known intrinsics, affine + DSP SIFT.
    reader = pycolmap.ImageReaderOptions()
    if intr.fx == intr.fy:
        reader.camera_model, reader.camera_params = "SIMPLE_PINHOLE", f"{intr.fx},{intr.cx},{intr.cy}"
    else:
        reader.camera_model, reader.camera_params = "PINHOLE", f"{intr.fx},{intr.fy},{intr.cx},{intr.cy}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = num_threads
    extraction.sift.estimate_affine_shape = dsp
    extraction.sift.domain_size_pooling = dsp
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    db = pycolmap.Database.open(database)
    try:
        id_by_name = {image.name: image.image_id for image in db.read_all_images()}
        features = [int(db.num_keypoints_for_image(id_by_name[n])) if n in id_by_name else 0 for n in names]
    finally:
        db.close()
    info = {"features_per_frame": features, "mapper": mapper, "intrinsics": dataclasses.asdict(intr),
            "pycolmap": pycolmap_info()}
    if sum(f > 0 for f in features) < 2:
        return _failure(t, method, f"too few frames with SIFT features ({sum(f > 0 for f in features)}/{t}; "
                        f"a textureless or blank video?)", **info)

    # Step 4: sequential matching, guided, up to 65536 matches; 4 px verification threshold.
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = num_threads
    matching.guided_matching = True
    matching.max_num_matches = 65536
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.max_error = 4.0
    if seed is not None:
        verification.ransac.random_seed = int(seed)
    pycolmap.match_sequential(database, matching_options=matching, verification_options=verification,
                              device=pycolmap.Device.cpu)
    info["two_view_configs"] = _two_view_configs(pycolmap, database)

    # Step 5: global (GLOMAP) or incremental mapper, intrinsics fixed.
    if mapper == "global":
        options = pycolmap.GlobalPipelineOptions()
        options.num_threads = num_threads
        ba = options.mapper.bundle_adjustment
        ba.refine_focal_length = ba.refine_principal_point = ba.refine_extra_params = False
        if seed is not None:
            options.random_seed = int(seed)
        reconstructions = pycolmap.global_mapping(database, image_dir, model_dir, options)
    else:
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = num_threads
        options.ba_refine_focal_length = options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
        if seed is not None:
            options.random_seed = int(seed)
        reconstructions = pycolmap.incremental_mapping(database, image_dir, model_dir, options)
    if not reconstructions:
        return _failure(t, method, "the mapper produced no model (too few verified matches?)", **info)

    # Step 6: largest model; w2c per image name -> c2w.
    models = sorted(reconstructions.values(), key=lambda r: r.num_reg_images(), reverse=True)
    rec = models[0]
    info["num_models"] = len(models)
    info["model_sizes"] = [int(r.num_reg_images()) for r in models]
    c2w = np.full((t, 4, 4), np.nan)
    index = {name: i for i, name in enumerate(names)}
    for image in rec.images.values():
        if image.name not in index or not image.has_pose:
            continue
        w2c = np.eye(4)
        w2c[:3, :] = image.cam_from_world().matrix()
        c2w[index[image.name]] = np.linalg.inv(w2c)
    extra = f"; {len(models)} separate models, the largest kept" if len(models) > 1 else ""
    return _finish(c2w, method, info, extra)


def _two_view_configs(pycolmap, database) -> dict:
    """Counts of COLMAP's two-view configurations (CALIBRATED, PLANAR_OR_PANORAMIC, ...) of the matched pairs.

    Diagnostic only: PLANAR_OR_PANORAMIC cannot tell a pure rotation from a planar scene, so it is not used to
    flag degenerate clips (our translating plane scenes get it for most pairs too)."""
    try:
        db = pycolmap.Database.open(database)
        try:
            _, geometries = db.read_two_view_geometries()
        finally:
            db.close()
        names = {int(v.value): k for k, v in pycolmap.TwoViewGeometryConfiguration.__members__.items()}
        counts: dict = {}
        for g in geometries:
            name = names.get(int(g.config), str(int(g.config)))
            counts[name] = counts.get(name, 0) + 1
        return counts
    except Exception:  # diagnostics only; never fail the estimate because of them
        return {}


# --- Homography estimator for rotation-only clips --------------------------------------------------------

def _match_descriptors(d1: np.ndarray, d2: np.ndarray, max_ratio: float) -> np.ndarray:
    """Mutual nearest neighbours with Lowe's ratio test on unit-norm SIFT descriptors -> [M, 2] indices."""
    if len(d1) < 2 or len(d2) < 2:
        return np.zeros((0, 2), np.int64)
    sim = d1.astype(np.float32) @ d2.astype(np.float32).T
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))  # unit vectors: ‖a − b‖² = 2 − 2 a·b
    nn12 = np.argmin(dist, axis=1)
    nn21 = np.argmin(dist, axis=0)
    two = np.partition(dist, 1, axis=1)[:, :2]
    keep = (nn21[nn12] == np.arange(len(d1))) & (two[:, 0] < max_ratio * two[:, 1])
    i = np.flatnonzero(keep)
    return np.stack([i, nn12[i]], axis=1)


def _bearings(points: np.ndarray, K_inv: np.ndarray) -> np.ndarray:
    rays = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ K_inv.T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation M minimising Σ ‖b_k − M a_k‖² (rows of a, b are unit vectors)."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _orthonormalise(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def estimate_rotations_homography(frames, intrinsics=None, *, max_features: int = 4096, max_ratio: float = 0.8,
                                  ransac_max_error: float = 2.0, min_inliers: int = 30,
                                  seed: int | None = 0) -> PoseEstimate:
    """Rotation-only poses from frame-to-frame homographies (module doc, estimator 2). Not in the protocol.

    Returns c2w [T, 4, 4] with rotation `R_i` (R_0 = I) and zero translation. A pair with fewer than
    `min_inliers` homography inliers breaks the chain: later frames are NaN and `success` is False.
    Only meaningful for pan / tilt / roll clips (a translating camera violates the homography model; the
    inlier ratio and the mean reprojection error per pair in `info` help to spot that)."""
    method = "homography"
    pixels, intr, pycolmap = _prepare(frames, intrinsics)
    t = len(pixels)
    K, K_inv = intr.K, np.linalg.inv(intr.K)

    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = int(max_features)
    try:
        with warnings.catch_warnings():  # pycolmap 4 deprecates Sift in favour of FeatureExtractor (no numpy API)
            warnings.simplefilter("ignore", DeprecationWarning)
            sift = pycolmap.Sift(options, pycolmap.Device.cpu)
        feats = []
        for frame in pixels:
            keypoints, descriptors = sift.extract(_gray(frame))
            # pycolmap keypoints are in COLMAP's corner-origin convention, like Intrinsics.
            feats.append((np.asarray(keypoints[:, :2], np.float64), np.asarray(descriptors, np.float32)))
    except Exception as err:
        return _failure(t, method, f"feature extraction error: {type(err).__name__}: {err}")
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = float(ransac_max_error)
    if seed is not None:
        ransac.random_seed = int(seed)

    c2w = np.full((t, 4, 4), np.nan)
    c2w[0] = np.eye(4)
    info = {"features_per_frame": [len(f[0]) for f in feats], "inliers": [], "reproj_error_px": [],
            "homography_vs_kabsch_deg": [], "intrinsics": dataclasses.asdict(intr)}
    extra = ""
    for i in range(t - 1):
        (p1, d1), (p2, d2) = feats[i], feats[i + 1]
        pairs = _match_descriptors(d1, d2, max_ratio)
        if len(pairs) < min_inliers:
            extra = f"; pair {i}->{i + 1}: only {len(pairs)} matches"
            break
        x1, x2 = p1[pairs[:, 0]], p2[pairs[:, 1]]
        try:
            result = pycolmap.estimate_homography_matrix(x1, x2, ransac)
        except Exception as err:
            result, extra = None, f"; pair {i}->{i + 1}: {type(err).__name__}: {err}"
        if result is None:
            extra = extra or f"; pair {i}->{i + 1}: no homography found"
            break
        inl = np.asarray(result["inlier_mask"], bool)
        if inl.sum() < min_inliers:
            extra = f"; pair {i}->{i + 1}: only {int(inl.sum())} homography inliers"
            break
        H = np.asarray(result["H"], np.float64)
        # M ≈ R_{i+1}ᵀ R_i maps frame-i bearings to frame-(i+1) bearings.
        M = _kabsch(_bearings(x1[inl], K_inv), _bearings(x2[inl], K_inv))
        m_h = K_inv @ H @ K
        m_h = _orthonormalise(m_h / np.cbrt(np.linalg.det(m_h)))
        proj = (np.concatenate([x1[inl], np.ones((int(inl.sum()), 1))], 1) @ (K @ M @ K_inv).T)
        reproj = np.linalg.norm(proj[:, :2] / proj[:, 2:] - x2[inl], axis=1)
        info["inliers"].append(int(inl.sum()))
        info["reproj_error_px"].append(float(np.mean(reproj)))
        info["homography_vs_kabsch_deg"].append(
            float(np.degrees(np.arccos(np.clip((np.trace(M.T @ m_h) - 1) / 2, -1, 1)))))
        c2w[i + 1] = np.eye(4)
        c2w[i + 1, :3, :3] = c2w[i, :3, :3] @ M.T  # R_{i+1} = R_i Mᵀ
    return _finish(c2w, method, info, extra)

