"""Every `configs/*.py` loads, is locked, and builds an abstract model of the intended size (levanter-style)."""

import importlib
import pathlib

import jax
import ml_collections
import pytest
from flax import nnx

from camclone_jax.models import WanDiT
from camclone_jax.models.presets import VARIANTS
from camclone_jax.sharding import MESH_AXES
from configs import common

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
VAE_CONFIGS = ("synthetic_vae",)  # config.task == "vae": no DiT, checked by test_vae_config
CONFIG_NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in ("__init__", "common", *VAE_CONFIGS))

# DiT variant each config is meant to build, and its exact parameter count where we know it. The 1.3B-based
# counts are the upstream figures (Wan2.1-T2V-1.3B, CamCloneMaster, ReCamMaster, SynCamMaster releases); the
# 14B counts equal diffusers' WanTransformer3DModel built with the Wan2.1 14B T2V / I2V configs.
EXPECTED = {
    "wan_t2v_1_3b": ("t2v", 1_418_996_800),
    "camclonemaster": ("camclone", 1_564_428_608),
    "recammaster": ("recam", 1_490_420_800),
    "syncammaster": ("syncam", 1_773_951_040),
    "wan_t2v_14b": ("t2v", 14_288_491_584),
    "wan_i2v_14b": ("i2v", 16_394_878_784),
    "tiny": ("t2v", None),
    "synthetic_camclone": ("camclone", 1_382_656),  # width 128, 4 blocks, tiny umT5 / CLIP widths
}


def load(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    return importlib.import_module(f"configs.{name}").get_config(arg)


def abstract_param_count(cfg) -> int:
    """Parameter count of a `WanDiT` built abstractly (no arrays allocated, so 14B is free)."""
    abstract = nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_every_config_is_listed():
    assert set(CONFIG_NAMES) == set(EXPECTED), "add new configs to EXPECTED (variant, parameter count)"


@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_vae_config(arg):
    from camclone_jax.models.wan_vae import param_count
    from camclone_jax.train.vae_train import vae_config

    config = load("synthetic_vae", arg)
    assert config.task == "vae"
    with pytest.raises(AttributeError):
        config.learning_rate = 1.0
    assert param_count(vae_config(config)) == 668_043  # 2.7 MB in fp32
    assert config.input.num_frames % 4 == 1
    assert config.optimizer.decay_steps == config.total_steps


@pytest.mark.parametrize("arg", [None, "runlocal=True", "runlocal=False"])
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_loads_locked_and_builds(name, arg):
    config = load(name, arg)
    assert isinstance(config, ml_collections.ConfigDict)
    with pytest.raises(AttributeError):
        config.learning_rate = 1.0  # typo'd key: a locked config refuses to add it
    with pytest.raises(AttributeError):
        config.model.overrides.dtpye = "bfloat16"

    cfg = common.model_config(config)
    variant, count = EXPECTED[name]
    assert cfg.variant == variant
    n = abstract_param_count(cfg)
    assert n > 0
    if count is not None:
        assert n == count, f"{name}: {n:,} parameters, expected {count:,} (diff {n - count:+,})"

    # Cross-field sanity that every config must satisfy.
    assert config.input.num_frames % 4 == 1, "the causal VAE takes 4k+1 frames"
    assert config.input.height % 16 == 0 and config.input.width % 16 == 0, "VAE /8 then 2x2 patches"
    assert set(config.sharding.mesh.keys()) == set(MESH_AXES)  # ConfigDict keeps keys sorted
    shape = common.mesh_shape(config.sharding.mesh, 8)
    assert shape["data"] * shape["fsdp"] * shape["tensor"] * shape["sequence"] == 8
    assert config.sharding.dit_rules
    assert config.optimizer.lr > 0


@pytest.mark.parametrize("name", ["camclonemaster", "recammaster", "syncammaster"])
def test_trainable_patterns_select_the_intended_params(name):
    """The `trainable` substrings match a non-empty, strict subset of the model's parameter paths."""
    config = load(name)
    abstract = nnx.eval_shape(lambda: WanDiT(common.model_config(config), rngs=nnx.Rngs(0)))
    paths = ["/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(abstract, nnx.Param))]
    patterns = config.optimizer.trainable
    trained = [p for p in paths if any(k in p for k in patterns)]
    assert 0 < len(trained) < len(paths)
    assert all(any(k in p for p in trained) for k in patterns), "a pattern that matches nothing is a typo"


def test_runlocal_shrinks_the_run():
    full, local = load("camclonemaster"), load("camclonemaster", "runlocal")
    assert (full.input.batch_size, full.input.num_frames) == (32, 81)
    assert local.input.batch_size < full.input.batch_size and local.input.num_frames < full.input.num_frames
    assert common.model_config(local) == common.model_config(full).replace(attention="xla", remat="none")


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_builds_every_variant(variant):
    config = load("tiny", f"variant={variant}")
    cfg = common.model_config(config)
    assert cfg.variant == variant and cfg.dim == 64
    assert 0 < abstract_param_count(cfg) < 10_000_000
    assert ("camera" in config) == (variant in ("recam", "syncam"))


def test_synthetic_camclone_patch_option():
    coarse, fine = load("synthetic_camclone"), load("synthetic_camclone", "patch=1")
    assert common.model_config(coarse).patch_size == (1, 2, 2)
    assert common.model_config(fine) == common.model_config(coarse).replace(patch_size=(1, 1, 1))
    with pytest.raises(ValueError, match="patch=3"):
        load("synthetic_camclone", "patch=3")


def test_tiny_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant"):
        load("tiny", "variant=t2i")


def test_parse_arg_types_and_forms():
    spec = dict(variant="1.3b", runlocal=False, steps=10, lr=1e-4)
    arg = common.parse_arg("variant=14b,runlocal=True,steps=7,lr=3e-5", **spec)
    assert (arg.variant, arg.runlocal, arg.steps, arg.lr) == ("14b", True, 7, 3e-5)
    assert isinstance(arg.steps, int) and isinstance(arg.runlocal, bool) and isinstance(arg.lr, float)

    defaults = common.parse_arg(None, **spec)
    assert defaults.to_dict() == spec
    assert common.parse_arg("", **spec).to_dict() == spec
    assert common.parse_arg("runlocal", **spec).runlocal is True  # bare name -> True
    assert common.parse_arg("runlocal=false", **spec).runlocal is False
    assert common.parse_arg("14b", **spec).variant == "14b"  # bare value -> first spec entry
    assert common.parse_arg("res=224", res=(128, int)).res == 224  # (default, convert_fn) form

    with pytest.raises(ValueError, match="unknown config args"):
        common.parse_arg("runlcoal=True", **spec)
    with pytest.raises(ValueError, match="bool"):
        common.parse_arg("runlocal=maybe", **spec)
    with pytest.raises(ValueError):
        common.parse_arg("steps=ten", **spec)
    with pytest.raises(AttributeError):
        defaults.new_key = 1  # the parsed arg is locked too


def test_overrides_reach_the_dit_config():
    config = load("wan_t2v_1_3b", "runlocal")
    assert common.model_config(config).dtype == "bfloat16"
    config.model.overrides.dtype = "float32"
    config.model.overrides.remat = "dots"
    cfg = common.model_config(config)
    assert (cfg.dtype, cfg.remat, cfg.dim, cfg.num_layers) == ("float32", "dots", 1536, 30)
    with pytest.raises(ValueError, match="unknown DiTConfig overrides"):
        common.model_block("wan_t2v_1_3b", dtpye="bfloat16")


def test_mesh_shape_fills_the_free_axis():
    mesh = common.sharding_block(data=2, fsdp=-1).mesh
    assert common.mesh_shape(mesh, 8) == {"data": 2, "fsdp": 4, "tensor": 1, "sequence": 1}
    assert common.mesh_shape(common.sharding_block(fsdp=4).mesh, 4)["fsdp"] == 4
    with pytest.raises(ValueError):
        common.mesh_shape(mesh, 3)  # 3 devices do not divide by data=2
    with pytest.raises(ValueError):
        common.mesh_shape(common.sharding_block(data=-1, fsdp=-1).mesh, 8)
    with pytest.raises(ValueError):
        common.mesh_shape(common.sharding_block(fsdp=2).mesh, 8)  # all fixed, wrong device count
