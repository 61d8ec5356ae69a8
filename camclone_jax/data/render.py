"""Procedural 3D scenes and a vectorised numpy pinhole ray caster.

Conventions:
- World: right-handed, z up, metres. The ground is the plane z = 0; a location is a room |x| <= half_x,
  |y| <= half_y, with walls up to `wall_height` and either a ceiling there (indoor) or a sky above (outdoor).
- Camera: `c2w` is a 4x4 camera-to-world matrix with OpenCV camera axes (columns: x right, y down, z forward,
  then the camera centre), a proper rotation.
- Intrinsics (fx, fy, cx, cy) in pixels with the COLMAP pixel convention: pixel (row i, column j) covers
  [j, j + 1) x [i, i + 1), its centre is (u, v) = (j + 0.5, i + 0.5). A camera-frame point (x, y, z), z > 0,
  projects to u = fx x / z + cx, v = fy y / z + cy. (OpenCV's convention puts pixel centres on integers:
  subtract 0.5 from cx, cy.) The default principal point is the image centre (W / 2, H / 2).
- Time: objects move as functions of clip time u in [0, 1] (frame t of T at u = t / (T - 1)), so every camera
  of a location sees the same dynamics at the same frame.

Surfaces (ids in the `ids` buffer): 0 sky, 1 ground, 2 ceiling, 3..6 walls (+x, -x, +y, -y), 10 + k object k.
Textures are hashed cell colours at two scales plus a fine checker and speckle in brightness (plenty of corners for
feature matching; fine detail is kept out of chroma, which yuv420p halves), shaded with a Lambert term (ambient + directional light).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

SKY, GROUND, CEILING, WALL0, OBJECT0 = 0, 1, 2, 3, 10
_EPS = 1e-4
_INF = np.float32(np.inf)

# Named colours for captions; textures vary around them.
COLOURS = {
    "red": (0.80, 0.15, 0.12), "orange": (0.92, 0.50, 0.10), "yellow": (0.90, 0.80, 0.15),
    "green": (0.20, 0.65, 0.25), "teal": (0.10, 0.55, 0.55), "blue": (0.15, 0.30, 0.80),
    "purple": (0.50, 0.20, 0.70), "pink": (0.92, 0.45, 0.65), "brown": (0.50, 0.32, 0.18),
    "grey": (0.50, 0.50, 0.50), "white": (0.90, 0.90, 0.88), "black": (0.12, 0.12, 0.14),
}


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float = 60.0) -> "Intrinsics":
        f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height))

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_json(self) -> dict[str, float]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width,
                "height": self.height}


def project(points: np.ndarray, c2w: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """World points [..., 3] -> pixel coordinates (u, v) [..., 2] and depth z [...] as [..., 3]."""
    w2c = np.linalg.inv(np.asarray(c2w, np.float64))
    cam = np.asarray(points, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[..., 2]
    return np.stack([intr.fx * cam[..., 0] / z + intr.cx, intr.fy * cam[..., 1] / z + intr.cy, z], -1)


@dataclasses.dataclass(frozen=True)
class Texture:
    """Procedural texture: cells of size `cell` metres coloured between `colour` and `colour2` by a hash, a
    checker of size `cell / fine` darkening alternate squares, and per-square speckle (`fine=0`: cells only,
    detail a small VAE can reconstruct). `flat=True`: plain colour (markers in tests)."""

    colour: tuple[float, float, float]
    colour2: tuple[float, float, float]
    cell: float = 0.5
    fine: int = 4
    seed: int = 0
    flat: bool = False

    def __call__(self, uv: np.ndarray) -> np.ndarray:
        n = uv.shape[0]
        if self.flat:
            return np.broadcast_to(np.asarray(self.colour, np.float32), (n, 3)).copy()
        g = np.floor(uv / self.cell).astype(np.int32)
        h1 = _hash(g[:, 0], g[:, 1], self.seed)
        h2 = _hash(g[:, 0], g[:, 1], self.seed + 7919)
        c1, c2 = np.asarray(self.colour, np.float32), np.asarray(self.colour2, np.float32)
        mix = (h1 > 0.5).astype(np.float32)[:, None]
        base = c1 * (1 - mix) + c2 * mix
        base = base * (0.7 + 0.6 * h2[:, None])  # brightness per cell
        if self.fine == 0:
            return np.clip(base, 0.0, 1.0)
        fg = np.floor(uv * (self.fine / self.cell)).astype(np.int32)
        checker = ((fg[:, 0] + fg[:, 1]) & 1).astype(np.float32)
        speck = _hash(fg[:, 0], fg[:, 1], self.seed + 104729)
        # fine detail in brightness only: yuv420p mp4 keeps luma at full resolution, chroma at half
        col = base * (0.72 + 0.28 * checker)[:, None] * (0.85 + 0.3 * speck)[:, None]
        return np.clip(col, 0.0, 1.0)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice hash -> float32 in [0, 1) (deterministic, platform independent; uint32 wrap-around)."""
    h = ix.astype(np.uint32) * np.uint32(0x8DA6B343) ^ iy.astype(np.uint32) * np.uint32(0xD8163841)
    h ^= np.uint32((seed * 0xCB1AB31F) & 0xFFFFFFFF)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x45D9F3B)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x45D9F3B)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


@dataclasses.dataclass(frozen=True)
class Motion:
    """Object motion over clip time u in [0, 1]: `kind` "static", "line" (from `a` to `b` and back,
    `cycles` times), "circle" (centre `a`, radius vector `b`, `cycles` turns) or "spin" (static position,
    yaw grows by `cycles` * 360 degrees). Positions are offsets added to the object's centre."""

    kind: str = "static"
    a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cycles: float = 1.0

    def offset_and_yaw(self, u: float) -> tuple[np.ndarray, float]:
        a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
        if self.kind == "line":
            w = 0.5 - 0.5 * math.cos(2 * math.pi * self.cycles * u)
            return a + (b - a) * w, 0.0
        if self.kind == "circle":
            ang = 2 * math.pi * self.cycles * u
            rx, ry = b[0], b[1]
            off = a + np.array([rx * math.cos(ang) - rx, ry * math.sin(ang), 0.0])
            return off, math.degrees(ang)
        if self.kind == "spin":
            return np.zeros(3), 360.0 * self.cycles * u
        return np.zeros(3), 0.0


@dataclasses.dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]
    radius: float
    texture: Texture
    name: str = "sphere"
    motion: Motion = Motion()


@dataclasses.dataclass(frozen=True)
class Box:
    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float  # degrees about the world z axis
    texture: Texture
    name: str = "box"
    motion: Motion = Motion()


@dataclasses.dataclass(frozen=True)
class Scene:
    half_x: float
    half_y: float
    wall_height: float
    indoor: bool
    ground: Texture
    walls: tuple[Texture, Texture, Texture, Texture]
    ceiling: Texture
    objects: tuple[Any, ...]
    light: tuple[float, float, float] = (0.4, 0.3, 0.87)
    sky: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.75, 0.85, 0.95), (0.35, 0.55, 0.85))
    ambient: float = 0.45


def _rays(c2w: np.ndarray, intr: Intrinsics, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin [3] and directions [3, N] (camera z component 1, so t is the camera depth)."""
    ss = int(supersample)
    j = (np.arange(intr.width * ss, dtype=np.float32) + 0.5) / ss
    i = (np.arange(intr.height * ss, dtype=np.float32) + 0.5) / ss
    x = np.broadcast_to(((j - intr.cx) / intr.fx)[None, :], (len(i), len(j))).reshape(-1)
    y = np.broadcast_to(((i - intr.cy) / intr.fy)[:, None], (len(i), len(j))).reshape(-1)
    rot = np.asarray(c2w, np.float64)[:3, :3].astype(np.float32)
    d = rot[:, 0:1] * x[None] + rot[:, 1:2] * y[None] + rot[:, 2:3]
    return np.asarray(c2w, np.float64)[:3, 3].astype(np.float32), d


def _rotz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, np.float32(1e-12), d)


def _hit_sphere(o, d, centre, radius):
    oc = (o - centre).astype(np.float32)
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    c = np.float32(oc @ oc - radius * radius)
    disc = b * b - a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0))
    t0, t1 = (-b - sq) / a, (-b + sq) / a
    t = np.where(t0 > _EPS, t0, t1)
    return np.where(ok & (t > _EPS), t, _INF)


def _hit_box(o, d, centre, half, rot):
    # rot: box-to-world rotation; local = rot^T (p - centre)
    ol = rot.T @ (o - centre)
    dl = rot.T @ d
    tmin = np.full(d.shape[1], -_INF, np.float32)
    tmax = np.full(d.shape[1], _INF, np.float32)
    for k in range(3):
        inv = 1.0 / _safe(dl[k])
        t1, t2 = (-half[k] - ol[k]) * inv, (half[k] - ol[k]) * inv
        np.maximum(tmin, np.minimum(t1, t2), out=tmin)
        np.minimum(tmax, np.maximum(t1, t2), out=tmax)
    t = np.where(tmin > _EPS, tmin, tmax)
    return np.where((tmax >= tmin) & (t > _EPS), t, _INF)


def render(scene: Scene, c2w: np.ndarray, intr: Intrinsics, u: float = 0.0, supersample: int = 1,
           buffers: bool = False):
    """Render one frame at clip time u -> uint8 [H, W, 3] (the mean over supersample x supersample rays per
    pixel). With `buffers=True` also returns {"ids": int32 [H, W] surface ids, "depth": float32 [H, W] camera
    z of the hit (inf for sky)} of one ray per pixel: the pixel centre when supersample is 1 (or odd), else
    the sample just below and right of it."""
    o, d = _rays(c2w, intr, supersample)
    n = d.shape[1]
    t_best = np.full(n, _INF, np.float32)
    ids = np.zeros(n, np.int32)

    def take(t, sid):
        closer = t < t_best
        t_best[closer] = t[closer]
        ids[closer] = sid

    dx, dy, dz = _safe(d[0]), _safe(d[1]), _safe(d[2])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        take(np.where(d[2] < 0, -o[2] / dz, _INF), GROUND)
        tx = np.where(d[0] > 0, (scene.half_x - o[0]) / dx, (-scene.half_x - o[0]) / dx)
        ty = np.where(d[1] > 0, (scene.half_y - o[1]) / dy, (-scene.half_y - o[1]) / dy)
        tw = np.minimum(tx, ty)
        wall_id = np.where(tx < ty, np.where(d[0] > 0, WALL0, WALL0 + 1), np.where(d[1] > 0, WALL0 + 2, WALL0 + 3))
        zw = o[2] + tw * d[2]
        tw = np.where((zw <= scene.wall_height) & (tw > _EPS), tw, _INF)
        closer = tw < t_best
        t_best[closer] = tw[closer]
        ids[closer] = wall_id[closer]
        if scene.indoor:
            take(np.where(d[2] > 0, (scene.wall_height - o[2]) / dz, _INF), CEILING)
        poses = []
        for k, obj in enumerate(scene.objects):
            off, yaw = obj.motion.offset_and_yaw(u)
            centre = (np.asarray(obj.centre, np.float64) + off).astype(np.float32)
            if isinstance(obj, Sphere):
                rot = _rotz(yaw)
                take(_hit_sphere(o, d, centre, obj.radius), OBJECT0 + k)
            else:
                rot = _rotz(obj.yaw + yaw)
                take(_hit_box(o, d, centre, np.asarray(obj.half, np.float32), rot), OBJECT0 + k)
            poses.append((centre, rot))

        colour = np.empty((n, 3), np.float32)
        sky = ids == SKY
        if sky.any():
            ds = d[:, sky]
            elev = np.clip(ds[2] / np.sqrt((ds * ds).sum(0)), 0, 1)[:, None]
            colour[sky] = np.asarray(scene.sky[0], np.float32) * (1 - elev) + np.asarray(scene.sky[1], np.float32) * elev
        light = np.asarray(scene.light, np.float32)
        light = light / np.linalg.norm(light)
        for sid in np.unique(ids):
            if sid == SKY:
                continue
            m = ids == sid
            p = (o[:, None] + t_best[m][None] * d[:, m]).T  # [M, 3]
            if sid == GROUND:
                uv, normal, tex = p[:, :2], np.array([0, 0, 1], np.float32), scene.ground
            elif sid == CEILING:
                uv, normal, tex = p[:, :2], np.array([0, 0, -1], np.float32), scene.ceiling
            elif sid < OBJECT0:
                w = sid - WALL0
                axis = 0 if w < 2 else 1
                sign = 1.0 if w % 2 == 0 else -1.0
                normal = np.zeros(3, np.float32)
                normal[axis] = -sign
                uv = np.stack([p[:, 1 - axis], p[:, 2]], -1)
                tex = scene.walls[w]
            else:
                obj = scene.objects[sid - OBJECT0]
                centre, rot = poses[sid - OBJECT0]
                local = (p - centre) @ rot
                tex = obj.texture
                rows = np.arange(len(local))
                if isinstance(obj, Sphere):
                    q = local / obj.radius
                    lon = np.arctan2(q[:, 1], q[:, 0])
                    lat = np.arcsin(np.clip(q[:, 2], -1, 1))
                    uv = np.stack([lon * obj.radius, lat * obj.radius], -1)
                    normal = (p - centre) / obj.radius
                else:
                    rel = local / np.asarray(obj.half, np.float32)
                    face = np.abs(rel).argmax(1)
                    nl = np.zeros_like(local)
                    nl[rows, face] = np.sign(rel[rows, face])
                    normal = nl @ rot.T
                    a1 = np.where(face == 0, 1, 0)
                    a2 = np.where(face == 2, 1, 2)
                    uv = np.stack([local[rows, a1], local[rows, a2]], -1) + face[:, None] * 10.0
            shade = scene.ambient + (1 - scene.ambient) * np.clip(np.atleast_2d(normal) @ light, 0, 1)
            colour[m] = tex(uv.astype(np.float32)) * shade.reshape(-1, 1)

    ss = int(supersample)
    h, w = intr.height, intr.width
    img = colour.reshape(h, ss, w, ss, 3).mean((1, 3))
    image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if not buffers:
        return image
    pick = ss // 2
    return image, {"ids": ids.reshape(h, ss, w, ss)[:, pick, :, pick],
                   "depth": t_best.reshape(h, ss, w, ss)[:, pick, :, pick]}
