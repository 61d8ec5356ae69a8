"""The JAX package imports, converts safetensors and runs without torch installed."""

from __future__ import annotations

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
    state = {k: rng.standard_normal(s).astype(np.float32) for k, (_, _, s) in expected_torch_shapes(cfg).items()}
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
