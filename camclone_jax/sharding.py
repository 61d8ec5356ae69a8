"""The one place where logical axis names meet a device mesh.

Model code annotates parameters with logical names (`camclone_jax.axes`) and calls `constrain(x, *names)` on
activations at block boundaries. Here those names become `PartitionSpec`s through a rules table, and shardings
are derived for whole parameter trees. Without an active mesh every helper is a no-op, so the same model code
runs on one CPU and on a pod.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import jax
from flax import nnx
from flax.core import spmd
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from camclone_jax import axes

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

# Weights are FSDP-sharded on the model width and tensor-parallel on heads / FFN width; tokens go to the
# sequence axis, samples to data x fsdp (levanter's parameter vs compute mapping, maxdiffusion's table).
DIT_RULES: Rules = (
    (axes.BATCH, ("data", "fsdp")),
    (axes.LENGTH, "sequence"),
    (axes.CONTEXT, None),
    (axes.EMBED, "fsdp"),
    (axes.HEADS, "tensor"),
    (axes.MLP, "tensor"),
    (axes.MODULATION, "tensor"),
    (axes.TEXT_EMBED, None),
    (axes.IMAGE_EMBED, None),
    (axes.LAYERS, None),
)


def make_mesh(shape: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over `MESH_AXES`; axes missing from `shape` get size 1. Auto axis types, so that sharding
    constraints (not explicit-sharding types) drive the partitioner."""
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected a subset of {MESH_AXES}")
    sizes = tuple(int(shape.get(name, 1)) for name in MESH_AXES)
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_spec(names: Sequence[str | None], rules: Rules | None = None) -> PartitionSpec:
    """Resolves logical names with `rules` (default: the rules of the enclosing `use_mesh`). A mesh axis is
    used at most once per spec: a later logical axis that maps to an already used mesh axis is replicated."""
    table = dict(rules if rules is not None else spmd.get_logical_axis_rules())
    used: set[str] = set()
    out = []
    for name in names:
        target = table.get(name) if name is not None else None
        parts = (target,) if isinstance(target, str) else tuple(target or ())
        parts = tuple(p for p in parts if p not in used)
        used.update(parts)
        out.append(None if not parts else parts[0] if len(parts) == 1 else parts)
    return PartitionSpec(*out)


def _active_mesh():
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
    """`with_sharding_constraint` by logical names under the current mesh and rules; identity without a mesh."""
    if _active_mesh() is None or not spmd.get_logical_axis_rules():
        return x
    if len(names) != x.ndim:
        raise ValueError(f"constrain got {len(names)} names for an array of shape {x.shape}")
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names))


def _axes_of(entry) -> tuple[str, ...]:
    return (entry,) if isinstance(entry, str) else tuple(entry or ())


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh) -> PartitionSpec:
    """Drops trailing mesh axes of each entry until they divide that dimension (shard_map needs even shards;
    e.g. a CFG batch of 2 on data x fsdp = 8 is replicated over fsdp instead)."""
    out = []
    for entry, size in zip(spec, shape):
        parts = _axes_of(entry)
        while parts and size % math.prod(mesh.shape[a] for a in parts):
            parts = parts[:-1]
        out.append(None if not parts else parts[0] if len(parts) == 1 else parts)
    return PartitionSpec(*out)


def sequence_parallel_size() -> int:
    """Devices the video tokens are split over (the mesh axes that `axes.LENGTH` maps to); 1 without a mesh."""
    mesh = _active_mesh()
    if mesh is None or not spmd.get_logical_axis_rules():
        return 1
    return math.prod(mesh.shape[a] for a in _axes_of(logical_to_spec((axes.LENGTH,))[0]))


def per_device_attention(attention: Callable, q: jax.Array, k: jax.Array, v: jax.Array, *,
                         self_attention: bool, force: bool = False) -> jax.Array:
    """Runs `attention(q, k, v)` ([B, L, N, D] each) on every device's shard through `shard_map`.

    Self-attention over sequence-sharded tokens is Ulysses sequence parallelism: an all-to-all turns the token
    shards into head shards, each device attends over all L tokens for N / sp heads, and a second all-to-all
    turns the result back into token shards. Cross-attention keeps its query tokens sharded and the (short) keys
    whole, with no communication. Without a mesh, or with unsharded tokens and `force` false (the XLA backend,
    which GSPMD partitions by itself), it is a plain call; `force` is for kernels with no partitioning rule of
    their own (the Pallas splash kernel).
    """
    mesh = _active_mesh()
    sp = sequence_parallel_size()
    if mesh is None or not spmd.get_logical_axis_rules() or (sp == 1 and not force):
        return attention(q, k, v)
    spec = logical_to_spec((axes.BATCH, axes.LENGTH, axes.HEADS, None))
    ulysses = self_attention and sp > 1
    if ulysses:
        length, heads = q.shape[1], q.shape[2]
        head_shards = sp * math.prod(mesh.shape[a] for a in _axes_of(spec[2]))
        if length % sp or heads % head_shards:
            raise ValueError(f"sequence parallelism over {sp} devices needs the token count ({length}) divisible by "
                             f"{sp} and the heads ({heads}) by {head_shards} (sequence x tensor axes)")
    q_spec = _fit(spec, q.shape, mesh)
    kv_spec = q_spec if self_attention else _fit(logical_to_spec((axes.BATCH, None, axes.HEADS, None)), k.shape,
                                                 mesh)
    seq_axes = _axes_of(q_spec[1])

    def local(q, k, v):
        if ulysses:  # [B, L/sp, N, D] -> [B, L, N/sp, D]
            q, k, v = (jax.lax.all_to_all(x, seq_axes, 2, 1, tiled=True) for x in (q, k, v))
        out = attention(q, k, v)
        if ulysses:
            out = jax.lax.all_to_all(out, seq_axes, 1, 2, tiled=True)
        return out

    return jax.shard_map(local, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec,
                         check_vma=False)(q, k, v)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules = DIT_RULES) -> Iterator[Mesh]:
    """Activates `mesh` and the logical `rules` for everything traced inside."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        yield mesh


def param_specs(state, rules: Rules = DIT_RULES):
    """PartitionSpec per parameter of an (abstract) nnx state, from each Param's `out_sharding` names."""

    def spec(var):
        names = var.get_metadata().get("out_sharding") if isinstance(var, nnx.Variable) else None
        return logical_to_spec(names, rules) if names else PartitionSpec()

    return jax.tree.map(spec, state, is_leaf=lambda v: isinstance(v, nnx.Variable))


def param_shardings(state, mesh: Mesh, rules: Rules = DIT_RULES):
    """NamedSharding per parameter of an (abstract) nnx state."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(state, rules),
                        is_leaf=lambda s: isinstance(s, PartitionSpec))
