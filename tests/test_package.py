"""The JAX package imports, converts safetensors and runs without torch installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

WITHOUT_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import numpy as np
    from safetensors.numpy import save_file
    import camclone_jax, camclone_jax.models, camclone_jax.models.loading, camclone_jax.sharding
    from camclone_jax.models import DiTConfig
    from convert import convert_dit
    from convert.dit import expected_torch_shapes
    cfg = DiTConfig.tiny("t2v")
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in expected_torch_shapes(cfg).items()}
    save_file(state, sys.argv[1] + "/w.safetensors")
    convert_dit(sys.argv[1] + "/w.safetensors", sys.argv[1] + "/jax", num_heads=2, log=lambda *_: None)
    model = camclone_jax.models.loading.load_dit(sys.argv[1] + "/jax")
    assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    print("ok")
""")


def test_imports_and_converts_safetensors_without_torch(tmp_path):
    run = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")


def test_default_xla_flags_are_added_once_and_respect_the_user():
    from camclone_jax.xla_flags import CPU_FLAGS, MEASURED_JAXLIB, OPT_OUT, default_xla_flags

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert default_xla_flags(env, MEASURED_JAXLIB) == list(CPU_FLAGS)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 " + " ".join(CPU_FLAGS)
    assert default_xla_flags(env, MEASURED_JAXLIB) == []  # a second import adds nothing
    assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1

    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+dot"}  # the user's own setting wins
    assert default_xla_flags(mine, MEASURED_JAXLIB) == [] and mine["XLA_FLAGS"].endswith("=+dot")
    opted_out = {OPT_OUT: "0"}
    assert default_xla_flags(opted_out, MEASURED_JAXLIB) == [] and "XLA_FLAGS" not in opted_out
    other_jaxlib = {}  # XLA aborts on flags it does not know: only the measured series gets them
    assert default_xla_flags(other_jaxlib, (MEASURED_JAXLIB[0], MEASURED_JAXLIB[1] + 1)) == []
    assert other_jaxlib == {}


def test_importing_the_package_sets_the_flag_before_jax_starts():
    code = ("import os, camclone_jax, jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready(); "
            "print(os.environ.get('XLA_FLAGS', ''))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    from camclone_jax.xla_flags import CPU_FLAGS, MEASURED_JAXLIB, _jaxlib_series
    expected = " ".join(CPU_FLAGS) if _jaxlib_series() == MEASURED_JAXLIB else ""
    assert run.stdout.strip() == expected
