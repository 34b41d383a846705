"""hls.score_error with closed-form oracles as the "network": exact Gaussian scores must be explained exactly."""


import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from fakes import F64, OracleUNet, ddpm_config, tiny_unet  # noqa: E402
from hls.gaussian import Gaussian, alpha_cumprod_from_sigma, sigma_from_alpha_cumprod  # noqa: E402
from hls.mixture import GaussianMixture, fit_mixtures  # noqa: E402
from hls.sampling import skip_sigma  # noqa: E402
from hls.score_error import (  # noqa: E402
    APPROXIMATIONS,
    COLUMNS,
    approximations,
    critical_sigma,
    image_noise,
    plot,
    predicted_skip,
    score_errors,
    sigma_grid,
)

SHAPE = (1, 4, 4)  # [C, H, W], D = 16
D = 16


def ddpm_alphas_cumprod() -> torch.Tensor:
    return DDPMScheduler.from_config(ddpm_config()).alphas_cumprod


@pytest.fixture(scope="module")
def data():
    """(fitted Gaussian with a strongly anisotropic covariance, 12 held-out non-Gaussian 'images' [12, 1, 4, 4])."""
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(D, D, generator=g, dtype=F64) * torch.logspace(0, -2, D, dtype=F64)  # decaying spectrum
    train = (torch.rand(400, D, generator=g, dtype=F64) * 2 - 1) @ mix.T * 0.5 + 0.2
    held_out = (torch.rand(12, D, generator=g, dtype=F64) * 2 - 1) @ mix.T * 0.5 + 0.2
    return Gaussian.fit(train), held_out.float().reshape(12, *SHAPE)


def values(df, approx, space, metric="explained_variance") -> np.ndarray:
    rows = df[(df["approx"] == approx) & (df["space"] == space) & (df["metric"] == metric)].sort_values("sigma")
    return rows["value"].to_numpy()


def test_gaussian_oracle_is_explained_exactly_and_others_are_not(data):
    gauss, x0 = data
    ac = ddpm_alphas_cumprod()
    _, timesteps = sigma_grid(ac, 8)
    df = score_errors(OracleUNet(gauss, ac), ac, approximations(gauss), x0, timesteps, batch_size=5)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == len(timesteps) * 3 * 2 * 2
    assert (df["n"] == len(x0)).all()
    for space in ("denoiser", "score"):
        ev = values(df, "gaussian", space)
        np.testing.assert_allclose(ev, 1.0, atol=1e-6)
        rows = df[(df["approx"] == "gaussian") & (df["space"] == space) & (df["metric"] == "explained_variance")]
        np.testing.assert_allclose(rows[["mean", "q10", "q50", "q90"]].to_numpy(), 1.0, atol=1e-6)
        assert (values(df, "gaussian", space, "relative_error") < 1e-3).all()
        for other in ("isotropic", "mean"):
            assert (values(df, other, space) < ev).all(), (other, space)
            assert (values(df, other, space, "relative_error") > values(df, "gaussian", space, "relative_error")).all()
    # the isotropic score looks good in score space at high σ (common -x/σ² term); the denoiser shows its error
    assert values(df, "isotropic", "score")[-1] > 0.99999
    assert values(df, "isotropic", "denoiser")[-1] < 0.9999
    assert values(df, "isotropic", "denoiser").min() < 0.9


def test_isotropic_oracle_is_explained_by_the_isotropic_approximation(data):
    gauss, x0 = data
    ac = ddpm_alphas_cumprod()
    _, timesteps = sigma_grid(ac, 6)
    iso = approximations(gauss)["isotropic"]
    df = score_errors(OracleUNet(iso, ac), ac, approximations(gauss), x0, timesteps, batch_size=7)
    for space in ("denoiser", "score"):
        np.testing.assert_allclose(values(df, "isotropic", space), 1.0, atol=1e-6)
        assert (values(df, "gaussian", space) < values(df, "isotropic", space)).all()


def test_explained_variance_matches_an_independent_numpy_computation(data):
    """Rebuild x from the documented per-image noise and compute EV/RE of the mean approximation with numpy."""
    gauss, x0 = data
    ac = ddpm_alphas_cumprod()
    t = 400
    df = score_errors(OracleUNet(gauss, ac), ac, approximations(gauss), x0, [t], seed=3)
    a = float(ac[t])
    sigma = ((1 - a) / a) ** 0.5
    eps = image_noise((D,), range(len(x0)), t, seed=3).double().numpy()
    x = x0.reshape(len(x0), D).double().numpy() + sigma * eps  # [N, D]
    mu = gauss.mean.numpy()
    cov = (gauss.eigvecs * gauss.eigvals) @ gauss.eigvecs.T
    centred = np.linalg.solve(cov.numpy() + sigma**2 * np.eye(D), (x - mu).T).T  # (Σ + σ²I)⁻¹ (x - μ)
    neural = {"denoiser": mu + centred @ cov.numpy().T, "score": -centred}
    mean_model = {"denoiser": np.broadcast_to(mu, x.shape), "score": -(x - mu) / sigma**2}
    for space in ("denoiser", "score"):
        err2 = ((neural[space] - mean_model[space]) ** 2).sum(1)
        ref2 = (neural[space] ** 2).sum(1)
        rows = df[(df["approx"] == "mean") & (df["space"] == space)].set_index("metric")
        assert rows.loc["explained_variance", "sigma"] == pytest.approx(sigma, rel=1e-12)
        assert rows.loc["explained_variance", "value"] == pytest.approx(1 - err2.sum() / ref2.sum(), rel=1e-5)
        assert rows.loc["explained_variance", "q50"] == pytest.approx(np.median(1 - err2 / ref2), rel=1e-5)
        assert rows.loc["relative_error", "value"] == pytest.approx(np.sqrt(err2 / ref2).mean(), rel=1e-5)
        assert rows.loc["relative_error", "std"] == pytest.approx(np.sqrt(err2 / ref2).std(ddof=1), rel=1e-4)


def test_results_do_not_depend_on_batch_size_with_a_real_unet():
    unet = tiny_unet(channels=1, attention=(False, False))
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    gauss = Gaussian.fit(torch.rand(50, 64) * 2 - 1)
    ac = ddpm_alphas_cumprod()
    timesteps = [10, 500, 999]
    one = score_errors(unet, ac, approximations(gauss), x0, timesteps, batch_size=1)
    many = score_errors(unet, ac, approximations(gauss), x0, timesteps, batch_size=64)
    pd.testing.assert_frame_equal(one, many, rtol=1e-5, atol=1e-7)
    # image i's noise depends only on (seed, i, timestep)
    torch.testing.assert_close(image_noise(SHAPE, [3], 10), image_noise(SHAPE, range(6), 10)[3:4], rtol=0, atol=0)
    assert not torch.equal(image_noise(SHAPE, [3], 10), image_noise(SHAPE, [3], 11))
    assert not torch.equal(image_noise(SHAPE, [3], 10), image_noise(SHAPE, [3], 10, seed=1))


def test_sigma_alpha_round_trip():
    ac = ddpm_alphas_cumprod()
    sigmas = sigma_from_alpha_cumprod(ac)  # [1000], increasing
    torch.testing.assert_close(alpha_cumprod_from_sigma(sigmas), ac.double(), rtol=1e-12, atol=0)


def test_sigma_grid_spans_the_model_range():
    ac = ddpm_alphas_cumprod()
    sigmas, timesteps = sigma_grid(ac, 20)
    assert sigmas.dtype == F64 and timesteps.dtype == torch.long and len(sigmas) == 20
    assert timesteps[0] == 0 and timesteps[-1] == len(ac) - 1
    assert (timesteps.diff() > 0).all()
    torch.testing.assert_close(sigmas, sigma_from_alpha_cumprod(ac[timesteps]), rtol=0, atol=0)
    ratios = (sigmas[1:] / sigmas[:-1]).log()  # roughly log-spaced except where timesteps are coarse
    assert float(ratios.max()) < 2 * float(ratios.mean())
    dense_sigmas, dense = sigma_grid(ac, 5000)  # more points than timesteps: unique timesteps only
    assert len(dense) <= len(ac) and len(torch.unique(dense)) == len(dense)


def test_approximations():
    gauss = Gaussian.fit(torch.randn(30, 5, generator=torch.Generator().manual_seed(1), dtype=F64))
    models = approximations(gauss)
    assert tuple(models) == APPROXIMATIONS[:3]
    assert models["gaussian"] is gauss
    torch.testing.assert_close(models["isotropic"].eigvals, torch.full((5,), float(gauss.eigvals.mean()), dtype=F64))
    x = torch.randn(3, 5, dtype=F64)
    torch.testing.assert_close(models["mean"].denoise(x, 0.3), gauss.mean.expand(3, 5))


def test_approximations_from_training_data():
    g = torch.Generator().manual_seed(2)
    images = torch.cat([(10 * torch.randn(40, 5, generator=g) + 60 + 60 * c).round().clamp(0, 255).to(torch.uint8)
                        for c in range(3)])  # [120, 5]
    train = images.to(F64) / 127.5 - 1  # model space
    labels = torch.arange(3).repeat_interleave(40)
    gauss = Gaussian.fit(train)
    mixtures = {name: GaussianMixture.from_moments(m) for name, m in fit_mixtures(images, labels, 3, seed=0).items()}
    models = approximations(gauss, mixtures, train[::2], rank=2)
    assert tuple(models) == APPROXIMATIONS
    assert models["lowrank"].rank == 2 and models["gmm_classes"].components == 3
    assert models["delta"].points.shape == (60, 5) and models["gmm_kmeans"].components == 3
    torch.testing.assert_close(models["gmm_classes"].means[1], train[40:80].mean(0))
    # every model obeys Tweedie, which score_errors relies on
    x = torch.randn(4, 5, generator=g, dtype=F64) * 3
    for name, model in models.items():
        torch.testing.assert_close((model.denoise(x, 0.7) - x) / 0.7**2, model.score(x, 0.7), msg=name)
    assert tuple(approximations(gauss, rank=2)) == APPROXIMATIONS[:4]


def ev_frame(sigmas, gaussian_ev, other_ev):
    rows = []
    for s, g, o in zip(sigmas, gaussian_ev, other_ev):
        rows.append({"sigma": s, "approx": "gaussian", "space": "denoiser", "metric": "explained_variance", "value": g})
        rows.append({"sigma": s, "approx": "gaussian", "space": "score", "metric": "explained_variance", "value": o})
        rows.append({"sigma": s, "approx": "isotropic", "space": "denoiser", "metric": "explained_variance",
                     "value": o})
        rows.append({"sigma": s, "approx": "gaussian", "space": "denoiser", "metric": "relative_error", "value": 0.0})
    return pd.DataFrame(rows)


def test_critical_sigma():
    df = ev_frame([0.01, 0.1, 1.0, 10.0], [0.5, 0.98, 0.995, 0.9999], [0.0, 0.0, 0.0, 0.0])
    assert critical_sigma(df, 0.99, space="denoiser") == 0.1
    assert critical_sigma(df, 0.999, space="denoiser") == 1.0
    assert critical_sigma(df, 0.4, space="denoiser") is None
    assert critical_sigma(df, 0.99, approx="isotropic", space="denoiser") == 10.0
    assert critical_sigma(df, 0.99, space="score") == 10.0
    bumpy = ev_frame([0.01, 0.1, 1.0, 10.0], [0.5, 0.999, 0.98, 0.9999], [0.0] * 4)  # the largest σ below wins
    assert critical_sigma(bumpy, 0.99, space="denoiser") == 1.0
    with pytest.raises(ValueError, match="mean"):
        critical_sigma(df, approx="mean")
    assert critical_sigma(df) == critical_sigma(df, 0.999, space="score")  # the pipeline's defaults


def test_predicted_skip():
    sigmas = [80.0, 40.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5]
    assert predicted_skip(sigmas, 10.0) == 3  # landing at 40, 20, 10 keeps σ >= σ*
    assert predicted_skip(sigmas, 10.01) == 2
    assert predicted_skip(sigmas, 100.0) == 0
    assert predicted_skip(sigmas, 0.1) == 7  # never more than steps - 1
    assert predicted_skip(sigmas, None) == 7
    assert predicted_skip(sigmas + [0.0], None) == 7  # a trailing 0 never counts
    with pytest.raises(ValueError, match="descending"):
        predicted_skip(sigmas[::-1], 1.0)
    # with a real sampler's sigmas: skip k lands at sigmas[k] >= σ* and one more step would land below
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    steps = torch.tensor([skip_sigma(ddim, 20, k) for k in range(20)], dtype=torch.float64)
    assert len(steps) == 20 and (steps.diff() < 0).all()
    k = predicted_skip(steps, 1.0)
    assert steps[k] >= 1.0 > steps[k + 1]


def test_plot_writes_a_png(data, tmp_path):
    gauss, x0 = data
    ac = ddpm_alphas_cumprod()
    _, timesteps = sigma_grid(ac, 5)
    df = score_errors(OracleUNet(gauss, ac), ac, approximations(gauss), x0[:4], timesteps)
    path = tmp_path / "score_error.png"
    fig = plot(df, threshold=0.99, sigma_star=critical_sigma(df, 0.99, approx="isotropic"))
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 6
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == set(APPROXIMATIONS[:3])
