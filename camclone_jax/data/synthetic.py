"""Synthetic CameraClone / MultiCamVideo-style dataset: procedural 3D rooms rendered by a numpy ray caster.

    python -m camclone_jax.data.synthetic --out DIR [--locations 8] [--test-locations 4] [--frames 33]
        [--height 64] [--width 96] [--seed 0] [--cameras 10] [--supersample 2] [--fps 15] [--fov 60]

Rules (CamCloneMaster's Camera Clone Dataset, spec camera_control.md 8.3, scaled down):
- A *location* is a random room (textured ground, walls, ceiling or sky) with static boxes and spheres and one
  or two moving objects (sliding, circling, spinning). Its dynamics are a function of clip time, so every
  camera of a location sees the same motion at the same frame.
- Locations come in *groups of four*; each group draws ten trajectories (`trajectories.DEFAULT_KINDS`: pan,
  tilt, roll, 2 translations, 2 arcs, 3 splines; constant or variable speed) and every location of the group
  renders all ten, as cam01..cam10, each starting from that location's own start pose.
- Triples (one per target and other location of its group, so 3 per video): target = location A with
  trajectory i; ref (camera reference) = location B != A of the same group with trajectory i; content =
  location A with trajectory j != i (same scene, same dynamics), j drawn per triple.
- Split: `--locations` L train locations (train/loc0000 ..) and `--test-locations` held-out ones
  (test/loc0000 ..). Scenes are drawn from (seed, split, location) and trajectories from (seed, split, group),
  so the test split shares no scene and no trajectory with train, and neither split depends on the other's
  size (adding test locations never changes train, and vice versa). Evaluate on test.csv only.
- Speed: half the trajectories are constant speed, half follow the MultiCamVideo formula (ReCamMaster README)
  s(u) = (1 - exp(-a u)) / (1 - exp(-a)) over clip time u, |a| in [1, 4] (camclone_jax.data.trajectories).

Layout of DIR:
    train.csv, test.csv       CameraClone index: video_path, caption, ref_video_path, content_video_path
                              (paths relative to DIR; camclone_jax.train.data.camclone_index reads them)
    train_rotation.csv, test_rotation.csv
                              the rows of each whose target camera only turns (pan, tilt, roll): what the
                              rotation stage of configs/synthetic_camclone.py trains on
    metadata.csv              MultiCamVideo index of the train split: file_name (relative to train/), text
                              (camclone_jax.train.data.multicam_index reads DIR with it)
    {train,test}/locNNNN/
        videos/camXX.mp4      T frames, H x W, H.264, --fps (default 15)
        cameras/camera_extrinsics.json
                              MultiCamVideo style: frame0..frame{T-1} x cam01..cam10, 4x4 row-vector
                              "UE" matrices (rows forward, right, up, position in cm); load_camera_json(path,
                              cam, divisor=100) returns exactly the ground-truth c2w below
        cameras/camXX.json    ground truth: intrinsics (fx, fy, cx, cy, width, height), K, c2w [T][4][4]
                              (camera-to-world, OpenCV camera axes x right / y down / z forward, world
                              right-handed z up, metres), rel (poses relative to frame 0), trajectory
        scene.json            the location: room, objects, motions, caption, start pose

Pixel convention: COLMAP's (the top-left pixel's centre is (0.5, 0.5)); cx = W/2, cy = H/2.
Deterministic: the same arguments give identical arrays, JSON and CSV files; dataset.json records the
arguments, the intrinsics and the sha256 of every rendered (pre-encoding) uint8 video array.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from camclone_jax.data import render as R
from camclone_jax.data.trajectories import ROTATION_KINDS, Trajectory, trajectory_set

GROUP_SIZE = 4
CAMERA_JSON = "cameras/camera_extrinsics.json"
CSV_COLUMNS = ("video_path", "caption", "ref_video_path", "content_video_path")
UE_CM = 100.0  # JSON positions in cm; load_camera_json's default divisor (100) gives metres back
_SALT_SCENE, _SALT_TRAJ, _SALT_TRIPLE = 1, 2, 3
SPLITS = ("train", "test")
DETAILS = ("fine", "coarse")  # texture detail (make_location)


# --- Validation -------------------------------------------------------------------------------------------

def check_args(*, locations: int, test_locations: int, frames: int, height: int, width: int, cameras: int,
               supersample: int, fps: int) -> None:
    """Raise ValueError with a clear message for an unusable setting."""
    if not isinstance(frames, int) or frames < 1 or (frames - 1) % 4:
        raise ValueError(f"--frames must be of the form 4k+1 (5, 9, ..., 33, ..., 81) for the causal VAE, got {frames}")
    for name, value in (("--height", height), ("--width", width)):
        if not isinstance(value, int) or value <= 0 or value % 16:
            raise ValueError(f"{name} must be a positive multiple of 16 (VAE 8x, patch 2x), got {value}")
    for name, value in (("--locations", locations), ("--test-locations", test_locations)):
        if not isinstance(value, int) or value < 0 or value % GROUP_SIZE:
            raise ValueError(f"{name} must be a multiple of {GROUP_SIZE} (locations come in groups of "
                             f"{GROUP_SIZE} that share trajectories), got {value}")
    if locations + test_locations == 0:
        raise ValueError("nothing to render: --locations and --test-locations are both 0")
    if not 2 <= cameras <= 10:
        raise ValueError(f"--cameras must be in 2..10 (content needs a second trajectory), got {cameras}")
    if supersample < 1:
        raise ValueError(f"--supersample must be >= 1, got {supersample}")
    if fps < 1:
        raise ValueError(f"--fps must be >= 1, got {fps}")


# --- Scenes -----------------------------------------------------------------------------------------------

def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def _colour_pair(rng, names=None):
    names = list(R.COLOURS) if names is None else names
    a = names[int(rng.integers(len(names)))]
    rest = [n for n in R.COLOURS if n != a]
    b = rest[int(rng.integers(len(rest)))]
    return a, b


def _texture(rng, name_a: str, name_b: str, cell: float, detail: str) -> R.Texture:
    fine = int(rng.integers(2, 4))  # drawn for either detail, so both lay out the same scene
    if detail == "coarse":  # cells twice as large and no fine checker: 8-16 px at 64x96, one latent pixel or more
        cell, fine = 2 * cell, 0
    return R.Texture(R.COLOURS[name_a], R.COLOURS[name_b], cell=cell, fine=fine, seed=int(rng.integers(1 << 30)))


def make_location(seed: int, index: int, split: str = "train", detail: str = "fine") -> dict:
    """A random location: {"scene": render.Scene, "start": c2w [4, 4], "caption": str, "info": JSON dict}.
    `detail`: "fine" textures (cells, fine checker and speckle: many corners for SfM) or "coarse" (the same
    cells only, which a tiny 8x-downsampling VAE reconstructs; camclone_jax.data.synthetic DETAILS)."""
    if detail not in DETAILS:
        raise ValueError(f"texture detail must be one of {DETAILS}, got {detail!r}")
    rng = _rng(seed, _SALT_SCENE, SPLITS.index(split), index)
    half_x, half_y = rng.uniform(6.5, 8.5), rng.uniform(6.5, 8.5)
    wall_h = rng.uniform(3.8, 5.0)
    indoor = bool(rng.random() < 0.5)
    g_a, g_b = _colour_pair(rng)
    ground = _texture(rng, g_a, g_b, cell=rng.uniform(0.5, 0.9), detail=detail)
    wall_names = [_colour_pair(rng) for _ in range(4)]
    walls = tuple(_texture(rng, a, b, cell=rng.uniform(0.5, 1.0), detail=detail) for a, b in wall_names)
    c_a, c_b = _colour_pair(rng)
    ceiling = _texture(rng, c_a, c_b, cell=rng.uniform(0.5, 1.0), detail=detail)

    objects, info_objects, placed = [], [], []
    n_static, n_dynamic = int(rng.integers(3, 6)), int(rng.integers(1, 3))
    for k in range(n_static + n_dynamic):
        dynamic = k >= n_static
        for _ in range(100):  # rejection sampling: keep objects apart
            pos = rng.uniform(-2.2, 2.2, 2)
            size = rng.uniform(0.3, 0.65)
            if all(np.linalg.norm(pos - p) > size + s + (1.2 if dynamic else 0.15) for p, s in placed):
                break
        placed.append((pos, size))
        name = list(R.COLOURS)[int(rng.integers(len(R.COLOURS)))]
        other = _colour_pair(rng)[1]
        tex = _texture(rng, name, other, cell=rng.uniform(0.2, 0.35), detail=detail)
        shape = "sphere" if rng.random() < 0.5 else "box"
        motion, verb = R.Motion(), None
        if dynamic:
            kind = ("line", "circle", "spin")[int(rng.integers(3))] if shape == "box" else \
                ("line", "circle")[int(rng.integers(2))]
            if kind == "line":
                ang = rng.uniform(0, 2 * math.pi)
                dist = rng.uniform(0.8, 1.5)
                motion = R.Motion("line", (0.0, 0.0, 0.0), (dist * math.cos(ang), dist * math.sin(ang), 0.0),
                                  cycles=float(rng.choice([0.5, 1.0])))
                verb = "slides back and forth"
            elif kind == "circle":
                r = rng.uniform(0.5, 1.0)
                motion = R.Motion("circle", (0.0, 0.0, 0.0), (r, r, 0.0), cycles=float(rng.choice([0.5, 1.0])))
                verb = "moves in a circle"
            else:
                motion = R.Motion("spin", cycles=float(rng.choice([0.25, 0.5])))
                verb = "spins in place"
        if shape == "sphere":
            obj = R.Sphere((pos[0], pos[1], size), size, tex, name=f"{name} sphere", motion=motion)
            size_word = "large" if size > 0.5 else "small"
        else:
            half = (size, size * rng.uniform(0.6, 1.4), size * rng.uniform(0.6, 1.6))
            obj = R.Box((pos[0], pos[1], half[2]), half, float(rng.uniform(0, 90)), tex, name=f"{name} box",
                        motion=motion)
            size_word = "large" if half[2] > 0.5 else "small"
        objects.append(obj)
        info_objects.append({"shape": shape, "colour": name, "size": size_word, "dynamic": dynamic,
                             "motion": dataclasses.asdict(motion), "description": f"a {size_word} {obj.name}"
                             + (f" that {verb}" if verb else "")})

    scene = R.Scene(half_x, half_y, wall_h, indoor, ground, walls, ceiling, tuple(objects),
                    light=tuple(np.round(np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0]), 4)))

    # Start pose: behind the objects, looking at the scene centre, slightly down.
    dist, lateral, height = rng.uniform(4.2, 5.0), rng.uniform(-0.5, 0.5), rng.uniform(1.4, 1.9)
    az = rng.uniform(0, 2 * math.pi)
    position = np.array([-dist * math.cos(az) - lateral * math.sin(az), -dist * math.sin(az) + lateral * math.cos(az),
                         height])
    yaw = math.atan2(-position[1], -position[0]) + math.radians(rng.uniform(-8, 8))
    pitch = math.radians(rng.uniform(-14, -4))
    start = look_pose(position, yaw, pitch)

    statics = [o["description"] for o in info_objects if not o["dynamic"]]
    movers = [o["description"] for o in info_objects if o["dynamic"]]
    room = "an indoor room" if indoor else "a walled courtyard under a blue sky"
    caption = (f"A synthetic scene in {room} with a {g_a} and {g_b} checkered floor and {wall_names[0][0]} "
               f"walls. It contains {_join(statics)}. {_join(movers).capitalize()}.")
    info = {"index": index, "room": {"half_x": half_x, "half_y": half_y, "wall_height": wall_h, "indoor": indoor,
                                     "floor_colours": [g_a, g_b], "wall_colours": [list(p) for p in wall_names]},
            "objects": info_objects, "start_c2w": start.tolist(), "arc_radius": float(dist),
            "caption": caption}
    return {"scene": scene, "start": start, "caption": caption, "info": info, "arc_radius": float(dist)}


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def look_pose(position, yaw: float, pitch: float) -> np.ndarray:
    """c2w (OpenCV axes) at `position` looking along world azimuth `yaw` and elevation `pitch` (radians),
    horizon level (no roll)."""
    f = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), math.sin(pitch)])
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([r, d, f], 1)
    pose[:3, 3] = position
    return pose


def group_trajectories(seed: int, group: int, cameras: int, split: str = "train") -> list[Trajectory]:
    """The trajectories shared by the locations of `group` (arcs orbit a point 4.5 m ahead, about where the
    scene centre is from every start pose)."""
    return trajectory_set(_rng(seed, _SALT_TRAJ, SPLITS.index(split), group), cameras, arc_radius=4.5)


# --- Camera JSON ------------------------------------------------------------------------------------------

def opencv_to_ue(c2w: np.ndarray, divisor: float = UE_CM) -> np.ndarray:
    """Inverse of camclone_jax.sample.camera.ue_to_opencv: OpenCV c2w [4, 4] -> row-vector UE matrix A."""
    c2w = np.asarray(c2w, np.float64)
    m = np.zeros((4, 4))
    m[:, 1] = c2w[:, 0]  # right
    m[:, 2] = c2w[:, 1]
    m[:3, 2] *= -1.0  # down -> up
    m[:, 0] = c2w[:, 2]  # forward
    m[:, 3] = c2w[:, 3]
    m[:3, 3] *= divisor
    return m.T


def ue_string(a: np.ndarray) -> str:
    return "".join("[" + " ".join(_fmt(v) for v in row) + "] " for row in a)


def _fmt(v: float) -> str:
    s = f"{float(v):.10g}"
    return "0" if s in ("-0", "0") else s


def camera_json(c2ws: dict[str, np.ndarray]) -> dict:
    """{"frame0": {"cam01": "...", ...}, ...} from {"cam01": [T, 4, 4], ...}."""
    t = len(next(iter(c2ws.values())))
    return {f"frame{i}": {cam: ue_string(opencv_to_ue(poses[i])) for cam, poses in c2ws.items()} for i in range(t)}


# --- Dataset ----------------------------------------------------------------------------------------------

def render_video(loc: dict, rel: np.ndarray, intr: R.Intrinsics, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera of a location: (uint8 video [T, H, W, 3], c2w [T, 4, 4])."""
    c2ws = loc["start"] @ rel
    t = len(rel)
    frames = [R.render(loc["scene"], c2ws[i], intr, u=i / max(t - 1, 1), supersample=supersample)
              for i in range(t)]
    return np.stack(frames), c2ws


def cam_name(i: int) -> str:
    return f"cam{i + 1:02d}"


def triples(seed: int, locations: list[int], split: str, cameras: int, captions: dict[int, str]) -> list[dict]:
    """CameraClone rows for the given locations (all of one split)."""
    rows = []
    for loc in locations:
        group = loc // GROUP_SIZE
        mates = [m for m in range(group * GROUP_SIZE, (group + 1) * GROUP_SIZE) if m != loc]
        rng = _rng(seed, _SALT_TRIPLE, SPLITS.index(split), loc)
        for i in range(cameras):
            for mate in mates:
                j = int(rng.integers(cameras - 1))
                j += j >= i  # any trajectory but i
                rows.append({"video_path": video_key(split, loc, i), "caption": captions[loc],
                             "ref_video_path": video_key(split, mate, i),
                             "content_video_path": video_key(split, loc, j)})
    return rows


def loc_name(index: int) -> str:
    return f"loc{index:04d}"


def video_key(split: str, loc: int, cam: int) -> str:
    return f"{split}/{loc_name(loc)}/videos/{cam_name(cam)}.mp4"


def generate(out, *, locations: int = 8, test_locations: int = 4, frames: int = 33, height: int = 64,
             width: int = 96, seed: int = 0, cameras: int = 10, supersample: int = 2, fps: int = 15,
             fov: float = 60.0, detail: str = "fine", progress: bool = True, write_mp4: bool = True) -> dict:
    """Write the dataset to `out` (see the module docstring); returns a summary dict.
    `write_mp4=False` skips encoding (tests) but writes everything else."""
    check_args(locations=locations, test_locations=test_locations, frames=frames, height=height, width=width,
               cameras=cameras, supersample=supersample, fps=fps)
    from tqdm import tqdm

    from camclone_jax.sample.video import write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    intr = R.Intrinsics.from_fov(width, height, fov)
    splits = {"train": list(range(locations)), "test": list(range(test_locations))}
    total = (locations + test_locations) * cameras
    bar = tqdm(total=total, desc="rendering", unit="video", disable=not progress, file=sys.stderr)
    start = time.perf_counter()
    digests = {}
    metadata = []
    for split, locs in splits.items():
        captions = {}
        trajs_by_group: dict[int, list[Trajectory]] = {}
        for loc_index in locs:
            group = loc_index // GROUP_SIZE
            trajs = trajs_by_group.setdefault(group, group_trajectories(seed, group, cameras, split))
            loc = make_location(seed, loc_index, split, detail)
            captions[loc_index] = loc["caption"]
            folder = out / split / loc_name(loc_index)
            (folder / "videos").mkdir(parents=True, exist_ok=True)
            (folder / "cameras").mkdir(parents=True, exist_ok=True)
            all_c2w = {}
            for i, traj in enumerate(trajs):
                rel = traj.relative_poses(frames)
                video, c2ws = render_video(loc, rel, intr, supersample)
                digests[video_key(split, loc_index, i)] = _digest(video)
                if write_mp4:
                    write_video(folder / "videos" / f"{cam_name(i)}.mp4", video, fps=fps)
                all_c2w[cam_name(i)] = c2ws
                gt = {"convention": {
                          "c2w": "camera-to-world, OpenCV camera axes (x right, y down, z forward)",
                          "world": "right-handed, z up, metres; ground plane z = 0",
                          "pixels": "COLMAP: top-left pixel centre at (0.5, 0.5); u = fx x/z + cx, v = fy y/z + cy",
                          "time": "frame t at clip time t / (T - 1)"},
                      "location": loc_name(loc_index), "split": split, "camera": cam_name(i),
                      "num_frames": frames, "fps": fps, "intrinsics": intr.to_json(), "K": intr.matrix().tolist(),
                      "c2w": c2ws.tolist(), "rel": rel.tolist(), "trajectory": traj.to_json()}
                _write_json(folder / "cameras" / f"{cam_name(i)}.json", gt)
                if split == "train":
                    metadata.append({"file_name": f"{loc_name(loc_index)}/videos/{cam_name(i)}.mp4",
                                     "text": loc["caption"]})
                bar.update(1)
            _write_json(folder / CAMERA_JSON, camera_json(all_c2w))
            _write_json(folder / "scene.json", loc["info"] | {
                "split": split, "group": group, "trajectories": [t.to_json() for t in trajs]})
        rows = triples(seed, locs, split, cameras, captions)
        turns = {video_key(split, loc, i) for loc in locs
                 for i, traj in enumerate(trajs_by_group[loc // GROUP_SIZE]) if traj.kind in ROTATION_KINDS}
        for name, chosen in ((split, rows), (f"{split}_rotation", [r for r in rows if r["video_path"] in turns])):
            with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
                writer.writeheader()
                writer.writerows(chosen)
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=("file_name", "text"))
        writer.writeheader()
        writer.writerows(metadata)
    bar.close()
    seconds = time.perf_counter() - start
    summary = {"videos": total, "frames": total * frames, "seconds": round(seconds, 3),
               "frames_per_second": round(total * frames / max(seconds, 1e-9), 1),
               "args": {"locations": locations, "test_locations": test_locations, "frames": frames,
                        "height": height, "width": width, "seed": seed, "cameras": cameras,
                        "supersample": supersample, "fps": fps, "fov": fov, "detail": detail},
               "intrinsics": intr.to_json(), "video_sha256": digests}
    _write_json(out / "dataset.json", {k: v for k, v in summary.items() if k not in ("seconds", "frames_per_second")})
    return summary


def _digest(video: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(video).tobytes()).hexdigest()


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


# --- CLI --------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camclone_jax.data.synthetic",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created; files are overwritten)")
    parser.add_argument("--locations", type=int, default=8, help="train locations, a multiple of 4 (default 8)")
    parser.add_argument("--test-locations", type=int, default=4,
                        help="held-out test locations (indices after the train ones), a multiple of 4 (default 4)")
    parser.add_argument("--frames", type=int, default=33, help="frames per video, 4k+1 (default 33)")
    parser.add_argument("--height", type=int, default=64, help="pixels, a multiple of 16 (default 64)")
    parser.add_argument("--width", type=int, default=96, help="pixels, a multiple of 16 (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="everything is a function of the seed (default 0)")
    parser.add_argument("--cameras", type=int, default=10, help="trajectories per location, 2..10 (default 10)")
    parser.add_argument("--supersample", type=int, default=2,
                        help="anti-aliasing: ss x ss rays per pixel, averaged (default 2)")
    parser.add_argument("--fps", type=int, default=15, help="mp4 frame rate (default 15, as the datasets)")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal field of view in degrees (default 60)")
    parser.add_argument("--detail", choices=DETAILS, default="fine",
                        help="texture detail: fine (cells + fine checker + speckle, for evaluating SfM) or coarse "
                             "(cells only: what the tiny synthetic VAE can reconstruct; the trained demo's data)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out, locations=args.locations, test_locations=args.test_locations,
                           frames=args.frames, height=args.height, width=args.width, seed=args.seed,
                           cameras=args.cameras, supersample=args.supersample, fps=args.fps, fov=args.fov,
                           detail=args.detail, progress=not args.no_progress)
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {summary['videos']} videos ({summary['frames']} frames) to {args.out} in {summary['seconds']} s "
          f"({summary['frames_per_second']} frames/s incl. encoding)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
