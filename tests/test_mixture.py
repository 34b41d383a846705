"""hls.mixture against independent oracles: autograd of torch's MixtureSameFamily, numpy, scipy's ODE solver, and
the closed forms of hls.gaussian."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from fakes import F64
from hls.gaussian import Gaussian
from hls.mixture import DeltaMixture, GaussianMixture, LowRankGaussian

SIGMAS = [0.002, 0.05, 0.7, 3.0, 80.0]


def eig_desc(cov: torch.Tensor):
    """numpy's eigh of ``cov [D, D]`` -> (eigvals [D] descending, clipped at 0; eigvecs [D, D])."""
    lam, u = np.linalg.eigh(cov.numpy())
    return torch.tensor(lam[::-1].clip(0).copy()), torch.tensor(u[:, ::-1].copy())


def random_mixture(d=4, ranks=(1, 2, 4), seed=0):
    """Components with covariances A_k A_kᵀ, A_k [d, rank_k] (rank-deficient unless rank_k = d), means ~ 3 N(0, I).

    Returns (GaussianMixture, weights [K], means [K, d], covs [K, d, d]).
    """
    g = torch.Generator().manual_seed(seed)
    k = len(ranks)
    covs = torch.stack([(lambda a: a @ a.T)(torch.randn(d, r, generator=g, dtype=F64)) for r in ranks])
    means = 3 * torch.randn(k, d, generator=g, dtype=F64)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.2
    weights /= weights.sum()
    eig = [eig_desc(c) for c in covs]
    mixture = GaussianMixture(weights, means, torch.stack([e[0] for e in eig]), torch.stack([e[1] for e in eig]))
    return mixture, weights, means, covs


def noised(weights, means, covs, sigma):
    """The oracle: Σ_k w_k N(means_k, covs_k + sigma² I) as torch's MixtureSameFamily."""
    eye = torch.eye(means.shape[1], dtype=F64)
    components = torch.distributions.MultivariateNormal(means, covs + sigma**2 * eye)
    return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(weights), components)


def autograd_score(density, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(density.log_prob(x).sum(), x)
    return grad


def probe_points(weights, means, covs, sigma, n=6, seed=1):
    """Samples of the noised mixture plus points halfway between component means (mixed responsibilities)."""
    torch.manual_seed(seed)
    samples = noised(weights, means, covs, sigma).sample((n,))
    halfway = (means[:-1] + means[1:]) / 2
    return torch.cat([samples, halfway + sigma * torch.randn(halfway.shape, dtype=F64)])


def assert_rel(got: torch.Tensor, expected: torch.Tensor, rtol: float):
    """max |got - expected| <= rtol · max |expected| (a relative error on the whole array)."""
    err = float((got - expected).abs().max() / expected.abs().max())
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


# Gaussian mixture: score and denoiser


@pytest.mark.parametrize("sigma", SIGMAS)
def test_mixture_score_is_gradient_of_log_density(sigma):
    mixture, w, m, c = random_mixture()
    x = probe_points(w, m, c, sigma)
    expected = autograd_score(noised(w, m, c, sigma), x)
    for row, exp_row in zip(mixture.score(x, sigma), expected):  # per row: scores differ by orders of magnitude
        assert_rel(row, exp_row, 1e-8)  # reached: 1e-10 at sigma = 0.002, 1e-13 above


@pytest.mark.parametrize("sigma", SIGMAS)
def test_mixture_denoiser_is_tweedie_of_autograd_score(sigma):
    mixture, w, m, c = random_mixture(seed=2)
    x = probe_points(w, m, c, sigma, seed=3)
    expected = x + sigma**2 * autograd_score(noised(w, m, c, sigma), x)
    assert_rel(mixture.denoise(x, sigma), expected, 1e-10)  # reached: 5e-14


def test_mixture_per_sample_sigma_and_chunking():
    mixture, w, m, c = random_mixture()
    x = probe_points(w, m, c, 1.0)
    sigma = torch.linspace(0.01, 40, len(x), dtype=F64)
    blocked = GaussianMixture(mixture.weights, mixture.means, mixture.eigvals, mixture.eigvecs, chunk=1)  # 1 row
    for method in ("score", "denoise"):
        batch = getattr(mixture, method)(x, sigma)
        torch.testing.assert_close(getattr(blocked, method)(x, sigma), batch, rtol=1e-13, atol=0)
        for i in range(len(x)):  # a tensor of B sigmas acts row by row
            torch.testing.assert_close(getattr(mixture, method)(x[i:i + 1], float(sigma[i])), batch[i:i + 1])


def test_one_component_mixture_equals_gaussian():
    mean = torch.randn(5, dtype=F64)
    a = torch.randn(5, 3, dtype=F64)
    gauss = Gaussian(mean, *eig_desc(a @ a.T))
    mixture = GaussianMixture.from_gaussian(gauss)
    x = 4 * torch.randn(7, 5, dtype=F64)
    for sigma in SIGMAS:
        assert_rel(mixture.score(x, sigma), gauss.score(x, sigma), 1e-12)
        assert_rel(mixture.denoise(x, sigma), gauss.denoise(x, sigma), 1e-12)


def test_float32_in_float32_out():
    mixture, w, m, c = random_mixture()
    x = probe_points(w, m, c, 0.5).float()
    models = [mixture, DeltaMixture(m), LowRankGaussian.from_gaussian(Gaussian.fit(x), 2)]
    for model in models:
        for out in (model.score(x, 0.5), model.denoise(x, 0.5), model.teleport(x, 10.0, 0.5)):
            assert out.dtype == torch.float32 and torch.isfinite(out).all()


# delta mixture


@pytest.mark.parametrize("sigma", [0.01, 0.2, 3.0, 80.0])
def test_delta_mixture_score_is_gradient_of_noised_point_masses(sigma):
    points = torch.randn(9, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    n = len(points)
    oracle = noised(torch.full((n,), 1 / n, dtype=F64), points, torch.zeros(n, 4, 4, dtype=F64), sigma)
    torch.manual_seed(1)
    x = torch.cat([oracle.sample((6,)), (points[:3] + points[3:6]) / 2])  # near points, and between two
    expected = autograd_score(oracle, x)
    delta = DeltaMixture(points)
    assert_rel(delta.score(x, sigma), expected, 1e-9)  # relative to the batch (midpoint scores are ~0); reached 4e-12
    assert_rel(delta.denoise(x, sigma), x + sigma**2 * expected, 1e-9)


def test_delta_mixture_chunking_invariance():
    points = torch.randn(10, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    sigma = torch.tensor([0.05, 0.3, 1.0, 2.0, 5.0, 20.0, 80.0], dtype=F64)
    reference = DeltaMixture(points, chunk=10, batch_chunk=7)  # everything in one block
    for chunk in (1, 3, 10):
        for batch_chunk in (1, 3, 7):
            delta = DeltaMixture(points, chunk=chunk, batch_chunk=batch_chunk)
            torch.testing.assert_close(delta.denoise(x, sigma), reference.denoise(x, sigma), rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(delta.score(x, sigma), reference.score(x, sigma), rtol=1e-12, atol=0)


def test_delta_mixture_limits():
    """σ -> 0: the nearest point; σ -> ∞: the mean of the points."""
    points = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = points[[2, 5]] + 1e-3
    torch.testing.assert_close(DeltaMixture(points).denoise(x, 1e-4), points[[2, 5]], rtol=0, atol=1e-12)
    torch.testing.assert_close(DeltaMixture(points).denoise(x, 1e4), points.mean(0).expand(2, 3), rtol=0, atol=1e-6)


# teleport: the probability-flow ODE


def solve_flow(weights, means, covs, x, sigma_from, sigma_to):
    """scipy DOP853 (rtol 1e-10) on dx/dσ = -σ ∇log p_σ(x), the score by autograd of the MixtureSameFamily."""
    shape = x.shape

    def rhs(s, flat):
        y = torch.tensor(flat, dtype=F64).reshape(shape)
        return (-s * autograd_score(noised(weights, means, covs, s), y)).reshape(-1).numpy()

    sol = solve_ivp(rhs, (sigma_from, sigma_to), x.reshape(-1).numpy(), method="DOP853", rtol=1e-10, atol=1e-12)
    assert sol.success
    return torch.tensor(sol.y[:, -1]).reshape(shape)


@pytest.mark.parametrize(("sigma_from", "sigma_to"), [(80.0, 2.0), (10.0, 0.05)])
def test_mixture_teleport_matches_scipy(sigma_from, sigma_to):
    mixture, w, m, c = random_mixture(d=3, ranks=(1, 2, 3), seed=4)
    torch.manual_seed(5)
    x = noised(w, m, c, sigma_from).sample((4,))
    expected = solve_flow(w, m, c, x, sigma_from, sigma_to)
    assert_rel(mixture.teleport(x, sigma_from, sigma_to, max_step=0.02), expected, 1e-8)  # reached: 1.5e-10
    assert_rel(mixture.teleport(x, sigma_from, sigma_to), expected, 1e-6)  # default max_step = 0.1; reached: 1e-7


def test_delta_mixture_teleport_matches_scipy():
    points = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    w, c = torch.full((6,), 1 / 6, dtype=F64), torch.zeros(6, 3, 3, dtype=F64)
    torch.manual_seed(1)
    x = noised(w, points, c, 20.0).sample((4,))
    expected = solve_flow(w, points, c, x, 20.0, 0.1)
    assert_rel(DeltaMixture(points, chunk=4).teleport(x, 20.0, 0.1, max_step=0.02), expected, 1e-8)  # reached: 6e-10


def test_one_component_teleport_equals_gaussian_closed_form():
    gauss = Gaussian(torch.randn(4, dtype=F64), *eig_desc((lambda a: a @ a.T)(torch.randn(4, 2, dtype=F64))))
    x = 80 * torch.randn(5, 4, dtype=F64)
    mixture = GaussianMixture.from_gaussian(gauss)
    for sigma_to in (5.0, 0.01):
        expected = gauss.teleport(x, 80.0, sigma_to)
        assert_rel(mixture.teleport(x, 80.0, sigma_to), expected, 1e-6)  # reached: 7e-8
        assert_rel(mixture.teleport(x, 80.0, sigma_to, max_step=0.02), expected, 1e-9)  # reached: 1.1e-10
    sigma_to = torch.tensor([0.1, 1.0, 2.0, 5.0, 40.0], dtype=F64)  # per-sample destinations
    assert_rel(mixture.teleport(x, 80.0, sigma_to), gauss.teleport(x, 80.0, sigma_to), 1e-6)


def test_teleport_progress_bar_and_identity():
    mixture, w, m, c = random_mixture()
    x = probe_points(w, m, c, 3.0)
    torch.testing.assert_close(mixture.teleport(x, 3.0, 3.0), x)
    torch.testing.assert_close(mixture.teleport(x, 3.0, 1.0, progress=True), mixture.teleport(x, 3.0, 1.0))


# low-rank Gaussian


def test_full_rank_low_rank_gaussian_equals_gaussian():
    gauss = Gaussian.fit(torch.randn(40, 6, dtype=F64) @ torch.randn(6, 6, dtype=F64))
    low = LowRankGaussian.from_gaussian(gauss, 6)
    x = 5 * torch.randn(8, 6, dtype=F64)
    for sigma in SIGMAS:
        assert_rel(low.score(x, sigma), gauss.score(x, sigma), 1e-9)
        assert_rel(low.denoise(x, sigma), gauss.denoise(x, sigma), 1e-12)
        assert_rel(low.teleport(x, 80.0, sigma), gauss.teleport(x, 80.0, sigma), 1e-12)


@pytest.mark.parametrize("rank", [0, 2, 5])
def test_low_rank_gaussian_against_its_full_covariance(rank):
    data = torch.randn(50, 6, dtype=F64, generator=torch.Generator().manual_seed(0)) @ torch.randn(6, 6, dtype=F64)
    gauss = Gaussian.fit(data)
    low = LowRankGaussian.fit(data, rank)
    # the same Gaussian written out in full: top eigenvalues kept, the others replaced by their mean (numpy)
    lam, u = eig_desc(torch.tensor(np.cov(data.numpy(), rowvar=False)))
    lam[rank:] = lam[rank:].mean()
    full = Gaussian(torch.tensor(data.numpy().mean(0)), lam, u)
    cov = (u * lam) @ u.T
    kept = low.eigvecs
    rebuilt = (kept * low.eigvals) @ kept.T + low.residual * (torch.eye(6, dtype=F64) - kept @ kept.T)
    np.testing.assert_allclose(rebuilt.numpy(), cov.numpy(), rtol=1e-10, atol=1e-10)
    assert float(rebuilt.trace()) == pytest.approx(float(gauss.eigvals.sum()), rel=1e-12)
    x = 5 * torch.randn(8, 6, dtype=F64)
    for sigma in (0.05, 1.0, 80.0):
        density = torch.distributions.MultivariateNormal(full.mean, cov + sigma**2 * torch.eye(6, dtype=F64))
        assert_rel(low.score(x, sigma), autograd_score(density, x), 1e-9)
        assert_rel(low.denoise(x, sigma), full.denoise(x, sigma), 1e-10)
        assert_rel(low.teleport(x, 80.0, sigma), full.teleport(x, 80.0, sigma), 1e-10)


# fitting


def test_fit_classes_matches_numpy_per_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([7] * 30 + [2] * 50 + [4] * 20)
    images = torch.randint(0, 256, (100, 2, 2), generator=g, dtype=torch.uint8)
    mixture = GaussianMixture.fit_classes(images, labels.numpy())
    x = images.reshape(100, -1).double() / 127.5 - 1  # model space
    for k, label in enumerate([2, 4, 7]):  # ascending label order
        rows = x[labels == label].numpy()
        assert float(mixture.weights[k]) == pytest.approx(len(rows) / 100)
        np.testing.assert_allclose(mixture.means[k].numpy(), rows.mean(0), atol=1e-12)
        cov = (mixture.eigvecs[k] * mixture.eigvals[k]) @ mixture.eigvecs[k].T
        np.testing.assert_allclose(cov.numpy(), np.cov(rows, rowvar=False), atol=1e-10)


def blobs(seed=0, spread=10.0):
    """Three well-separated blobs of uint8 4-pixel images (sizes 40, 60, 50) -> (images [150, 4], centres [3, 4] in
    model space, blob index [150])."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[220.0, 30, 30, 30], [30, 220.0, 30, 30], [30, 30, 220.0, 120.0]], dtype=F64)
    which = torch.tensor([0] * 40 + [1] * 60 + [2] * 50)
    images = (centres[which] + spread * torch.randn(150, 4, generator=g, dtype=F64)).round().clamp(0, 255)
    return images.to(torch.uint8), centres / 127.5 - 1, which


def test_fit_kmeans_finds_separated_blobs():
    images, centres, which = blobs()
    mixture = GaussianMixture.fit_kmeans(images, 3, seed=0)
    order = torch.cdist(centres, mixture.means).argmin(1)  # component nearest to each true centre
    assert sorted(order.tolist()) == [0, 1, 2]
    x = images.double() / 127.5 - 1
    for blob in range(3):
        rows = x[which == blob].numpy()
        k = int(order[blob])
        assert float(mixture.weights[k]) == pytest.approx(len(rows) / 150)
        np.testing.assert_allclose(mixture.means[k].numpy(), rows.mean(0), atol=1e-12)
    again = GaussianMixture.fit_kmeans(images, 3, seed=0)
    assert torch.equal(again.means, mixture.means)


def test_fit_kmeans_drops_clusters_of_one_point():
    images, _, _ = blobs(spread=1.0)
    outlier = torch.tensor([[0, 0, 0, 255]], dtype=torch.uint8)  # k-means++ seeds a cluster on it
    images = torch.cat([images, outlier])
    mixture = GaussianMixture.fit_kmeans(images, 4, seed=0)
    assert mixture.components == 3
    assert float(mixture.weights.sum()) == pytest.approx(1.0)


# persistence and validation


def test_save_load_roundtrip_has_deterministic_bytes(tmp_path):
    mixture, _, m, _ = random_mixture()
    models = [mixture, DeltaMixture(m), LowRankGaussian.fit(torch.randn(30, 4, dtype=F64), 2)]
    for i, model in enumerate(models):
        first, second = tmp_path / f"{i}a.safetensors", tmp_path / f"{i}b.safetensors"
        model.save(first)
        loaded = type(model).load(first)
        loaded.save(second)
        assert first.read_bytes() == second.read_bytes()
        x = torch.randn(3, 4, dtype=F64)
        assert torch.equal(loaded.score(x, 0.3), model.score(x, 0.3))
        assert torch.equal(loaded.to("cpu").denoise(x, 0.3), model.denoise(x, 0.3))


def test_bad_input_is_rejected():
    mixture, w, m, c = random_mixture()
    u, lam = mixture.eigvecs, mixture.eigvals
    with pytest.raises(ValueError, match="eigvecs"):
        GaussianMixture(w, m, lam, u[:, :2])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(w * 2, m, lam, u)
    images = torch.zeros(3, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="labels"):
        GaussianMixture.fit_classes(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        GaussianMixture.fit_classes(images, torch.tensor([0, 0, 1]))  # class 1 has one image
    with pytest.raises(ValueError, match="images"):
        GaussianMixture.fit_classes(m, torch.tensor([0, 0, 1]))  # not uint8 images
    for k in (0, 4):
        with pytest.raises(ValueError, match="k"):
            GaussianMixture.fit_kmeans(images, k)
    gauss = Gaussian.fit(torch.randn(10, 3, dtype=F64))
    for rank in (-1, 4):
        with pytest.raises(ValueError, match="rank"):
            LowRankGaussian.from_gaussian(gauss, rank)
    with pytest.raises(ValueError, match="eigvecs"):
        LowRankGaussian(gauss.mean, gauss.eigvals[:2], gauss.eigvecs, 0.1)
    with pytest.raises(ValueError, match="points"):
        DeltaMixture(torch.zeros(5))
    with pytest.raises(ValueError, match="sigma_to"):
        mixture.teleport(m, 1.0, 0.0)
