"""hls.budget: exact NFE budgets, the schedules laid over [sigma_skip -> end], and the Gaussian oracle."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from diffusers import LMSDiscreteScheduler

from fakes import F64, SIGMA_MAX, TRAINING_SIGMAS, OracleUNet, ddpm_config, record_conversions, small_gaussian
from hls import budget
from hls.budget import (
    budget_nfe,
    prepare,
    sample_budget,
    sample_budget_seeded,
    steps_for_nfe,
)
from hls.errors import ArgumentError
from hls.gaussian import Gaussian
from hls.schedules import FAMILIES, SCHEDULERS, make_scheduler, sigma_max

VE_SAMPLE = ("euler", "heun")  # schedulers whose state is x0 + sigma * eps; the others hold sqrt(a) * that
KARRAS = [("euler", "default"), ("heun", "default"), ("dpmsolver", "karras"), ("unipc", "karras")]
SAMPLERS = [(name, family) for name, families in FAMILIES.items() for family in families]
DETERMINISTIC = [(name, family) for name, family in SAMPLERS if name != "ddpm"]
SHAPE = (1, 4, 4)  # D = 16


def scheduler(name: str, family: str = "default"):
    return make_scheduler(name, ddpm_config(clip_sample=False), family)


def laid_out(s, **kwargs):
    """``prepare`` for checks of a schedule or a landing: a jump gets a Gaussian of the test's dimension."""
    if kwargs.get("start") == "jump":
        kwargs.setdefault("model", small_gaussian(16))
    return prepare(s, **kwargs)


def noise(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(seed))


def start_state(name: str, z: torch.Tensor) -> torch.Tensor:
    """The sampler's own pure-noise start at SIGMA_MAX as a VE sample [B, D]: euler / heun hold SIGMA_MAX * z, the
    others the VP sample z, i.e. the VE sample z / sqrt(a) = z * sqrt(1 + SIGMA_MAX^2)."""
    scale = SIGMA_MAX if name in VE_SAMPLE else np.sqrt(1 + SIGMA_MAX**2)
    return z.reshape(z.shape[0], -1).to(F64) * scale


def schedule_end(schedule) -> float:
    """The last nonzero sigma of a laid-out schedule; its last step goes to sigma 0 (returns the x0 prediction)."""
    if hasattr(schedule, "sigmas"):
        assert float(schedule.sigmas[-1]) == 0.0
        return float(schedule.sigmas[-2])
    t_last = int(schedule.timesteps[-1])
    if hasattr(schedule, "final_alpha_cumprod"):  # ddim: its step goes to t - T // N, below 0 to alpha = 1
        assert float(schedule.final_alpha_cumprod) == 1.0
        assert t_last - schedule.config.num_train_timesteps // schedule.num_inference_steps < 0
    else:  # ddpm: the last listed timestep goes to alpha = 1
        assert float(schedule.one) == 1.0 and schedule.previous_timestep(schedule.timesteps[-1]) == -1
    return float(TRAINING_SIGMAS[t_last])


def exact_answer(name, gaussian, z, end: float) -> torch.Tensor:
    """The exact probability-flow solution from SIGMA_MAX to the schedule's last sigma, then the exact last step."""
    return gaussian.denoise(gaussian.teleport(start_state(name, z), SIGMA_MAX, end), end)  # [B, D]


def rms(x: torch.Tensor, exact: torch.Tensor) -> float:
    return float((x.reshape(exact.shape).to(F64) - exact).square().mean().sqrt())


def oracle_error(name, nfe, start, sigma_skip=None, batch=128, family="default"):
    """RMS distance of sample_budget (the oracle as the UNet) to the exact probability-flow solution at sigma 0.

    Every sampler's last step returns the x0 prediction at its last nonzero sigma, so even an exact solver keeps a
    small floor (about 3e-4 from sigma(t=0) = 0.01; more for schedules that end higher, like plain dpmsolver / unipc,
    whose last timestep is round(999 / n)).
    """
    gaussian, z = small_gaussian(16), noise(batch)
    model = gaussian if start == "jump" else None
    budget = prepare(scheduler(name, family), nfe=nfe, start=start, sigma_skip=sigma_skip, model=model)
    x = sample_budget(OracleUNet(gaussian), budget, z)
    return rms(x, gaussian.teleport(start_state(name, z), SIGMA_MAX, 0.0))


# --- budgets and NFE -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULERS)
def test_steps_for_nfe(name):
    for nfe in (1, 3, 5, 9, 21):
        steps = steps_for_nfe(name, nfe)
        assert steps == ((nfe + 1) // 2 if name == "heun" else nfe)
        assert budget_nfe(name, steps) == nfe == budget_nfe(scheduler(name), steps)
        assert steps_for_nfe(scheduler(name), nfe) == steps
    if name == "heun":
        with pytest.raises(ArgumentError, match=r"^nfe = 6: heun spends 2 \* steps - 1 .* nearest are 5 and 7$"):
            steps_for_nfe(name, 6)
    else:
        assert steps_for_nfe(name, 6) == 6


BUDGETS = {"heun": (1, 3, 5, 9)}


@pytest.mark.parametrize(("name", "family"), SAMPLERS)
def test_nfe_counts_unet_calls(name, family):
    gaussian = small_gaussian(16)
    for nfe in BUDGETS.get(name, (1, 2, 5, 8)):
        for start, sigma_skip in (("plain", None), ("jump", 10.0), ("noise", 10.0), ("jump", 0.5)):
            unet = OracleUNet(gaussian)
            prepared = prepare(scheduler(name, family), nfe=nfe, start=start, sigma_skip=sigma_skip,
                               model=gaussian if start == "jump" else None)
            sample_budget(unet, prepared, noise(2))
            assert unet.calls == nfe, (start, sigma_skip)
            assert len(prepared.sampler.timesteps) == nfe


@pytest.mark.parametrize("name", ["dpmsolver", "unipc"])
def test_repeated_rounded_timesteps(name):
    """Landing near sigma_min, dpmsolver / unipc round several Karras sigmas to the same timestep: the budget still
    starts at index 0 (set_begin_index) and spends one evaluation per sigma."""
    gaussian = small_gaussian(16)
    s = laid_out(scheduler(name, "karras"), nfe=3, start="jump", sigma_skip=0.012).sampler
    assert s.timesteps[0] == s.timesteps[1]
    unet = OracleUNet(gaussian)
    x = sample_budget(unet, prepare(scheduler(name, "karras"), nfe=3, start="jump", sigma_skip=0.012, model=gaussian),
                      noise(2))
    assert unet.calls == 3 and bool(x.isfinite().all())


# --- plain is diffusers' own loop ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "family"), SAMPLERS)
def test_plain_is_diffusers_loop(name, family):
    gaussian, z, nfe = small_gaussian(16), noise(4), 7
    s = scheduler(name, family)
    s.set_timesteps(steps_for_nfe(name, nfe))
    gen = torch.Generator().manual_seed(3)
    kwargs = {"generator": gen} if name == "ddpm" else {}
    x, unet = z * s.init_noise_sigma, OracleUNet(gaussian)
    for t in s.timesteps:
        x = s.step(unet(s.scale_model_input(x, t), t).sample, t, x, **kwargs).prev_sample
    ours = sample_budget(OracleUNet(gaussian), prepare(scheduler(name, family), nfe=nfe, start="plain"), z,
                         generator=torch.Generator().manual_seed(3))
    assert unet.calls == nfe
    assert torch.equal(ours, x)


# --- the schedules over [sigma_skip -> end] ---------------------------------------------------------------------------


def karras(hi, lo, n):
    """Karras et al. (2022) eq. 5 with rho = 7, written out independently of hls.budget.karras_sigmas."""
    i = np.arange(n)
    return (hi ** (1 / 7) + i / max(n - 1, 1) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7


@pytest.mark.parametrize(("name", "family"), KARRAS)
@pytest.mark.parametrize("sigma_skip", [20.0, 1.5])
def test_karras_schedule(name, family, sigma_skip):
    steps = 6
    original = scheduler(name, family)
    config = dict(original.config)
    s = laid_out(original, nfe=budget_nfe(name, steps), start="jump", sigma_skip=sigma_skip).sampler
    sigmas = torch.unique_consecutive(s.sigmas).numpy()  # heun repeats every inner sigma
    # rtol: diffusers' alphas_cumprod are float32, which moves sigma(t=0) by 8e-5
    np.testing.assert_allclose(sigmas[:-1], karras(sigma_skip, TRAINING_SIGMAS[0], steps), rtol=2e-4)
    assert sigmas[0] == pytest.approx(sigma_skip, rel=1e-6)
    assert sigmas[-1] == 0.0
    t_of_sigma = np.interp(np.log(sigmas[:-1]), np.log(TRAINING_SIGMAS), np.arange(1000))
    timesteps = torch.unique_consecutive(s.timesteps).numpy()
    if name in ("euler", "heun"):  # the UNet gets the exact (fractional) timestep of each sigma
        np.testing.assert_allclose(timesteps, t_of_sigma, atol=2e-3)
    else:  # dpmsolver / unipc in Karras mode round it, as diffusers does
        np.testing.assert_array_equal(timesteps, np.round(t_of_sigma))
    assert laid_out(original, nfe=budget_nfe(name, steps), start="jump", sigma_skip=sigma_skip).landing == \
        pytest.approx(sigma_skip, rel=1e-6)
    assert dict(original.config) == config  # the caller's scheduler is left alone
    assert laid_out(original, nfe=budget_nfe(name, steps), start="noise", sigma_skip=sigma_skip).landing == \
        pytest.approx(sigma_skip, rel=1e-6)


@pytest.mark.parametrize("name", ["dpmsolver", "unipc"])
@pytest.mark.parametrize("sigma_skip", [40.0, 10.0, 2.0])
def test_linear_in_t_schedule(name, sigma_skip):
    """dpmsolver / unipc's default family: integer timesteps linear in t from the timestep nearest sigma_skip down to
    0, as their own "linspace" spacing lays them from t = 999; the sigmas are the model's at those timesteps."""
    s = laid_out(scheduler(name), nfe=7, start="jump", sigma_skip=sigma_skip).sampler
    t_skip = int(np.abs(np.log(TRAINING_SIGMAS) - np.log(sigma_skip)).argmin())
    np.testing.assert_array_equal(s.timesteps.numpy(), np.round(np.linspace(0, t_skip, 8))[::-1][:-1])
    np.testing.assert_allclose(s.sigmas[:-1].numpy(), TRAINING_SIGMAS[s.timesteps.numpy()], rtol=1e-4)
    assert float(s.sigmas[-1]) == 0.0


@pytest.mark.parametrize("sigma_skip", [40.0, 2.0])
def test_log_snr_schedule(sigma_skip):
    """dpmsolver's logsnr family: sigmas geometric (uniform in log-SNR) from sigma_skip down to sigma(t=0)."""
    s = laid_out(scheduler("dpmsolver", "logsnr"), nfe=6, start="jump", sigma_skip=sigma_skip).sampler
    np.testing.assert_allclose(s.sigmas[:-1].numpy(), np.geomspace(sigma_skip, TRAINING_SIGMAS[0], 6), rtol=2e-4)
    t_of_sigma = np.interp(np.log(s.sigmas[:-1].numpy()), np.log(TRAINING_SIGMAS), np.arange(1000))
    np.testing.assert_array_equal(s.timesteps.numpy(), np.round(t_of_sigma))


@pytest.mark.parametrize("name", ["ddim", "ddpm"])
@pytest.mark.parametrize("nfe", [1, 2, 5, 8, 20, 30])
@pytest.mark.parametrize("sigma_skip", [40.0, 10.0, 2.0, 0.5])
def test_ddim_ddpm_schedule(name, nfe, sigma_skip):
    s = laid_out(scheduler(name), nfe=nfe, start="jump", sigma_skip=sigma_skip).sampler
    timesteps = s.timesteps.numpy()
    t_skip = int(np.abs(np.log(TRAINING_SIGMAS) - np.log(sigma_skip)).argmin())
    if name == "ddpm":  # evenly spaced integers from t_skip to 0, through diffusers' custom timesteps
        assert s.custom_timesteps
        np.testing.assert_array_equal(timesteps, np.floor(np.linspace(t_skip, 0, nfe) + 0.5))
    else:  # one DDIM stride, the one DDIMScheduler.step takes, ending in [0, stride): the last step returns x0
        stride = s.config.num_train_timesteps // s.num_inference_steps
        assert (np.diff(timesteps) == -stride).all() and 0 <= timesteps[-1] < stride
        assert abs(TRAINING_SIGMAS[timesteps[0]] / sigma_skip - 1) < 0.04  # see hls.budget's module doc
    assert laid_out(scheduler(name), nfe=nfe, start="jump", sigma_skip=sigma_skip).landing == \
        pytest.approx(TRAINING_SIGMAS[timesteps[0]], rel=1e-5)
    schedule_end(s)


def test_ddim_far_landing_is_an_error():
    with pytest.raises(ArgumentError, match=r"^sigma_skip = 20.0: ddim steps of one stride T // N can start at t = "):
        laid_out(scheduler("ddim"), nfe=40, start="jump", sigma_skip=20.0)
    s = laid_out(scheduler("ddpm"), nfe=40, start="jump", sigma_skip=20.0).sampler  # ddpm takes any timesteps
    assert TRAINING_SIGMAS[int(s.timesteps[0])] == pytest.approx(20.0, rel=0.005)


def test_sigma_max_and_plain_landing():
    for name in SCHEDULERS:
        assert sigma_max(scheduler(name)) == pytest.approx(SIGMA_MAX, rel=1e-5)
    for name, family in SAMPLERS:  # the plain schedule starts at sigma_max, except ddim / ddpm's leading spacing
        if name not in ("ddim", "ddpm"):
            assert laid_out(scheduler(name, family), nfe=5, start="plain").landing == pytest.approx(SIGMA_MAX, rel=1e-5)
    # ddim / ddpm with their default "leading" spacing start 10 steps lower at t = 900
    assert laid_out(scheduler("ddim"), nfe=10, start="plain").landing == pytest.approx(TRAINING_SIGMAS[900], rel=1e-5)


# --- the jump: where it lands, and how close to the exact solution it gets --------------------------------------------


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("model_name", ["gaussian", "mean"])
def test_jump_lands_on_the_teleport(name, model_name):
    """The UNet's first input is the teleported pure noise at the landing sigma; for the point mass at the mean the
    jump is x -> mu + (sigma_skip / sigma_max) (x - mu), written out here."""
    gaussian, z, sigma_skip = small_gaussian(16), noise(3), 3.0
    model = gaussian if model_name == "gaussian" else Gaussian.isotropic(gaussian.mean, 0.0)
    unet = OracleUNet(gaussian)
    sample_budget(unet, prepare(scheduler(name), nfe=3, start="jump", sigma_skip=sigma_skip, model=model), z)
    landed = laid_out(scheduler(name), nfe=3, start="jump", sigma_skip=sigma_skip).landing
    x0 = start_state(name, z)
    if model_name == "mean":
        expected = gaussian.mean + landed / SIGMA_MAX * (x0 - gaussian.mean)
    else:
        expected = gaussian.teleport(x0, SIGMA_MAX, landed)
    first = unet.inputs[0][0].reshape(3, -1).to(F64) * np.sqrt(1 + landed**2)  # model input (VP) -> VE
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_noise_start(name):
    z, sigma_skip = noise(3), 3.0
    unet = OracleUNet(small_gaussian(16))
    sample_budget(unet, prepare(scheduler(name), nfe=3, start="noise", sigma_skip=sigma_skip), z)
    landed = laid_out(scheduler(name), nfe=3, start="noise", sigma_skip=sigma_skip).landing
    first = unet.inputs[0][0].reshape(3, -1).to(F64) * np.sqrt(1 + landed**2)
    torch.testing.assert_close(first, landed * z.reshape(3, -1).to(F64), rtol=1e-5, atol=1e-5)


# heun at 3 and 5 NFE (2 and 3 steps) is unstable from sigma_skip >= 5: its errors (1 to 80, plain or not) dwarf the
# data (scale 0.5) and the start cannot matter there, so its comparison starts at 9 NFE.
JUMP_VS_NOISE = {"heun": (9, 15, 25)}


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpmsolver", "unipc"])
def test_oracle_jump_beats_noise(name):
    """At equal NFE and sigma_skip, the exact Gaussian jump lands closer to the exact ODE solution than the sampler
    started from plain noise, and the gap grows as sigma_skip falls (the data matter more there)."""
    for nfe in JUMP_VS_NOISE.get(name, (2, 4, 8, 15, 25)):
        gaps = []
        for sigma_skip in (20.0, 5.0, 1.0):
            jump = oracle_error(name, nfe, "jump", sigma_skip)
            plain_noise = oracle_error(name, nfe, "noise", sigma_skip)
            assert jump < plain_noise, (nfe, sigma_skip, jump, plain_noise)
            gaps.append(plain_noise - jump)
        assert gaps[0] < gaps[1] < gaps[2], (nfe, gaps)


# dpmsolver / unipc with Karras or log-SNR spacing at 5 and 7 NFE: their plain error is not monotone in the budget
# (3 to 4 times smaller at 7 NFE than at 11: the signed errors of the second-order multistep steps cancel), so a
# shorter schedule after an exact jump is not always closer than plain there. The study measures those cells.
ERRATIC = {("dpmsolver", "karras"), ("unipc", "karras"), ("dpmsolver", "logsnr")}


@pytest.mark.parametrize(("name", "family"), DETERMINISTIC)
def test_oracle_jump_is_no_worse_than_plain(name, family):
    """With the exact Gaussian denoiser as the network, the jump to every sigma_skip of the study's grid lands at least
    as close to the exact ODE endpoint as the plain sampler of the same family and NFE, at every budget of the grid
    (but the erratic ones above at 5 and 7 NFE)."""
    for nfe in (5, 7, 11, 21):
        if (name, family) in ERRATIC and nfe <= 7:
            continue
        plain = oracle_error(name, nfe, "plain", family=family)
        for sigma_skip in (80.0, 40.0, 20.0, 10.0, 5.0, 2.0):
            jump = oracle_error(name, nfe, "jump", sigma_skip, family=family)
            assert jump <= plain * (1 + 1e-3), (nfe, sigma_skip, jump, plain)
        assert jump < plain, (nfe, jump, plain)  # and lower landings gain: not vacuous


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpmsolver", "unipc"])
def test_oracle_jump_converges(name):
    """With many steps after the jump, the sampler reaches the exact solution: the landing and its VP/VE conversions
    are exact."""
    nfe, bound = {"ddim": (30, 0.03), "euler": (100, 0.012), "heun": (51, 5e-3), "dpmsolver": (40, 4e-3),
                  "unipc": (40, 4e-3)}[name]
    few = oracle_error(name, budget_nfe(name, 3), "jump", 5.0)
    many = oracle_error(name, nfe, "jump", 5.0)
    assert many < min(bound, few / 5), (few, many)


def test_oracle_ddpm_distribution():
    """DDPM is stochastic: compare the distribution of its samples with the exact one (the exact map is affine in the
    initial noise, so its output is Gaussian with a closed-form mean and covariance). Where the data matter
    (sigma_skip <= 2) the jump is closer by far more than the Monte Carlo error (~0.03 here); at sigma_skip = 10 the
    two starts differ by ~1 % of DDPM's own few-step error, either way, so that is not asserted."""
    gaussian, n = small_gaussian(16), 8000
    z = noise(n)

    def distance(nfe, start, sigma_skip):
        s = scheduler("ddpm")
        end = schedule_end(laid_out(s, nfe=nfe, start=start, sigma_skip=sigma_skip).sampler)
        d = gaussian.dim
        mean = exact_answer("ddpm", gaussian, torch.zeros(1, d, dtype=F64), end)[0]  # [D]
        jac = exact_answer("ddpm", gaussian, torch.eye(d, dtype=F64), end) - mean  # [D, D]
        cov = jac.T @ jac
        budget = prepare(s, nfe=nfe, start=start, sigma_skip=sigma_skip, model=gaussian if start == "jump" else None)
        x = sample_budget(OracleUNet(gaussian), budget, z, generator=torch.Generator().manual_seed(2))
        x = x.reshape(n, -1).to(F64)
        return float((x.mean(0) - mean).norm() + (torch.cov(x.T) - cov).norm() / cov.norm())

    for nfe in (3, 8, 25):
        for sigma_skip in (2.0, 1.0):
            jump, plain_noise = distance(nfe, "jump", sigma_skip), distance(nfe, "noise", sigma_skip)
            assert jump < plain_noise - 0.08, (nfe, sigma_skip, jump, plain_noise)
    assert distance(100, "jump", 2.0) < 0.1  # and it converges


# --- arguments -------------------------------------------------------------------------------------------------------


def _bad_calls():
    g = small_gaussian(16)
    z = noise(2)
    other = Gaussian.isotropic(torch.zeros(12, dtype=F64), 1.0)
    return [
        ("nfe", dict(nfe=0), r"nfe = 0: must be an integer >= 1"),
        ("nfe", dict(nfe=-3), r"nfe = -3: must be an integer >= 1"),
        ("nfe", dict(nfe=2.5), r"nfe = 2.5: must be an integer >= 1"),
        ("nfe", dict(nfe=True), r"nfe = True: must be an integer >= 1"),
        ("nfe", dict(name="heun", nfe=4), r"nfe = 4: heun spends 2 \* steps - 1 evaluations.*nearest are 3 and 5"),
        ("nfe", dict(nfe=1001), r"nfe = 1001: needs 1001 plain steps: must be <= 1000"),
        ("nfe", dict(name="ddpm", nfe=50, start="noise", sigma_skip=0.05),
         r"nfe = 50: need 50 distinct timesteps in \[0, t = 11\]"),
        ("sigma_skip", dict(start="noise", sigma_skip=0.001), r"sigma_skip = 0.001: must be a number with sigma_min"),
        ("sigma_skip", dict(start="noise", sigma_skip=SIGMA_MAX * 1.001), r"< sigma_max = 157"),
        ("sigma_skip", dict(start="jump", sigma_skip=1e4, model=g), r"sigma_skip = 10000.0: must be"),
        ("sigma_skip", dict(start="noise", sigma_skip=float("nan")), r"sigma_skip = nan: must be"),
        ("sigma_skip", dict(start="noise", sigma_skip="5"), r"sigma_skip = '5': must be"),
        ("sigma_skip", dict(start="noise"), r"sigma_skip = None: must be"),
        ("sigma_skip", dict(start="plain", sigma_skip=5.0), r"sigma_skip = 5.0: must be None for start = 'plain'"),
        ("start", dict(start="gaussian", sigma_skip=5.0), r"start = 'gaussian': must be one of plain, jump, noise"),
        ("model", dict(start="jump", sigma_skip=5.0), r"model = None: start = 'jump' needs an analytic model"),
        ("model", dict(start="jump", sigma_skip=5.0, model=other), r"model = 'Gaussian of dimension 12': must have "
                                                                   r"the dimension C\*H\*W = 16"),
        ("model", dict(start="noise", sigma_skip=5.0, model=g), r"model = 'Gaussian': must be None for start"),
        ("generator", dict(start="noise", sigma_skip=5.0, generator=[torch.Generator()]), r"generator = 'a list of "),
        ("scheduler", dict(scheduler=LMSDiscreteScheduler()), r"scheduler = 'LMSDiscreteScheduler': must be"),
    ], g, z


def test_bad_arguments_are_one_line():
    calls, g, z = _bad_calls()
    for name, kwargs, pattern in calls:
        kwargs = {"nfe": 3, **kwargs}
        s = kwargs.pop("scheduler", None) or scheduler(kwargs.pop("name", "euler"))
        generator = kwargs.pop("generator", None)
        with pytest.raises(ArgumentError) as info:
            sample_budget(OracleUNet(g), prepare(s, dim=16, **kwargs), z, generator=generator)
        message = str(info.value)
        assert info.value.name == name and "\n" not in message, message
        assert message.startswith(f"{name} = ") and re.search(pattern, message), message
    with pytest.raises(ArgumentError, match=r"^scheduler = 'lms': must be one of ddim, ddpm"):
        steps_for_nfe("lms", 3)
    with pytest.raises(ArgumentError, match=r"^batch_size = 0: must be an integer >= 1"):
        sample_budget_seeded(OracleUNet(g), prepare(scheduler("ddpm"), nfe=3), [1], shape=SHAPE, batch_size=0)
    with pytest.raises(ArgumentError, match=r"^sigma_skip = 1000.0"):
        prepare(scheduler("ddpm"), nfe=3, start="noise", sigma_skip=1000.0)


# --- per-image seeds, conversions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ddpm", "heun", "dpmsolver"])
@pytest.mark.parametrize("start", ["plain", "jump", "noise"])
def test_seeded_does_not_depend_on_batching(name, start):
    g = small_gaussian(16)
    budget = prepare(scheduler(name), nfe=5, start=start, sigma_skip=None if start == "plain" else 4.0,
                     model=g if start == "jump" else None)
    whole = sample_budget_seeded(OracleUNet(g), budget, range(10, 17), shape=SHAPE, batch_size=7)
    assert whole.shape == (7, *SHAPE) and whole.dtype == torch.float32 and whole.device.type == "cpu"
    torch.testing.assert_close(sample_budget_seeded(OracleUNet(g), budget, range(10, 17), shape=SHAPE, batch_size=3),
                               whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(sample_budget_seeded(OracleUNet(g), budget, [12, 13, 14], shape=SHAPE, batch_size=1),
                               whole[2:5], rtol=0, atol=1e-6)
    assert not torch.allclose(whole[0], whole[1])


def test_conversions_are_the_named_ones(monkeypatch):
    """VP schedulers convert with hls.gaussian's vp_to_ve / ve_to_vp; euler / heun hold the VE sample throughout."""
    calls = record_conversions(monkeypatch, budget)
    g = small_gaussian(16)
    for name in SCHEDULERS:
        for start, expected in (("jump", ["vp_to_ve", "ve_to_vp"]), ("noise", ["ve_to_vp"])):
            calls.clear()
            model = g if start == "jump" else None
            prepared = prepare(scheduler(name), nfe=3, start=start, sigma_skip=2.0, model=model)
            sample_budget(OracleUNet(g), prepared, noise(1))
            assert calls == ([] if name in VE_SAMPLE else expected), (name, start)


def test_start_model_maps_the_study_starts():
    g = Gaussian.fit(torch.randn(50, 6, dtype=torch.float64) * torch.arange(1, 7))
    assert budget.start_model("plain", g) == ("plain", None) and budget.start_model("noise", g) == ("noise", None)
    assert budget.start_model("gaussian", g) == ("jump", g)
    start, iso = budget.start_model("isotropic", g)
    assert start == "jump" and torch.allclose(iso.eigvals, g.eigvals.mean().expand(6))
    start, point = budget.start_model("mean", g)
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(point.teleport(x, 80.0, 5.0), g.mean + (5.0 / 80.0) * (x - g.mean))
    with pytest.raises(ArgumentError, match="start = 'jump': must be one of plain, noise, gaussian"):
        budget.start_model("jump", g)


@pytest.mark.parametrize("start", ["plain", "jump", "noise"])
def test_a_budget_is_laid_out_and_checked_once(monkeypatch, start):
    """prepare lays the schedule out once; sampling many batches only copies the prepared sampler."""
    counts = {"layout": 0, "apply": 0, "set_steps": 0, "set_timesteps": 0, "_check_sigma_skip": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in ("layout", "apply", "set_steps", "_check_sigma_skip"):
        monkeypatch.setattr(budget, name, counting(name, getattr(budget, name)))
    s = scheduler("dpmsolver")
    monkeypatch.setattr(type(s), "set_timesteps", counting("set_timesteps", type(s).set_timesteps))
    g = small_gaussian(16)
    prepared = prepare(s, nfe=5, start=start, sigma_skip=None if start == "plain" else 4.0,
                       model=g if start == "jump" else None, dim=16)
    sample_budget_seeded(OracleUNet(g), prepared, range(7), shape=SHAPE, batch_size=2)  # 4 batches
    assert counts == {"layout": start != "plain", "apply": start != "plain", "set_steps": start == "plain",
                      "set_timesteps": 1, "_check_sigma_skip": start != "plain"}
