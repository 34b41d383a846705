"""Budget mode: exactly ``nfe`` UNet evaluations from pure noise. ``plain`` spends them on the sampler's own schedule;
``jump`` carries the noise from sigma_max to ``sigma_skip`` with an analytic model's ``teleport`` and spends them on
the sampler's family laid over [sigma_skip -> end] (``hls.schedules.layout``); ``noise`` starts there from
N(0, sigma_skip² I) instead, with no data at all. heun spends 2 n - 1 evaluations on n steps (odd budgets only).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from hls.analytic import F64
from hls.errors import ArgumentError, check_generators, check_integer
from hls.gaussian import Gaussian, gaussian_models, sigma_from_alpha_cumprod, ve_to_vp, vp_to_ve
from hls.sampling import run, seeded, set_steps
from hls.schedules import (
    OPTIMIZABLE,
    Schedule,
    apply,
    holds_ve,
    layout,
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
    check_integer("nfe", nfe)
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


def _check_model(model, start: str, dim: int | None) -> None:
    if start != "jump":
        if model is not None:
            raise ArgumentError("model", type(model).__name__, f"must be None for start = {start!r} (only 'jump' "
                                                               "uses an analytic model)")
        return
    if model is None or not callable(getattr(model, "teleport", None)):
        raise ArgumentError("model", None if model is None else type(model).__name__,
                            "start = 'jump' needs an analytic model with teleport(x, sigma_from, sigma_to)")
    if dim is not None and getattr(model, "dim", dim) != dim:
        raise ArgumentError("model", f"{type(model).__name__} of dimension {model.dim}",
                            f"must have the dimension C*H*W = {dim} of the images")


def _plain(scheduler, steps: int, nfe: int, device):
    plain = copy.deepcopy(scheduler)
    try:
        set_steps(plain, steps, device=device)
    except ArgumentError as err:
        raise ArgumentError("nfe", nfe, f"needs {steps} plain steps: {err.allowed}") from err
    return plain


def _laid_out(scheduler, steps: int, nfe: int, sigma: float, device):
    try:
        schedule = layout(scheduler, steps, sigma)
    except ArgumentError as err:
        raise ArgumentError("nfe", nfe, err.allowed) from err
    landed = float(schedule.sigmas[0])
    if scheduler_name(scheduler) == "ddim" and abs(landed / sigma - 1) > DDIM_LANDING_TOLERANCE:
        raise ArgumentError("sigma_skip", sigma, f"ddim steps of one stride T // N can start at t = "
                                                 f"{schedule.timesteps[0]} (sigma {landed:.6g}), more than "
                                                 f"{DDIM_LANDING_TOLERANCE:.0%} off; pick a sigma_skip near "
                                                 f"{landed:.4g} or another budget")
    return apply(scheduler, schedule, device=device)


@dataclass(frozen=True)
class Budget:
    """A budget laid out and checked once (``prepare``), handed to ``sample_budget``: ``sampler``, a copy of the
    scheduler set to take its steps (each call samples with a fresh copy of it); ``nfe``; ``start`` (``STARTS``);
    ``model``, the jump's analytic model (None otherwise); ``landing``, the VE sigma of the first evaluation (where a
    jump lands and ``noise`` starts; plain: the sampler's own first sigma)."""

    sampler: SchedulerMixin
    nfe: int
    start: str
    model: object
    landing: float


def _placed(scheduler, schedule: Schedule, steps: int, start: str, sigma_skip, device):
    """A given schedule (``hls.optimize``): ``steps`` steps of a sampler that takes placed steps, starting at
    sigma_max (plain) or at ``sigma_skip`` (its first sigma), ending where the scheduler ends."""
    name = scheduler_name(scheduler)
    if name not in OPTIMIZABLE:
        raise ArgumentError("schedule", f"a placed schedule for {name}", f"only {', '.join(OPTIMIZABLE)} take one")
    first, top = float(schedule.sigmas[0]), sigma_max(scheduler)
    starts_right = abs(first / top - 1) < 1e-6 if start == "plain" else float(sigma_skip) == first
    if schedule.steps != steps or not starts_right:
        raise ArgumentError("schedule", f"{schedule.steps} steps from sigma {first:.6g}", f"must be {steps} steps from "
                                        f"{'sigma_max' if start == 'plain' else f'sigma_skip = {sigma_skip}'}")
    return apply(scheduler, schedule, device=device)


def prepare(scheduler, *, nfe: int, start: str = "plain", sigma_skip=None, model=None, dim: int | None = None,
            schedule: Schedule | None = None, device=None) -> Budget:
    """Lay out and check a budget of exactly ``nfe`` evaluations from ``start`` (see module doc), once, before any
    heavy work (one-line ArgumentErrors). ``plain`` takes no sigma_skip; ``jump`` / ``noise`` need ``sigma_min <
    sigma_skip < sigma_max``; ``jump`` needs an analytic ``model`` (of dimension ``dim`` = C*H*W when given), moved to
    ``device`` here. ``schedule``: steps placed by ``hls.optimize`` instead of the family's (from sigma_max, or from
    sigma_skip). ``scheduler`` is not modified."""
    if start not in STARTS:
        raise ArgumentError("start", start, f"must be one of {', '.join(STARTS)}")
    steps = steps_for_nfe(scheduler, nfe)
    _check_model(model, start, dim)
    if start == "plain" and sigma_skip is not None:
        raise ArgumentError("sigma_skip", sigma_skip, "must be None for start = 'plain' (it starts at the sampler's "
                                                      "own first sigma)")
    if start != "plain":
        sigma_skip = _check_sigma_skip(scheduler, sigma_skip)
    if schedule is not None:
        sampler = _placed(scheduler, schedule, steps, start, sigma_skip, device)
    elif start == "plain":
        sampler = _plain(scheduler, steps, nfe, device)
    else:
        sampler = _laid_out(scheduler, steps, nfe, sigma_skip, device)
    return Budget(sampler, nfe, start, None if model is None else model.to(device or "cpu"),
                  float(noise_level(sampler, 0)[0]))


def start_model(start: str, gaussian: Gaussian) -> tuple[str, Gaussian | None]:
    """A start of the study (``plain``, ``noise`` or one of ``JUMPS``) -> ``(start, model)`` for ``sample_budget``:
    a jump's model is ``gaussian_models(gaussian)[start]``: N(μ, Σ), N(μ, tr(Σ)/D · I) or the point mass at μ."""
    if start in JUMPS:
        return "jump", gaussian_models(gaussian)[start]
    if start not in ("plain", "noise"):
        raise ArgumentError("start", start, f"must be one of plain, noise, {', '.join(JUMPS)}")
    return start, None


def initial_state(budget: Budget, noise: torch.Tensor) -> torch.Tensor:
    """The sampler's state ``[B, C, H, W]`` at ``budget.landing`` from standard normal ``noise [B, C, H, W]``: the
    sampler's own pure noise at sigma_max carried there by the jump, noise at that level, or (plain) its own start."""
    sampler = budget.sampler
    if budget.start == "plain":
        return noise * sampler.init_noise_sigma
    flat = noise.reshape(noise.shape[0], -1).to(F64)  # [B, D]
    sigma_to, a_to = noise_level(sampler, 0)
    if budget.start == "noise":
        x_ve = sigma_to.item() * flat
    else:  # the pure noise the sampler itself starts from at sigma_max, carried to sigma_to by the exact jump
        a_max = sampler.alphas_cumprod[-1].to(F64)
        hi = sigma_from_alpha_cumprod(a_max)
        x_max = hi.item() * flat if holds_ve(sampler) else vp_to_ve(flat, a_max)
        x_ve = budget.model.teleport(x_max, hi, sigma_to)
    x = x_ve if holds_ve(sampler) else ve_to_vp(x_ve, a_to)
    return x.reshape(noise.shape).to(noise.dtype)


def sample_budget(unet, budget: Budget, noise: torch.Tensor, *, generator=None, progress=False) -> torch.Tensor:
    """Sample ``budget`` (``prepare``) from standard normal ``noise [B, C, H, W]``; return x0 ``[B, C, H, W]``.

    ``generator`` (one or a list of B) feeds ddpm's per-step noise; ``progress`` as in ``hls.sampling.sample``. Runs
    on ``noise``'s device and dtype; the UNet and the budget's model must live there."""
    check_generators(generator, noise.shape[0])
    sampler = copy.deepcopy(budget.sampler)  # a fresh state: step index, multistep history
    with torch.inference_mode():
        # the start: the exact jump from sigma_max, plain noise at the landing, or the sampler's own start
        x = initial_state(budget, noise)
        # the budget: diffusers' own loop over the laid-out schedule
        x = run(unet, sampler, x, sampler.timesteps, generator=generator, progress=progress,
                desc=f"sample {budget.start} nfe={budget.nfe}")
    return x.clone()


def sample_budget_seeded(unet, budget: Budget, seeds, *, shape, batch_size: int = 64, device="cpu",
                         progress: bool = False) -> torch.Tensor:
    """One image per seed with ``sample_budget``: ``[len(seeds), C, H, W]`` float32 on CPU, image i from seed i only
    (``hls.sampling.seeded``). ``shape`` is ``(C, H, W)``; the UNet and the budget's model must live on ``device``."""
    return seeded(lambda noise, generators: sample_budget(unet, budget, noise, generator=generators),
                  seeds, shape=shape, batch_size=batch_size, device=torch.device(device),
                  dtype=getattr(unet, "dtype", torch.float32), desc=f"sample {budget.start} nfe={budget.nfe}",
                  progress=progress)
