"""Exact moments of uint8 images: the machine-independent form of every fitted analytic model.

The pixel values u ∈ {0, …, 255} are integers, so the sums Σ u and Σ u uᵀ are exact in int64, and so is their float64
matrix product: every partial sum is an integer below 2**53, whatever the summation order, thread count or CPU. k-means
runs on exact integer sums too (``kmeans``). The files the fitting stages write (``Moments``) therefore have the same
bytes on any machine. The eigendecomposition, whose last bits depend on LAPACK's threads and code path, runs when a
model is built from them (``Gaussian.from_moments``, ``GaussianMixture.from_moments``), outside every tracked output.

Model space is ``x = u / 127.5 - 1`` (``hls.data.to_model``). Images are flat ``[N, D]`` uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hls.errors import ArgumentError, check_integer

F64 = torch.float64
SCALE = 127.5  # model space: x = u / SCALE - 1
_MAX_IMAGES = 11_000_000  # n² 255² stays below 2**63, so every covariance numerator is exact in int64


def _pixels(images) -> torch.Tensor:
    """uint8 ``[N, ...]`` (numpy or torch) -> uint8 tensor ``[N, D]``; ArgumentError for another dtype."""
    x = torch.from_numpy(np.array(images))  # a copy: the images may be a read-only memory map
    if x.dtype != torch.uint8 or x.ndim < 2:
        raise ArgumentError("images", f"{x.dtype} {tuple(x.shape)}", "must be uint8 images [N, ...]")
    if x.shape[0] > _MAX_IMAGES:
        raise ArgumentError("images", f"{x.shape[0]} images", f"at most {_MAX_IMAGES} keep the moments exact in int64")
    return x.reshape(x.shape[0], -1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a [n, D] @ b [k, D]ᵀ`` of integer-valued tensors, exactly, as int64 ``[n, k]``.

    float64 matmul: each product and partial sum is an integer below 2**53 (n D 255² and D 255 · N 255 here), so any
    summation order gives the exact value.
    """
    return (a.to(F64) @ b.to(F64).T).to(torch.int64)


@dataclass(frozen=True)
class Moments:
    """Exact sufficient statistics of K groups of uint8 images: ``counts`` int64 ``[K]``, ``sums`` int64 ``[K, D]``
    (Σ u) and ``grams`` int64 ``[K, D, D]`` (Σ u uᵀ)."""

    counts: torch.Tensor
    sums: torch.Tensor
    grams: torch.Tensor

    FIELDS = ("counts", "sums", "grams")

    @classmethod
    def of(cls, images, groups=None, chunk: int = 4096) -> Moments:
        """The moments of uint8 ``images [N, ...]`` in the groups ``groups`` (int ``[N]`` in [0, K); None: one group),
        read in chunks of ``chunk`` rows. Each image is flattened in its array order, so pass images as the model
        holds them (``[N, C, H, W]``: ``hls.data`` arrays ``[N, H, W, C]`` transposed by ``(0, 3, 1, 2)``)."""
        x = _pixels(images)  # [N, D]
        n, d = x.shape
        groups = torch.zeros(n, dtype=torch.int64) if groups is None else torch.as_tensor(np.asarray(groups))
        if groups.shape != (n,) or groups.dtype not in (torch.int32, torch.int64) or bool((groups < 0).any()):
            raise ArgumentError("groups", f"{groups.dtype} {tuple(groups.shape)}", f"must be integers >= 0 [N = {n}]")
        k = int(groups.max()) + 1 if n else 1
        counts = torch.bincount(groups, minlength=k)  # [K]
        sums = torch.zeros(k, d, dtype=torch.int64)
        grams = torch.zeros(k, d, d, dtype=torch.int64)
        for j in range(k):
            rows = x[groups == j]  # [n_j, D]
            sums[j] = rows.to(torch.int64).sum(0)
            for block in rows.split(chunk):
                grams[j] += _dot(block.T, block.T)
        return cls(counts, sums, grams)

    @property
    def dim(self) -> int:
        return self.sums.shape[1]

    def select(self, keep: torch.Tensor) -> Moments:
        """The groups where the boolean ``keep [K]`` holds."""
        return Moments(self.counts[keep], self.sums[keep], self.grams[keep])

    def means(self) -> torch.Tensor:
        """Each group's mean in model space, float64 ``[K, D]`` (correctly rounded from the integers)."""
        n = self.counts.to(F64)[:, None]  # [K, 1]
        return self.sums.to(F64) / (n * SCALE) - 1

    def covariances(self) -> torch.Tensor:
        """Each group's unbiased covariance in model space, float64 ``[K, D, D]``: (n Σuuᵀ - Σu Σuᵀ) / (n (n - 1)
        SCALE²), the numerator exact in int64, one rounding after it. Every group needs n >= 2."""
        if bool((self.counts < 2).any()):
            raise ArgumentError("counts", self.counts.tolist(), "every group needs at least 2 images")
        n = self.counts[:, None, None]  # [K, 1, 1]
        numerator = n * self.grams - self.sums[:, :, None] * self.sums[:, None, :]  # [K, D, D] exact
        return numerator.to(F64) / (n * (n - 1)).to(F64) / SCALE**2

    def save(self, path) -> None:
        save_file({name: getattr(self, name).contiguous() for name in self.FIELDS}, str(path))

    @classmethod
    def load(cls, path) -> Moments:
        return cls(**load_file(str(path)))


def kmeans(images, k: int, *, seed: int = 0, iters: int = 100, chunk: int = 4096) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on uint8 ``images [N, ...]`` -> cluster index long ``[N]``, in exact
    integer arithmetic (the same assignment on any machine).

    Seeding is greedy k-means++ (as scikit-learn's): 2 + ⌊log k⌋ candidates for each new centre, drawn with
    probability proportional to their integer squared distance to the chosen ones (``torch.randint`` with ``seed`` on
    the integer cumulative sum), the one that lowers the total squared distance most kept. Lloyd's centres are the
    rationals Σu / n: the distance ranks ‖Σu‖² / n² - 2 u·Σu / n are two correctly rounded divisions of exact
    integers. An empty cluster keeps its centre; stops when the assignment no longer changes or after ``iters`` rounds.
    """
    x = _pixels(images)  # [N, D]
    n = x.shape[0]
    check_integer("k", k, 1, n, f"must be an integer in [1, N = {n}]")
    check_integer("iters", iters)
    gen = torch.Generator().manual_seed(seed)
    wide = x.to(torch.int64)  # [N, D]
    norms = wide.square().sum(1)  # [N] ‖u‖²

    def dist2(point: torch.Tensor) -> torch.Tensor:  # [N] exact ‖u - p‖² to one image p [D]
        dots = torch.cat([_dot(rows, point[None]) for rows in x.split(chunk)])[:, 0]
        return norms - 2 * dots + point.to(torch.int64).square().sum()

    # greedy k-means++: of `trials` candidates drawn by squared distance, keep the one that lowers the total most
    trials = 2 + int(math.log(k))
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    d2 = dist2(x[chosen[0]])  # [N] to the nearest chosen centre
    for _ in range(1, k):
        total = int(d2.sum())
        if total == 0:
            candidates = torch.randint(n, (trials,), generator=gen)
        else:
            draws = torch.randint(total, (trials,), generator=gen, dtype=torch.int64)
            candidates = torch.searchsorted(d2.cumsum(0), draws, right=True)
        options = [torch.minimum(d2, dist2(x[int(c)])) for c in candidates]
        best = min(range(trials), key=lambda i: int(options[i].sum()))  # ties: the first drawn
        chosen.append(int(candidates[best]))
        d2 = options[best]
    sums, counts = x[chosen].to(torch.int64), torch.ones(k, dtype=torch.int64)  # [k, D], [k]

    # Lloyd: assign each image to the nearest centre Σu / n, move each centre to its cluster's sums
    assign = None
    for _ in range(iters):
        c = counts.to(F64)
        offset = sums.square().sum(1).to(F64) / (c * c)  # [k] ‖Σu‖² / n²
        new = torch.cat([(offset - 2 * (_dot(rows, sums).to(F64) / c)).argmin(1) for rows in x.split(chunk)])
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        new_counts = torch.bincount(assign, minlength=k)
        new_sums = torch.zeros_like(sums).index_add_(0, assign, wide)
        filled = new_counts > 0
        sums = torch.where(filled[:, None], new_sums, sums)
        counts = torch.where(filled, new_counts, counts)
    return assign
