"""One sampling core for every task: encode the conditions, denoise, decode (spec camera_control.md 4.2, 5.4,
6.7, 7.3-7.7; wan.md 8.8).

Tasks and the DiT variants that run them:
  t2v       prompt                                  -> video          (t2v weights)
  i2v       prompt + first frame                    -> video          (i2v, or camclone weights without refs)
  camclone  prompt + camera-reference video + (content video | first frame)
                                                    -> video that moves like the reference (camclone weights)
  recam     prompt + source video + target trajectory -> the source re-shot along the trajectory (recam weights)
  syncam    prompt + per-view camera poses          -> one synchronised video per view (syncam weights)

Shapes (channels last): videos [T, H, W, 3] in [-1, 1] with T = 4k + 1 and H, W divisible by 16; latents
[B, F, H/8, W/8, 16] with F = k + 1; cam_emb [F, 12] (recam) or [V, F, 12] (syncam, view 0 = identity).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from camclone_jax.models.wan_vae import decode, num_latent_frames
from camclone_jax.sample.camera import pose_embedding
from camclone_jax.sample.conditions import (NEGATIVE_PROMPT, TILE_SIZE, TILE_STRIDE, clip_features, encode_text,
                                            encode_video, image_condition, zeros_like_latents)
from camclone_jax.sample.denoise import Sampler, denoise, noise_like

TASKS = ("t2v", "i2v", "camclone", "recam", "syncam")
CAMERA_GUIDED_TASKS = ("camclone", "recam")  # tasks with a camera condition that can be held still
TASK_VARIANTS = {"t2v": ("t2v",), "i2v": ("i2v", "camclone"), "camclone": ("camclone",), "recam": ("recam",),
                 "syncam": ("syncam",)}
# Wan I2V prefixes "camera shake," to the base negative prompt (wan.md 8.8).
I2V_NEGATIVE_PROMPT = "镜头晃动，" + NEGATIVE_PROMPT
# Upstream sampler of each task: the camera repos use DiffSynth's Euler; Wan itself UniPC (i2v 480p: 40 steps,
# shift 3).
DEFAULT_SAMPLERS = {"t2v": Sampler("unipc", 50, 5.0, 5.0), "i2v": Sampler("unipc", 40, 3.0, 5.0),
                    "camclone": Sampler("euler", 50, 5.0, 5.0), "recam": Sampler("euler", 50, 5.0, 5.0),
                    "syncam": Sampler("euler", 50, 5.0, 5.0)}


def default_negative_prompt(task: str) -> str:
    return I2V_NEGATIVE_PROMPT if task == "i2v" else NEGATIVE_PROMPT


def check_variant(task: str, variant: str, where: str = "the DiT") -> None:
    """A task run with weights of another method is refused before anything heavy is loaded."""
    if task not in TASK_VARIANTS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if variant not in TASK_VARIANTS[task]:
        runs = [t for t, vs in TASK_VARIANTS.items() if variant in vs]
        raise ValueError(f"task {task!r} needs {' or '.join(TASK_VARIANTS[task])} weights, but {where} is a "
                         f"{variant!r} model (it runs: {', '.join(runs)})")


@dataclasses.dataclass
class Models:
    """The loaded networks. `clip` only for the image-conditioned tasks (i2v, camclone)."""

    dit: object
    vae: object
    text_encoder: object
    tokenizer: object
    clip: object | None = None

    @property
    def variant(self) -> str:
        return self.dit.config.variant


@dataclasses.dataclass
class Inputs:
    """What a task is conditioned on, already loaded and preprocessed (videos/images in [-1, 1])."""

    prompt: str
    negative_prompt: str | None = None  # None: the task's upstream default
    image: np.ndarray | None = None  # [H, W, 3] first frame (i2v; camclone, default the content video's frame 0)
    ref_video: np.ndarray | None = None  # [T, H, W, 3] camclone camera reference
    content_video: np.ndarray | None = None  # [T, H, W, 3] camclone content (V2V); None: I2V
    source_video: np.ndarray | None = None  # [T, H, W, 3] recam source
    cam_emb: np.ndarray | None = None  # recam [F, 12] or syncam [V, F, 12]


def _check_video(name: str, video: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if video is not None and tuple(video.shape) != shape:
        raise ValueError(f"{name} must be {list(shape)} (frames, height, width, 3) to match the output, got "
                         f"{list(video.shape)}")


def check_inputs(task: str, inputs: Inputs, num_frames: int, height: int, width: int) -> None:
    """Raises ValueError naming the missing or misshapen input of `task`."""
    if (num_frames - 1) % 4 or num_frames < 1:
        raise ValueError(f"num_frames must be of the form 4k+1 (e.g. 17, 49, 81), got {num_frames}")
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive multiples of 16, got {height}x{width}")
    needs = {"i2v": ("image",), "camclone": ("ref_video",), "recam": ("source_video", "cam_emb"),
             "syncam": ("cam_emb",)}.get(task, ())
    for name in needs:
        if getattr(inputs, name) is None:
            raise ValueError(f"task {task!r} needs {name}")
    if task == "camclone" and inputs.image is None and inputs.content_video is None:
        raise ValueError("task 'camclone' needs a content video (V2V) or a first-frame image (I2V)")
    video_shape = (num_frames, height, width, 3)
    for name in ("ref_video", "content_video", "source_video"):
        _check_video(name, getattr(inputs, name), video_shape)
    if inputs.image is not None and tuple(inputs.image.shape) != (height, width, 3):
        raise ValueError(f"image must be [{height}, {width}, 3], got {list(inputs.image.shape)}")
    frames = num_latent_frames(num_frames)
    if task == "recam" and inputs.cam_emb.shape != (frames, 12):
        raise ValueError(f"recam cam_emb must be [{frames}, 12] (one pose per latent frame), got "
                         f"{list(inputs.cam_emb.shape)}")
    if task == "syncam" and (inputs.cam_emb.ndim != 3 or inputs.cam_emb.shape[1:] != (frames, 12)):
        raise ValueError(f"syncam cam_emb must be [views, {frames}, 12], got {list(inputs.cam_emb.shape)}")


def check_sampler(task: str, sampler: Sampler) -> None:
    """Camera guidance needs a task whose camera can be held still (`static_camera`)."""
    if sampler.camera_guided and task not in CAMERA_GUIDED_TASKS:
        raise ValueError(f"camera guidance (camera scale {sampler.camera_scale:g}) works for the tasks "
                         f"{', '.join(CAMERA_GUIDED_TASKS)}, not {task!r}; use a camera scale of 1")


def generate(models: Models, task: str, inputs: Inputs, *, num_frames: int = 81, height: int = 480,
             width: int = 832, sampler: Sampler | None = None, seed: int = 0, tiled: bool = True,
             progress: bool = True, mesh=None) -> np.ndarray:
    """Runs `task` and returns the decoded videos float32 [V, T, H, W, 3] in [-1, 1] (V = views for syncam,
    else 1). `mesh`: run the denoising loop over these devices (`denoise`)."""
    check_variant(task, models.variant)
    check_inputs(task, inputs, num_frames, height, width)
    sampler = sampler or DEFAULT_SAMPLERS[task]
    check_sampler(task, sampler)
    views = inputs.cam_emb.shape[0] if task == "syncam" else 1
    negative = inputs.negative_prompt if inputs.negative_prompt is not None else default_negative_prompt(task)
    prompts = [inputs.prompt, negative] if sampler.guided else [inputs.prompt]
    encoded = encode_text(models.text_encoder, models.tokenizer, prompts)  # one umT5 call for both prompts
    text, negative_text = encoded[:1], (encoded[1:] if sampler.guided else None)
    if views > 1:  # every view reads the same prompt
        text = jnp.repeat(text, views, axis=0)
        negative_text = None if negative_text is None else jnp.repeat(negative_text, views, axis=0)

    conditions = task_conditions(models, task, inputs, num_frames, height, width, tiled, progress)
    static = (static_camera(models, task, inputs, conditions, num_frames, tiled, progress)
              if sampler.camera_guided else None)
    noise = noise_like(seed, (views, num_latent_frames(num_frames), height // 8, width // 8, 16))
    latents = denoise(models.dit, noise, text, negative_text, sampler, num_views=views, progress=progress,
                      mesh=mesh, static_camera=static, **conditions)
    tiles = dict(tile_size=TILE_SIZE, tile_stride=TILE_STRIDE, progress=progress) if tiled else {}
    return np.stack([np.asarray(decode(models.vae, latents[v:v + 1], **tiles))[0] for v in range(views)])


def task_conditions(models: Models, task: str, inputs: Inputs, num_frames: int, height: int, width: int,
                    tiled: bool, progress: bool) -> dict:
    """The DiT's keyword inputs besides (x, t, context) for `task`, encoded from `inputs` (VAE, CLIP)."""
    batched = lambda a: None if a is None else jnp.asarray(a, jnp.float32)[None]
    if task == "recam":  # target first, then the clean source latents on the frame axis (spec 5.4)
        source = encode_video(models.vae, batched(inputs.source_video), tiled=tiled, progress=progress)
        return dict(cond_latents=source, cam_emb=batched(inputs.cam_emb))
    if task == "syncam":
        return dict(cam_emb=jnp.asarray(inputs.cam_emb, jnp.float32))
    if task not in ("i2v", "camclone"):
        return {}
    image = inputs.image if inputs.image is not None else inputs.content_video[0]
    conditions = dict(y=image_condition(models.vae, batched(image), num_frames),
                      clip_feature=clip_features(models.clip, batched(image)))
    if task == "camclone":  # target | camera reference | content (zeros in I2V mode), spec 7.4
        reference = encode_video(models.vae, batched(inputs.ref_video), tiled=tiled, progress=progress)
        content = (encode_video(models.vae, batched(inputs.content_video), tiled=tiled, progress=progress)
                   if inputs.content_video is not None else zeros_like_latents(1, num_frames, height, width))
        conditions["cond_latents"] = jnp.concatenate([reference, content], axis=1)
    return conditions


def static_camera(models: Models, task: str, inputs: Inputs, conditions: dict, num_frames: int, tiled: bool,
                  progress: bool) -> dict:
    """The camera conditions of `task` with the camera held still, for camera guidance (`Sampler.camera_scale`):
    camclone's reference replaced by its first frame repeated, recam's trajectory by the identity pose."""
    if task == "camclone":
        frozen = np.repeat(np.asarray(inputs.ref_video, np.float32)[:1], num_frames, axis=0)[None]
        reference = encode_video(models.vae, frozen, tiled=tiled, progress=progress)
        content = conditions["cond_latents"][:, reference.shape[1]:]
        return dict(cond_latents=jnp.concatenate([reference, content], axis=1))
    if task == "recam":
        return dict(cam_emb=jnp.broadcast_to(jnp.asarray(pose_embedding(np.eye(4))), conditions["cam_emb"].shape))
    raise ValueError(f"camera guidance works for the tasks {CAMERA_GUIDED_TASKS}, not {task!r}")


def plot_path(video_path: str | Path) -> Path:
    """Where the camera plot of an output video goes: `<stem>_cameras.png` beside it."""
    video_path = Path(video_path)
    return video_path.with_name(video_path.stem + "_cameras.png")
