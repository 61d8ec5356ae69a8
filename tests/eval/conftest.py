"""A tiny synthetic CameraClone dataset shared by the held-out evaluation tests (a few seconds to render)."""

import pytest

from camclone_jax.data import synthetic


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthetic.generate(out, locations=4, test_locations=4, frames=9, height=64, width=96, cameras=3,
                       supersample=1, detail="coarse", progress=False)
    return out
