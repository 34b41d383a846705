"""Budget mode: exactly ``nfe`` UNet evaluations, spent on [sigma_skip -> end] after an analytic jump, or on the plain
sampler's own schedule.

Three starts, all at the same NFE (heun spends 2 n - 1 evaluations on n steps, so only odd budgets are reachable):

- ``plain``: the sampler's own n-step schedule from its first sigma: ``hls.sampling.sample(steps=n)``, unchanged.
- ``jump``: standard normal noise at ``sigma_max`` (the model's largest noise level, training timestep T - 1; held as
  the sampler's own start holds it: the VE sample ``sigma_max * noise`` for euler / heun, the VP sample ``noise`` for
  the others) is carried to ``sigma_skip`` by ``model.teleport`` in VE terms, float64, with any analytic model:
  ``Gaussian`` (the study's ``gaussian``), ``Gaussian.isotropic(mean, var)`` (``isotropic``), the point mass
  ``Gaussian.isotropic(mean, 0.0)`` (``mean``), the mixtures of ``hls.mixture``. Then the budget schedule runs.
- ``noise``: no data at all: the sampler simply starts at ``sigma_skip`` from the VE sample ``sigma_skip * noise``,
  i.e. N(0, sigma_skip^2 I), then the same budget schedule.

The budget schedule over [sigma_skip -> end] (``budget_schedule``) is the sampler's own kind of schedule, laid out by
diffusers' own ``set_timesteps`` wherever a scheduler lets it:

- euler: Karras (rho = 7) sigmas from sigma_skip to ``sigma_min`` (training timestep 0), then 0, through diffusers'
  custom-sigmas API ``set_timesteps(sigmas=...)``.
- heun, dpmsolver, unipc: the same Karras sigmas. None of them takes custom sigmas (heun and dpmsolver take custom
  ``timesteps=`` but refuse them together with Karras sigmas; unipc takes ``sigmas=`` only for flow-matching models),
  so a copy of the scheduler gets ``use_karras_sigmas=True`` and the range ``sigma_min`` / ``sigma_max = sigma_skip``
  in its config, which diffusers' own Karras conversion (``_convert_to_karras``) reads, and its own
  ``set_timesteps(n)`` does the rest. As in their plain Karras mode, dpmsolver and unipc hand the UNet the training
  timestep rounded to an integer (the sigmas themselves stay exact). Note: the plain dpmsolver / unipc of
  ``hls.sampling.make_scheduler`` space their timesteps linearly in t, not Karras; euler and heun are Karras in both.
- ddpm: the DDIM/DDPM spacing (integer timesteps, evenly spaced) restricted to [t_skip -> 0]: ``steps`` evenly spaced
  integer timesteps from t_skip down to 0, where t_skip is the training timestep nearest sigma_skip in log sigma
  (``hls.score_error.timestep_for_sigma``); through diffusers' custom-timesteps API ``set_timesteps(timesteps=...)``.
- ddim: DDIMScheduler has no custom-timesteps API, and its ``step`` goes from t to ``t - T // num_inference_steps``,
  so its steps must keep one stride ``s = T // N`` (as its own "leading" spacing does): ``t0, t0 - s, ...`` with the
  last timestep in [0, s), t0 the top of such a grid nearest t_skip (see ``_ddim_timesteps``). The two attributes its
  own ``set_timesteps`` sets are set the same way: ``timesteps`` and ``num_inference_steps = N``. t0 is usually
  t_skip itself: with at most 30 steps, sigma_skip in 0.5 .. 80 on the DDPM training schedule lands within 4 % of
  it; a landing more than ``DDIM_LANDING_TOLERANCE`` away is an ArgumentError (happens from ~40 steps on).

So the state lands exactly at the schedule's first noise level (``landing_sigma``): sigma_skip in float32 for the Karras
schedulers, the sigma of the first training timestep for ddim / ddpm. The last step of every schedule returns the x0
prediction. The caller's scheduler is never modified: each call works on a copy.
"""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from hls import sampling
from hls.errors import ArgumentError
from hls.gaussian import F64, Gaussian, sigma_from_alpha_cumprod, ve_to_vp, vp_to_ve
from hls.sampling import _VE_SAMPLE, SCHEDULERS, _noise_level
from hls.score_error import approximations, timestep_for_sigma

STARTS = ("plain", "jump", "noise")
JUMPS = ("gaussian", "isotropic", "mean")  # the study's analytic starts: jumps with hls.score_error.approximations
RHO = 7.0  # Karras et al.'s spacing exponent, also diffusers' _convert_to_karras
DDIM_LANDING_TOLERANCE = 0.05  # ddim: the largest relative distance between landing_sigma and sigma_skip


def _scheduler_name(scheduler) -> str:
    """``scheduler`` (a name of ``SCHEDULERS`` or an instance of one of their classes) -> its name."""
    if isinstance(scheduler, str):
        if scheduler not in SCHEDULERS:
            raise ArgumentError("scheduler", scheduler, f"must be one of {', '.join(SCHEDULERS)}")
        return scheduler
    for name, (cls, _) in sampling._SCHEDULER_CLASSES.items():
        if type(scheduler) is cls:
            return name
    raise ArgumentError("scheduler", type(scheduler).__name__, f"must be a scheduler of {', '.join(SCHEDULERS)} "
                                                               "(hls.sampling.make_scheduler)")


def budget_nfe(scheduler, steps: int) -> int:
    """UNet evaluations of ``steps`` steps: ``2 steps - 1`` for heun, ``steps`` for the others."""
    return 2 * steps - 1 if _scheduler_name(scheduler) == "heun" else steps


def steps_for_nfe(scheduler, nfe: int) -> int:
    """The step count that spends exactly ``nfe`` evaluations; ArgumentError (naming the nearest reachable budgets)
    when none does. ``scheduler``: a name of ``SCHEDULERS`` or a scheduler instance."""
    name = _scheduler_name(scheduler)
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ArgumentError("nfe", nfe, "must be an integer >= 1")
    if name == "heun" and nfe % 2 == 0:
        raise ArgumentError("nfe", nfe, f"heun spends 2 * steps - 1 evaluations, so only odd budgets are reachable: "
                                        f"the nearest are {nfe - 1} and {nfe + 1}")
    return (nfe + 1) // 2 if name == "heun" else nfe


def sigma_min(scheduler) -> float:
    """The model's smallest VE sigma (training timestep 0): where every Karras budget schedule ends."""
    return float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[0]))


def sigma_max(scheduler) -> float:
    """The model's largest VE sigma (training timestep T - 1): where every jump starts.

    It is the first sigma of the plain schedule for euler / heun / dpmsolver / unipc at any step count, and for ddim /
    ddpm with "linspace" or "trailing" timestep spacing; with "leading" spacing (make_scheduler's default for ddim /
    ddpm) the plain n-step schedule starts lower, at t = (n - 1) * (T // n): see ``landing_sigma(start="plain")``.
    """
    return float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[-1]))


def karras_sigmas(sigma_hi: float, sigma_lo: float, n: int) -> np.ndarray:
    """``n`` Karras (rho = 7) sigmas from ``sigma_hi`` down to ``sigma_lo`` (float64 ``[n]``; n = 1: ``[sigma_hi]``)."""
    ramp = np.linspace(0, 1, n)
    return (sigma_hi ** (1 / RHO) + ramp * (sigma_lo ** (1 / RHO) - sigma_hi ** (1 / RHO))) ** RHO


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


def _check_room(steps: int, top: int, sigma_skip: float) -> None:
    if steps - 1 > top:
        raise ArgumentError("nfe", steps, f"needs {steps} distinct timesteps in [0, t_skip = {top}] (sigma_skip = "
                                          f"{sigma_skip:.6g}); use a smaller budget or a larger sigma_skip")


def _ddpm_timesteps(top: int, steps: int) -> np.ndarray:
    """``steps`` evenly spaced integer timesteps from ``top`` down to 0 (int64 ``[steps]``, strictly decreasing)."""
    return np.floor(np.linspace(top, 0, steps) + 0.5).astype(np.int64)  # not np.round: half-to-even can tie


def _ddim_timesteps(train_steps: int, top: int, steps: int) -> tuple[np.ndarray, int]:
    """``steps`` timesteps of one DDIM stride ``s = T // N`` from the grid top nearest ``top``; returns (them, N).

    DDIMScheduler.step goes from t to ``t - T // num_inference_steps`` (to alpha = 1 below 0), so the schedule is
    ``t0, t0 - s, ..., t0 - (steps - 1) s`` with its last timestep in [0, s): the last step returns x0. Not every t0 has
    such an integer s (the stride must lie in (t0 / steps, t0 / (steps - 1)]): t0 is the reachable top nearest ``top``
    (ties: the larger stride), at most (steps - 1 - s) / 2 timesteps away, so ``landing_sigma`` may differ a little
    from sigma_skip.
    """
    best = None  # (distance, t0, stride, N)
    for n_inference in range(1, train_steps + 1):  # strides T // N, largest first
        stride = train_steps // n_inference
        lo, hi = (steps - 1) * stride, min(steps * stride - 1, train_steps - 1)
        if lo > hi:
            continue
        t0 = min(max(top, lo), hi)
        if best is None or abs(t0 - top) < best[0]:
            best = (abs(t0 - top), t0, stride, n_inference)
    _, t0, stride, n_inference = best
    return t0 - stride * np.arange(steps, dtype=np.int64), n_inference


def _check_ddim_landing(scheduler, t0: int, top: int, sigma_skip: float) -> None:
    """ArgumentError when the DDIM grid starts more than ``DDIM_LANDING_TOLERANCE`` (relative) away from sigma_skip."""
    landed = float(sigma_from_alpha_cumprod(scheduler.alphas_cumprod[t0]))
    if abs(landed / sigma_skip - 1) > DDIM_LANDING_TOLERANCE:
        raise ArgumentError("sigma_skip", sigma_skip, f"ddim steps of one stride T // N can start at t = {t0} "
                                                      f"(sigma {landed:.6g}) nearest t_skip = {top}, more than "
                                                      f"{DDIM_LANDING_TOLERANCE:.0%} off; pick a sigma_skip near "
                                                      f"{landed:.4g} or another budget")


def budget_schedule(scheduler, *, nfe: int, start: str = "plain", sigma_skip=None, device=None):
    """A copy of ``scheduler`` with the timesteps that spend exactly ``nfe`` evaluations (see module doc).

    Validates ``nfe``, ``start`` and ``sigma_skip`` (ArgumentError, one line): call it before heavy work. ``plain``
    takes no sigma_skip and is ``set_timesteps(steps_for_nfe(nfe))``; ``jump`` / ``noise`` need
    ``sigma_min < sigma_skip < sigma_max``.
    """
    name = _scheduler_name(scheduler)
    if start not in STARTS:
        raise ArgumentError("start", start, f"must be one of {', '.join(STARTS)}")
    steps = steps_for_nfe(name, nfe)
    s = copy.deepcopy(scheduler)
    if start == "plain":
        if sigma_skip is not None:
            raise ArgumentError("sigma_skip", sigma_skip, "must be None for start = 'plain' (it starts at the "
                                                          "sampler's own first sigma)")
        try:
            sampling.nfe(s, steps)
        except ArgumentError as err:
            raise ArgumentError("nfe", nfe, f"needs {steps} plain steps: {err.allowed}") from err
        s.set_timesteps(steps, device=device)
        return s
    sigma = _check_sigma_skip(s, sigma_skip)
    if name in ("ddim", "ddpm"):
        top = timestep_for_sigma(s.alphas_cumprod, sigma)
        _check_room(steps, top, sigma)
        if name == "ddpm":
            s.set_timesteps(timesteps=_ddpm_timesteps(top, steps).tolist(), device=device)
        else:  # what DDIMScheduler.set_timesteps(N) sets, with our timesteps
            timesteps, s.num_inference_steps = _ddim_timesteps(s.config.num_train_timesteps, top, steps)
            _check_ddim_landing(s, int(timesteps[0]), top, sigma)
            s.timesteps = torch.from_numpy(timesteps).to(device)
        return s
    if name == "euler":
        s.set_timesteps(sigmas=[*karras_sigmas(sigma, sigma_min(s), steps), 0.0], device=device)
    else:  # heun, dpmsolver, unipc: their own Karras mode on [sigma_skip, sigma_min]
        s.register_to_config(use_karras_sigmas=True, sigma_min=sigma_min(s), sigma_max=sigma)
        s.set_timesteps(steps, device=device)
    s.set_begin_index(0)  # the first step is index 0, even where rounding repeats a timestep
    return s


def landing_sigma(scheduler, *, nfe: int, start: str = "plain", sigma_skip=None) -> float:
    """The VE sigma of the budget's first evaluation: where ``jump`` lands and ``noise`` starts (plain: its first)."""
    s = budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip)
    return float(_noise_level(s, 0)[0])


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
    """A start of the study (``plain``, ``noise`` or one of ``JUMPS``) -> ``(start, model)`` for ``sample_budget``: a
    jump's model is ``approximations(gaussian)[start]``: N(μ, Σ), N(μ, tr(Σ)/D · I) or the point mass at μ."""
    if start in JUMPS:
        return "jump", approximations(gaussian)[start]
    if start not in ("plain", "noise"):
        raise ArgumentError("start", start, f"must be one of plain, noise, {', '.join(JUMPS)}")
    return start, None


def _initial_state(scheduler, budget, noise: torch.Tensor, start: str, model) -> torch.Tensor:
    """The sampler's state ``[B, C, H, W]`` at the budget schedule's first noise level, from standard normal noise."""
    flat = noise.reshape(noise.shape[0], -1).to(F64)  # [B, D]
    sigma_to, a_to = _noise_level(budget, 0)
    if start == "noise":
        x_ve = sigma_to.item() * flat
    else:  # the pure noise the sampler itself starts from at sigma_max, carried to sigma_to by the exact jump
        a_max = scheduler.alphas_cumprod[-1].to(F64)
        hi = sigma_from_alpha_cumprod(a_max)
        x_max = hi.item() * flat if isinstance(budget, _VE_SAMPLE) else vp_to_ve(flat, a_max)
        x_ve = model.teleport(x_max, hi, sigma_to)
    x = x_ve if isinstance(budget, _VE_SAMPLE) else ve_to_vp(x_ve, a_to)
    return x.reshape(noise.shape).to(noise.dtype)


def sample_budget(unet, scheduler, noise: torch.Tensor, *, nfe: int, start: str = "plain", sigma_skip=None,
                  model=None, generator=None, progress: bool = False) -> torch.Tensor:
    """Sample with exactly ``nfe`` UNet evaluations from standard normal ``noise [B, C, H, W]``; return x0.

    ``start``: ``plain`` (``hls.sampling.sample`` with ``steps_for_nfe(nfe)`` steps), ``jump`` (``model.teleport``
    from ``sigma_max`` to ``sigma_skip``, then the budget schedule) or ``noise`` (started at ``sigma_skip`` from
    N(0, sigma_skip^2 I)); see module doc. ``generator`` (one ``torch.Generator`` or a list of B) feeds ddpm's per-step
    noise. Runs on ``noise``'s device and dtype; the UNet must live there. ``scheduler`` is not modified.
    """
    _check_model(model, start, noise[0].numel())
    budget = budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip, device=noise.device)
    if isinstance(generator, list) and len(generator) != noise.shape[0]:
        raise ArgumentError("generator", f"a list of {len(generator)}", f"needs one per image ({noise.shape[0]})")
    if start == "plain":
        return sampling.sample(unet, budget, noise, steps=steps_for_nfe(budget, nfe), generator=generator,
                               progress=progress)
    if model is not None and hasattr(model, "to"):
        model = model.to(noise.device)
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(budget.step).parameters else {}

    with torch.inference_mode():
        # the start: the exact jump from sigma_max, or plain noise, at the schedule's first noise level
        x = _initial_state(scheduler, budget, noise, start, model)
        # the budget: diffusers' own loop over the laid-out schedule
        for t in tqdm(budget.timesteps, desc=f"sample {start} nfe={nfe}", disable=not progress, leave=False):
            eps = unet(budget.scale_model_input(x, t), t).sample
            x = budget.step(eps, t, x, **step_kwargs).prev_sample
    return x.clone()


def sample_budget_seeded(unet, scheduler, seeds, *, shape, nfe: int, start: str = "plain", sigma_skip=None,
                         model=None, batch_size: int = 64, device="cpu", progress: bool = False) -> torch.Tensor:
    """One image per seed with ``sample_budget``: ``[len(seeds), C, H, W]`` float32 on CPU.

    Seeded per image as ``hls.sampling.sample_seeded`` (``hls.sampling.seeded``). ``shape`` is ``(C, H, W)``; the UNet
    must live on ``device``. All arguments are checked before the first batch.
    """
    _check_model(model, start, math.prod(shape))
    budget_schedule(scheduler, nfe=nfe, start=start, sigma_skip=sigma_skip)
    if model is not None and hasattr(model, "to"):
        model = model.to(device)  # once, not per batch
    return sampling.seeded(lambda noise, generators: sample_budget(unet, scheduler, noise, nfe=nfe, start=start,
                                                                   sigma_skip=sigma_skip, model=model,
                                                                   generator=generators),
                           seeds, shape=shape, batch_size=batch_size, device=torch.device(device),
                           dtype=getattr(unet, "dtype", torch.float32), desc=f"sample {start} nfe={nfe}",
                           progress=progress)
