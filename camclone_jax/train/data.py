"""grain input pipelines for the three training datasets (spec camera_control.md 3, 5.5, 5.7, 6.4-6.5, 7.5, 8).

Shapes (numpy, channels last): T video frames, F = (T - 1) // 4 + 1 latent frames, H/W pixels, h/w = H/8, W/8,
L = text_len tokens, D umT5 width, B the host-local batch. One example per kind (`make_dataset` stacks B of them):

    camclone  raw:     target, ref, content [T, H, W, 3] f32 in [-1, 1]; caption str
              latents: target, ref, content [F, h, w, 16]; y [F, h, w, 20]; clip_feature [257, E];
                       text [L, D] (zero past text_len); text_len int32; caption str
    recam     raw:     target, source [T, H, W, 3]; cam_emb [F, 12] f32; caption str (the target's text)
              latents: target, source [F, h, w, 16]; cam_emb; text; text_len; caption
    syncam    raw:     views [2, T, H, W, 3]; cam_emb [2, F, 12] (view 0 = identity); caption str (view 0's text)
              latents: views [2, F, h, w, 16]; cam_emb; text; text_len; caption

A batch is the dict of stacked examples (captions as a list) plus `"skipped"`: the cumulative number of examples
this process has dropped so far (unreadable / too-short video, a video that precompute skipped, a scene with no
second camera or no valid view pair). It lives in the iterator state, so it survives `get_state` / `set_state`;
the trainer can log it as a metric. Save/restore the data position with `it = iter(ds)`, `state =
it.get_state()` (a JSON-able dict, orbax's grain handler takes the iterator), later `it.set_state(state)`.

Randomness is a function of (seed, process, global element index) only: grain's index shuffle reshuffles every
epoch, and the ReCamMaster condition camera / SynCamMaster view pair use `np.random.default_rng((seed,
process, index))`, so a restored iterator reproduces the same batches bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np

from camclone_jax.sample.camera import RECAM_DIVISOR, SYNCAM_DIVISOR, load_camera_json, recam_embedding
from camclone_jax.sample.camera import syncam_embedding

log = logging.getLogger(__name__)

KINDS = ("camclone", "recam", "syncam")
CAMCLONE_COLUMNS = ("video_path", "caption", "ref_video_path", "content_video_path")
METADATA_COLUMNS = ("file_name", "text")
METADATA_CSV = "metadata.csv"
CAMERA_JSON = "cameras/camera_extrinsics.json"
PAIR_LIST = "2view_az30_el15_available_list.npy"
ROTATION_JSON = "rotation_data.json"
SYNCAM_AZ_MAX, SYNCAM_EL_MAX = 30.0, 15.0  # spec 6.5: |Δaz| < 30, |Δel| < 15 (strict)
# Errors that mean "this sample is unusable": read_video's ValueError/FileNotFoundError, a corrupt camera JSON,
# or (latent mode) a key that precompute skipped.
SKIP_ERRORS = (ValueError, OSError, KeyError)


# --- Indexes -------------------------------------------------------------------------------------------------

def read_csv(path: str | Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV as dicts; ValueError naming the file and the missing columns if any is absent."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing CSV column(s) {missing}; expected columns {list(required)}, "
                             f"found {header}")
        return [{k.strip(): (v or "") for k, v in row.items() if k is not None} for row in reader]


@dataclasses.dataclass(frozen=True)
class CamCloneItem:
    """One CameraClone triplet; paths as written in the CSV (keys) and resolved (for reading)."""

    target: str
    ref: str
    content: str
    caption: str


def camclone_index(csv_path: str | Path) -> tuple[list[CamCloneItem], Path]:
    """Triplets of a CameraClone CSV and the folder its relative paths start from."""
    csv_path = Path(csv_path)
    if csv_path.is_dir():  # upstream's default `CamCloneDataset.csv/` path style: a folder holding the CSV
        csvs = sorted(csv_path.glob("*.csv"))
        if len(csvs) != 1:
            raise ValueError(f"{csv_path} is a folder with {len(csvs)} CSV files; pass the CSV itself")
        csv_path = csvs[0]
    rows = read_csv(csv_path, CAMCLONE_COLUMNS)
    items = [CamCloneItem(r["video_path"], r["ref_video_path"], r["content_video_path"], r["caption"])
             for r in rows]
    return items, csv_path.parent


@dataclasses.dataclass(frozen=True)
class SceneVideo:
    """One camera's clip of a MultiCamVideo / SynCamVideo scene. `key` is metadata.csv's file_name."""

    key: str
    scene: str
    camera: int
    caption: str


@dataclasses.dataclass(frozen=True)
class Scene:
    """A scene's cameras (camera number -> video key) and, for SynCamMaster, its valid ordered view pairs."""

    name: str
    videos: dict[int, str]
    pairs: tuple[tuple[int, int], ...] = ()


_CAM = re.compile(r"cam(\d+)\.mp4$")


def multicam_index(root: str | Path, with_pairs: bool = False) -> tuple[list[SceneVideo], dict[str, Scene], Path]:
    """Videos of a MultiCamVideo / SynCamVideo folder (`root/metadata.csv` + `root/train/...`, spec 8.1-8.2).

    `root` may also be the metadata.csv itself. Returns (videos in CSV order, scenes by name, train folder).
    A scene's name is its folder relative to train/ (`f18_aperture10/scene1`)."""
    root = Path(root)
    csv_path = root if root.suffix == ".csv" else root / METADATA_CSV
    train = csv_path.parent / "train"
    videos = []
    for row in read_csv(csv_path, METADATA_COLUMNS):
        key = row["file_name"].strip()
        match = _CAM.search(key)
        if match is None:
            log.warning("%s: file_name %r is not .../camXX.mp4; ignored", csv_path, key)
            continue
        scene = str(Path(key).parent.parent)  # <scene>/videos/camXX.mp4
        videos.append(SceneVideo(key, scene, int(match.group(1)), row["text"]))
    cams: dict[str, dict[int, str]] = {}
    for v in videos:
        cams.setdefault(v.scene, {})[v.camera] = v.key
    rotation = _read_rotation(train / ROTATION_JSON) if with_pairs else None
    scenes = {name: Scene(name, dict(sorted(c.items())), syncam_pairs(train / name, c, rotation) if with_pairs else ())
              for name, c in cams.items()}
    return videos, scenes, train


def _read_rotation(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def syncam_pairs(scene_dir: Path, cameras: dict[int, str], rotation: dict | None) -> tuple[tuple[int, int], ...]:
    """Ordered view pairs (camera numbers, 1-based as upstream's `traj{i}` / `camXX`) of a SynCamVideo scene:
    the scene's `2view_az30_el15_available_list.npy` if present, else |Δaz| < 30 and |Δel| < 15 from
    `train/rotation_data.json` (`{scene}/traj{i}: {"rz", "ry"}`). Pairs naming an unindexed camera are dropped."""
    listed = scene_dir / PAIR_LIST
    if listed.is_file():
        pairs = [tuple(int(v) for v in p) for p in np.load(listed).reshape(-1, 2)]
    elif rotation is not None and scene_dir.name in rotation:
        angles = rotation[scene_dir.name]
        pose = {c: (float(angles[f"traj{c}"]["rz"]), float(angles[f"traj{c}"]["ry"]))
                for c in cameras if f"traj{c}" in angles}
        pairs = [(i, j) for i in pose for j in pose if i != j and abs(pose[i][0] - pose[j][0]) < SYNCAM_AZ_MAX
                 and abs(pose[i][1] - pose[j][1]) < SYNCAM_EL_MAX]
    else:
        pairs = []
    return tuple((i, j) for i, j in pairs if i in cameras and j in cameras and i != j)


# --- Where examples come from: raw videos or precomputed latents --------------------------------------------

class RawVideos:
    """Reads videos and cameras from the dataset folder (`video` -> [T, H, W, 3] f32 in [-1, 1])."""

    def __init__(self, root: Path, num_frames: int, height: int, width: int, short: str):
        self.root, self.short = root, short
        self.size = dict(num_frames=num_frames, height=height, width=width)

    def video(self, key: str) -> np.ndarray:
        from camclone_jax.sample.video import read_video  # PyAV: raw videos only; latents train without it
        return read_video(self.root / key, short=self.short, **self.size)

    def c2ws(self, key: str, camera: int, divisor: float) -> np.ndarray:
        """OpenCV c2w [T_json, 4, 4] of the scene holding video `key` (`<scene>/videos/camXX.mp4`)."""
        return load_camera_json(self.root / Path(key).parent.parent / CAMERA_JSON, camera, divisor)

    def text(self, caption: str) -> dict[str, Any]:
        return {}

    def first_frame(self, key: str) -> dict[str, np.ndarray]:
        return {}


def _camclone_example(src, item: CamCloneItem, rng) -> dict:
    example = {"target": src.video(item.target), "ref": src.video(item.ref), "content": src.video(item.content)}
    return example | src.first_frame(item.target) | src.text(item.caption) | {"caption": item.caption}


def _recam_example(src, video: SceneVideo, scenes: dict[str, Scene], num_frames: int, rng) -> dict:
    # Spec 5.7: a condition camera of the same scene, different from the target's, drawn uniformly. Upstream
    # redraws from 1..10; we draw from the scene's indexed cameras, which is the same when all 10 are present.
    others = [c for c in scenes[video.scene].videos if c != video.camera]
    if not others:
        raise ValueError(f"scene {video.scene} has no camera besides cam{video.camera:02d}")
    cond = others[rng.integers(len(others))]
    cond_key = scenes[video.scene].videos[cond]
    target_c2w = src.c2ws(video.key, video.camera, RECAM_DIVISOR)[:num_frames]
    cond_c2w = src.c2ws(cond_key, cond, RECAM_DIVISOR)
    if len(target_c2w) < num_frames:
        raise ValueError(f"camera JSON of {video.scene} has {len(target_c2w)} frames, need {num_frames}")
    cam_emb = recam_embedding(target_c2w, reference=cond_c2w[0])  # C_cond(0)⁻¹ · C_tgt(4i)
    example = {"target": src.video(video.key), "source": src.video(cond_key), "cam_emb": cam_emb}
    return example | src.text(video.caption) | {"caption": video.caption}


def _syncam_example(src, scene: Scene, captions: dict[str, str], num_frames: int, rng) -> dict:
    if not scene.pairs:
        raise ValueError(f"scene {scene.name} has no valid view pair")
    pair = scene.pairs[rng.integers(len(scene.pairs))]
    keys = [scene.videos[c] for c in pair]
    c2ws = np.stack([src.c2ws(k, c, SYNCAM_DIVISOR)[:num_frames] for k, c in zip(keys, pair)])
    if c2ws.shape[1] < num_frames:
        raise ValueError(f"camera JSON of {scene.name} has {c2ws.shape[1]} frames, need {num_frames}")
    caption = captions[keys[0]]  # spec 6.5: view 1's text for both views
    example = {"views": np.stack([src.video(k) for k in keys]), "cam_emb": syncam_embedding(c2ws)}
    return example | src.text(caption) | {"caption": caption}


# --- Skip counting + batching (checkpointable) --------------------------------------------------------------

def stack_examples(examples: Sequence[dict]) -> dict:
    """Stack array leaves on a new leading batch axis; strings become lists."""
    return {k: [e[k] for e in examples] if isinstance(examples[0][k], str) else np.stack([e[k] for e in examples])
            for k in examples[0]}


class SkipCountingBatch(grain.IterDataset):
    """Batches `batch_size` non-None elements of `parent` (None marks a skipped sample) and reports the
    cumulative skip count as `batch["skipped"]`. `max_consecutive_skips` guards against a dataset in which
    nothing is readable (which would otherwise spin forever on a repeated dataset)."""

    def __init__(self, parent: grain.IterDataset, batch_size: int, max_consecutive_skips: int):
        super().__init__(parent)
        self.batch_size, self.max_consecutive_skips = batch_size, max_consecutive_skips

    def __iter__(self) -> "_SkipCountingBatchIterator":
        return _SkipCountingBatchIterator(self._parent.__iter__(), self.batch_size, self.max_consecutive_skips)

    def __str__(self) -> str:
        return f"SkipCountingBatch(batch_size={self.batch_size})"


class _SkipCountingBatchIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, batch_size: int, max_consecutive_skips: int):
        super().__init__(parent)
        self.batch_size, self.max_consecutive_skips = batch_size, max_consecutive_skips
        self.skipped = 0

    def __next__(self) -> dict:
        examples, streak = [], 0
        while len(examples) < self.batch_size:
            try:
                element = next(self._parent)
            except StopIteration:
                break  # finite epochs: a last partial batch (never reached with repeat forever)
            if element is None:
                self.skipped += 1
                streak += 1
                if streak > self.max_consecutive_skips:
                    raise RuntimeError(f"{streak} consecutive samples were unreadable; check the dataset "
                                       f"(the log lists the errors)")
                continue
            examples.append(element)
            streak = 0
        if not examples:
            raise StopIteration
        return stack_examples(examples) | {"skipped": self.skipped}

    def get_state(self) -> dict:
        return {"parent": self._parent.get_state(), "skipped": self.skipped}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self.skipped = int(state["skipped"])


class _Build:
    """`map_with_index` callable: builds the example of element `index`, or None (logged) if it is unusable."""

    def __init__(self, build: Callable, seed: int, process_index: int):
        self.build, self.seed, self.process_index = build, seed, process_index

    def __call__(self, index: int, item) -> dict | None:
        rng = np.random.default_rng((self.seed, self.process_index, index))
        try:
            return self.build(item, rng)
        except SKIP_ERRORS as err:
            log.warning("skipping sample %d (%s): %s", index, type(err).__name__, err)
            return None


# --- Factory -------------------------------------------------------------------------------------------------

def make_dataset(kind: str, path: str | Path, *, num_frames: int, height: int, width: int, batch_size: int,
                 seed: int, process_index: int | None = None, process_count: int | None = None,
                 latents: bool = False, num_epochs: int | None = None, read_threads: int = 4,
                 prefetch: int = 8, cache: bool = False) -> grain.IterDataset:
    """A grain IterDataset of host-local batches (see the module doc for keys and shapes).

    path: camclone -> the CSV (or a folder holding one); recam/syncam -> the folder with metadata.csv and train/;
    latents=True -> the output folder of `camclone_jax.train.precompute` (num_frames/height/width must match it);
    cache=True then keeps its decoded records in memory (`LatentStore`).
    Pipeline: index -> this process's shard `[process_index::process_count]` -> seeded shuffle (reshuffled each
    epoch) -> repeat (`num_epochs`, None = forever) -> build examples in `read_threads` threads -> skip-counting
    batcher. Iterate with `it = iter(ds)`; `it.get_state()` / `it.set_state(state)` checkpoint the position.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if latents:
        # Imported here: precompute imports this module for the indexes.
        from camclone_jax.train.precompute import LatentStore

        store = LatentStore(path, kind=kind, num_frames=num_frames, height=height, width=width, cache=cache)
        items, build = _builder(kind, store, store.index, num_frames)
    else:
        items, build = _raw_builder(kind, Path(path), num_frames, height, width)
    if not items:
        raise ValueError(f"no {kind} samples found in {path}")
    ds = grain.MapDataset.source(items)[process_index::process_count]
    if len(ds) == 0:
        raise ValueError(f"{len(items)} samples cannot be split over {process_count} processes")
    ds = ds.shuffle(seed=seed).repeat(num_epochs).map_with_index(_Build(build, seed, process_index))
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)
    ds = ds.to_iter_dataset(options, allow_nones=True)
    return SkipCountingBatch(ds, batch_size, max_consecutive_skips=max(100, 2 * len(items)))


def _raw_builder(kind: str, path: Path, num_frames: int, height: int, width: int):
    if kind == "camclone":
        rows, root = camclone_index(path)
        src = RawVideos(root, num_frames, height, width, short="pad")  # CamCloneMaster pads (spec 3)
        return _builder(kind, src, {"rows": rows}, num_frames)
    videos, scenes, train = multicam_index(path, with_pairs=kind == "syncam")
    src = RawVideos(train, num_frames, height, width, short="error")  # ReCam/SynCam skip short clips
    return _builder(kind, src, {"videos": videos, "scenes": scenes}, num_frames)


def _builder(kind: str, src, index: dict, num_frames: int):
    """(items, build(item, rng) -> example) for a source of videos (raw or latent) and its index."""
    if kind == "camclone":
        return index["rows"], lambda item, rng: _camclone_example(src, item, rng)
    scenes = index["scenes"]
    if kind == "recam":  # one element per video: every camera is a target once per epoch (spec 5.7 step 1)
        return index["videos"], lambda v, rng: _recam_example(src, v, scenes, num_frames, rng)
    captions = {v.key: v.caption for v in index["videos"]}
    names = sorted(scenes)  # one element per scene; the view pair is drawn per element (spec 6.5)
    return names, lambda name, rng: _syncam_example(src, scenes[name], captions, num_frames, rng)
