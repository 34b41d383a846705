"""What every analytic model of the data shares (``Gaussian``, ``LowRankGaussian``, ``GaussianMixture``,
``DeltaMixture``): float64 tensors, ``dim``, ``to``, ``save`` / ``load``, the score by Tweedie's formula and the jump by
the probability-flow ODE integrated with the model's own denoiser. A model writes its ``denoise`` and its closed forms.

Noise levels are VE sigmas (``x = x0 + sigma * eps``): a float, or a tensor of B values acting row by row. Vectors are
flat ``[B, D]``; math is float64, inputs of another float dtype come back in their own dtype.
"""

from __future__ import annotations

import math

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from hls.moments import Moments

F64 = torch.float64


def sigma_column(sigma, device) -> torch.Tensor:
    """A float or a tensor of B noise levels -> float64 ``[1, 1]`` or ``[B, 1]``, to broadcast over ``[B, D]``."""
    return torch.as_tensor(sigma, dtype=F64, device=device).reshape(-1, 1)


def column_rows(column: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``start:stop`` of a ``[B, 1]`` sigma column; a ``[1, 1]`` column applies to every row."""
    return column if column.shape[0] == 1 else column[start:stop]


def _positive(name: str, sigma) -> None:
    if not bool((torch.as_tensor(sigma) > 0).all()):
        raise ValueError(f"{name}: noise levels must be > 0, got {sigma}")


def probability_flow(denoise, x: torch.Tensor, sigma_from, sigma_to, max_step: float, progress: bool = False):
    """``x [B, D]`` carried from sigma_from to sigma_to (both > 0) along dx/dσ = (x - denoise(x, σ)) / σ.

    Classical RK4 in t = log σ on y = x / √σ (dy/dt = y / 2 - D(√σ y, σ) / √σ), in equal steps of at most
    ``max_step``: along a data direction of variance λ the exact flow scales x - mean by √(λ + σ²), a rate in [0, 1]
    per unit of log σ that this variable centres on [-½, ½], where RK4 errs least.
    """
    _positive("sigma_from", sigma_from)
    _positive("sigma_to", sigma_to)
    if not max_step > 0:
        raise ValueError(f"max_step: {max_step} must be > 0")
    start = sigma_column(sigma_from, x.device).log()  # [B|1, 1]
    end = sigma_column(sigma_to, x.device).log()  # [B|1, 1]
    n = math.ceil(float((end - start).abs().max()) / max_step)
    h = (end - start) / max(n, 1)  # [B|1, 1]

    def f(y, t):
        root = (t / 2).exp()  # √σ
        return y / 2 - denoise(root * y, t.exp()) / root

    y = x.to(F64) / (start / 2).exp()  # [B, D]
    for i in tqdm(range(n), desc="teleport", unit="step", disable=not progress, leave=False):
        t = start + i * h
        k1 = f(y, t)
        k2 = f(y + h / 2 * k1, t + h / 2)
        k3 = f(y + h / 2 * k2, t + h / 2)
        k4 = f(y + h * k3, t + h)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return (y * (end / 2).exp()).to(x.dtype)


class AnalyticModel:
    """Base of the analytic models. ``TENSORS``: the constructor's tensor arguments (saved under these names; the
    first one ends in D); ``options()``: its other keyword arguments, which ``to`` and ``load`` keep."""

    TENSORS: tuple[str, ...] = ()
    max_step: float = 0.1  # log-σ step of the ODE jump, for models without a closed form

    def options(self) -> dict:
        return {}

    @property
    def dim(self) -> int:
        return getattr(self, self.TENSORS[0]).shape[-1]

    def to(self, device):
        """The same model with its tensors on ``device`` (do this once, not per sampler step)."""
        return type(self)(**{name: getattr(self, name).to(device) for name in self.TENSORS}, **self.options())

    def denoise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x] for ``x [B, D]`` -> ``[B, D]``."""
        raise NotImplementedError

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """∇ log p_σ(x) = (denoise(x, σ) - x) / σ² (Tweedie) for ``x [B, D]`` -> ``[B, D]``."""
        s = sigma_column(sigma, x.device)
        return ((self.denoise(x, sigma).to(F64) - x.to(F64)) / s.square()).to(x.dtype)

    def teleport(self, x: torch.Tensor, sigma_from, sigma_to, *, max_step: float | None = None,
                 progress: bool = False) -> torch.Tensor:
        """Probability-flow ODE from sigma_from to sigma_to (> 0) for ``x [B, D]`` -> ``[B, D]`` (``probability_flow``
        with ``max_step``, default the model's own)."""
        return probability_flow(self.denoise, x, sigma_from, sigma_to, max_step or self.max_step, progress)

    def save(self, path) -> None:
        """Write the model's tensors as safetensors (identical bytes for identical models)."""
        save_file({name: getattr(self, name).detach().cpu().contiguous() for name in self.TENSORS}, str(path))

    @classmethod
    def load(cls, path, **options):
        """The model ``save`` wrote to ``path``, or the one built from the exact image moments a fitting stage wrote
        there (``hls.moments.Moments``, for models with ``from_moments``); ``options``: its other keywords."""
        tensors = load_file(str(path))
        if set(tensors) == set(Moments.FIELDS):
            return cls.from_moments(Moments(**tensors), **options)
        return cls(**tensors, **options)
