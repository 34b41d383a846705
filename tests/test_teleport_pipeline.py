"""hls.TeleportPipeline: budget-mode sampling as a diffusers pipeline, against hls.budget and diffusers' pipelines."""

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMPipeline, DDPMPipeline

import hls
from fakes import OracleUNet, ddpm_config, small_gaussian, tiny_unet, write_tiny_pipeline
from hls.budget import prepare, sample_budget_seeded
from hls.errors import ArgumentError
from hls.gaussian import Gaussian
from hls.mixture import GaussianMixture
from hls.pipeline import AnalyticComponent, TeleportPipeline, interpolate_landing, landings_of
from hls.schedules import FAMILIES, make_scheduler

SAMPLERS = [(name, family) for name, families in FAMILIES.items() for family in families]
SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def parts():
    """A tiny random UNet on 3 x 8 x 8 images and a Gaussian fitted to random images of that size."""
    g = torch.Generator().manual_seed(3)
    return tiny_unet(8, 3), Gaussian.fit(torch.rand(300, 192, generator=g, dtype=torch.float64) * 2 - 1)


def pipeline(unet, gaussian, name="dpmsolver", family="default", **config):
    pipe = TeleportPipeline(unet=unet, scheduler=make_scheduler(name, ddpm_config(), family), gaussian=gaussian,
                            **config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize(("name", "family"), SAMPLERS)
def test_images_are_sample_budget_seeded_bytes(parts, name, family):
    unet, gaussian = parts
    pipe = pipeline(unet, gaussian, name, family)
    nfe = 5
    out = pipe(3, num_inference_steps=nfe, sigma_skip=8.0, generator=generators([4, 5, 6]), output_type="pt")
    budget = prepare(pipe.scheduler, nfe=nfe, start="jump", sigma_skip=8.0, model=gaussian)
    ref = sample_budget_seeded(unet, budget, [4, 5, 6], shape=SHAPE, batch_size=3)
    assert out.sigma_skip == 8.0 and torch.equal(out.images, (ref / 2 + 0.5).clamp(0, 1))


@pytest.mark.parametrize(("name", "reference"), [("ddim", DDIMPipeline), ("ddpm", DDPMPipeline)])
def test_plain_is_diffusers_own_pipeline(parts, name, reference):
    unet, gaussian = parts
    pipe = pipeline(unet, gaussian, name)
    ours = pipe(2, num_inference_steps=7, sigma_skip=None, generator=torch.Generator().manual_seed(0),
                output_type="np")
    theirs = reference(unet=unet, scheduler=pipe.scheduler)
    theirs.set_progress_bar_config(disable=True)
    expected = theirs(2, num_inference_steps=7, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert ours.sigma_skip is None and np.array_equal(ours.images, expected)


@pytest.mark.parametrize("name", ["ddim", "heun", "dpmsolver", "unipc"])
def test_exactly_the_budget_of_unet_evaluations(name):
    gaussian = small_gaussian(16)
    for sigma_skip in (None, 20.0, 2.0):
        unet = OracleUNet(gaussian)
        unet.config, unet.dtype, unet.device = tiny_unet(4, 1).config, torch.float32, torch.device("cpu")  # 1 x 4 x 4
        pipe = TeleportPipeline(unet=unet, scheduler=make_scheduler(name, ddpm_config()), gaussian=gaussian)
        pipe.set_progress_bar_config(disable=True)
        pipe(2, num_inference_steps=7, sigma_skip=sigma_skip, output_type="pt")
        assert unet.calls == 7, (name, sigma_skip)


def test_save_and_load_round_trip(parts, tmp_path):
    unet, gaussian = parts
    pipe = pipeline(unet, gaussian, "heun", landings={"heun-default": {"5": 10.0}})
    first = pipe(2, num_inference_steps=5, generator=generators([0, 1]), output_type="np")
    pipe.save_pretrained(tmp_path / "pipe")
    assert sorted(p.name for p in (tmp_path / "pipe").iterdir()) == ["gaussian", "model_index.json", "scheduler",
                                                                     "unet"]
    loaded = hls.TeleportPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.gaussian, AnalyticComponent) and loaded.config.landings == {"heun-default": {"5": 10.0}}
    again = loaded(2, num_inference_steps=5, generator=generators([0, 1]), output_type="np")
    assert again.sigma_skip == first.sigma_skip == 10.0 and np.array_equal(again.images, first.images)
    pil = loaded(1, num_inference_steps=5, generator=torch.Generator().manual_seed(0)).images
    assert len(pil) == 1 and pil[0].size == (8, 8)


def test_any_analytic_model_is_a_component(parts):
    _, gaussian = parts
    x = torch.randn(2, 192, dtype=torch.float64)
    mixture = GaussianMixture.from_gaussian(gaussian)
    for model in (gaussian, mixture):
        back = AnalyticComponent.of(model).analytic
        assert type(back) is type(model)
        torch.testing.assert_close(back.denoise(x, 3.0), model.denoise(x, 3.0), rtol=1e-12, atol=1e-12)
    with pytest.raises(ArgumentError, match="^gaussian = 'Tensor': must be an analytic model"):
        AnalyticComponent.of(torch.zeros(3))


def test_auto_lands_where_the_study_measured_best(parts):
    unet, gaussian = parts
    measured = {"5": 10.0, "21": 40.0}
    assert interpolate_landing(measured, 5) == 10.0 and interpolate_landing(measured, 21) == 40.0
    middle = np.exp(np.log(10) + (np.log(11) - np.log(5)) / (np.log(21) - np.log(5)) * (np.log(40) - np.log(10)))
    assert interpolate_landing(measured, 11) == pytest.approx(middle)  # linear in log sigma against log NFE
    assert interpolate_landing(measured, 3) == 10.0 and interpolate_landing(measured, 51) == 40.0  # clamped
    pipe = pipeline(unet, gaussian, landings={"dpmsolver-default": measured, "unipc-karras": {"5": 2.0}})
    assert pipe(1, num_inference_steps=11, output_type="np").sigma_skip == pytest.approx(middle)
    assert pipe.auto(11) == (pytest.approx(middle), None) and pipe.config.schedules is None  # no optimizer run
    table = {"scheduler": ["dpmsolver", "dpmsolver", "dpmsolver"], "family": ["default", "default", "optimized"],
             "nfe": [5, 21, 5], "sigma_skip": [10.0, 40.0, 3.0]}  # optimized landings: the pipeline's own schedules
    assert landings_of(pd.DataFrame(table)) == {"dpmsolver-default": measured}


def test_bad_arguments_fail_before_any_unet_evaluation(parts):
    _, gaussian = parts
    unet = OracleUNet(small_gaussian(192))
    unet.config, unet.dtype, unet.device = tiny_unet(8, 3).config, torch.float32, torch.device("cpu")
    pipe = TeleportPipeline(unet=unet, scheduler=make_scheduler("heun", ddpm_config()), gaussian=gaussian)
    other = TeleportPipeline(unet=unet, scheduler=make_scheduler("ddim", ddpm_config()),
                             gaussian=Gaussian.isotropic(torch.zeros(12, dtype=torch.float64), 1.0))
    for call, pattern in [
        (lambda: pipe(1, num_inference_steps=5, sigma_skip=500.0), r"^sigma_skip = 500.0: must be a number with"),
        (lambda: pipe(1, num_inference_steps=6, sigma_skip=5.0), r"^nfe = 6: heun spends 2 \* steps - 1"),
        (lambda: other(1, num_inference_steps=5), r"^sigma_skip = 'auto': needs a study landing for ddim-default"),
        (lambda: pipe(1, num_inference_steps=4), r"^nfe = 4: heun spends 2 \* steps - 1"),  # before the teacher
        (lambda: other(1, num_inference_steps=5, sigma_skip=5.0), r"^gaussian = 'Gaussian of dimension 12': must have"),
        (lambda: pipe(2, num_inference_steps=5, sigma_skip=5.0, generator=generators([0])), r"^generator = "),
        (lambda: pipe(1, num_inference_steps=5, sigma_skip=5.0, output_type="latent"), r"^output_type = 'latent'"),
    ]:
        with pytest.raises(ArgumentError, match=pattern):
            call()
    assert unet.calls == 0


def test_from_a_diffusers_model_folder(tmp_path, parts):
    """Any UNet2DModel pipeline folder (or hub id, through the same loader) with a fitted Gaussian."""
    _, gaussian = parts
    unet = write_tiny_pipeline(tmp_path / "ddpm", image_size=8, channels=3)
    pipe = TeleportPipeline.from_model(str(tmp_path / "ddpm"), gaussian, sampler="unipc-karras")
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler" and pipe.scheduler.config.use_karras_sigmas
    for a, b in zip(pipe.unet.parameters(), unet.parameters()):
        assert torch.equal(a, b)
    assert pipe(1, num_inference_steps=5, sigma_skip=10.0, output_type="np").images.shape == (1, 8, 8, 3)


SMALL = {"teacher": 2, "size": 10, "substeps": 2}  # a small optimizer: the test is about the plumbing


@pytest.mark.parametrize("name", ["heun", "dpmsolver3", "unipc_bh1"])
def test_auto_without_a_study_lands_where_the_optimizer_says(parts, tmp_path, monkeypatch, name):
    """No landing table: the optimizer places the jump and the steps per budget, from one cost table, kept in the
    config (save_pretrained keeps them) and reused; the images are sample_budget's on that schedule."""
    unet, gaussian = parts
    tables = []
    original = hls.pipeline.sampler_table
    monkeypatch.setattr(hls.pipeline, "sampler_table", lambda *a, **k: tables.append(k) or original(*a, **k))
    pipe = pipeline(unet, gaussian, name, optimizer=SMALL)
    out = pipe(2, num_inference_steps=5, generator=generators([7, 8]), output_type="pt")
    landing, schedule = pipe.optimized(5)
    pipe(1, num_inference_steps=3, output_type="pt")
    assert len(tables) == 1 and tables[0]["size"] == 10  # one cost table serves every budget
    assert set(pipe.config.schedules[name]) == {"5", "3"} and out.sigma_skip == landing
    start = "plain" if landing is None else "jump"
    budget = prepare(pipe.scheduler, nfe=5, start=start, sigma_skip=landing, schedule=schedule,
                     model=None if landing is None else gaussian)
    assert budget.sampler.timesteps.numel() == 5  # one UNet evaluation per timestep
    torch.testing.assert_close(out.images, (sample_budget_seeded(unet, budget, [7, 8], shape=SHAPE) / 2 + 0.5)
                               .clamp(0, 1), rtol=0, atol=1e-6)
    pipe.save_pretrained(tmp_path / "pipe")
    again = TeleportPipeline.from_pretrained(tmp_path / "pipe")
    assert again.config.schedules == pipe.config.schedules and again.optimized(5)[0] == landing
    assert len(tables) == 1  # loaded, not searched again
    if name == "heun":  # a sampler that ends elsewhere (unipc_bh1: at sigma_min) gets a table of its own
        pipe.scheduler = make_scheduler("unipc_bh1", ddpm_config())
        assert pipe.optimized(5)[1].sigmas[-1] > 0 and len(tables) == 2
