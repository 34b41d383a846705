"""How well analytic scores explain a trained network's score across noise levels, and the skip that predicts.

For real images ``x0`` and a VE noise level ``sigma`` (``x = x0 + sigma * eps``), the network's epsilon prediction
``eps_hat = unet(ve_to_vp(x, a_t), t).sample`` gives the neural denoiser ``x - sigma * eps_hat`` and the neural
(VE) score ``-eps_hat / sigma``; each analytic model (``approximations``) gives its own denoiser and score at the
same ``x``. Two metrics, per image i and per space
(``s`` = denoiser or score, ``nn`` = network, ``a`` = approximation):

- explained variance. Aggregate (the headline ``value``, as Wang & Vastola define it):
  ``EV = 1 - Σ_i ‖s_nn,i - s_a,i‖² / Σ_i ‖s_nn,i‖²``. Per image (for the spread columns):
  ``EV_i = 1 - ‖s_nn,i - s_a,i‖² / ‖s_nn,i‖²``, so that ``EV`` is the ``‖s_nn,i‖²``-weighted mean of ``EV_i``.
- relative error ``RE_i = ‖s_a,i - s_nn,i‖ / ‖s_nn,i‖``; ``value`` is its mean over images.

The noise ``eps`` of image i at timestep t depends only on ``(seed, i, t)``, so results do not depend on the batch
size, on the other images or on the other grid points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hls.analytic import F64
from hls.errors import ArgumentError, check_integer
from hls.gaussian import Gaussian, gaussian_models, ve_to_vp
from hls.mixture import MIXTURES, DeltaMixture, LowRankGaussian
from hls.schedules import model_sigmas, nearest_timestep

APPROXIMATIONS = ("gaussian", "isotropic", "mean", "lowrank", "gmm_classes", "gmm_kmeans", "delta")  # approximations()
SPACES = ("denoiser", "score")
METRICS = ("explained_variance", "relative_error")
COLUMNS = ("sigma", "timestep", "approx", "space", "metric", "value", "mean", "std", "q10", "q50", "q90", "n")


# σ grid


def sigma_grid(alphas_cumprod, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` log-spaced sigmas over the model's range, snapped to training timesteps.

    The grid ``logspace(σ(t=0), σ(t=T-1), n)`` is mapped to the nearest timesteps (``hls.schedules.nearest_timestep``);
    repeated timesteps (possible at the low end for large n) are kept once. Returns ``(sigmas float64 [m],
    timesteps long [m])``, ``m <= n``, ascending, where ``sigmas`` are the exact sigmas of those timesteps.
    """
    check_integer("n", n)
    all_sigmas = model_sigmas(alphas_cumprod)  # [T]
    lo, hi = float(all_sigmas.min()), float(all_sigmas.max())
    targets = torch.logspace(np.log10(lo), np.log10(hi), n, dtype=F64)  # [n]
    timesteps = torch.unique(torch.from_numpy(nearest_timestep(alphas_cumprod, targets.numpy())))  # ascending
    return all_sigmas[timesteps], timesteps


# analytic models


def approximations(gaussian: Gaussian, mixtures: dict | None = None, points: torch.Tensor | None = None, *,
                   rank: int | None = None) -> dict:
    """The analytic models of ``APPROXIMATIONS`` that the arguments give, in that order: the three of
    ``hls.gaussian.gaussian_models``; lowrank, the top ``rank`` eigenpairs of Σ plus an isotropic rest; the fitted
    ``mixtures`` (``hls.mixture.fit_mixtures``); delta, the training images ``points [N, D]`` themselves."""
    models = gaussian_models(gaussian)
    if rank is not None:
        models["lowrank"] = LowRankGaussian.from_gaussian(gaussian, rank)
    models |= {name: (mixtures or {})[name] for name in MIXTURES if name in (mixtures or {})}
    if points is not None:
        models["delta"] = DeltaMixture(points)
    return models


# per-image noise


def image_seed(seed: int, index: int, timestep: int) -> int:
    """A 64-bit generator seed that depends only on ``(seed, index, timestep)`` (numpy's SeedSequence hash)."""
    return int(np.random.SeedSequence([int(seed), int(index), int(timestep)]).generate_state(1, np.uint64)[0])


def image_noise(shape, indices, timestep: int, seed: int = 0) -> torch.Tensor:
    """Standard normal noise for images ``indices [B]`` at ``timestep`` -> float32 ``[B, *shape]`` on the CPU.

    Row b is drawn from its own generator seeded with ``image_seed(seed, indices[b], timestep)``.
    """
    rows = [
        torch.randn(tuple(shape), generator=torch.Generator().manual_seed(image_seed(seed, i, timestep)))
        for i in (int(i) for i in indices)
    ]
    return torch.stack(rows) if rows else torch.empty(0, *shape)


# the measurement


def _model_dtype(unet, default: torch.dtype) -> torch.dtype:
    """The dtype of the model's first parameter, or ``default`` for a model without parameters."""
    param = next(iter(unet.parameters()), None) if hasattr(unet, "parameters") else None
    return default if param is None else param.dtype


def per_image_errors(s_nn: torch.Tensor, s_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(‖s_nn - s_a‖², ‖s_nn‖²)`` per row of ``[B, D]`` inputs -> two float64 ``[B]``."""
    s_nn, s_a = s_nn.to(F64), s_a.to(F64)
    return (s_nn - s_a).square().sum(1), s_nn.square().sum(1)


def summarize(err2: np.ndarray, ref2: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-image ``err2 = ‖s_nn - s_a‖² [N]`` and ``ref2 = ‖s_nn‖² [N]`` -> ``{metric: {value, mean, std, q...}}``.

    ``value`` is the aggregate of the module docstring, the other keys the spread of EV_i / RE_i (``std`` ddof=1).
    """
    ratio = err2 / ref2  # [N]
    per_image = {"explained_variance": 1 - ratio, "relative_error": np.sqrt(ratio)}
    aggregate = {"explained_variance": 1 - err2.sum() / ref2.sum(), "relative_error": np.sqrt(ratio).mean()}
    out = {}
    for metric in METRICS:
        v = per_image[metric]
        q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
        out[metric] = {
            "value": float(aggregate[metric]),
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
            "q10": float(q10),
            "q50": float(q50),
            "q90": float(q90),
            "n": len(v),
        }
    return out


def score_errors(unet, alphas_cumprod, models: dict, x0: torch.Tensor, timesteps, *, seed: int = 0,
                 batch_size: int = 256, device="cpu", progress: bool = False) -> pd.DataFrame:
    """Neural vs analytic denoisers and scores on noised real images, at each of ``timesteps``.

    unet: epsilon-prediction model called as ``unet(x_vp [B, C, H, W], t long [B]).sample`` (in eval mode, on
    ``device``); alphas_cumprod: its training schedule ``[T]``; models: ``{name: analytic model}`` on
    ``D = C*H*W`` with ``score(x, σ)``, ``denoise(x, σ)`` and ``to(device)`` (e.g. ``approximations(gaussian)``);
    x0: real images ``[N, C, H, W]`` in [-1, 1]; timesteps: ``[n]`` training timesteps (e.g. from ``sigma_grid``).

    For timestep t with ``a = alphas_cumprod[t]``, ``σ = sigma_from_alpha_cumprod(a)`` and image i:
    ``x = x0_i + σ ε`` (float64, ``ε = image_noise(..., [i], t, seed)``), ``eps_hat = unet(ve_to_vp(x, a), t)``
    (input in the model's dtype), neural denoiser ``x - σ eps_hat``, neural score ``-eps_hat / σ``; each
    approximation's ``denoise(x, σ)`` and its score ``(denoise(x, σ) - x) / σ²`` (Tweedie; one call per model);
    metrics as in the module docstring.

    Returns a tidy DataFrame, one row per (timestep, approx, space, metric) with columns ``COLUMNS``:
    sigma, timestep, approx, space, metric, value (aggregate EV / mean RE), mean, std, q10, q50, q90 (over
    images, of EV_i / RE_i), n (images).
    """
    n, c, h, w = x0.shape
    dims = c * h * w
    for name, model in models.items():
        if model.dim != dims:
            raise ArgumentError("models", name, f"has D = {model.dim}, the images {tuple(x0.shape[1:])} D = {dims}")
    models = {name: model.to(device) for name, model in models.items()}
    model_sigma = model_sigmas(alphas_cumprod)  # [T]
    a_all = torch.as_tensor(alphas_cumprod).detach().cpu().to(F64)  # [T]
    dtype = _model_dtype(unet, x0.dtype)
    rows = []
    with torch.inference_mode():
        for t in tqdm([int(t) for t in timesteps], desc="score_error", disable=not progress):
            a, sigma = a_all[t], float(model_sigma[t])
            err2 = {(name, space): [] for name in models for space in SPACES}
            ref2 = {space: [] for space in SPACES}
            for start in range(0, n, batch_size):
                index = torch.arange(start, min(start + batch_size, n))  # [B]
                # noised images in VE terms (float64)
                clean = x0[start:start + len(index)].reshape(-1, dims).to(device, F64)  # [B, D]
                eps = image_noise((dims,), index, t, seed).to(device, F64)  # [B, D]
                x = clean + sigma * eps  # [B, D]
                # neural epsilon -> neural denoiser and score
                x_vp = ve_to_vp(x, a).to(dtype).reshape(-1, c, h, w)  # [B, C, H, W]
                t_batch = torch.full((len(index),), t, dtype=torch.long, device=device)
                eps_hat = unet(x_vp, t_batch).sample.reshape(-1, dims).to(F64)  # [B, D]
                neural = {"denoiser": x - sigma * eps_hat, "score": -eps_hat / sigma}
                # each analytic model at the same x
                for name, model in models.items():
                    denoised = model.denoise(x, sigma)  # [B, D]; the score by Tweedie, which every model obeys
                    analytic = {"denoiser": denoised, "score": (denoised - x) / sigma**2}
                    for space in SPACES:
                        e2, r2 = per_image_errors(neural[space], analytic[space])
                        err2[name, space].append(e2.cpu())
                        if name == next(iter(models)):
                            ref2[space].append(r2.cpu())
            # aggregate over all images (independent of the batch split)
            for name in models:
                for space in SPACES:
                    stats = summarize(torch.cat(err2[name, space]).numpy(), torch.cat(ref2[space]).numpy())
                    for metric in METRICS:
                        rows.append({"sigma": sigma, "timestep": t, "approx": name, "space": space,
                                     "metric": metric, **stats[metric]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


# the prediction


def critical_sigma(df: pd.DataFrame, threshold: float = 0.999, approx: str = "gaussian",
                   space: str = "score") -> float | None:
    """σ*: the largest grid σ at which ``approx``'s aggregate explained variance in ``space`` is below ``threshold``.

    Reads the ``explained_variance`` rows of a ``score_errors`` frame. None when the EV is >= threshold at every σ.
    Literal rule: a dip at a high σ counts even if the EV recovers below it; resolution is the σ grid's.
    """
    rows = df[(df["metric"] == "explained_variance") & (df["approx"] == approx) & (df["space"] == space)]
    if rows.empty:
        raise ValueError(f"critical_sigma: no explained_variance rows for approx={approx!r}, space={space!r}")
    below = rows.loc[rows["value"] < threshold, "sigma"]
    return None if below.empty else float(below.max())


def predicted_skip(sigmas_of_steps, sigma_star: float | None) -> int:
    """How many initial sampler steps the Gaussian teleport can replace before the network is needed at σ*.

    ``sigmas_of_steps [S]``: VE sigma of the sample entering each sampler step, descending (``hls.sampling.sigma_skip``
    for k = 0 .. S-1; a trailing 0 as in k-diffusion is allowed). Skipping k steps teleports from ``sigmas[0]`` to
    the landing sigma ``sigmas[k]`` (0 <= k < S, as ``hls.sampling.sample``), and step k-1 lands there. Rule: the
    predicted skip is the largest k with ``sigmas[k] >= sigma_star`` (k >= 1), i.e. the number of j in 1..S-1 with
    ``sigmas[j] >= sigma_star``; 0 when even the first step would land below σ*. ``sigma_star=None`` (the Gaussian
    is never below threshold) counts every j >= 1 with ``sigmas[j] > 0``.
    """
    s = torch.as_tensor(sigmas_of_steps, dtype=F64).reshape(-1)
    if len(s) > 1 and not bool((s[1:] <= s[:-1]).all()):
        raise ValueError(f"predicted_skip: sigmas_of_steps must be descending, got {s.tolist()}")
    landing = s[1:]  # [S-1]
    if sigma_star is None:
        return int((landing > 0).sum())
    return int((landing >= sigma_star).sum())


# the figure


def plot(df: pd.DataFrame, *, threshold: float | None = None, sigma_star: float | None = None):
    """Figure of a ``score_errors`` frame: columns = spaces, rows = explained variance, 1 - EV (log), relative error.

    x: σ (log); one line per approximation (value), shaded q10..q90 over images. ``threshold`` draws the EV
    threshold, ``sigma_star`` a vertical line at σ*. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    approx_order = [a for a in APPROXIMATIONS if a in set(df["approx"])]
    approx_order += sorted(set(df["approx"]) - set(approx_order))
    colors = dict(zip(approx_order, sns.color_palette("colorblind", len(approx_order))))
    panels = [  # (metric, transform of value/quantiles, y label, log y)
        ("explained_variance", lambda v: v, "explained variance", False),
        ("explained_variance", lambda v: 1 - v, "unexplained variance 1 - EV", True),
        ("relative_error", lambda v: v, "relative error ‖s_a - s_nn‖ / ‖s_nn‖", True),
    ]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(panels), len(SPACES), figsize=(5 * len(SPACES), 3.2 * len(panels)),
                                 sharex=True, squeeze=False)
        for row, (metric, transform, label, log_y) in enumerate(panels):
            for col, space in enumerate(SPACES):
                ax = axes[row, col]
                sub = df[(df["metric"] == metric) & (df["space"] == space)].sort_values("sigma")
                frame = sub.assign(y=transform(sub["value"]))
                sns.lineplot(data=frame, x="sigma", y="y", hue="approx", hue_order=approx_order, palette=colors,
                             marker="o", markersize=4, errorbar=None, ax=ax, legend=row == 0 and col == 0)
                for name in approx_order:
                    part = sub[sub["approx"] == name]
                    lo, hi = transform(part["q10"]), transform(part["q90"])
                    ax.fill_between(part["sigma"], np.minimum(lo, hi), np.maximum(lo, hi), color=colors[name],
                                    alpha=0.15, linewidth=0)
                if threshold is not None and metric == "explained_variance":
                    ax.axhline(threshold if not log_y else 1 - threshold, color="grey", linestyle="--", linewidth=1)
                if sigma_star is not None:
                    ax.axvline(sigma_star, color="grey", linestyle=":", linewidth=1)
                ax.set_xscale("log")
                if log_y:
                    ax.set_yscale("log")
                else:
                    low = float(frame["y"].min()) if len(frame) else 0.0
                    ax.set_ylim(max(low, -0.5) - 0.05, 1.02)
                ax.set_title(f"{space} space" if row == 0 else "")
                ax.set_xlabel("σ (VE)")
                ax.set_ylabel(label)
        fig.tight_layout()
    return fig
