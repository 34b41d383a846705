"""hls.sampling: schedulers on the model's noise schedule, skip=0 == diffusers' pipelines, the Gaussian oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from fakes import (
    F64,
    TRAINING_ALPHAS_CUMPROD,
    TRAINING_SIGMAS,
    OracleUNet,
    ddpm_config,
    record_conversions,
    sigma_of_timestep,
    small_gaussian,
    tiny_unet,
)
from hls import sampling
from hls.gaussian import Gaussian, alpha_cumprod_from_sigma, sigma_from_alpha_cumprod, vp_to_ve
from hls.sampling import SCHEDULERS, equal_nfe_steps, make_scheduler, nfe, sample, sample_seeded, skip_sigma

# google/ddpm-cifar10-32's scheduler_config.json (written by diffusers 0.1: most keys absent).
GOOGLE_JSON = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
               "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
               "trained_betas": None, "variance_type": "fixed_large"}
VE_SAMPLE = ("euler", "heun")  # schedulers whose state is x0 + sigma * eps; the others hold sqrt(a) * that
CLASSES = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "euler": EulerDiscreteScheduler,
           "heun": HeunDiscreteScheduler, "dpmsolver": DPMSolverMultistepScheduler, "unipc": UniPCMultistepScheduler,
           "dpmsolver3": DPMSolverMultistepScheduler, "unipc_bh1": UniPCMultistepScheduler}
SHAPE = (2, 2, 2)  # D = 8


def gaussian_8() -> Gaussian:
    return small_gaussian(8, mean_scale=0.1)


def first_sigma_and_state(name, scheduler, noise):
    """Independently of hls: the first step's VE sigma and the initial state as a VE sample [B, D]."""
    x = (noise * scheduler.init_noise_sigma).reshape(noise.shape[0], -1).to(F64)
    if name in VE_SAMPLE:
        return float(scheduler.sigmas[0]), x
    if hasattr(scheduler, "sigmas"):
        sigma = float(scheduler.sigmas[0])
    else:
        sigma = float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[scheduler.timesteps[0]]))
    return sigma, vp_to_ve(x, alpha_cumprod_from_sigma(sigma))


def last_sigma(name, scheduler):
    """Where the final step starts (it ends at sigma 0 with the x0 prediction, for every scheduler but unipc_bh1,
    which ends at sigma_min)."""
    if hasattr(scheduler, "sigmas"):
        assert float(scheduler.sigmas[-1]) == (0.0 if name != "unipc_bh1" else pytest.approx(float(TRAINING_SIGMAS[0]),
                                                                                             rel=1e-4))
        return float(scheduler.sigmas[-2])
    final = scheduler.final_alpha_cumprod if hasattr(scheduler, "final_alpha_cumprod") else scheduler.one  # ddim, ddpm
    assert final == 1.0 and int(scheduler.timesteps[-1]) == 0
    return float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[scheduler.timesteps[-1]]))


def exact_answer(name, scheduler, gaussian, noise, steps):
    """The exact probability-flow ODE solution down to the final step's sigma, then that step (E[x0 | x])."""
    scheduler.set_timesteps(steps)
    s_first, x = first_sigma_and_state(name, scheduler, noise)
    s_last = last_sigma(name, scheduler)
    return gaussian.denoise(gaussian.teleport(x, s_first, s_last), s_last)  # [B, D]


def oracle_errors(name, steps, skips, batch=64):
    """RMS distance to the exact answer of sample(skip=k) with the Gaussian oracle as the UNet, for each k."""
    gaussian = gaussian_8()
    scheduler = make_scheduler(name, ddpm_config(clip_sample=False))
    noise = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(1))
    exact = exact_answer(name, scheduler, gaussian, noise, steps)
    errors = {}
    for k in skips:
        x = sample(OracleUNet(gaussian), scheduler, noise, steps=steps, skip=k, gaussian=gaussian)
        errors[k] = float((x.reshape(batch, -1).to(F64) - exact).square().mean().sqrt())
    return errors


# --- schedulers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["training", "google_json", "default_ddim"])
@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_keeps_the_model_noise_schedule(name, source):
    config = {"training": ddpm_config(), "google_json": GOOGLE_JSON, "default_ddim": DDIMScheduler().config}[source]
    if source == "default_ddim":  # the pitfall this guards against: from_config drops the source's default betas
        assert HeunDiscreteScheduler.from_config(config).config.beta_start != 1e-4
    scheduler = make_scheduler(name, config)
    assert type(scheduler) is CLASSES[name]
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), TRAINING_ALPHAS_CUMPROD, rtol=1e-4)
    assert scheduler.config.prediction_type == "epsilon"
    if name in ("ddim", "ddpm", "heun"):  # the model's clip_sample (True in all three sources), not the class default
        assert scheduler.config.clip_sample is True


def test_scheduler_settings():
    config = ddpm_config()
    assert make_scheduler("euler", config).config.use_karras_sigmas
    assert make_scheduler("heun", config).config.use_karras_sigmas
    dpm = make_scheduler("dpmsolver", config).config
    assert (dpm.algorithm_type, dpm.solver_order) == ("dpmsolver++", 2)
    assert make_scheduler("ddim", config).config.timestep_spacing == "leading"
    assert make_scheduler("unipc", config).config.timestep_spacing == "linspace"
    assert make_scheduler("unipc", config, timestep_spacing="trailing").config.timestep_spacing == "trailing"
    assert make_scheduler("ddim", config).config.clip_sample is True


def test_bad_arguments():
    config = ddpm_config()
    with pytest.raises(ValueError, match=r"name = 'lms': must be one of ddim, ddpm, euler, heun, dpmsolver, unipc"):
        make_scheduler("lms", config)
    with pytest.raises(ValueError, match="timestep_spacing"):
        make_scheduler("ddim", config, timestep_spacing="uniform")
    scheduler, unet = make_scheduler("ddim", config), OracleUNet(gaussian_8())
    noise = torch.zeros(1, *SHAPE)
    for skip in (-1, 5, 6):
        with pytest.raises(ValueError, match=r"skip = -?\d: must be an integer with 0 <= skip < steps = 5"):
            sample(unet, scheduler, noise, steps=5, skip=skip, gaussian=gaussian_8())
        with pytest.raises(ValueError, match=r"skip = .*0 <= skip < steps = 5"):
            nfe(scheduler, 5, skip)
    with pytest.raises(ValueError, match=r"steps = 0: must be an integer >= 1"):
        sample(unet, scheduler, noise, steps=0)
    with pytest.raises(ValueError, match=r"gaussian: skip = 2 > 0 needs the Gaussian"):
        sample(unet, scheduler, noise, steps=5, skip=2)
    with pytest.raises(ValueError, match=r"gaussian: dimension 8 != C\*H\*W = 12"):
        sample(unet, scheduler, torch.zeros(1, 3, 2, 2), steps=5, skip=2, gaussian=gaussian_8())
    with pytest.raises(ValueError, match=r"steps = 1000: gives fewer distinct timesteps"):
        nfe(make_scheduler("dpmsolver", config), 1000, 0)
    with pytest.raises(ValueError, match=r"steps = 1001: must be <= 1000, the model's number of training timesteps"):
        nfe(scheduler, 1001, 0)


# --- skip = 0 is diffusers' own loop ---------------------------------------------------------------------------------


def _not_saturated(images):
    return ((images > 0.01) & (images < 0.99)).float().mean() > 0.5


def test_skip0_reproduces_ddim_pipeline():
    unet, scheduler = tiny_unet(), make_scheduler("ddim", ddpm_config())
    pipe = DDIMPipeline(unet=unet, scheduler=make_scheduler("ddim", ddpm_config()))
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=10, eta=0.0,
               output_type="pt").images
    noise = randn_tensor((3, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    ours = (sample(unet, scheduler, noise, steps=10) / 2 + 0.5).clamp(0, 1)
    assert _not_saturated(ref)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("per_image", [False, True])
def test_skip0_reproduces_ddpm_pipeline(per_image):
    unet, scheduler = tiny_unet(), make_scheduler("ddpm", ddpm_config())
    pipe = DDPMPipeline(unet=unet, scheduler=make_scheduler("ddpm", ddpm_config()))
    pipe.set_progress_bar_config(disable=True)
    seeds = [5, 6, 7]
    gen = [torch.Generator().manual_seed(s) for s in seeds] if per_image else torch.Generator().manual_seed(0)
    ref = pipe(batch_size=3, generator=gen, num_inference_steps=10, output_type="pt").images
    if per_image:  # sample_seeded's contract: image i from generator(seeds[i]) alone
        ours = sample_seeded(unet, scheduler, seeds, shape=(3, 8, 8), steps=10, batch_size=2)
    else:
        gen = torch.Generator().manual_seed(0)
        ours = sample(unet, scheduler, randn_tensor((3, 3, 8, 8), generator=gen), steps=10, generator=gen)
    ours = (ours / 2 + 0.5).clamp(0, 1)
    assert _not_saturated(ref)
    assert (ours - ref).abs().max() <= 1e-5


# --- steps, NFE, sigmas ----------------------------------------------------------------------------------------------

NFE_10 = {"ddim": (10, 7), "ddpm": (10, 7), "euler": (10, 7), "heun": (19, 13), "dpmsolver": (10, 7), "unipc": (10, 7),
          "dpmsolver3": (10, 7), "unipc_bh1": (10, 7)}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_nfe_counts_unet_calls(name):
    gaussian, scheduler = gaussian_8(), make_scheduler(name, ddpm_config(clip_sample=False))
    counted = []
    for skip in (0, 3):
        unet = OracleUNet(gaussian)
        sample(unet, scheduler, torch.randn(2, *SHAPE), steps=10, skip=skip, gaussian=gaussian)
        counted.append(unet.calls)
        if skip and hasattr(scheduler, "begin_index"):  # resumed at step 3 explicitly, not by timestep lookup
            assert scheduler.begin_index == 3 * scheduler.order
    assert tuple(counted) == (nfe(scheduler, 10, 0), nfe(scheduler, 10, 3)) == NFE_10[name]
    baseline = equal_nfe_steps(scheduler, 10, 3)
    assert baseline == 7 and nfe(scheduler, baseline, 0) == nfe(scheduler, 10, 3)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_skip_sigma(name):
    scheduler = make_scheduler(name, ddpm_config())
    scheduler.set_timesteps(10)
    sigma_0, _ = first_sigma_and_state(name, scheduler, torch.zeros(1, 1))
    assert skip_sigma(scheduler, 10, 0) == pytest.approx(sigma_0, rel=1e-6)
    sigmas = [skip_sigma(scheduler, 10, k) for k in range(10)]
    assert all(a > b for a, b in zip(sigmas, sigmas[1:]))
    assert sigmas[-1] == pytest.approx(last_sigma(name, scheduler), rel=1e-6)
    if name in ("euler", "heun"):  # Karras sigmas from sigma(t=999) to sigma(t=0), whatever the step count
        euler = make_scheduler("euler", ddpm_config())
        euler.set_timesteps(10)
        np.testing.assert_allclose(sigmas, euler.sigmas[:10].numpy(), rtol=1e-6)
        assert sigmas[0] == pytest.approx(float(sigma_of_timestep(999)), rel=1e-5)


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("skip", [0, 3])
def test_karras_sigma_matches_unet_timestep(name, skip):
    """The sigma the scheduler scales the sample by is the noise level of the timestep the UNet is given."""
    scheduler = make_scheduler(name, ddpm_config(clip_sample=False))
    gaussian = gaussian_8()
    oracle = OracleUNet(gaussian)
    seen = []

    def unet(x, t):
        seen.append((float(scheduler.sigmas[scheduler.step_index]), float(sigma_of_timestep(float(t)))))
        return oracle(x, t)

    sample(unet, scheduler, torch.randn(2, *SHAPE), steps=8, skip=skip, gaussian=gaussian)
    used, of_timestep = np.array(seen).T
    np.testing.assert_allclose(of_timestep, used, rtol=1e-4)
    assert used[0] == pytest.approx(skip_sigma(scheduler, 8, skip), rel=1e-6)


def test_multistep_restart_history_at_begin_index():
    """After the teleport DPM-Solver++ restarts at first order; its last step (to sigma 0) is first order too."""
    gaussian = gaussian_8()
    scheduler = make_scheduler("dpmsolver", ddpm_config(clip_sample=False))
    orders = []
    for order, method in ((1, "dpm_solver_first_order_update"), (2, "multistep_dpm_solver_second_order_update")):
        original = getattr(scheduler, method)
        setattr(scheduler, method, lambda *a, _f=original, _o=order, **k: orders.append(_o) or _f(*a, **k))
    sample(OracleUNet(gaussian), scheduler, torch.randn(2, *SHAPE), steps=10, skip=4, gaussian=gaussian)
    assert orders == [1, 2, 2, 2, 2, 1]

    scheduler = make_scheduler("unipc", ddpm_config(clip_sample=False))
    predictor, corrector = [], []
    original_p, original_c = scheduler.multistep_uni_p_bh_update, scheduler.multistep_uni_c_bh_update
    scheduler.multistep_uni_p_bh_update = lambda *a, **k: predictor.append(k["order"]) or original_p(*a, **k)
    scheduler.multistep_uni_c_bh_update = lambda *a, **k: corrector.append(k["order"]) or original_c(*a, **k)
    sample(OracleUNet(gaussian), scheduler, torch.randn(2, *SHAPE), steps=10, skip=4, gaussian=gaussian)
    assert predictor == [1, 2, 2, 2, 2, 1]
    assert corrector == [1, 2, 2, 2, 2]  # no corrector on the first step after the teleport: nothing to correct


# --- the Gaussian oracle ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ddim", "euler", "heun"])
@pytest.mark.parametrize("steps", [5, 10, 20])
def test_oracle_teleport_never_adds_error_one_step_solvers(name, steps):
    errors = oracle_errors(name, steps, range(steps))
    assert all(errors[k] <= errors[0] * (1 + 1e-3) for k in range(steps)), errors
    assert errors[steps - 2] < 0.9 * errors[0]  # the comparison is not vacuous
    assert errors[steps - 1] < 1e-5  # only the exact final step is left


@pytest.mark.parametrize("name", ["dpmsolver", "unipc"])
@pytest.mark.parametrize("steps", [20, 30])
def test_oracle_teleport_never_adds_error_multistep_solvers(name, steps):
    """Multistep solvers restart at first order after the teleport: with >= 15 steps and the landing sigma >= 1 that
    never cost accuracy (below that it can, see hls/sampling.py)."""
    scheduler = make_scheduler(name, ddpm_config())
    skips = [k for k in range(steps) if skip_sigma(scheduler, steps, k) >= 1]
    errors = oracle_errors(name, steps, skips + [steps - 1])
    assert all(errors[k] <= errors[0] * (1 + 1e-3) for k in skips), errors
    assert errors[skips[-1]] < errors[0]  # the comparison is not vacuous
    assert errors[steps - 1] < 1e-5


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpmsolver", "unipc"])
def test_oracle_converges_at_large_steps(name):
    few, many = oracle_errors(name, 10, [0]), oracle_errors(name, 500, [0, 250])
    assert max(many.values()) < min(5e-3, few[0] / 10), (few, many)


def test_oracle_ddpm_distribution():
    """DDPM is stochastic: compare the distribution of its samples with the exact one (an affine image of the initial
    noise distribution N(0, I / a_0) in VE, so Gaussian with a closed-form mean and covariance)."""
    gaussian, n = gaussian_8(), 20000
    scheduler = make_scheduler("ddpm", ddpm_config(clip_sample=False))
    noise = torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(1))

    def distance(steps, skip):
        s_first, _ = first_sigma_and_state("ddpm", scheduler, noise[:1])
        s_last = last_sigma("ddpm", scheduler)

        def exact_map(x):  # [B, D] VE initial states -> exact final samples
            return gaussian.denoise(gaussian.teleport(x, s_first, s_last), s_last)

        d = gaussian.dim
        mean = exact_map(torch.zeros(1, d, dtype=F64))[0]  # [D]
        jac = exact_map(torch.eye(d, dtype=F64)) - mean  # [D, D], rows = images of the basis vectors
        cov = jac.T @ jac / float(alpha_cumprod_from_sigma(s_first))  # the initial VE noise has variance 1 / a_0
        x = sample(OracleUNet(gaussian), scheduler, noise, steps=steps, skip=skip, gaussian=gaussian,
                   generator=torch.Generator().manual_seed(2)).reshape(n, -1).to(F64)
        return float((x.mean(0) - mean).norm() + (torch.cov(x.T) - cov).norm() / cov.norm())

    scheduler.set_timesteps(10)
    errors = [distance(10, k) for k in (0, 3, 5, 8, 9)]
    assert all(b <= a + 0.02 for a, b in zip(errors, errors[1:])), errors  # 0.02: Monte Carlo error
    assert errors[3] < errors[0] / 2 and errors[4] < 0.05
    scheduler.set_timesteps(200)
    converged = [distance(200, 0), distance(200, 100)]
    assert max(converged) < 0.12, converged


# --- per-image seeds -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ddpm", "heun"])
def test_sample_seeded_does_not_depend_on_batching(name):
    unet, scheduler = tiny_unet(), make_scheduler(name, ddpm_config())
    gaussian = Gaussian.fit(torch.rand(300, 192, generator=torch.Generator().manual_seed(3)) * 2 - 1)
    kwargs = dict(shape=(3, 8, 8), steps=6, skip=2, gaussian=gaussian)
    whole = sample_seeded(unet, scheduler, range(10, 17), batch_size=7, **kwargs)
    assert whole.shape == (7, 3, 8, 8) and whole.dtype == torch.float32 and whole.device.type == "cpu"
    # equal up to float round-off: CPU kernels do not promise bitwise equal rows across batch sizes
    torch.testing.assert_close(sample_seeded(unet, scheduler, range(10, 17), batch_size=3, **kwargs), whole,
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(sample_seeded(unet, scheduler, [12, 13, 14], batch_size=1, **kwargs), whole[2:5],
                               rtol=0, atol=1e-5)
    assert sample_seeded(unet, scheduler, [], batch_size=3, **kwargs).shape == (0, 3, 8, 8)
    assert not torch.allclose(whole[0], whole[1])


def test_teleport_uses_named_conversions(monkeypatch):
    """VP schedulers convert with hls.gaussian's vp_to_ve / ve_to_vp; Karras ones teleport their VE state directly."""
    calls = record_conversions(monkeypatch, sampling)
    gaussian = gaussian_8()
    for name in SCHEDULERS:
        calls.clear()
        sample(OracleUNet(gaussian), make_scheduler(name, ddpm_config()), torch.randn(1, *SHAPE), steps=4,
               skip=2, gaussian=gaussian)
        assert calls == ([] if name in VE_SAMPLE else ["vp_to_ve", "ve_to_vp"]), name
