"""hls.schedules: spacing families laid over [sigma_hi -> end], against diffusers' own set_timesteps as the oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fakes import TRAINING_SIGMAS, ddpm_config
from hls.errors import ArgumentError
from hls.gaussian import sigma_from_alpha_cumprod
from hls.schedules import (
    FAMILIES,
    apply,
    family,
    layout,
    make_scheduler,
    nearest_timestep,
    noise_level,
    spacing,
    timestep_of_sigma,
)

SAMPLERS = [(name, f) for name, families in FAMILIES.items() for f in families]


def plain(name: str, fam: str, steps: int):
    """The plain sampler: the family's scheduler with its own set_timesteps(steps)."""
    s = make_scheduler(name, ddpm_config(clip_sample=False), fam)
    s.set_timesteps(steps)
    return s


def first_sigma(scheduler) -> float:
    if hasattr(scheduler, "sigmas"):
        return float(scheduler.sigmas[0])
    return float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[int(scheduler.timesteps[0])]))


@pytest.mark.parametrize(("name", "fam"), SAMPLERS)
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 7, 10, 11, 21, 50])
def test_with_nothing_skipped_the_teleport_arm_is_the_plain_arm(name, fam, steps):
    """The family laid over [the plain schedule's first sigma -> end] is exactly the plain schedule: the same
    timesteps and the same (float32) sigmas, so a comparison of the two arms changes nothing but the jump."""
    ours = apply(make_scheduler(name, ddpm_config(clip_sample=False), fam),
                 layout(make_scheduler(name, ddpm_config(clip_sample=False), fam), steps,
                        first_sigma(plain(name, fam, steps))))
    theirs = plain(name, fam, steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    if hasattr(theirs, "sigmas"):
        assert torch.equal(ours.sigmas, theirs.sigmas)
    elif name == "ddim":  # it steps from t to t - T // num_inference_steps
        assert 1000 // ours.num_inference_steps == 1000 // theirs.num_inference_steps
    else:  # ddpm steps along its list of timesteps
        assert ours.custom_timesteps and [int(ours.previous_timestep(t)) for t in ours.timesteps] == \
            [int(theirs.previous_timestep(t)) for t in theirs.timesteps]


@pytest.mark.parametrize(("name", "fam"), SAMPLERS)
def test_families_are_what_the_config_says(name, fam):
    s = make_scheduler(name, ddpm_config(), fam)
    assert family(s) == fam
    expected = {"ddim": "leading", "ddpm": "leading", "euler": "karras", "heun": "karras"}.get(name)
    assert spacing(s) == (expected if fam == "default" and expected else
                          {"default": "linspace", "karras": "karras", "logsnr": "logsnr"}[fam])


def test_layout_is_a_value_and_apply_copies():
    s = make_scheduler("dpmsolver", ddpm_config(), "karras")
    config = dict(s.config)
    schedule = layout(s, 6, 20.0)
    assert schedule.steps == 6 and schedule.sigmas.shape == (7,) and schedule.sigmas[-1] == 0.0
    assert schedule.sigmas[0] == pytest.approx(20.0) and np.all(np.diff(schedule.sigmas) < 0)
    applied = apply(s, schedule)
    assert applied is not s and dict(s.config) == config and float(noise_level(applied, 0)[0]) == pytest.approx(20.0)
    heun = apply(make_scheduler("heun", ddpm_config()), layout(make_scheduler("heun", ddpm_config()), 4, 10.0))
    assert len(heun.timesteps) == 7 and len(heun.sigmas) == 8  # every inner step twice, as its set_timesteps does


def test_timestep_of_sigma_is_diffusers_sigma_to_t():
    s = make_scheduler("euler", ddpm_config())
    log_sigmas = np.log(np.array(((1 - s.alphas_cumprod) / s.alphas_cumprod) ** 0.5))
    sigmas = np.concatenate([np.geomspace(1e-3, 300, 57), TRAINING_SIGMAS[::97]])
    ours = timestep_of_sigma(sigmas, s.alphas_cumprod)
    theirs = np.array([s._sigma_to_t(sigma, log_sigmas) for sigma in sigmas])
    np.testing.assert_array_equal(ours, theirs)
    assert timestep_of_sigma(TRAINING_SIGMAS[500], s.alphas_cumprod) == pytest.approx(500, abs=1e-3)


def test_nearest_timestep():
    ac = make_scheduler("ddpm", ddpm_config()).alphas_cumprod
    sigmas = sigma_from_alpha_cumprod(ac).numpy()
    np.testing.assert_array_equal(nearest_timestep(ac, sigmas), np.arange(1000))
    log_model = np.log(sigmas)
    for s in np.geomspace(1e-3, 1e3, 37):  # off-grid sigmas: the nearest in log sigma, against a brute force
        assert int(nearest_timestep(ac, s)) == int(np.argmin(np.abs(log_model - np.log(s))))
    with pytest.raises(ValueError, match="sigmas must be > 0"):
        nearest_timestep(ac, [1.0, 0.0])


def test_bad_names_and_spacings():
    with pytest.raises(ArgumentError, match=r"^family = 'logsnr': unipc supports default, karras$"):
        make_scheduler("unipc", ddpm_config(), "logsnr")
    with pytest.raises(ArgumentError, match=r"^name = 'lms': must be one of ddim, ddpm"):
        make_scheduler("lms", ddpm_config())
    trailing = make_scheduler("unipc", ddpm_config(), timestep_spacing="trailing")
    with pytest.raises(ArgumentError, match=r"^scheduler = 'unipc with trailing spacing': must have one of the "
                                            r"families default \(linspace\), karras \(karras\)$"):
        layout(trailing, 5, 10.0)
    with pytest.raises(ArgumentError, match=r"^steps = 30: need 30 distinct timesteps"):
        layout(make_scheduler("ddpm", ddpm_config()), 30, 0.05)
    original = make_scheduler("ddim", ddpm_config())
    before = copy.deepcopy(original.__dict__.get("timesteps"))
    apply(original, layout(original, 5, 10.0))
    assert torch.equal(original.timesteps, before)
