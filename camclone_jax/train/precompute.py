"""Precompute VAE latents and umT5 text features into ArrayRecord shards (upstream's `--task data_process`).

    python -m camclone_jax.train.precompute --kind recam --data MultiCamVideo-Dataset/ --vae ckpt/vae \
        --text-encoder ckpt/umt5 --tokenizer google-umt5-xxl/ --out latents/recam --frames 81 --height 480 \
        --width 832 [--shard-size 64] [--dtype float32]      (--clip ckpt/clip for --kind camclone)

Every item of the dataset *index* is encoded once (not the random training pairs): each video's latents
[F, h, w, 16], each distinct caption's umT5 features trimmed to its length [len, D], and for CamCloneMaster
targets also `y` [F, h, w, 20] and `clip_feature` [257, E] of the target's first frame (spec 7.5). ReCam/SynCam
videos also carry their camera's poses `c2w_cm` [T_json, 4, 4] (OpenCV axes, translation still in cm), so a
latent dataset needs nothing from the raw folder. `make_dataset(kind, out_dir, ..., latents=True)` then builds
the same examples as the raw pipeline, pairing cameras / views on the stored latents (`LatentStore`).

Output folder:
    manifest.json                 kind, geometry, dtype, text_len, shard count and the dataset index
    shard-00000.array_record      one record per job (video or text), written to a temp name then renamed
    shard-00000.json              the shard's "done" marker (record keys, skipped videos), written last
    skipped.json                  all videos that could not be read (corrupt, or short for ReCam/SynCam)
A shard with a marker is skipped on rerun; one without (interrupted) is redone from scratch.

Records: b"CCJ1", uint32 header length, a JSON header {"meta": {...}, "arrays": {name: [dtype, shape, offset]}},
then the raw little-endian array bytes. Floats are stored as `--dtype` (float32 by default, exact; bfloat16 or
float16 halve the size) and read back as float32.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import struct
from pathlib import Path
from types import SimpleNamespace

import grain
import ml_dtypes
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from tqdm import tqdm

from camclone_jax.models.text_prompts import encode_prompts
from camclone_jax.models.wan_vae import encode
from camclone_jax.sample.camera import load_camera_json
from camclone_jax.sample.conditions import clip_features, image_condition
from camclone_jax.train.data import CAMERA_JSON, KINDS, CamCloneItem, Scene, SceneVideo, camclone_index, multicam_index

MAGIC = b"CCJ1"
FORMAT_VERSION = 1
# ReCam/SynCam data_process encodes with DiffSynth's tiled VAE, tiles (34, 34) stride (18, 16) in latent units
# (spec 5.7); CamCloneMaster encodes online, untiled (spec 7.5).
RECAM_TILES = dict(tile_size=(34, 34), tile_stride=(18, 16))
_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


# --- Record codec --------------------------------------------------------------------------------------------

def encode_record(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    """Self-describing bytes of named arrays plus a JSON-able `meta` dict."""
    header, chunks, offset = {}, [], 0
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        header[name] = [value.dtype.name, list(value.shape), offset]
        chunks.append(value.tobytes())
        offset += value.nbytes
    head = json.dumps({"meta": meta, "arrays": header}).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(chunks)


def decode_record(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of `encode_record`: (arrays, meta); arrays are read-only views of `data`."""
    if data[:4] != MAGIC:
        raise ValueError("not a camclone_jax latent record (bad magic)")
    (size,) = struct.unpack("<I", data[4:8])
    head = json.loads(data[8:8 + size])
    body = memoryview(data)[8 + size:]
    arrays = {}
    for name, (dtype, shape, offset) in head["arrays"].items():
        dtype = np.dtype(_DTYPES.get(dtype, dtype))
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(body, dtype, count, offset).reshape(shape)
    return arrays, head["meta"]


# --- Jobs: what to encode ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
    """One record to produce: a video (key = its path as indexed) or a caption (key = the text)."""

    type: str  # "video" | "text"
    key: str
    image: bool = False  # camclone target: also y and clip_feature of its first frame
    camera: int | None = None  # recam/syncam: the camera number, to store its poses


def plan(kind: str, data_path: str | Path) -> tuple[list[Job], dict, Path]:
    """(jobs in a deterministic order, the JSON-able index for the manifest, the folder video keys start from)."""
    if kind == "camclone":
        rows, root = camclone_index(data_path)
        targets = {r.target for r in rows}
        keys = list(dict.fromkeys(k for r in rows for k in (r.target, r.ref, r.content)))
        jobs = [Job("video", k, image=k in targets) for k in keys]
        captions = [r.caption for r in rows]
        index = {"rows": [dataclasses.asdict(r) for r in rows]}
    else:
        videos, scenes, root = multicam_index(data_path, with_pairs=kind == "syncam")
        jobs = [Job("video", v.key, camera=v.camera) for v in videos]
        captions = [v.caption for v in videos]
        index = {"videos": [dataclasses.asdict(v) for v in videos],
                 "scenes": [{"name": s.name, "videos": [[c, k] for c, k in s.videos.items()],
                             "pairs": [list(p) for p in s.pairs]} for s in scenes.values()]}
    jobs += [Job("text", c) for c in dict.fromkeys(captions)]
    return jobs, index, root


def index_from_manifest(kind: str, index: dict) -> dict:
    """The manifest's index as data.py's dataclasses."""
    if kind == "camclone":
        return {"rows": [CamCloneItem(**r) for r in index["rows"]]}
    scenes = {s["name"]: Scene(s["name"], {int(c): k for c, k in s["videos"]}, tuple(map(tuple, s["pairs"])))
              for s in index["scenes"]}
    return {"videos": [SceneVideo(**v) for v in index["videos"]], "scenes": scenes}


def encode_latents(vae, video: np.ndarray, kind: str):
    """VAE latents [B, F, h, w, 16] of videos [B, T, H, W, 3] as each model's data processing encodes them."""
    return encode(vae, video, **(RECAM_TILES if kind in ("recam", "syncam") else {}))


def _encode_job(job: Job, kind: str, models, root: Path, size: dict, text_len: int) -> dict[str, np.ndarray]:
    if job.type == "text":
        emb, lengths = encode_prompts(models.text_encoder, models.tokenizer, [job.key], text_len=text_len)
        return {"text": np.asarray(emb[0, :int(lengths[0])])}  # trimmed: zeros past the length are implied
    # CamCloneMaster pads short clips by repeating the last frame; ReCam/SynCam skip them (spec 3).
    from camclone_jax.sample.video import read_video  # PyAV: raw videos only; latents train without it
    video = read_video(root / job.key, short="pad" if kind == "camclone" else "error", **size)
    out = {"latents": np.asarray(encode_latents(models.vae, video[None], kind)[0])}
    if job.image:
        first = video[None, 0]
        out["y"] = np.asarray(image_condition(models.vae, first, size["num_frames"])[0])
        out["clip_feature"] = np.asarray(clip_features(models.clip, first)[0])
    if job.camera is not None:  # divisor 1: data.py divides by 100 (ReCam) or 200 (SynCam) when it loads
        out["c2w_cm"] = load_camera_json(root / Path(job.key).parent.parent / CAMERA_JSON, job.camera, 1.0)
    return out


# --- Writing shards ------------------------------------------------------------------------------------------

def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # atomic: a marker or manifest is either complete or absent


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _write_shard(out: Path, i: int, jobs: list[Job], encode_one, bar) -> dict:
    tmp = out / (shard_name(i) + ".array_record.tmp")
    writer = ArrayRecordWriter(str(tmp), "group_size:1")  # group_size 1: cheap random access per record
    records, skipped = [], []
    try:
        for job in jobs:
            try:
                arrays = encode_one(job)
            except (ValueError, OSError) as err:  # corrupt / short video or broken camera JSON
                skipped.append({"key": job.key, "error": f"{type(err).__name__}: {err}"})
            else:
                writer.write(encode_record(arrays, {"type": job.type, "key": job.key}))
                records.append([job.type, job.key])
            bar.update(1)
    finally:
        writer.close()
    os.replace(tmp, out / (shard_name(i) + ".array_record"))
    marker = {"records": records, "skipped": skipped}
    _write_json(out / (shard_name(i) + ".json"), marker)  # written last: the shard's "done" flag
    return marker


def precompute(kind: str, data_path: str | Path, out_dir: str | Path, models, *, num_frames: int = 81,
               height: int = 480, width: int = 832, shard_size: int = 64, text_len: int = 512,
               dtype: str = "float32", progress: bool = True) -> dict[str, list]:
    """Encode the dataset index into `out_dir` (layout in the module doc); resumable.

    `models` needs `vae`, `text_encoder`, `tokenizer` and, for camclone, `clip` (e.g. `sample.tasks.Models`).
    Returns {"written": shard ids encoded now, "reused": shard ids already done, "skipped": [{"key", "error"}]}.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs, index, root = plan(kind, data_path)
    shards = [jobs[i:i + shard_size] for i in range(0, len(jobs), shard_size)]
    manifest = {"version": FORMAT_VERSION, "kind": kind, "num_frames": num_frames, "height": height,
                "width": width, "text_len": text_len, "dtype": dtype, "shard_size": shard_size,
                "num_shards": len(shards), "index": index}
    _check_resume(out / "manifest.json", manifest)
    _write_json(out / "manifest.json", manifest)
    size = dict(num_frames=num_frames, height=height, width=width)
    store_dtype = _DTYPES[dtype]

    def encode_one(job):
        arrays = _encode_job(job, kind, models, root, size, text_len)
        return {k: v.astype(store_dtype) if k != "c2w_cm" else v for k, v in arrays.items()}

    result = {"written": [], "reused": [], "skipped": []}
    todo = [i for i in range(len(shards)) if not (out / (shard_name(i) + ".json")).is_file()]
    with tqdm(total=sum(len(shards[i]) for i in todo), desc=f"precompute {kind}", unit="item",
              disable=not progress) as bar:
        for i in range(len(shards)):
            if i in todo:
                _write_shard(out, i, shards[i], encode_one, bar)
                result["written"].append(i)
            else:
                result["reused"].append(i)
    for i in range(len(shards)):
        result["skipped"] += json.loads((out / (shard_name(i) + ".json")).read_text())["skipped"]
    _write_json(out / "skipped.json", result["skipped"])
    return result


def _check_resume(path: Path, manifest: dict) -> None:
    # Resuming with other settings would mix incompatible shards; refuse instead.
    if path.is_file():
        old = json.loads(path.read_text())
        if old != manifest:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise ValueError(f"{path.parent} holds a precompute with different settings ({diff}); use a new "
                             f"--out folder or delete it")


# --- Reading shards back -------------------------------------------------------------------------------------

class LatentStore:
    """Random access to a precompute folder, with the interface data.py's example builders use.

    video(key) -> latents [F, h, w, 16] f32; first_frame(key) -> {"y", "clip_feature"}; text(caption) ->
    {"text": [text_len, D] zero-padded, "text_len": int32}; c2ws(key, camera, divisor) -> [T, 4, 4].
    Keys that precompute skipped raise KeyError (data.py counts the sample as skipped).
    cache=True keeps every record read, decoded, in host memory: after the first epoch no example touches the
    disk (a GPU step on a small model outruns array_record reads, ~700 examples/s per core)."""

    def __init__(self, path: str | Path, *, kind: str, num_frames: int, height: int, width: int,
                 cache: bool = False):
        self.path = Path(path)
        self._cache: dict | None = {} if cache else None
        manifest = json.loads((self.path / "manifest.json").read_text())
        want = {"kind": kind, "num_frames": num_frames, "height": height, "width": width}
        if any(manifest[k] != v for k, v in want.items()):
            raise ValueError(f"{self.path} was precomputed with {({k: manifest[k] for k in want})}, not {want}")
        self.text_len = manifest["text_len"]
        self.index = index_from_manifest(kind, manifest["index"])
        files, self.positions = [], {}
        for i in range(manifest["num_shards"]):
            marker = self.path / (shard_name(i) + ".json")
            if not marker.is_file():
                raise ValueError(f"{self.path}: shard {i} is unfinished; rerun the precompute to complete it")
            for record_type, key in json.loads(marker.read_text())["records"]:
                self.positions[(record_type, key)] = len(self.positions)
            files.append(str(self.path / (shard_name(i) + ".array_record")))
        self.source = grain.sources.ArrayRecordDataSource(files)

    def _record(self, record_type: str, key: str) -> dict[str, np.ndarray]:
        if (record_type, key) not in self.positions:
            raise KeyError(f"no {record_type} record for {key!r} in {self.path} (see skipped.json)")
        if self._cache is not None and (record_type, key) in self._cache:
            return self._cache[(record_type, key)]
        record = decode_record(self.source[self.positions[(record_type, key)]])[0]
        if self._cache is not None:
            self._cache[(record_type, key)] = record
        return record

    def video(self, key: str) -> np.ndarray:
        return self._record("video", key)["latents"].astype(np.float32)

    def first_frame(self, key: str) -> dict[str, np.ndarray]:
        record = self._record("video", key)
        return {"y": record["y"].astype(np.float32), "clip_feature": record["clip_feature"].astype(np.float32)}

    def text(self, caption: str) -> dict[str, np.ndarray]:
        trimmed = self._record("text", caption)["text"]
        text = np.zeros((self.text_len, trimmed.shape[-1]), np.float32)
        text[:len(trimmed)] = trimmed
        return {"text": text, "text_len": np.int32(len(trimmed))}

    def c2ws(self, key: str, camera: int, divisor: float) -> np.ndarray:
        c2w = self._record("video", key)["c2w_cm"].copy()
        c2w[:, :3, 3] /= divisor  # same float ops as load_camera_json(path, camera, divisor)
        return c2w


# --- CLI -----------------------------------------------------------------------------------------------------

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--data", required=True, help="camclone: the CSV; recam/syncam: folder with metadata.csv")
    parser.add_argument("--vae", required=True, help="converted VAE checkpoint folder")
    parser.add_argument("--text-encoder", required=True, help="converted umT5 checkpoint folder")
    parser.add_argument("--tokenizer", required=True, help="folder with spiece.model, or the .model file")
    parser.add_argument("--clip", help="converted CLIP checkpoint folder (camclone only)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--text-len", type=int, default=512)
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    args = parser.parse_args(argv)
    if args.kind == "camclone" and not args.clip:
        parser.error("--kind camclone needs --clip (y and clip_feature of each target's first frame)")
    from camclone_jax.models.loading import load_clip, load_umt5, load_vae
    from camclone_jax.models.text_prompts import PromptTokenizer

    models = SimpleNamespace(vae=load_vae(args.vae), text_encoder=load_umt5(args.text_encoder),
                             tokenizer=PromptTokenizer(args.tokenizer),
                             clip=load_clip(args.clip) if args.clip else None)
    result = precompute(args.kind, args.data, args.out, models, num_frames=args.frames, height=args.height,
                        width=args.width, shard_size=args.shard_size, text_len=args.text_len, dtype=args.dtype)
    print(f"{len(result['written'])} shard(s) written, {len(result['reused'])} already done, "
          f"{len(result['skipped'])} video(s) skipped (listed in {Path(args.out) / 'skipped.json'})")


if __name__ == "__main__":
    main()
