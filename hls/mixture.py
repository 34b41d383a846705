"""Analytic models of the data beyond one Gaussian, on the base of ``hls.analytic``: a Gaussian mixture, the training
set as a delta mixture, and a low-rank Gaussian. Scores and denoisers obey Tweedie's formula. ``LowRankGaussian``
jumps in closed form; the mixtures integrate their probability-flow ODE (``hls.analytic.probability_flow``: RK4 in
log σ with the mixture's own denoiser, no network, errors ~ ``max_step``⁴; both sigmas > 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hls.analytic import F64, AnalyticModel, column_rows, sigma_column
from hls.errors import ArgumentError, check_integer
from hls.gaussian import Gaussian
from hls.moments import Moments, kmeans


class GaussianMixture(AnalyticModel):
    """Σ_k w_k N(means_k, U_k diag(eigvals_k) U_kᵀ) in float64: weights ``[K]``, means ``[K, D]``, eigvals ``[K, D]``
    >= 0, eigvecs ``[K, D, D]`` (orthonormal columns per component).

    ``chunk`` bounds the work arrays: each ``[K, rows, D]`` temporary holds at most ``chunk`` numbers.
    """

    TENSORS = ("means", "weights", "eigvals", "eigvecs")

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor,
                 *, chunk: int = 2**22, max_step: float = 0.1):
        self.weights = weights.to(F64)  # [K]
        self.means = means.to(F64)  # [K, D]
        self.eigvals = eigvals.to(F64)  # [K, D]
        self.eigvecs = eigvecs.to(F64)  # [K, D, D]
        self.chunk = chunk
        k = self.weights.shape[0] if self.weights.ndim == 1 else -1
        d = self.means.shape[-1] if self.means.ndim else -1
        if k < 1 or self.means.shape != (k, d) or self.eigvals.shape != (k, d) or self.eigvecs.shape != (k, d, d):
            raise ValueError(
                f"GaussianMixture: weights {tuple(self.weights.shape)}, means {tuple(self.means.shape)}, eigvals "
                f"{tuple(self.eigvals.shape)} and eigvecs {tuple(self.eigvecs.shape)} must be [K], [K, D], [K, D] "
                "and [K, D, D] with K >= 1"
            )
        if not bool((self.weights > 0).all()) or abs(float(self.weights.sum()) - 1) > 1e-6:
            raise ValueError(f"GaussianMixture: weights must be > 0 and sum to 1, got {self.weights.tolist()}")
        if not bool((self.eigvals >= 0).all()):
            raise ValueError(f"GaussianMixture: eigvals must be >= 0, min is {float(self.eigvals.min())}")
        if chunk < 1:
            raise ValueError(f"GaussianMixture: chunk = {chunk} must be >= 1")
        self.max_step = max_step

    def options(self) -> dict:
        return {"chunk": self.chunk, "max_step": self.max_step}

    @property
    def components(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def from_gaussian(cls, gaussian: Gaussian) -> GaussianMixture:
        """The one-component mixture equal to ``gaussian``."""
        return cls(torch.ones(1, dtype=F64), gaussian.mean[None], gaussian.eigvals[None], gaussian.eigvecs[None])

    @classmethod
    def from_moments(cls, moments: Moments, **options) -> GaussianMixture:
        """One component per group of exact image moments (``hls.moments.Moments``), weighted by its share of the
        images, each ``Gaussian.from_moments``; ``options``: the constructor's keywords."""
        gaussians = [Gaussian.from_covariance(mean, cov) for mean, cov in zip(moments.means(), moments.covariances())]
        return cls(moments.counts.to(F64) / moments.counts.sum(), torch.stack([g.mean for g in gaussians]),
                   torch.stack([g.eigvals for g in gaussians]), torch.stack([g.eigvecs for g in gaussians]), **options)

    @classmethod
    def fit_classes(cls, images, labels) -> GaussianMixture:
        """One component per class of ``labels [N]`` (``class_moments``) of uint8 ``images [N, ...]``."""
        return cls.from_moments(class_moments(images, labels))

    @classmethod
    def fit_kmeans(cls, images, k: int, *, seed: int = 0, iters: int = 100) -> GaussianMixture:
        """One component per k-means cluster (``cluster_moments``) of uint8 ``images [N, ...]``."""
        return cls.from_moments(cluster_moments(images, k, seed=seed, iters=iters))

    def _posterior(self, x: torch.Tensor, sigma, *, denoise: bool) -> torch.Tensor:
        """Σ_k r_k(x) [μ_k +] U_k diag(g_k) U_kᵀ (x - μ_k), g = λ/(λ+σ²) (denoise) or -1/(λ+σ²) (score).

        r_k = softmax_k(log w_k - ½ Σ_d c_kd² / (λ_kd + σ²) - ½ Σ_d log(λ_kd + σ²)), c_k = U_kᵀ (x - μ_k).
        """
        s = sigma_column(sigma, x.device)  # [B|1, 1]
        out = torch.empty(x.shape, dtype=F64, device=x.device)  # [B, D]
        rows = max(1, self.chunk // (self.components * self.dim))
        log_w, means, u = self.weights.to(x.device).log(), self.means.to(x.device), self.eigvecs.to(x.device)
        lam = self.eigvals.to(x.device)[:, None, :]  # [K, 1, D]
        for start in range(0, x.shape[0], rows):
            xb = x[start:start + rows].to(F64)  # [b, D]
            var = lam + column_rows(s, start, start + rows).square()  # [K, b|1, D]
            coords = (xb - means[:, None, :]) @ u  # [K, b, D] in each component's eigenbasis
            logits = log_w[:, None] - 0.5 * ((coords.square() / var).sum(2) + var.log().sum(2))  # [K, b]
            resp = torch.softmax(logits, dim=0)  # [K, b]
            gain = lam / var if denoise else -1 / var  # [K, b|1, D]
            block = ((resp[:, :, None] * gain * coords) @ u.mT).sum(0)  # [b, D]
            out[start:start + rows] = block + resp.T @ means if denoise else block
        return out.to(x.dtype)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇ log Σ_k w_k N(x; μ_k, Σ_k + sigma² I) for ``x [B, D]`` -> ``[B, D]``."""
        return self._posterior(x, sigma, denoise=False)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x] = Σ_k r_k(x) (μ_k + Σ_k (Σ_k + sigma² I)⁻¹ (x - μ_k)) for ``x [B, D]`` -> ``[B, D]``."""
        return self._posterior(x, sigma, denoise=True)


class DeltaMixture(AnalyticModel):
    """The empirical distribution (1/N) Σ_n δ(x0 - points_n), ``points [N, D]`` in float64; noised, it is the
    mixture (1/N) Σ_n N(points_n, sigma² I).

    The posterior over points is a softmax accumulated over blocks of ``chunk`` points with a running log-sum-exp,
    for blocks of ``batch_chunk`` rows of x: work arrays are ``[batch_chunk, chunk]`` and ``[batch_chunk, D]``.
    Distances come from ``‖x‖² - 2 x·p + ‖p‖²`` (one matmul), so the logits carry an absolute error of about
    1e-16 ‖x‖² / (2 sigma²).
    """

    TENSORS = ("points",)

    def __init__(self, points: torch.Tensor, *, chunk: int = 4096, batch_chunk: int = 1024, max_step: float = 0.1):
        self.points = points.to(F64)  # [N, D]
        if self.points.ndim != 2 or self.points.shape[0] < 1:
            raise ValueError(f"DeltaMixture: points {tuple(self.points.shape)} must be [N, D] with N >= 1")
        if chunk < 1 or batch_chunk < 1:
            raise ValueError(f"DeltaMixture: chunk = {chunk} and batch_chunk = {batch_chunk} must be >= 1")
        self.chunk = chunk
        self.batch_chunk = batch_chunk
        self._norms = self.points.square().sum(1)  # [N]
        self.max_step = max_step

    def options(self) -> dict:
        return {"chunk": self.chunk, "batch_chunk": self.batch_chunk, "max_step": self.max_step}

    def _posterior_mean(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Σ_n softmax_n(-‖x - p_n‖² / 2σ²) p_n for ``x [b, D]``, ``s [b|1, 1]``, over blocks of points."""
        top = torch.full((x.shape[0], 1), -math.inf, dtype=F64, device=x.device)  # [b, 1] running max logit
        total = torch.zeros_like(top)  # [b, 1] Σ exp(logit - top)
        acc = torch.zeros_like(x)  # [b, D] Σ exp(logit - top) p_n
        x2 = x.square().sum(1, keepdim=True)  # [b, 1]
        points, norms = self.points.to(x.device), self._norms.to(x.device)
        for p, p2 in zip(points.split(self.chunk), norms.split(self.chunk)):
            logits = -(x2 - 2 * x @ p.T + p2).clamp_min(0) / (2 * s.square())  # [b, n]
            new_top = torch.maximum(top, logits.amax(1, keepdim=True))
            rescale = (top - new_top).exp()  # [b, 1]; 0 on the first block
            w = (logits - new_top).exp()  # [b, n]
            total = total * rescale + w.sum(1, keepdim=True)
            acc = acc * rescale + w @ p
            top = new_top
        return acc / total

    def _posterior_means(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """``_posterior_mean`` over blocks of ``batch_chunk`` rows of ``x [B, D]``: float64 ``[B, D]``."""
        s = sigma_column(sigma, x.device)  # [B|1, 1]
        out = torch.empty(x.shape, dtype=F64, device=x.device)  # [B, D]
        for start in range(0, x.shape[0], self.batch_chunk):
            rows = slice(start, start + self.batch_chunk)
            out[rows] = self._posterior_mean(x[rows].to(F64), column_rows(s, start, start + self.batch_chunk))
        return out

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x] = Σ_n softmax_n(-‖x - p_n‖² / (2 sigma²)) p_n for ``x [B, D]`` -> ``[B, D]``."""
        return self._posterior_means(x, sigma).to(x.dtype)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇ log (1/N) Σ_n N(x; p_n, sigma² I) = (denoise - x) / sigma², in float64, for ``x [B, D]`` -> ``[B, D]``."""
        s2 = sigma_column(sigma, x.device).square()
        return ((self._posterior_means(x, sigma) - x.to(F64)) / s2).to(x.dtype)


class LowRankGaussian(AnalyticModel):
    """N(mean, U diag(eigvals) Uᵀ + residual (I - U Uᵀ)) in float64: the top r eigenpairs, eigvals ``[r]`` >= 0,
    eigvecs ``[D, r]`` (orthonormal columns), plus isotropic variance ``residual`` on their orthogonal complement.

    O(rD) memory. With r = D it is the full Gaussian; with r = 0 the isotropic N(mean, residual · I).
    """

    TENSORS = ("mean", "eigvals", "eigvecs", "residual")

    def __init__(self, mean: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor, residual):
        self.mean = mean.to(F64)  # [D]
        self.eigvals = eigvals.to(F64)  # [r]
        self.eigvecs = eigvecs.to(F64)  # [D, r]
        self.residual = torch.as_tensor(residual, dtype=F64, device=self.mean.device).reshape(())  # []
        d = self.mean.shape[0] if self.mean.ndim == 1 else -1
        r = self.eigvals.shape[0] if self.eigvals.ndim == 1 else -1
        if d < 1 or r < 0 or r > d or self.eigvecs.shape != (d, r):
            raise ValueError(
                f"LowRankGaussian: mean {tuple(self.mean.shape)}, eigvals {tuple(self.eigvals.shape)} and eigvecs "
                f"{tuple(self.eigvecs.shape)} must be [D], [r] and [D, r] with r <= D"
            )
        if float(self.residual) < 0 or not bool((self.eigvals >= 0).all()):
            raise ValueError(f"LowRankGaussian: eigvals and residual = {float(self.residual)} must be >= 0")

    @property
    def rank(self) -> int:
        return self.eigvals.shape[0]

    @classmethod
    def from_gaussian(cls, gaussian: Gaussian, rank: int) -> LowRankGaussian:
        """Keep the ``rank`` largest eigenpairs; residual = mean of the discarded eigenvalues (0 when rank = D), so the
        trace is preserved."""
        d = gaussian.dim
        check_integer("rank", rank, 0, d, f"must be an integer in [0, D = {d}]")
        order = gaussian.eigvals.argsort(descending=True, stable=True)
        top, rest = order[:rank], order[rank:]
        residual = gaussian.eigvals[rest].mean() if rank < d else 0.0
        return cls(gaussian.mean, gaussian.eigvals[top], gaussian.eigvecs[:, top], residual)

    @classmethod
    def fit(cls, x: torch.Tensor, rank: int, chunk: int = 4096) -> LowRankGaussian:
        """``from_gaussian(Gaussian.fit(x [N, D]), rank)``: passes through the full D x D covariance once."""
        return cls.from_gaussian(Gaussian.fit(x, chunk), rank)

    def _spectral(self, x: torch.Tensor, fn, *, shift: bool) -> torch.Tensor:
        """``[mean +] f(Σ) (x - mean)`` = U diag(f(λ) - f(ρ)) Uᵀ v + f(ρ) v, v = x - mean, in x's dtype."""
        mean = self.mean.to(x.device)
        u = self.eigvecs.to(x.device)  # [D, r]
        v = x.to(F64) - mean  # [B, D]
        top = fn(self.eigvals.to(x.device)[None, :])  # [B|1, r]
        rest = fn(self.residual.to(x.device))  # [B|1, 1]
        out = ((v @ u) * (top - rest)) @ u.T + rest * v  # [B, D]
        return (out + mean if shift else out).to(x.dtype)

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇ log N(x; mean, Σ + sigma² I) = -(Σ + sigma² I)⁻¹ (x - mean) for ``x [B, D]`` -> ``[B, D]``."""
        s2 = sigma_column(sigma, x.device).square()
        return self._spectral(x, lambda lam: -1 / (lam + s2), shift=False)

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x] = mean + Σ (Σ + sigma² I)⁻¹ (x - mean) for ``x [B, D]`` -> ``[B, D]``."""
        s2 = sigma_column(sigma, x.device).square()
        return self._spectral(x, lambda lam: lam / (lam + s2), shift=True)

    def teleport(self, x: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
        """Exact probability-flow ODE jump: mean + f(Σ)(x - mean), f(λ) = sqrt((λ + sigma_to²) / (λ + sigma_from²)).

        ``x [B, D]`` -> ``[B, D]``; on the complement λ is the residual.
        """
        a2 = sigma_column(sigma_from, x.device).square()
        b2 = sigma_column(sigma_to, x.device).square()
        return self._spectral(x, lambda lam: ((lam + b2) / (lam + a2)).sqrt(), shift=True)


MIXTURES = ("gmm_classes", "gmm_kmeans")  # the fitted mixtures by their names in the score error and the study


def class_moments(images, labels) -> Moments:
    """Exact moments of uint8 ``images [N, ...]`` per distinct label of ``labels [N]`` (ascending label order); every
    class needs at least 2 images (unbiased covariance)."""
    labels = torch.as_tensor(np.asarray(labels))
    if labels.shape != (len(images),):
        raise ArgumentError("labels", f"shape {tuple(labels.shape)}", f"must be [N] = [{len(images)}] to match images")
    classes, index, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if bool((counts < 2).any()):
        raise ArgumentError("labels", dict(zip(classes.tolist(), counts.tolist())), "every class needs >= 2 images")
    return Moments.of(images, index)


def cluster_moments(images, k: int, *, seed: int = 0, iters: int = 100) -> Moments:
    """Exact moments of uint8 ``images [N, ...]`` per cluster of ``hls.moments.kmeans``; clusters of fewer than 2
    images are dropped (their covariance is undefined), so there may be fewer than ``k`` groups."""
    moments = Moments.of(images, kmeans(images, k, seed=seed, iters=iters))
    if not bool((moments.counts >= 2).any()):
        raise ArgumentError("k", k, "no cluster has 2 or more images")
    return moments.select(moments.counts >= 2)


def fit_mixtures(images, labels, k: int, *, seed: int = 0) -> dict[str, Moments]:
    """The exact moments of ``MIXTURES`` of uint8 ``images [N, ...]``: one group per class of ``labels [N]``, and one
    per k-means cluster (``GaussianMixture.from_moments`` builds each mixture)."""
    return {"gmm_classes": class_moments(images, labels), "gmm_kmeans": cluster_moments(images, k, seed=seed)}
