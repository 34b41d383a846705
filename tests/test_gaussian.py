"""hls.gaussian against independent oracles: torch's MultivariateNormal, numpy, scipy's ODE solver, sampling."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from fakes import F64
from hls.gaussian import (
    Gaussian,
    alpha_cumprod_from_sigma,
    sigma_from_alpha_cumprod,
    ve_to_vp,
    vp_to_ve,
)


def random_gaussian(d=6, rank=3, seed=0):
    """A Gaussian with a rank-deficient covariance A Aᵀ, A [d, rank]; returns (Gaussian, mean, cov)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank, generator=g, dtype=F64)
    cov = a @ a.T
    mean = torch.randn(d, generator=g, dtype=F64)
    lam, u = np.linalg.eigh(cov.numpy())
    return Gaussian(mean, torch.tensor(lam[::-1].clip(0).copy()), torch.tensor(u[:, ::-1].copy())), mean, cov


@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0, 80.0])
def test_score_is_gradient_of_log_density(sigma):
    gauss, mean, cov = random_gaussian()
    x = torch.randn(5, 6, dtype=F64, generator=torch.Generator().manual_seed(1)) * 3
    x.requires_grad_(True)
    density = torch.distributions.MultivariateNormal(mean, cov + sigma**2 * torch.eye(6, dtype=F64))
    (grad,) = torch.autograd.grad(density.log_prob(x).sum(), x)
    torch.testing.assert_close(gauss.score(x.detach(), sigma), grad, rtol=1e-8, atol=1e-10)


def test_tweedie_and_per_sample_sigma():
    gauss, _, _ = random_gaussian()
    x = torch.randn(4, 6, dtype=F64)
    sigma = torch.tensor([0.1, 1.0, 5.0, 50.0], dtype=F64)
    expected = x + sigma[:, None] ** 2 * gauss.score(x, sigma)
    torch.testing.assert_close(gauss.denoise(x, sigma), expected, rtol=1e-9, atol=1e-9)
    for i in range(4):  # a tensor of B sigmas acts row by row
        torch.testing.assert_close(gauss.denoise(x[i:i + 1], float(sigma[i])), gauss.denoise(x, sigma)[i:i + 1])


@pytest.mark.parametrize(("sigma_from", "sigma_to"), [(80.0, 0.5), (10.0, 0.01)])
def test_teleport_solves_probability_flow_ode(sigma_from, sigma_to):
    gauss, mean, cov = random_gaussian(d=5, rank=2, seed=3)
    x = (mean + sigma_from * torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(4))).numpy()
    m, c = mean.numpy(), cov.numpy()

    def rhs(s, flat):  # dx/dσ = -σ ∇log p_σ(x) = σ (Σ + σ² I)⁻¹ (x - mean)
        y = flat.reshape(3, 5)
        return (s * np.linalg.solve(c + s**2 * np.eye(5), (y - m).T).T).ravel()

    sol = solve_ivp(rhs, (sigma_from, sigma_to), x.ravel(), method="DOP853", rtol=1e-12, atol=1e-12)
    expected = sol.y[:, -1].reshape(3, 5)
    got = gauss.teleport(torch.tensor(x), sigma_from, sigma_to).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())


def test_teleport_composes_and_identity():
    gauss, _, _ = random_gaussian()
    x = 20 * torch.randn(7, 6, dtype=F64)
    torch.testing.assert_close(gauss.teleport(gauss.teleport(x, 20.0, 3.0), 3.0, 0.2), gauss.teleport(x, 20.0, 0.2))
    torch.testing.assert_close(gauss.teleport(x, 4.0, 4.0), x)


def test_teleport_maps_the_noised_marginals():
    """x ~ N(mean, Σ + a² I) teleported from a to b has mean and covariance of N(mean, Σ + b² I)."""
    gauss, mean, cov = random_gaussian(d=3, rank=2, seed=5)
    a, b = 4.0, 0.3
    source = torch.distributions.MultivariateNormal(mean, cov + a**2 * torch.eye(3, dtype=F64))
    torch.manual_seed(0)
    y = gauss.teleport(source.sample((200_000,)), a, b).numpy()
    target = (cov + b**2 * torch.eye(3, dtype=F64)).numpy()
    scale = np.sqrt(np.outer(np.diag(target), np.diag(target)))
    np.testing.assert_allclose(y.mean(0), mean.numpy(), atol=0.01 * np.sqrt(np.diag(target)).max())
    np.testing.assert_allclose(np.cov(y, rowvar=False) / scale, target / scale, atol=0.01)


def test_fit_matches_numpy_and_reconstructs():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0), dtype=F64) @ torch.randn(8, 8, dtype=F64)
    gauss = Gaussian.fit(x, chunk=64)  # several chunks
    np.testing.assert_allclose(gauss.mean.numpy(), x.numpy().mean(0), atol=1e-12)
    rebuilt = gauss.eigvecs @ torch.diag(gauss.eigvals) @ gauss.eigvecs.T
    np.testing.assert_allclose(rebuilt.numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-10)
    assert torch.all(gauss.eigvals[:-1] >= gauss.eigvals[1:])


def test_fit_with_constant_pixels_is_finite_and_keeps_float32():
    x = torch.rand(50, 10)
    x[:, [0, 3, 7]] = 0.25  # zero-variance directions
    gauss = Gaussian.fit(x)
    assert gauss.eigvals.dtype == F64 and torch.all(gauss.eigvals >= 0)
    assert torch.isfinite(gauss.eigvals).all() and torch.isfinite(gauss.eigvecs).all()
    for out in (gauss.teleport(x, 10.0, 0.0), gauss.denoise(x, 0.1), gauss.score(x, 0.1)):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # data on the support teleports to itself at sigma 0 along the constant pixels
    torch.testing.assert_close(gauss.teleport(x, 10.0, 0.0)[:, [0, 3, 7]], x[:, [0, 3, 7]])


def test_isotropic_and_point_mass_closed_forms():
    mean = torch.randn(5, dtype=F64)
    x = torch.randn(4, 5, dtype=F64)
    iso = Gaussian.isotropic(mean, 0.6)
    torch.testing.assert_close(iso.score(x, 0.8), -(x - mean) / (0.6 + 0.64))
    torch.testing.assert_close(iso.denoise(x, 0.8), mean + 0.6 / (0.6 + 0.64) * (x - mean))
    point = Gaussian.isotropic(mean, 0.0)
    torch.testing.assert_close(point.denoise(x, 0.8), mean.expand(4, 5))
    torch.testing.assert_close(point.teleport(x, 2.0, 0.5), mean + 0.25 * (x - mean))


def test_save_load_roundtrip_has_deterministic_bytes(tmp_path):
    gauss, _, _ = random_gaussian()
    gauss.save(tmp_path / "a.safetensors")
    gauss.save(tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded = Gaussian.load(tmp_path / "a.safetensors")
    for name in ("mean", "eigvals", "eigvecs"):
        assert torch.equal(getattr(loaded, name), getattr(gauss, name))


def test_vp_ve_conversions_match_ddpm_forward_process():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    t = torch.tensor([0, 250, 999])
    a = scheduler.alphas_cumprod[t].to(F64)[:, None]
    x0, eps = torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    vp = scheduler.add_noise(x0, eps, t)
    sigma = sigma_from_alpha_cumprod(a)
    torch.testing.assert_close(ve_to_vp(x0 + sigma * eps, a), vp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(vp_to_ve(vp, a), x0 + sigma * eps, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(alpha_cumprod_from_sigma(sigma), a)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="eigvecs"):
        Gaussian(torch.zeros(3), torch.ones(3), torch.eye(2))
