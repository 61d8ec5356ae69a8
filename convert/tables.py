"""Applying a key table: torch state dict <-> nested parameter dict, for every model the converter knows.

A table is a list of entries with `torch_key`, `jax_path` and `transform` (see `keymap_wan.Entry`). Entries whose
`torch_key` holds `{i}` are per block: the blocks' tensors are stacked on a leading axis in JAX (the models scan
over their layers) and unstacked on the way back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx


def _block_keys(entry, num_blocks: int) -> list[str]:
    return [entry.torch_key.format(i=i) for i in range(num_blocks)]


def _per_block(entry) -> bool:
    return "{i}" in entry.torch_key


def torch_shapes(abstract_model: nnx.Module, table, num_blocks: int) -> dict[str, tuple[int, ...]]:
    """Torch key -> torch shape of every table entry, read off an abstract model (`nnx.eval_shape`); per-block
    entries expand to blocks 0 .. num_blocks - 1 (CLIP converts only the blocks it uses)."""
    flat = nnx.state(abstract_model, nnx.Param).flat_state()
    shapes = {tuple(str(k) for k in path): tuple(var.get_value().shape) for path, var in flat}
    covered = {tuple(str(k) for k in e.jax_path) for e in table}
    if covered != set(shapes):  # a model/table drift is a bug here, not a user error
        raise AssertionError(f"key table out of sync with {type(abstract_model).__name__}: "
                             f"{sorted(set(shapes) ^ covered)}")
    out = {}
    for entry in table:
        shape = shapes[tuple(str(k) for k in entry.jax_path)]
        if _per_block(entry):
            out.update({key: entry.transform.torch_shape(shape[1:]) for key in _block_keys(entry, num_blocks)})
        else:
            out[entry.torch_key] = entry.transform.torch_shape(shape)
    return out


def state_to_params(state: dict[str, np.ndarray], table, num_blocks: int, dtype) -> dict[Any, Any]:
    """Nested dict (as `nnx.state(model, nnx.Param).to_pure_dict()`) of every table entry, cast to `dtype`."""
    params: dict[Any, Any] = {}
    for entry in table:
        if _per_block(entry):
            value = np.stack([entry.transform.to_jax(state[key]) for key in _block_keys(entry, num_blocks)])
        else:
            value = entry.transform.to_jax(state[entry.torch_key])
        node = params
        for part in entry.jax_path[:-1]:
            node = node.setdefault(part, {})
        node[entry.jax_path[-1]] = value.astype(dtype, copy=False)
    return params


def params_to_state(params: dict[Any, Any], table, num_blocks: int) -> dict[str, np.ndarray]:
    """Inverse of `state_to_params`, in the table's torch naming."""
    state = {}
    for entry in table:
        value = params
        for part in entry.jax_path:
            value = value[part]
        value = np.asarray(value)
        if _per_block(entry):
            for i, key in enumerate(_block_keys(entry, num_blocks)):
                state[key] = entry.transform.to_torch(value[i])
        else:
            state[entry.torch_key] = entry.transform.to_torch(value)
    return state
