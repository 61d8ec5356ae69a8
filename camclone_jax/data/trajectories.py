"""Random camera trajectories following the CameraClone rules (numpy only).

A trajectory is a *relative* camera motion: a [T, 4, 4] array `rel` of poses expressed in the first camera's
frame (OpenCV axes: x right, y down, z forward; metres), with `rel[0] = I`. A location places it in the world
with its start pose: `c2w(t) = start @ rel(t)`. Replaying the same trajectory at another location therefore
gives the same camera motion relative to the first frame, which is what a CameraClone reference shares with
its target.

Pose parameters (6 numbers, interpolated over the clip): position (x, y, z) in the first camera's frame and
angles (yaw, pitch, roll) in degrees, composed as `R = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)`:
    yaw    positive pans right (forward -> +x)          (camclone_jax.sample.camera.rot_y)
    pitch  positive tilts up (forward -> -y)            (camclone_jax.sample.camera.rot_x)
    roll   positive rotates the camera clockwise about its forward axis (image content turns anticlockwise)

Kinds (`KINDS`):
    pan, tilt, roll  one angle grows from 0 to +-[5, 75] degrees
    translate        move along one camera axis (x, y or z) by 0.4-1.2 m
    arc              orbit around a point `radius` metres ahead: left / right (yaw 10-60 degrees) or up
                     (the camera rises on a vertical circle and looks down, 10-30 degrees)
    spline           a Catmull-Rom spline through the start pose and 2-4 random keypoints (positions within
                     about a metre, yaw +-35, pitch +-20, roll +-10 degrees), keypoint k reached at s = k / n

Speed (`progress`): clip time u = t / (T - 1) in [0, 1] maps to path progress s(u) in [0, 1].
    constant   s(u) = u
    variable   the MultiCamVideo formula (ReCamMaster README, "Camera Movement Speed"):
               s(u) = (1 - exp(-a u)) / (1 - exp(-a)); a > 0 starts fast and slows down, a < 0 starts slow
               and speeds up; |a| in [1, 4] here. Half of the trajectories are constant, half variable, as there.
               ds/du = a exp(-a u) / (1 - exp(-a)) > 0: the camera never stops or reverses, s(0) = 0, s(1) = 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from camclone_jax.sample.camera import rot_x, rot_y

KINDS = ("pan", "tilt", "roll", "translate", "arc", "spline")
# The ten cameras of a location group (cam01..cam10), in order.
DEFAULT_KINDS = ("pan", "tilt", "roll", "translate", "translate", "arc", "arc", "spline", "spline", "spline")
ROTATION_KINDS = ("pan", "tilt", "roll")  # the camera only turns about its own centre
BASIC_ANGLE_RANGE = (5.0, 75.0)
TRANSLATE_RANGE = (0.4, 1.2)
ARC_YAW_RANGE = (10.0, 60.0)
ARC_UP_RANGE = (10.0, 30.0)
SPLINE_KEYPOINTS = (2, 4)
SPEED_A_RANGE = (1.0, 4.0)


def rot_z(deg: float) -> np.ndarray:
    """Roll about the camera's z (forward) axis. [3, 3]"""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def pose_from_params(params) -> np.ndarray:
    """(x, y, z, yaw, pitch, roll) -> 4x4 relative pose (OpenCV camera axes)."""
    x, y, z, yaw, pitch, roll = (float(v) for v in params)
    pose = np.eye(4)
    pose[:3, :3] = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)
    pose[:3, 3] = (x, y, z)
    return pose


def progress(u, speed: dict) -> np.ndarray:
    """Path progress s(u) for clip time u in [0, 1] (see the module docstring)."""
    u = np.asarray(u, np.float64)
    if speed["mode"] == "constant":
        return u.copy()
    a = float(speed["a"])
    return np.expm1(-a * u) / np.expm1(-a)


def speed_of(u, speed: dict) -> np.ndarray:
    """ds/du at clip time u."""
    u = np.asarray(u, np.float64)
    if speed["mode"] == "constant":
        return np.ones_like(u)
    a = float(speed["a"])
    return -a * np.exp(-a * u) / np.expm1(-a)


def catmull_rom(points: np.ndarray, s) -> np.ndarray:
    """Uniform Catmull-Rom spline through `points` [n + 1, D] with knot k at s = k / n; s in [0, 1] -> [.., D].

    The end tangents use mirrored phantom points (P[-1] = 2 P[0] - P[1]), so the curve passes through every
    point and is C1."""
    points = np.asarray(points, np.float64)
    n = len(points) - 1
    if n < 1:
        raise ValueError("catmull_rom needs at least 2 points")
    ext = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    s = np.clip(np.asarray(s, np.float64), 0.0, 1.0)
    seg = np.minimum((s * n).astype(int), n - 1)
    t = (s * n - seg)[..., None]
    p0, p1, p2, p3 = ext[seg], ext[seg + 1], ext[seg + 2], ext[seg + 3]
    t2, t3 = t * t, t * t * t
    return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One random trajectory. `spec` holds its kind-specific numbers (JSON-able)."""

    kind: str
    spec: dict
    speed: dict

    def params(self, s) -> np.ndarray:
        """Pose parameters [..., 6] at path progress s in [0, 1]."""
        s = np.asarray(s, np.float64)
        out = np.zeros(s.shape + (6,))
        spec = self.spec
        if self.kind in ROTATION_KINDS:
            out[..., {"pan": 3, "tilt": 4, "roll": 5}[self.kind]] = spec["angle"] * s
        elif self.kind == "translate":
            out[..., "xyz".index(spec["axis"])] = spec["distance"] * s
        elif self.kind == "arc":
            theta, r = np.radians(spec["angle"] * s), spec["radius"]
            if spec["direction"] == "up":  # rotate about the x axis through the point ahead: pitch down, rise
                out[..., 1] = -r * np.sin(theta)
                out[..., 2] = r * (1 - np.cos(theta))
                out[..., 4] = -spec["angle"] * s
            else:  # left: yaw right while moving left (ReCamMaster preset 9); right: the mirror image
                sign = 1.0 if spec["direction"] == "left" else -1.0
                out[..., 0] = -sign * r * np.sin(theta)
                out[..., 2] = r * (1 - np.cos(theta))
                out[..., 3] = sign * spec["angle"] * s
        elif self.kind == "spline":
            out[...] = catmull_rom(np.asarray(spec["keypoints"], np.float64), s)
        else:
            raise ValueError(f"unknown trajectory kind {self.kind!r}")
        return out

    def relative_poses(self, num_frames: int) -> np.ndarray:
        """[T, 4, 4] poses relative to frame 0 (rel[0] = I)."""
        u = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        return np.stack([pose_from_params(p) for p in self.params(progress(u, self.speed))])

    def describe(self) -> str:
        spec = self.spec
        if self.kind == "pan":
            text = f"pan {'right' if spec['angle'] > 0 else 'left'} {abs(spec['angle']):.1f} deg"
        elif self.kind == "tilt":
            text = f"tilt {'up' if spec['angle'] > 0 else 'down'} {abs(spec['angle']):.1f} deg"
        elif self.kind == "roll":
            text = f"roll {'clockwise' if spec['angle'] > 0 else 'anticlockwise'} {abs(spec['angle']):.1f} deg"
        elif self.kind == "translate":
            names = {"x": ("right", "left"), "y": ("down", "up"), "z": ("forward", "backward")}[spec["axis"]]
            text = f"move {names[0] if spec['distance'] > 0 else names[1]} {abs(spec['distance']):.2f} m"
        elif self.kind == "arc":
            text = f"arc {spec['direction']} {spec['angle']:.1f} deg around a point {spec['radius']:.2f} m ahead"
        else:
            text = f"smooth path through {len(spec['keypoints']) - 1} keypoints"
        if self.speed["mode"] == "variable":
            text += f", {'slowing' if self.speed['a'] > 0 else 'accelerating'} (a={self.speed['a']:.2f})"
        else:
            text += ", constant speed"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "speed": self.speed, "description": self.describe()}


def _sign(rng) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def random_speed(rng) -> dict:
    if rng.random() < 0.5:
        return {"mode": "constant"}
    return {"mode": "variable", "a": round(_sign(rng) * rng.uniform(*SPEED_A_RANGE), 4)}


def random_trajectory(kind: str, rng, arc_radius: float = 4.5) -> Trajectory:
    """One trajectory of `kind` with random magnitude, direction and speed."""
    if kind in ("pan", "tilt", "roll"):
        spec = {"angle": round(_sign(rng) * rng.uniform(*BASIC_ANGLE_RANGE), 4)}
    elif kind == "translate":
        axis = "xyz"[int(rng.integers(3))]
        dist = rng.uniform(*TRANSLATE_RANGE)
        sign = _sign(rng)
        if axis == "y" and sign > 0:  # down: keep well above the ground (camera height >= 1.3 m)
            dist = min(dist, 0.7)
        spec = {"axis": axis, "distance": round(sign * dist, 4)}
    elif kind == "arc":
        direction = ("left", "right", "up")[int(rng.integers(3))]
        angle = rng.uniform(*(ARC_UP_RANGE if direction == "up" else ARC_YAW_RANGE))
        spec = {"direction": direction, "angle": round(angle, 4), "radius": round(arc_radius, 4)}
    elif kind == "spline":
        n = int(rng.integers(SPLINE_KEYPOINTS[0], SPLINE_KEYPOINTS[1] + 1))
        keys = np.zeros((n + 1, 6))
        keys[1:, 0] = rng.uniform(-1.0, 1.0, n)  # x right
        keys[1:, 1] = rng.uniform(-0.8, 0.4, n)  # y down (mostly up: stay above the ground)
        keys[1:, 2] = rng.uniform(-1.0, 1.0, n)  # z forward
        keys[1:, 3] = rng.uniform(-35.0, 35.0, n)
        keys[1:, 4] = rng.uniform(-20.0, 20.0, n)
        keys[1:, 5] = rng.uniform(-10.0, 10.0, n)
        spec = {"keypoints": np.round(keys, 4).tolist()}
    else:
        raise ValueError(f"unknown trajectory kind {kind!r}; choose from {KINDS}")
    return Trajectory(kind, spec, random_speed(rng))


def trajectory_set(rng, count: int = 10, arc_radius: float = 4.5) -> list[Trajectory]:
    """`count` trajectories for one location group: kinds cycle through `DEFAULT_KINDS`."""
    return [random_trajectory(DEFAULT_KINDS[i % len(DEFAULT_KINDS)], rng, arc_radius) for i in range(count)]
