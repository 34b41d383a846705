"""Gaussian data N(mean, Σ) in closed form: score, denoiser and the exact probability-flow ODE jump; and the VP <-> VE
conversions, the one place where a VP sample ``sqrt(a) * x_ve`` (``sigma**2 = (1 - a) / a``) is rescaled."""

from __future__ import annotations

import torch

from hls.analytic import F64, AnalyticModel, sigma_column
from hls.errors import ArgumentError
from hls.moments import Moments


def sigma_from_alpha_cumprod(alpha_cumprod):
    """VP cumulative alpha ``a`` -> VE sigma ``sqrt((1 - a) / a)``."""
    a = torch.as_tensor(alpha_cumprod, dtype=F64)
    return ((1 - a) / a).sqrt()


def alpha_cumprod_from_sigma(sigma):
    """VE sigma -> VP cumulative alpha ``1 / (1 + sigma**2)``."""
    s = torch.as_tensor(sigma, dtype=F64)
    return 1 / (1 + s**2)


def vp_to_ve(x, alpha_cumprod):
    """A VP sample ``sqrt(a) x0 + sqrt(1-a) eps`` -> the VE sample ``x0 + sigma eps`` (same dtype as x)."""
    return (x.to(F64) / torch.as_tensor(alpha_cumprod, dtype=F64).sqrt()).to(x.dtype)


def ve_to_vp(x, alpha_cumprod):
    """A VE sample ``x0 + sigma eps`` -> the VP sample ``sqrt(a) x0 + sqrt(1-a) eps`` (same dtype as x)."""
    return (x.to(F64) * torch.as_tensor(alpha_cumprod, dtype=F64).sqrt()).to(x.dtype)


class Gaussian(AnalyticModel):
    """N(mean, U diag(eigvals) Uᵀ) in float64: mean ``[D]``, eigvals ``[D] >= 0`` descending, eigvecs ``[D, D]``."""

    TENSORS = ("mean", "eigvals", "eigvecs")

    def __init__(self, mean: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor):
        self.mean = mean.to(F64)  # [D]
        self.eigvals = eigvals.to(F64)  # [D]
        self.eigvecs = eigvecs.to(F64)  # [D, D]
        d = self.mean.shape[0]
        if self.eigvals.shape != (d,) or self.eigvecs.shape != (d, d):
            raise ValueError(
                f"Gaussian: mean {tuple(self.mean.shape)}, eigvals {tuple(self.eigvals.shape)} and eigvecs "
                f"{tuple(self.eigvecs.shape)} must be [D], [D] and [D, D]"
            )

    @classmethod
    def fit(cls, x: torch.Tensor, chunk: int = 4096) -> Gaussian:
        """Mean and unbiased covariance of ``x [N, D]`` (read in float64 chunks of rows), eigendecomposed
        (``from_covariance``); never holds more than D x D or chunk x D. Images: ``from_moments`` is exact."""
        n, d = x.shape
        if n < 2:
            raise ValueError(f"Gaussian.fit: need at least 2 samples, got {n}")
        mean = torch.zeros(d, dtype=F64)
        for rows in x.split(chunk):
            mean += rows.to(F64).sum(0)
        mean /= n
        cov = torch.zeros(d, d, dtype=F64)
        for rows in x.split(chunk):
            centred = rows.to(F64) - mean  # [chunk, D]
            cov.addmm_(centred.T, centred)
        return cls.from_covariance(mean, cov / (n - 1))

    @classmethod
    def from_covariance(cls, mean: torch.Tensor, cov: torch.Tensor) -> Gaussian:
        """N(mean [D], cov [D, D]) by ``torch.linalg.eigh``, eigenvalues descending, negative round-off clamped to 0."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # MKL's threaded eigh crawls when another process holds a core (784: 0.07 s -> 12 s)
        try:
            eigvals, eigvecs = torch.linalg.eigh(cov.to(F64))  # ascending
        finally:
            torch.set_num_threads(threads)
        return cls(mean, eigvals.flip(0).clamp_min(0), eigvecs.flip(1))

    @classmethod
    def from_moments(cls, moments: Moments) -> Gaussian:
        """The Gaussian of one group of exact image moments (``hls.moments.Moments`` with K = 1)."""
        if moments.counts.shape != (1,):
            raise ArgumentError("moments", f"{moments.counts.shape[0]} groups", "a Gaussian needs exactly one")
        return cls.from_covariance(moments.means()[0], moments.covariances()[0])

    @classmethod
    def isotropic(cls, mean: torch.Tensor, var: float) -> Gaussian:
        """N(mean, var · I); ``var = 0`` is the point mass at the mean."""
        d = mean.shape[0]
        return cls(mean, torch.full((d,), float(var), dtype=F64), torch.eye(d, dtype=F64))

    def _spectral(self, x: torch.Tensor, gain: torch.Tensor, *, shift: bool) -> torch.Tensor:
        """``[mean +] U diag(gain) Uᵀ (x - mean)`` for ``x [B, D]`` and ``gain [B|1, D]``, in x's dtype."""
        mean = self.mean.to(x.device)
        u = self.eigvecs.to(x.device)
        coords = (x.to(F64) - mean) @ u  # [B, D] in the eigenbasis
        out = (coords * gain) @ u.T  # [B, D]
        return (out + mean if shift else out).to(x.dtype)

    def _lam(self, device) -> torch.Tensor:
        return self.eigvals.to(device)[None, :]  # [1, D]

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇ log N(x; mean, Σ + sigma² I) for ``x [B, D]`` -> ``[B, D]``."""
        s = sigma_column(sigma, x.device)
        return self._spectral(x, -1 / (self._lam(x.device) + s**2), shift=False)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x] = mean + Σ (Σ + sigma² I)⁻¹ (x - mean) for ``x [B, D]`` -> ``[B, D]``."""
        s = sigma_column(sigma, x.device)
        lam = self._lam(x.device)
        return self._spectral(x, lam / (lam + s**2), shift=True)

    def teleport(self, x: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
        """The exact probability-flow ODE solution from sigma_from to sigma_to for ``x [B, D]`` -> ``[B, D]``:
        mean + U diag(sqrt((λ + sigma_to²) / (λ + sigma_from²))) Uᵀ (x - mean)."""
        a = sigma_column(sigma_from, x.device)
        b = sigma_column(sigma_to, x.device)
        lam = self._lam(x.device)
        return self._spectral(x, ((lam + b**2) / (lam + a**2)).sqrt(), shift=True)


def gaussian_models(gaussian: Gaussian) -> dict[str, Gaussian]:
    """The fitted Gaussian and its two simplifications, by the names the study and score error use: ``gaussian``
    N(μ, Σ), ``isotropic`` N(μ, tr(Σ)/D · I) and ``mean``, the point mass at μ."""
    var = float(gaussian.eigvals.sum()) / gaussian.dim
    return {"gaussian": gaussian, "isotropic": Gaussian.isotropic(gaussian.mean, var),
            "mean": Gaussian.isotropic(gaussian.mean, 0.0)}
