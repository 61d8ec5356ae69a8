"""Flow-matching schedulers vs their references: DiffSynth `FlowMatchScheduler`, diffusers
`FlowMatchEulerDiscreteScheduler` and `UniPCMultistepScheduler` (flow sigmas, as Wan 2.1 configures it).

Grids must be bit-identical; 10-step loops with a fixed fake velocity field, run as one jitted `lax.scan`,
must match the torch `step()` loops to 1e-5 relative.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camclone_jax.sample import schedulers as S

LOOP_TOL = 1e-5  # max |jax − torch| / max |torch| after a whole 10-step loop
SHAPE = (2, 3, 4, 5)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def diffsynth_flow_match():
    """DiffSynth 2.x `FlowMatchScheduler`, from its file (`diffsynth.diffusion.__init__` pulls the trainer)."""
    pytest.importorskip("torch")
    from tests import oracles

    return oracles.diffsynth_module("diffusion.flow_match").FlowMatchScheduler


def diffusers_unipc(flow_shift, **kw):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                             num_train_timesteps=1000, flow_shift=flow_shift, **kw)


def velocity(xp, x, t, c):
    """Fixed fake model: a smooth, t-dependent, nonlinear velocity field (same op order in torch and jnp)."""
    s = t / 1000.0
    return (0.7 - 0.4 * s) * x - (1.0 - 0.5 * s) * c + 0.1 * xp.sin(3.0 * x + s)


def inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal(SHAPE).astype(np.float32)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def jax_euler_loop(sigmas, ts, noise, c):
    def body(x, k):
        return S.euler_step(sigmas, velocity(jnp, x, ts[k], c), k, x), None
    run = jax.jit(lambda x: jax.lax.scan(body, x, jnp.arange(len(ts)))[0])
    return np.asarray(run(jnp.asarray(noise)))


# --- DiffSynth ------------------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("num_steps", [10, 50, 40, 1000])
@pytest.mark.parametrize("shift", [5, 3.0, 1.0, 8.0, 3.3])
def test_diffsynth_grid_equals_class(num_steps, shift):
    sched = diffsynth_flow_match()("Wan")
    sched.set_timesteps(num_steps, denoising_strength=1.0, shift=shift)
    sigmas = S.diffsynth_sigmas(num_steps, shift)
    assert sigmas.dtype == np.float32 and sigmas[-1] == 0
    np.testing.assert_array_equal(sigmas[:-1], sched.sigmas.numpy())
    np.testing.assert_array_equal(S.timesteps(sigmas), sched.timesteps.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("strength", [0.7, 0.35])
def test_diffsynth_grid_denoising_strength(strength):
    sched = diffsynth_flow_match()("Wan")
    sched.set_timesteps(10, denoising_strength=strength, shift=5.0)
    sigmas = S.diffsynth_sigmas(10, 5.0, strength)
    np.testing.assert_array_equal(sigmas[:-1], sched.sigmas.numpy())
    np.testing.assert_array_equal(S.timesteps(sigmas), sched.timesteps.numpy())


def test_diffsynth_grid_spec_values():
    """Spec §8.6: 1.0, 0.99593, 0.99174, …, 0.24194, 0.17241, 0.09259, then 0; within 1 ulp of float64."""
    sigmas = S.diffsynth_sigmas(50, 5.0)
    np.testing.assert_allclose(sigmas[[0, 1, 2, 47, 48, 49, 50]],
                               [1.0, 0.99593, 0.99174, 0.24194, 0.17241, 0.09259, 0.0], atol=5e-6)
    x = np.linspace(1.0, 0.0, 51)[:-1]
    exact = np.append(5 * x / (1 + 4 * x), 0.0)
    assert np.max(np.abs(sigmas - exact) / np.spacing(exact.astype(np.float32))) <= 2


@pytest.mark.torch
def test_diffsynth_loop_matches_class(torch):
    noise, c = inputs()
    sched = diffsynth_flow_match()("Wan")
    sched.set_timesteps(10, denoising_strength=1.0, shift=5.0)
    x, ct = torch.from_numpy(noise), torch.from_numpy(c)
    for t in sched.timesteps:
        x = sched.step(velocity(torch, x, t, ct), t, x)
    sigmas = S.diffsynth_sigmas(10, 5.0)
    out = jax_euler_loop(sigmas, jnp.asarray(S.timesteps(sigmas)), noise, c)
    assert rel_err(out, x.numpy()) <= LOOP_TOL


# --- diffusers FlowMatchEulerDiscreteScheduler -----------------------------------------------------------

FM_CONFIGS = [dict(shift=1.0), dict(shift=3.0), dict(shift=5.0), dict(shift=5.0, shift_terminal=0.1),
              dict(use_dynamic_shifting=True, mu=0.8), dict(use_dynamic_shifting=True, mu=1.5,
                                                            time_shift_type="linear")]


@pytest.mark.torch
@pytest.mark.parametrize("num_steps", [10, 50])
@pytest.mark.parametrize("config", FM_CONFIGS, ids=str)
def test_flow_match_euler_grid_equals_diffusers(num_steps, config):
    diffusers = pytest.importorskip("diffusers")
    config = dict(config)
    mu = config.pop("mu", None)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)
    sched.set_timesteps(num_steps, mu=mu)
    sigmas, ts = S.flow_match_euler_sigmas(num_steps, num_train_timesteps=1000, mu=mu, **config)
    np.testing.assert_array_equal(sigmas, sched.sigmas.numpy())
    np.testing.assert_array_equal(ts, sched.timesteps.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("shift", [3.0, 5.0])
def test_flow_match_euler_loop_matches_diffusers(torch, shift):
    diffusers = pytest.importorskip("diffusers")
    noise, c = inputs()
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    sched.set_timesteps(10)
    x, ct = torch.from_numpy(noise), torch.from_numpy(c)
    for t in sched.timesteps:
        x = sched.step(velocity(torch, x, t, ct), t, x).prev_sample
    sigmas, ts = S.flow_match_euler_sigmas(10, shift)
    out = jax_euler_loop(sigmas, jnp.asarray(ts), noise, c)
    assert rel_err(out, x.numpy()) <= LOOP_TOL


# --- diffusers UniPCMultistepScheduler (flow sigmas) -----------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("num_steps", [10, 40, 50])
@pytest.mark.parametrize("flow_shift", [3.0, 5.0, 16.0, 1.0])
def test_unipc_grid_equals_diffusers(num_steps, flow_shift):
    sched = diffusers_unipc(flow_shift)
    sched.set_timesteps(num_steps)
    schedule = S.unipc_schedule(num_steps, flow_shift)
    assert schedule.timesteps.dtype == np.int64
    np.testing.assert_array_equal(schedule.sigmas, sched.sigmas.numpy())
    np.testing.assert_array_equal(schedule.timesteps, sched.timesteps.numpy())


@pytest.mark.torch
def test_unipc_grid_dynamic_shift_equals_diffusers():
    sched = diffusers_unipc(1.0, use_dynamic_shifting=True, shift_terminal=0.05)
    sched.set_timesteps(20, mu=0.9)
    sigmas, ts = S.unipc_flow_sigmas(20, use_dynamic_shifting=True, mu=0.9, shift_terminal=0.05)
    np.testing.assert_array_equal(sigmas, sched.sigmas.numpy())
    np.testing.assert_array_equal(ts, sched.timesteps.numpy())


def test_unipc_grid_spec_table():
    """Spec §8.2 table (diffusers columns) and §8.3 orders: 1 on the first and last step, 2 elsewhere."""
    s50 = S.unipc_schedule(50, 5.0)
    assert list(s50.timesteps[:8]) == [999, 995, 991, 987, 982, 978, 973, 968]
    assert list(s50.timesteps[-5:]) == [359, 305, 244, 175, 96]
    np.testing.assert_allclose(s50.sigmas[[0, 49]], [0.999999, 0.09678], atol=5e-6)
    s40 = S.unipc_schedule(40, 3.0)
    assert list(s40.timesteps[:8]) == [999, 991, 982, 973, 964, 954, 944, 934]
    assert list(s40.timesteps[-2:]) == [138, 74]
    assert list(s50.orders) == [1] + [2] * 48 + [1]
    assert not s50.coeffs.c_use[0] and s50.coeffs.c_use[1:].all()


def jax_unipc_loop(schedule, noise, c):
    ts = jnp.asarray(schedule.timesteps, jnp.float32)

    def body(carry, k):
        x, state = carry
        x, state = S.unipc_step(state, velocity(jnp, x, ts[k], c), k, x)
        return (x, state), None

    def run(x):
        return jax.lax.scan(body, (x, S.unipc_init(schedule, x)), jnp.arange(len(ts)))[0][0]

    return np.asarray(jax.jit(run)(jnp.asarray(noise)))


@pytest.mark.torch
@pytest.mark.parametrize("flow_shift,kw", [(5.0, {}), (3.0, {}), (5.0, dict(solver_order=3)),
                                           (3.0, dict(solver_order=1)), (5.0, dict(disable_corrector=[0, 4]))],
                         ids=["s5", "s3", "order3", "order1", "no_corr_0_4"])
def test_unipc_loop_matches_diffusers(torch, flow_shift, kw):
    noise, c = inputs()
    sched = diffusers_unipc(flow_shift, **kw)
    sched.set_timesteps(10)
    sched.set_begin_index(0)
    x, ct = torch.from_numpy(noise), torch.from_numpy(c)
    for t in sched.timesteps:
        x = sched.step(velocity(torch, x, t.float(), ct), t, x).prev_sample
    schedule = S.unipc_schedule(10, flow_shift, **kw)
    out = jax_unipc_loop(schedule, noise, c)
    assert np.all(np.isfinite(out))
    assert rel_err(out, x.numpy()) <= LOOP_TOL


def test_unipc_loop_is_sensitive_to_corrector_and_order():
    """The loop tests can tell the variants apart: each changes the 10-step result far beyond LOOP_TOL."""
    noise, c = inputs()
    base = jax_unipc_loop(S.unipc_schedule(10, 5.0), noise, c)
    for kw in (dict(disable_corrector=[4]), dict(solver_order=1), dict(solver_order=3)):
        assert rel_err(jax_unipc_loop(S.unipc_schedule(10, 5.0, **kw), noise, c), base) > 10 * LOOP_TOL
