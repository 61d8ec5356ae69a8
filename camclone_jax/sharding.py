"""The one place where logical axis names meet a device mesh.

Model code annotates parameters with logical names (`camclone_jax.axes`) and calls `constrain(x, *names)` on
activations at block boundaries. Here those names become `PartitionSpec`s through a rules table, and shardings
are derived for whole parameter trees. Without an active mesh every helper is a no-op, so the same model code
runs on one CPU and on a pod.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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
