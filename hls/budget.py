"""Budget mode: exactly ``nfe`` UNet evaluations from pure noise. ``plain`` spends them on the sampler's own schedule;
``jump`` carries the noise from sigma_max to ``sigma_skip`` with an analytic model's ``teleport`` and spends them on
the sampler's family laid over [sigma_skip -> end] (``hls.schedules.layout``); ``noise`` starts there from
N(0, sigma_skip² I) instead, with no data at all. heun spends 2 n - 1 evaluations on n steps (odd budgets only).
"""

from __future__ import annotations

import copy
import inspect
import math

import torch

from hls.analytic import F64
from hls.errors import ArgumentError
from hls.gaussian import Gaussian, gaussian_models, sigma_from_alpha_cumprod, ve_to_vp, vp_to_ve
from hls.sampling import progress_loop, sample, seeded, set_steps
from hls.schedules import (
    apply,
    holds_ve,
    layout,
    nearest_timestep,
    noise_level,
    scheduler_name,
    sigma_max,
    sigma_min,
)

STARTS = ("plain", "jump", "noise")
JUMPS = ("gaussian", "isotropic", "mean")  # the study's jumps from the fitted Gaussian (hls.gaussian.gaussian_models)
DDIM_LANDING_TOLERANCE = 0.05  # ddim: the largest relative distance between its grid's first sigma and sigma_skip


def budget_nfe(scheduler, steps: int) -> int:
    """UNet evaluations of ``steps`` steps: ``2 steps - 1`` for heun, ``steps`` for the others."""
    return 2 * steps - 1 if scheduler_name(scheduler) == "heun" else steps


def steps_for_nfe(scheduler, nfe: int) -> int:
    """The step count that spends exactly ``nfe`` evaluations; ArgumentError (naming the nearest reachable budgets)
    when none does. ``scheduler``: a name of ``SCHEDULERS`` or a scheduler instance."""
    name = scheduler_name(scheduler)
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ArgumentError("nfe", nfe, "must be an integer >= 1")
    if name == "heun" and nfe % 2 == 0:
        raise ArgumentError("nfe", nfe, f"heun spends 2 * steps - 1 evaluations, so only odd budgets are reachable: "
                                        f"the nearest are {nfe - 1} and {nfe + 1}")
    return (nfe + 1) // 2 if name == "heun" else nfe


def _check_sigma_skip(scheduler, sigma_skip) -> float:
    lo, hi = sigma_min(scheduler), sigma_max(scheduler)
    allowed = f"must be a number with sigma_min = {lo:.6g} < sigma_skip < sigma_max = {hi:.6g}, the model's range"
    if isinstance(sigma_skip, (bool, str)) or sigma_skip is None:
        raise ArgumentError("sigma_skip", sigma_skip, allowed)
    try:
        value = float(sigma_skip)
    except (TypeError, ValueError):
        raise ArgumentError("sigma_skip", sigma_skip, allowed) from None
    if not lo < value < hi:  # also rejects nan
        raise ArgumentError("sigma_skip", sigma_skip, allowed)
    return value


def budget_schedule(scheduler, *, nfe: int, start: str = "plain", sigma_skip=None, device=None):
    """A copy of ``scheduler`` set to spend exactly ``nfe`` evaluations from ``start`` (see module doc).

    Validates ``nfe``, ``start`` and ``sigma_skip`` (one-line ArgumentError): call it before heavy work. ``plain``
    takes no sigma_skip; ``jump`` / ``noise`` need ``sigma_min < sigma_skip < sigma_max``.
    """
    if start not in STARTS:
        raise ArgumentError("start", start, f"must be one of {', '.join(STARTS)}")
    steps = steps_for_nfe(scheduler, nfe)
    if start == "plain":
        if sigma_skip is not None:
            raise ArgumentError("sigma_skip", sigma_skip, "must be None for start = 'plain' (it starts at the "
                                                          "sampler's own first sigma)")
        plain = copy.deepcopy(scheduler)
        try:
            set_steps(plain, steps, device=device)
        except ArgumentError as err:
            raise ArgumentError("nfe", nfe, f"needs {steps} plain steps: {err.allowed}") from err
        return plain
    sigma = _check_sigma_skip(scheduler, sigma_skip)
    try:
        schedule = layout(scheduler, steps, sigma)
    except ArgumentError as err:
        raise ArgumentError("nfe", nfe, err.allowed) from err
    if scheduler_name(scheduler) == "ddim":  # its one-stride grid may start off sigma_skip: say so when it is far
        top = int(nearest_timestep(scheduler.alphas_cumprod, sigma))
        landed = float(schedule.sigmas[0])
        if abs(landed / sigma - 1) > DDIM_LANDING_TOLERANCE:
            raise ArgumentError("sigma_skip", sigma_skip, f"ddim steps of one stride T // N can start at t = "
                                                          f"{schedule.timesteps[0]} (sigma {landed:.6g}) nearest "
                                                          f"t_skip = {top}, more than {DDIM_LANDING_TOLERANCE:.0%} "
                                                          f"off; pick a sigma_skip near {landed:.4g} or another budget")
    return apply(scheduler, schedule, device=device)


def landing_sigma(scheduler, *, nfe: int, start: str = "plain", sigma_skip=None) -> float:
    """The VE sigma of the budget's first evaluation: where ``jump`` lands and ``noise`` starts (plain: its first)."""
    budget = budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip)
    return float(noise_level(budget, 0)[0])


def _check_model(model, start: str, dim: int) -> None:
    if start != "jump":
        if model is not None:
            raise ArgumentError("model", type(model).__name__, f"must be None for start = {start!r} (only 'jump' "
                                                               "uses an analytic model)")
        return
    if model is None or not callable(getattr(model, "teleport", None)):
        raise ArgumentError("model", None if model is None else type(model).__name__,
                            "start = 'jump' needs an analytic model with teleport(x, sigma_from, sigma_to)")
    if getattr(model, "dim", dim) != dim:
        raise ArgumentError("model", f"{type(model).__name__} of dimension {model.dim}",
                            f"must have the dimension C*H*W = {dim} of the images")


def start_model(start: str, gaussian: Gaussian) -> tuple[str, Gaussian | None]:
    """A start of the study (``plain``, ``noise`` or one of ``JUMPS``) -> ``(start, model)`` for ``sample_budget``:
    a jump's model is ``gaussian_models(gaussian)[start]``: N(μ, Σ), N(μ, tr(Σ)/D · I) or the point mass at μ."""
    if start in JUMPS:
        return "jump", gaussian_models(gaussian)[start]
    if start not in ("plain", "noise"):
        raise ArgumentError("start", start, f"must be one of plain, noise, {', '.join(JUMPS)}")
    return start, None


def initial_state(scheduler, budget, noise: torch.Tensor, start: str, model) -> torch.Tensor:
    """The sampler's state ``[B, C, H, W]`` at the first noise level of ``budget`` (``budget_schedule``) from standard
    normal ``noise [B, C, H, W]``: noise at sigma_max carried there by ``model.teleport``, or noise at that level."""
    flat = noise.reshape(noise.shape[0], -1).to(F64)  # [B, D]
    sigma_to, a_to = noise_level(budget, 0)
    if start == "noise":
        x_ve = sigma_to.item() * flat
    else:  # the pure noise the sampler itself starts from at sigma_max, carried to sigma_to by the exact jump
        a_max = scheduler.alphas_cumprod[-1].to(F64)
        hi = sigma_from_alpha_cumprod(a_max)
        x_max = hi.item() * flat if holds_ve(budget) else vp_to_ve(flat, a_max)
        x_ve = model.teleport(x_max, hi, sigma_to)
    x = x_ve if holds_ve(budget) else ve_to_vp(x_ve, a_to)
    return x.reshape(noise.shape).to(noise.dtype)


def sample_budget(unet, scheduler, noise: torch.Tensor, *, nfe: int, start: str = "plain", sigma_skip=None,
                  model=None, generator=None, progress=False) -> torch.Tensor:
    """Sample with exactly ``nfe`` UNet evaluations from standard normal ``noise [B, C, H, W]``; return x0.

    ``start``: ``plain`` (``hls.sampling.sample`` with ``steps_for_nfe(nfe)`` steps), ``jump`` (``model.teleport``
    from sigma_max to ``sigma_skip``, then the budget schedule) or ``noise`` (started at ``sigma_skip`` from
    N(0, sigma_skip² I)). ``generator`` (one or a list of B) feeds ddpm's per-step noise; ``progress`` as in
    ``hls.sampling.sample``. Runs on ``noise``'s device and dtype; the UNet must live there. ``scheduler`` is not
    modified.
    """
    _check_model(model, start, noise[0].numel())
    budget = budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip, device=noise.device)
    if isinstance(generator, list) and len(generator) != noise.shape[0]:
        raise ArgumentError("generator", f"a list of {len(generator)}", f"needs one per image ({noise.shape[0]})")
    if start == "plain":
        return sample(unet, budget, noise, steps=steps_for_nfe(budget, nfe), generator=generator, progress=progress)
    if model is not None:
        model = model.to(noise.device)
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(budget.step).parameters else {}

    with torch.inference_mode():
        # the start: the exact jump from sigma_max, or plain noise, at the schedule's first noise level
        x = initial_state(scheduler, budget, noise, start, model)
        # the budget: diffusers' own loop over the laid-out schedule
        for t in progress_loop(budget.timesteps, progress, desc=f"sample {start} nfe={nfe}"):
            eps = unet(budget.scale_model_input(x, t), t).sample
            x = budget.step(eps, t, x, **step_kwargs).prev_sample
    return x.clone()


def sample_budget_seeded(unet, scheduler, seeds, *, shape, nfe: int, start: str = "plain", sigma_skip=None,
                         model=None, batch_size: int = 64, device="cpu", progress: bool = False) -> torch.Tensor:
    """One image per seed with ``sample_budget``: ``[len(seeds), C, H, W]`` float32 on CPU, image i from seed i only
    (``hls.sampling.seeded``). ``shape`` is ``(C, H, W)``; the UNet must live on ``device``. All arguments are checked
    before the first batch."""
    _check_model(model, start, math.prod(shape))
    budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip)
    if model is not None:
        model = model.to(device)  # once, not per batch
    return seeded(lambda noise, generators: sample_budget(unet, scheduler, noise, nfe=nfe, start=start,
                                                          sigma_skip=sigma_skip, model=model, generator=generators),
                  seeds, shape=shape, batch_size=batch_size, device=torch.device(device),
                  dtype=getattr(unet, "dtype", torch.float32), desc=f"sample {start} nfe={nfe}", progress=progress)
