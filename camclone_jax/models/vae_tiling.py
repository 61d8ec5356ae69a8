"""DiffSynth's spatial tiling for the Wan VAE: overlapping tiles blended with linear ramps.

Legend: B batch, T frames, H/W height/width of the input grid, C channels.

Tile size and stride are given in latent units (DiffSynth's `tile_size` / `tile_stride`); encoding works on
pixel tiles 8x larger. Each tile runs through the VAE alone (its own time cache, its own per-frame attention),
is weighted by a mask and accumulated; the sum is divided by the summed weights. The mask is the elementwise
minimum of a ramp along H and one along W; a ramp is 1 except on each side that is not an image boundary,
where its `border = size - stride` samples (in output units) rise as (1, 2, ..., border) / border. Tiles on
the right and bottom edges are cut to the image, so at most four tile shapes are compiled. Accumulation
happens on the host, so device memory holds one tile at a time (spec wan.md 5.8).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of the tiles along one axis; a start is dropped when the previous tile already reaches the end."""
    return [s for s in range(0, length, stride) if not (s - stride >= 0 and s - stride + size >= length)]


def ramp(length: int, low_is_edge: bool, high_is_edge: bool, border: int) -> np.ndarray:
    out = np.ones(length, np.float32)
    if border > 0:
        rise = (np.arange(border, dtype=np.float32) + 1) / border
        if not low_is_edge:
            out[:border] = rise[:length]
        if not high_is_edge:
            out[-border:] = rise[::-1][-length:]
    return out


def check_tiling(tile_size, tile_stride) -> tuple[tuple[int, int], tuple[int, int]]:
    size = tuple(int(s) for s in tile_size)
    stride = tuple(int(s) for s in (tile_stride if tile_stride is not None else (size[0] // 2, size[1] // 2)))
    if len(size) != 2 or len(stride) != 2 or min(stride) < 1 or any(t > s for t, s in zip(stride, size)):
        raise ValueError(f"VAE tiling expects tile_size=(h, w) and 1 <= tile_stride <= tile_size in latent units, "
                         f"got tile_size={tile_size}, tile_stride={tile_stride}")
    return size, stride


def tiled_apply(run: Callable, x, tile_size, tile_stride, *, scale: float, out_channels: int,
                out_frames: int, desc: str, progress: bool = False) -> np.ndarray:
    """Blends `run` over spatial tiles of `x` [B, T, H, W, C].

    `scale` is output pixels per input pixel (8 for decode, 1/8 for encode); tile_size/stride are in latent
    units, i.e. in input units for decode and in output units for encode.
    """
    (size_h, size_w), (stride_h, stride_w) = check_tiling(tile_size, tile_stride)
    in_unit = 1 if scale > 1 else int(round(1 / scale))  # input pixels per latent
    out_unit = int(scale) if scale > 1 else 1
    b, _, height, width, _ = x.shape
    lat_h, lat_w = height // in_unit, width // in_unit
    out_h, out_w = round(height * scale), round(width * scale)
    values = np.zeros((b, out_frames, out_h, out_w, out_channels), np.float32)
    weight = np.zeros((1, 1, out_h, out_w, 1), np.float32)
    tasks = [(h, w) for h in tile_starts(lat_h, size_h, stride_h) for w in tile_starts(lat_w, size_w, stride_w)]
    for h, w in tqdm(tasks, desc=desc, disable=not progress):
        tile = np.asarray(run(x[:, :, h * in_unit:(h + size_h) * in_unit, w * in_unit:(w + size_w) * in_unit]))
        mask = np.minimum(
            ramp(tile.shape[2], h == 0, h + size_h >= lat_h, (size_h - stride_h) * out_unit)[:, None],
            ramp(tile.shape[3], w == 0, w + size_w >= lat_w, (size_w - stride_w) * out_unit)[None, :])
        top, left = h * out_unit, w * out_unit
        window = (slice(None), slice(None), slice(top, top + tile.shape[2]), slice(left, left + tile.shape[3]))
        values[window] += tile * mask[None, None, :, :, None]
        weight[window] += mask[None, None, :, :, None]
    return values / weight
