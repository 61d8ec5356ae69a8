"""Camera trajectories and the 12-d camera embeddings of ReCamMaster and SynCamMaster (numpy only).

Conventions (spec `camera_control.md` 5.5, 5.6, 6.4, 6.7):
- Camera JSON (`camera_extrinsics.json`): `{"frame0": {"cam01": "[a b c d] [e f g h] [i j k l] [x y z 1] ", ...},
  ...}`. Each string is a 4x4 Unreal Engine matrix A stored row-vector style: its rows are the camera's
  (forward, right, up) axes and its position, in a left-handed world (X forward, Y right, Z up), centimetres.
- `ue_to_opencv` turns A into an OpenCV-style camera-to-world matrix C with exactly upstream's steps:
  M = Aᵀ; C = M[:, [1, 2, 0, 3]] (right, up, forward, position); negate rows 0-2 of column 1 (up -> down);
  divide rows 0-2 of column 3 by `divisor` (ReCamMaster 100, SynCamMaster 200: cm -> "metres").
  World coordinates are untouched, so det(C[:3, :3]) = -1, but relative poses C_ref⁻¹·C_i are proper
  rotations expressed in the reference camera's (x right, y down, z forward) frame.
- A "trajectory" below is a [T, 4, 4] float64 array of such c2w matrices, one per video frame.
- Embedding: latent frame k uses video frame `stride*k` (`range(T)[::stride]`, 81 frames -> 21 latent frames)
  and gets `Rel = C_ref⁻¹ · C(stride*k)`, first three rows flattened row-major
  `[R00 R01 R02 t0 R10 R11 R12 t1 R20 R21 R22 t2]`. Upstream casts to bf16 afterwards; we return float32
  and leave the cast to the model's dtype policy.

Shapes: T video frames, F latent frames (= len(range(T)[::stride])), V views (SynCamMaster).

ReCamMaster presets 1-10 are generated in code (not read from the JSON); they reproduce the shipped
`example_test_data/cameras/camera_extrinsics.json` at every frame: presets 1-6 are linear in angle / distance;
presets 7-10 translate linearly while looking at a point `PRESET_LOOKAT_M` ahead of the first camera, so their
angles are *not* linear in time (the spec's "angle grows linearly" holds only for 1-6).

Simple trajectory specs (`trajectory_from_spec`): terms joined by "+", each interpolated linearly (in angle
and distance) from identity at frame 0 to its end value at the last frame, composed left to right:
    pan:DEG          yaw; positive turns right (forward -> +x)          e.g. "pan:20"
    tilt:DEG         pitch; positive looks up (forward -> -y)           e.g. "tilt:-15"
    zoom:M           dolly along the view axis; positive moves forward  e.g. "zoom:0.3"
    orbit:DEG[,R]    arc around a point R metres ahead (default 4); positive moves the camera right
    translate:X,Y,Z  move in OpenCV camera axes (x right, y down, z forward), metres
    e.g. "pan:10+translate:0,-0.5,0"
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

RECAM_DIVISOR = 100.0  # ReCamMaster: cm -> m
SYNCAM_DIVISOR = 200.0  # SynCamMaster (spec 6.4)
RECAM_NUM_FRAMES = 81
LATENT_STRIDE = 4

# End values of the shipped presets, read off the JSON (spec 5.6 rounds them to 19.9°, 1.988 m, ...).
# Every preset moves 2.4845 units per frame for 80 frames: degrees for pan, cm for the dolly.
PRESET_PAN_DEG = 19.876
PRESET_TILT_DEG = PRESET_PAN_DEG / 2  # 9.938°
PRESET_DOLLY_M = 1.9876
PRESET_LIFT_M = PRESET_DOLLY_M / 2  # presets 7/8: 0.9938 m
PRESET_ARC_FORWARD_M = PRESET_DOLLY_M * math.tan(math.radians(15.0))  # presets 9/10: 0.5326 m
PRESET_LOOKAT_M = 4.0  # presets 7-10 keep looking at the point 4 m ahead of the first camera

RECAM_PRESET_NAMES = {
    1: "pan right", 2: "pan left", 3: "tilt up", 4: "tilt down", 5: "zoom in", 6: "zoom out",
    7: "translate up (with rotation)", 8: "translate down (with rotation)",
    9: "arc left (with rotation)", 10: "arc right (with rotation)",
}

# SynCamMaster inference presets (spec 6.7): (target camera = view 0, condition camera = view 1).
SYNCAM_PRESETS = {"az": (1, 3), "el": (3, 7), "dis": (9, 10)}
_SYNCAM_CENTRE_CM = np.array([13220.0, 1100.0, -570.0])  # all 10 static cameras look at this point
_SYNCAM_RADIUS_CM = 300.0  # horizontal distance of cameras 01-08 from the centre


# --- Basic pose algebra (OpenCV camera axes) -------------------------------------------------------------

def rot_y(deg: float) -> np.ndarray:
    """Yaw about the camera's y (down) axis; positive turns the view to the right. [3, 3]"""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(deg: float) -> np.ndarray:
    """Pitch about the camera's x (right) axis; positive tilts the view up (forward -> -y). [3, 3]"""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def make_pose(rotation: np.ndarray | None = None, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 c2w from a [3, 3] rotation and a camera position."""
    pose = np.eye(4)
    if rotation is not None:
        pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


# --- Camera JSON -> OpenCV c2w ---------------------------------------------------------------------------

_ROW = re.compile(r"\[([^\[\]]*)\]")


def parse_ue_matrix(text: str) -> np.ndarray:
    """Parse `"[r0] [r1] [r2] [r3] "` into the 4x4 matrix A as written (rows as rows). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"expected a matrix string, got {type(text).__name__}")
    rows = _ROW.findall(text)
    if len(rows) != 4 or _ROW.sub("", text).strip():
        raise ValueError(f"expected 4 bracketed rows, got {text!r}")
    try:
        matrix = np.array([[float(v) for v in row.split()] for row in rows])
    except ValueError as err:
        raise ValueError(f"non-numeric entry in {text!r}") from err
    if matrix.shape != (4, 4):
        raise ValueError(f"expected 4 values per row, got {text!r}")
    return matrix


def ue_to_opencv(ue_matrix: np.ndarray, divisor: float = RECAM_DIVISOR) -> np.ndarray:
    """Upstream's conversion of a row-vector UE matrix A [..., 4, 4] to OpenCV-axis c2w [..., 4, 4]."""
    c2w = np.swapaxes(np.asarray(ue_matrix, np.float64), -1, -2)[..., [1, 2, 0, 3]].copy()
    c2w[..., :3, 1] *= -1.0
    c2w[..., :3, 3] /= divisor
    return c2w


def camera_key(camera: int | str) -> str:
    return f"cam{camera:02d}" if isinstance(camera, int) else camera


def load_camera_json(path: str | Path, camera: int | str, divisor: float = RECAM_DIVISOR) -> np.ndarray:
    """All frames of one camera in a `camera_extrinsics.json` as OpenCV c2w [T, 4, 4] (frame0, frame1, ...)."""
    path, key = Path(path), camera_key(camera)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"cannot read camera JSON {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or "frame0" not in data:
        raise ValueError(f"{path}: expected an object with keys 'frame0', 'frame1', ...; no 'frame0'")
    frames = sorted((k for k in data if re.fullmatch(r"frame\d+", k)), key=lambda k: int(k[5:]))
    if [int(k[5:]) for k in frames] != list(range(len(frames))):
        raise ValueError(f"{path}: frame keys are not contiguous from frame0: {frames[:3]}...{frames[-3:]}")
    matrices = []
    for frame in frames:
        entry = data[frame]
        if not isinstance(entry, dict) or key not in entry:
            cams = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{path}: field {frame}.{key} is missing (available: {cams})")
        try:
            matrices.append(parse_ue_matrix(entry[key]))
        except ValueError as err:
            raise ValueError(f"{path}: field {frame}.{key}: {err}") from None
    return ue_to_opencv(np.stack(matrices), divisor)


# --- Relative poses and the 12-d embedding ---------------------------------------------------------------

def relative_poses(c2ws: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """`reference⁻¹ · c2w` for each pose [..., 4, 4]; the reference defaults to the first pose."""
    c2ws = np.asarray(c2ws, np.float64)
    reference = c2ws[0] if reference is None else np.asarray(reference, np.float64)
    return np.linalg.inv(reference) @ c2ws


def pose_embedding(rel: np.ndarray) -> np.ndarray:
    """First three rows of each [..., 4, 4] pose flattened row-major -> [..., 12] float32."""
    rel = np.asarray(rel)
    return rel[..., :3, :].reshape(*rel.shape[:-2], 12).astype(np.float32)


def recam_embedding(target_c2ws: np.ndarray, reference: np.ndarray | None = None,
                    stride: int = LATENT_STRIDE) -> np.ndarray:
    """ReCamMaster cam_emb [F, 12] from a target trajectory [T, 4, 4].

    Latent frame k gets `reference⁻¹ · C_tgt(stride·k)`. Training uses reference = the source camera's frame-0
    pose; upstream inference uses the target's own frame 0 (the default here) — see spec 5.5 / quirk 3."""
    target_c2ws = np.asarray(target_c2ws, np.float64)
    reference = target_c2ws[0] if reference is None else reference
    return pose_embedding(relative_poses(target_c2ws[::stride], reference))


# --- ReCamMaster presets ---------------------------------------------------------------------------------

def _look_at_pose(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """c2w at `position` turned (yaw, then pitch; no roll) to look at `target` (OpenCV camera frame)."""
    d = target - position
    yaw = math.degrees(math.atan2(d[0], d[2]))
    pitch = math.degrees(math.atan2(-d[1], math.hypot(d[0], d[2])))
    return make_pose(rot_y(yaw) @ rot_x(pitch), position)


def recam_preset_trajectory(preset: int, num_frames: int = RECAM_NUM_FRAMES) -> np.ndarray:
    """Relative c2w [T, 4, 4] of ReCamMaster preset 1-10 (frame 0 = identity, end pose at the last frame)."""
    if preset not in RECAM_PRESET_NAMES:
        raise ValueError(f"unknown ReCamMaster preset {preset!r}; expected an int in 1..10 "
                         f"({', '.join(f'{k}={v}' for k, v in RECAM_PRESET_NAMES.items())})")
    sign = 1.0 if preset % 2 else -1.0  # odd presets: right / up / in / up / left-arc; even mirror them
    poses = []
    for s in np.linspace(0.0, 1.0, num_frames):
        if preset <= 2:
            pose = make_pose(rot_y(sign * s * PRESET_PAN_DEG))
        elif preset <= 4:
            pose = make_pose(rot_x(sign * s * PRESET_TILT_DEG))
        elif preset <= 6:
            pose = make_pose(translation=(0.0, 0.0, sign * s * PRESET_DOLLY_M))
        elif preset <= 8:  # move up (-y) / down while looking at the point PRESET_LOOKAT_M ahead
            pose = _look_at_pose(np.array([0.0, -sign * s * PRESET_LIFT_M, 0.0]), np.array([0, 0, PRESET_LOOKAT_M]))
        else:  # 9 arc left (-x), 10 arc right (+x), both drifting forward, looking at the same point
            position = np.array([-sign * s * PRESET_DOLLY_M, 0.0, s * PRESET_ARC_FORWARD_M])
            pose = _look_at_pose(position, np.array([0.0, 0.0, PRESET_LOOKAT_M]))
        poses.append(pose)
    return np.stack(poses)


# --- Simple trajectory specs -----------------------------------------------------------------------------

_SPEC_ARITY = {"pan": (1, 1), "tilt": (1, 1), "zoom": (1, 1), "orbit": (1, 2), "translate": (3, 3)}


def _spec_term_pose(op: str, args: list[float], s: float) -> np.ndarray:
    if op == "pan":
        return make_pose(rot_y(s * args[0]))
    if op == "tilt":
        return make_pose(rot_x(s * args[0]))
    if op == "zoom":
        return make_pose(translation=(0.0, 0.0, s * args[0]))
    if op == "translate":
        return make_pose(translation=s * np.array(args))
    radius = args[1] if len(args) > 1 else PRESET_LOOKAT_M  # orbit: pivot at (0, 0, radius)
    pivot = make_pose(translation=(0.0, 0.0, radius))
    return pivot @ make_pose(rot_y(-s * args[0])) @ np.linalg.inv(pivot)


def trajectory_from_spec(spec: str, num_frames: int = RECAM_NUM_FRAMES) -> np.ndarray:
    """Relative c2w [T, 4, 4] for a spec such as "pan:20" or "orbit:30+zoom:0.5" (grammar in the module doc)."""
    terms = []
    for term in spec.split("+"):
        op, sep, rest = term.strip().partition(":")
        op = op.strip().lower()
        if not sep or op not in _SPEC_ARITY:
            raise ValueError(f"malformed camera spec {spec!r}: term {term.strip()!r} is not OP:VALUES with OP in "
                             f"{sorted(_SPEC_ARITY)}")
        try:
            args = [float(v) for v in rest.split(",")]
        except ValueError:
            raise ValueError(f"malformed camera spec {spec!r}: non-numeric value in {term.strip()!r}") from None
        lo, hi = _SPEC_ARITY[op]
        if not lo <= len(args) <= hi or not all(map(math.isfinite, args)):
            raise ValueError(f"malformed camera spec {spec!r}: {op} takes {lo if lo == hi else f'{lo}-{hi}'} "
                             f"finite number(s), got {rest!r}")
        terms.append((op, args))
    poses = []
    for s in np.linspace(0.0, 1.0, num_frames):
        pose = np.eye(4)
        for op, args in terms:
            pose = pose @ _spec_term_pose(op, args, s)
        poses.append(pose)
    return np.stack(poses)


def recam_trajectory(trajectory: int | str | Path, camera: int | str | None = None,
                     num_frames: int | None = None) -> np.ndarray:
    """Target camera-to-world poses [T, 4, 4] (OpenCV, metres) of a ReCamMaster trajectory.

    `trajectory`: a preset id 1-10 (int or digit string), a path to a camera JSON (then `camera`, e.g. 3 or
    "cam03", picks the camera; it may be omitted when the file holds one camera; its first `num_frames` frames
    are used, all of them when None), or a spec string (module doc). T = num_frames, default 81."""
    if num_frames is None and not str(trajectory).lower().endswith(".json"):
        num_frames = RECAM_NUM_FRAMES
    if isinstance(trajectory, (int, np.integer)) or (isinstance(trajectory, str) and trajectory.strip().isdigit()):
        return recam_preset_trajectory(int(trajectory), num_frames)
    path = Path(trajectory)
    if isinstance(trajectory, Path) or path.suffix.lower() == ".json":
        if camera is None:
            camera = _only_camera(path)
        c2ws = load_camera_json(path, camera, RECAM_DIVISOR)
        if num_frames is None:
            return c2ws
        if len(c2ws) < num_frames:
            raise ValueError(f"camera JSON {path} has {len(c2ws)} frames for {camera_key(camera)}, but the video "
                             f"has {num_frames}")
        return c2ws[:num_frames]
    return trajectory_from_spec(trajectory, num_frames)


def trajectory_from_video(path: str | Path, num_frames: int, *, height: int = 480, width: int = 832,
                          method: str = "sfm", scale: float = 1.0, intrinsics=None) -> np.ndarray:
    """Relative c2w [num_frames, 4, 4] (OpenCV) of the camera that filmed the video at `path`, estimated with
    the evaluator's pose estimators (`camclone_jax.eval.estimators`: "sfm" = COLMAP features + sequential
    matching + GLOMAP, any motion; "homography" and "direct" = rotation only, for pans / tilts / rolls, fast;
    "direct" also on blurred video). SfM recovers the path
    only up to scale: translations are rescaled so the farthest camera is `scale` from the first (the presets
    move 1-2 units). Raises ValueError with the estimator's message when it cannot place every frame."""
    from camclone_jax.eval.estimators import check_method, estimate_poses
    from camclone_jax.sample.video import read_video

    check_method(method)
    frames = read_video(path, height=height, width=width, num_frames=num_frames, short="error")
    estimate = estimate_poses(frames, intrinsics, method)
    if not estimate.success:
        raise ValueError(f"could not estimate the camera path of {path} ({method}): {estimate.message}"
                         + ("; for a pure pan / tilt try --trajectory-method homography" if method == "sfm" else ""))
    rel = relative_poses(estimate.c2w)
    reach = float(np.max(np.linalg.norm(rel[:, :3, 3], axis=-1)))
    if reach > 1e-9:
        rel[:, :3, 3] *= scale / reach
    return rel


def recam_cam_emb(trajectory: int | str | Path, camera: int | str | None = None,
                  num_frames: int | None = None, stride: int = LATENT_STRIDE) -> np.ndarray:
    """ReCamMaster `cam_emb` [F, 12] float32 (F = 21 for 81 frames), relative to the trajectory's frame 0;
    `trajectory` and `camera` as in `recam_trajectory`."""
    return recam_embedding(recam_trajectory(trajectory, camera, num_frames), stride=stride)


def _only_camera(path: Path) -> str:
    try:
        cams = sorted(json.loads(path.read_text())["frame0"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        cams = None  # load_camera_json reports the precise problem
    if cams is not None and len(cams) != 1:
        raise ValueError(f"{path} holds cameras {cams}; pass camera= to pick one")
    return cams[0] if cams else "cam01"


# --- SynCamMaster ----------------------------------------------------------------------------------------

def ue_matrix(position_cm, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """A UE row-vector matrix (rows forward, right, up, position) for a camera with yaw (positive turns to +Y,
    the right) and pitch (positive looks up), no roll — the layout of the camera JSON strings. [4, 4]"""
    cy, sy = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    cp, sp = math.cos(math.radians(pitch_deg)), math.sin(math.radians(pitch_deg))
    a = np.zeros((4, 4))
    a[0, :3] = (cp * cy, cp * sy, sp)  # forward
    a[1, :3] = (-sy, cy, 0.0)  # right
    a[2, :3] = (-sp * cy, -sp * sy, cp)  # up
    a[3] = (*position_cm, 1.0)
    return a


def syncam_static_cameras() -> dict[int, np.ndarray]:
    """The 10 static SynCamMaster inference cameras (spec 6.7) as UE matrices [4, 4], keyed 1..10."""
    cams = {}
    for i, yaw in enumerate((-30.0, -15.0, 0.0, 15.0, 30.0), start=1):  # ring at 300 cm around the centre
        offset = _SYNCAM_RADIUS_CM * np.array([math.cos(math.radians(yaw)), math.sin(math.radians(yaw)), 0.0])
        cams[i] = ue_matrix(_SYNCAM_CENTRE_CM - offset, yaw_deg=yaw)
    for i, pitch in zip((6, 7, 8), (-10.0, -20.0, -30.0)):  # raised above cam03, looking down at the centre
        height = _SYNCAM_RADIUS_CM * math.tan(math.radians(-pitch))
        cams[i] = ue_matrix(_SYNCAM_CENTRE_CM + np.array([-_SYNCAM_RADIUS_CM, 0.0, height]), pitch_deg=pitch)
    for i, back in zip((9, 10), (100.0, 200.0)):  # behind cam03
        cams[i] = ue_matrix(_SYNCAM_CENTRE_CM - np.array([_SYNCAM_RADIUS_CM + back, 0.0, 0.0]))
    return cams


def syncam_embedding(view_c2ws: np.ndarray, stride: int = LATENT_STRIDE) -> np.ndarray:
    """SynCamMaster cam_emb [V, F, 12] from per-view trajectories [V, T, 4, 4] (spec 6.4).

    Latent frame k of view v gets `C_0(stride·k)⁻¹ · C_v(stride·k)`: view 0 is the identity at every frame.
    Upstream hard-codes V = 2; any V ≥ 1 works here."""
    view_c2ws = np.asarray(view_c2ws, np.float64)[:, ::stride]
    return pose_embedding(np.linalg.inv(view_c2ws[:1]) @ view_c2ws)


def syncam_view_poses(name: str) -> np.ndarray:
    """The two cameras of a SynCamMaster preset as OpenCV c2w [2, 4, 4] relative to view 0 (the target)."""
    if name not in SYNCAM_PRESETS:
        raise ValueError(f"unknown SynCamMaster preset {name!r}; expected one of {sorted(SYNCAM_PRESETS)}")
    cams = syncam_static_cameras()
    views = np.stack([ue_to_opencv(cams[i], SYNCAM_DIVISOR) for i in SYNCAM_PRESETS[name]])
    return np.linalg.inv(views[:1]) @ views


def syncam_preset(name: str, num_frames: int = RECAM_NUM_FRAMES, stride: int = LATENT_STRIDE) -> np.ndarray:
    """SynCamMaster cam_emb [2, F, 12] for `--cam_type az | el | dis` (view 0 = target = identity)."""
    views = syncam_view_poses(name)  # relative poses embed the same as the absolute ones
    return syncam_embedding(np.repeat(views[:, None], num_frames, axis=1), stride)
