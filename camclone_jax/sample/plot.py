"""Camera poses drawn into a PNG with PIL only (no matplotlib), for checking trajectories by eye.

Shapes: c2ws [N, 4, 4] or [N, 3, 4] camera-to-world matrices in OpenCV axes (x right, y down, z forward,
metres); column 2 of the rotation is the viewing direction. N frames of one trajectory (ReCamMaster) or
N separate cameras (SynCamMaster views); labels, if given, has N entries.

Two panels share one metres-per-pixel scale so distances compare across them:
    top view  (x–z): x to the right, z (forward) up the screen
    side view (z–y): z to the right, -y up the screen (the camera's "up" is -y)
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# (title, horizontal axis, vertical axis, sign of the vertical axis as drawn "up")
_PANELS = (("top view (x-z)", 0, 2, 1.0, "x (m)", "z (m)"),
           ("side view (z-y, y up = -y)", 2, 1, -1.0, "z (m)", "-y (m)"))
_MIN_EXTENT_M = 0.5  # a pure pan has no translation; keep the frustums readable instead of dividing by zero
_TITLE_H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 22, 46, 14, 40, 30
_GRID, _TEXT = (225, 225, 225), (90, 90, 90)


def _time_colour(t: float) -> tuple[int, int, int]:
    return (round(255 * t), 40, round(255 * (1 - t)))  # blue (first) -> red (last)


def _nice_step(raw: float) -> float:
    exp = 10.0 ** math.floor(math.log10(raw))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= raw)


def _validate(c2ws, labels, size) -> np.ndarray:
    arr = np.asarray(c2ws, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"c2ws must have shape [N, 4, 4] or [N, 3, 4] with N >= 1, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"c2ws of shape {arr.shape} contains non-finite values")
    if labels is not None and len(labels) != len(arr):
        raise ValueError(f"labels must have N = {len(arr)} entries, got {len(labels)}")
    if len(size) != 2 or size[0] < 240 or size[1] < 160:
        raise ValueError(f"size must be (width, height) of at least (240, 160), got {size}")
    return arr


def plot_cameras(c2ws: np.ndarray, path, *, title: str = "", labels: Sequence[str] | None = None,
                 size: tuple[int, int] = (960, 480)) -> str:
    """Draw c2ws [N, 4, 4] (or [N, 3, 4]) as a top and a side view into an RGB PNG at `path`.

    N > 1 is drawn as a path coloured by time (blue first, red last); a frustum shows where each marked
    camera looks (all of them for N <= 8, else every ~N/8 frames plus first and last). Cameras are tagged
    "start" / "end", or with `labels[i]`. The file is written atomically. Returns the path as a string.
    Raises ValueError for a wrong shape, non-finite values, a labels length != N or a too small size."""
    arr = _validate(c2ws, labels, size)
    n, (width, height) = len(arr), (int(size[0]), int(size[1]))
    pos, right, down, fwd = arr[:, :3, 3], arr[:, :3, 0], arr[:, :3, 1], arr[:, :3, 2]
    marked = sorted(set(range(0, n, max(1, n // 8))) | {n - 1})
    span = max(float(np.ptp(pos, axis=0).max()), _MIN_EXTENT_M)
    # Tied to the scene size so frustums neither vanish nor swamp the path; the floor keeps a pure pan legible.
    frustum_len = 0.12 * max(span, 1.0)
    # Frustum as (apex, 4 base corners) in 3-D; projecting these shows foreshortening for free.
    corners = np.stack([pos[marked] + frustum_len * (fwd[marked] + sx * 0.5 * right[marked] + sy * 0.3 * down[marked])
                        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))], axis=1)  # [M, 4, 3]
    fit_points = np.concatenate([pos, corners.reshape(-1, 3)])

    panel_w, panel_h = width / 2 - _PAD_L - _PAD_R, height - _PAD_T - _PAD_B
    extents, centres = [], []
    for _, h_ax, v_ax, v_sign, *_ in _PANELS:
        uv = np.stack([fit_points[:, h_ax], v_sign * fit_points[:, v_ax]], axis=1)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        extents.append(np.maximum((hi - lo) * 1.15, _MIN_EXTENT_M))
        centres.append((lo + hi) / 2)
    scale = min(min(panel_w / e[0], panel_h / e[1]) for e in extents)  # pixels per metre, shared
    step = _nice_step(max(panel_w, panel_h) / scale / 8)

    img = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    draw.text((width / 2, _TITLE_H / 2 + 2), title, fill="black", font=font, anchor="mm")
    for p, (name, h_ax, v_ax, v_sign, h_label, v_label) in enumerate(_PANELS):
        left, top = p * width / 2 + _PAD_L, _PAD_T
        cx, cy = left + panel_w / 2, top + panel_h / 2

        def to_px(xyz, h_ax=h_ax, v_ax=v_ax, v_sign=v_sign, centre=centres[p], cx=cx, cy=cy):
            xyz = np.asarray(xyz)
            return (cx + (xyz[..., h_ax] - centre[0]) * scale, cy - (v_sign * xyz[..., v_ax] - centre[1]) * scale)

        u_lo, v_hi = centres[p] - np.array([panel_w, -panel_h]) / 2 / scale
        u_hi, v_lo = centres[p] + np.array([panel_w, -panel_h]) / 2 / scale
        for k in range(math.ceil(u_lo / step), math.floor(u_hi / step) + 1):
            x = cx + (k * step - centres[p][0]) * scale
            draw.line([(x, top), (x, top + panel_h)], fill=_GRID)
            draw.text((x, top + panel_h + 3), f"{k * step:g}", fill=_TEXT, font=font, anchor="mt")
        for k in range(math.ceil(v_lo / step), math.floor(v_hi / step) + 1):
            y = cy - (k * step - centres[p][1]) * scale
            draw.line([(left, y), (left + panel_w, y)], fill=_GRID)
            draw.text((left - 4, y), f"{k * step:g}", fill=_TEXT, font=font, anchor="rm")
        draw.rectangle([left, top, left + panel_w, top + panel_h], outline=_TEXT)
        draw.text((left + panel_w / 2, top - 6), name, fill="black", font=font, anchor="mb")
        draw.text((left + panel_w / 2, height - 4), h_label, fill=_TEXT, font=font, anchor="mb")
        draw.text((left + 4, top + 4), v_label, fill=_TEXT, font=font, anchor="lt")

        px = np.stack(to_px(pos), axis=1)
        for i in range(n - 1):
            draw.line([tuple(px[i]), tuple(px[i + 1])], fill=_time_colour((i + 0.5) / (n - 1)), width=2)
        for j, i in enumerate(marked):
            colour = _time_colour(i / (n - 1) if n > 1 else 0.0)
            apex, base = tuple(px[i]), [tuple(c) for c in np.stack(to_px(corners[j]), axis=1)]
            draw.polygon(base, outline=colour)
            for c in base:
                draw.line([apex, c], fill=colour)
            draw.ellipse([apex[0] - 3, apex[1] - 3, apex[0] + 3, apex[1] + 3], fill=colour)
            text = labels[i] if labels is not None else ("start" if i == 0 else "end" if i == n - 1 else "")
            if text:
                above = n > 1 and i == n - 1  # "end" above, "start" below: they coincide for a pure pan
                draw.text((apex[0] + 6, apex[1] + (-4 if above else 4)), str(text), fill=colour, font=font,
                          anchor="lb" if above else "lt")

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:  # a reader never sees a half-written PNG, and a failed save leaves nothing behind
        with os.fdopen(fd, "wb") as f:
            img.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)
