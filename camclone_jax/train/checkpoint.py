"""Checkpoints of a training run: the state (a dataclass of arrays: the DiT's TrainState, the VAE trainer's
VAEState) and the data-iterator position (JSON).

Layout: `workdir/checkpoints/<step>/{state,data}` written by an orbax `CheckpointManager` (async, keeps the last
`keep` steps). `restore_latest(workdir, abstract_state)` -> (state, data_state, step) or None; `abstract_state`
is a state of `jax.ShapeDtypeStruct`s (with shardings, for a sharded restore), e.g. `abstract(state)`.
Restores are bit-identical (arrays are stored in their own dtype).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


CKPT_DIR = "checkpoints"


def _to_tree(state) -> dict:
    """A plain dict of a state dataclass (TrainState, VAEState; orbax stores dicts best); None fields such as
    `ema=None` are left out."""
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if getattr(state, f.name) is not None}


def _from_tree(tree: dict, like) -> Any:
    return type(like)(**{f.name: tree.get(f.name) for f in dataclasses.fields(like)})


def abstract(state):
    """ShapeDtypeStructs (with the arrays' shardings) of a concrete state: the restore target."""
    def one(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
    return jax.tree.map(one, state)


class Checkpointer:
    """Async orbax CheckpointManager over `workdir/checkpoints`, saving every `every` steps, keeping `keep`."""

    def __init__(self, workdir: str | Path, *, every: int, keep: int = 3):
        self.directory = directory = Path(workdir).absolute() / CKPT_DIR
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=max(1, int(every)),
                                               enable_async_checkpointing=True, create=True)
        self.every = max(1, int(every))
        self.manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "data"))

    def should_save(self, step: int) -> bool:
        """Every `every` steps (orbax's own `should_save` would also save the first step of a run)."""
        return step % self.every == 0

    def save(self, step: int, state, data_state: Any = None, *, force: bool = False) -> bool:
        """Starts an async save of `state` and the JSON-able `data_state` at `step` (if due, or `force`)."""
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(_to_tree(state)),
                                  data=ocp.args.JsonSave(data_state if data_state is not None else {}))
        return self.manager.save(step, args=args, force=force)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, step: int, abstract_state) -> tuple[Any, Any]:
        """(state of `abstract_state`'s type, data_state) at `step`."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_to_tree(abstract_state)),
                                  data=ocp.args.JsonRestore())
        out = self.manager.restore(step, args=args)
        return _from_tree(dict(out["state"]), abstract_state), out["data"]

    def resume(self, state) -> tuple[Any, Any, int]:
        """(state, data_state, step) of the newest checkpoint, restored with `state`'s shapes, dtypes and
        shardings (so the jitted step sees the signature it was compiled for), or (state, None, 0) unchanged
        when the run has none yet."""
        step = self.latest_step()
        if step is None:
            return state, None, 0
        state, data_state = self.restore(step, abstract(state))
        print(f"resumed from {self.directory / str(step)} at step {step}", flush=True)
        return state, data_state, int(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def restore_latest(workdir: str | Path, abstract_state) -> tuple[Any, Any, int] | None:
    """(state, data_state, step) of the newest checkpoint under `workdir`, or None if there is none."""
    if not (Path(workdir) / CKPT_DIR).exists():
        return None
    with Checkpointer(workdir, every=1) as ckpt:
        step = ckpt.latest_step()
        if step is None:
            return None
        state, data_state = ckpt.restore(step, abstract_state)
    return state, data_state, step
