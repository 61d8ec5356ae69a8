"""XLA flags this package adds to `XLA_FLAGS` on import, before JAX starts a backend.

XLA:CPU in jaxlib 0.10 hands dot, elementwise and reduce fusions to YNNPACK. On the DiT the XLA-emitted reduce
fusions are faster: on a 2-core AMD EPYC in fp32 the medium DiT train step (4 blocks of the 1.3B, 1,950 tokens)
took 6.9 s instead of 8.2 s and its forward 2.6 s instead of 3.0 s; the full 1.3B train step 10.8 s instead of
11.6 s (benchmarks/RESULTS.md, 2026-11-22). Turning off YNNPACK's elementwise fusions as well slowed the tiny
forward from 1.5 to 2.3 ms, and turning off all of YNNPACK slowed the full 1.3B train step to 14 s, so only
reduce goes.
The flag only touches XLA:CPU compilations.

The flag is experimental and XLA aborts on flags it does not know, so it is only added for the jaxlib series it
was measured on (`MEASURED_JAXLIB`), and never where `XLA_FLAGS` already sets it or where
`CAMCLONE_JAX_DEFAULT_XLA_FLAGS=0`. It has no effect when JAX already initialised its CPU backend before this
package was imported.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-reduce",)
MEASURED_JAXLIB = (0, 10)  # major, minor
OPT_OUT = "CAMCLONE_JAX_DEFAULT_XLA_FLAGS"


def _jaxlib_series() -> tuple[int, ...] | None:
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None


def default_xla_flags(environ: MutableMapping[str, str] | None = None,
                      jaxlib_series: tuple[int, ...] | None = None) -> list[str]:
    """Adds the flags of `CPU_FLAGS` that `environ["XLA_FLAGS"]` does not set yet; returns those it added."""
    environ = os.environ if environ is None else environ
    series = _jaxlib_series() if jaxlib_series is None else jaxlib_series
    if environ.get(OPT_OUT, "1") == "0" or series != MEASURED_JAXLIB:
        return []
    current = environ.get("XLA_FLAGS", "")
    added = [flag for flag in CPU_FLAGS if flag.split("=")[0] not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
