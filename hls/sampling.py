"""Sampling with diffusers schedulers, the first ``skip`` steps replaced by the Gaussian teleport.

A *step* is one interval of the noise-level grid that ``scheduler.set_timesteps(steps)`` lays out; step i starts at
VE noise level ``sigma_skip(scheduler, steps, i)``. It costs 1 UNet evaluation (NFE), except heun's 2 (predictor +
corrector; the last step, which lands on sigma 0, costs 1). ``skip = k`` replaces steps ``0 .. k-1`` by one exact jump
of the Gaussian probability-flow ODE (``Gaussian.teleport``), then runs the scheduler from step k
(``set_begin_index``) with a fresh history: multistep solvers (dpmsolver, unipc) restart at first order, heun with its
predictor. euler and heun hold the VE sample ``x0 + sigma * eps``; the others the VP sample ``sqrt(a) * x_ve``,
converted around the jump with ``vp_to_ve`` / ``ve_to_vp``.
"""

from __future__ import annotations

import copy
import inspect

import diffusers
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from hls.errors import ArgumentError
from hls.gaussian import Gaussian, alpha_cumprod_from_sigma, sigma_from_alpha_cumprod, ve_to_vp, vp_to_ve

SCHEDULERS = ("ddim", "ddpm", "euler", "heun", "dpmsolver", "unipc")

# name -> (class, settings that define the sampler on top of the model's own config)
_SCHEDULER_CLASSES = {
    "ddim": (DDIMScheduler, {}),  # eta = 0 is the default of DDIMScheduler.step
    "ddpm": (DDPMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "heun": (HeunDiscreteScheduler, {"use_karras_sigmas": True}),
    "dpmsolver": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
}
# Schedulers whose state is the VE sample; the other supported ones hold the VP sample.
_VE_SAMPLE = (EulerDiscreteScheduler, HeunDiscreteScheduler)
_VP_SAMPLE = (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler)
_SPACINGS = ("leading", "linspace", "trailing")


def _model_scheduler(model_config) -> SchedulerMixin:
    """The model's own scheduler (class ``_class_name``, DDPMScheduler if absent) built from its config."""
    name = dict(model_config).get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"model scheduler config: _class_name {name!r} is not a diffusers scheduler class")
    return cls.from_config(dict(model_config))


def make_scheduler(name: str, model_config, *, timestep_spacing: str | None = None) -> SchedulerMixin:
    """The sampler ``name`` (one of ``SCHEDULERS``) on the model's training noise schedule.

    ``model_config`` is the model's scheduler config (``pipeline.scheduler.config`` or the dict of its
    ``scheduler_config.json``). Every training value of that config (betas, number of training steps, prediction type,
    clip_sample, thresholding, ...) is passed explicitly: diffusers' ``from_config`` would otherwise replace values
    that were defaults of the source class (``_use_default_values``) by the defaults of the target class, e.g. Stable
    Diffusion's betas for Heun. Raises if ``alphas_cumprod`` differs from the model's.

    Sampler settings: ddim eta 0, euler / heun with Karras sigmas, dpmsolver = DPM-Solver++ 2M, unipc = diffusers'
    default UniPC (bh2, order 2). ``timestep_spacing`` (how the inference timesteps are placed: "leading", "linspace"
    or "trailing") is a sampler setting, not the model's: None gives each sampler diffusers' default for it ("leading"
    for ddim / ddpm, as in the DDIM paper and DDIMPipeline; "linspace" for the others, so that euler / heun's Karras
    sigmas span sigma(t=0)..sigma(t=T-1) at any step count, and DPM-Solver / UniPC start at t=T-1 where "leading"
    would start them at t = T*steps/(steps+1) rounded down to a multiple of T // (steps + 1)).
    """
    if name not in _SCHEDULER_CLASSES:
        raise ArgumentError("name", name, f"must be one of {', '.join(SCHEDULERS)}")
    if timestep_spacing not in (None, *_SPACINGS):
        raise ArgumentError("timestep_spacing", timestep_spacing, f"must be one of None, {', '.join(_SPACINGS)}")
    reference = _model_scheduler(model_config)
    config = {k: v for k, v in reference.config.items() if k not in ("_use_default_values", "timestep_spacing")}
    cls, settings = _SCHEDULER_CLASSES[name]
    if timestep_spacing is not None:
        settings = {**settings, "timestep_spacing": timestep_spacing}
    scheduler = cls.from_config(config, **settings)
    if not torch.equal(scheduler.alphas_cumprod, reference.alphas_cumprod):
        raise RuntimeError(f"make_scheduler({name!r}): alphas_cumprod differs from the model's training schedule")
    return scheduler


def _check(steps, skip) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError("steps", steps, "must be an integer >= 1")
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip < steps:
        raise ArgumentError("skip", skip, f"must be an integer with 0 <= skip < steps = {steps}")


def _noise_level(scheduler, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(VE sigma, VP alpha_cumprod) in float64 at timestep index ``index`` of the scheduler's current timesteps."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:  # euler, heun, dpmsolver, unipc keep their VE sigma grid
        sigma = torch.as_tensor(sigmas[index], dtype=torch.float64).cpu()
        return sigma, alpha_cumprod_from_sigma(sigma)
    a = scheduler.alphas_cumprod[int(scheduler.timesteps[index])].to(torch.float64)  # ddim, ddpm
    return sigma_from_alpha_cumprod(a), a


def _plan(scheduler, steps: int, skip: int, device=None) -> int:
    """Set the scheduler's timesteps for ``steps`` steps; return the timestep index where step ``skip`` starts."""
    _check(steps, skip)
    train_steps = scheduler.config.num_train_timesteps
    if steps > train_steps:
        raise ArgumentError("steps", steps, f"must be <= {train_steps}, the model's number of training timesteps")
    scheduler.set_timesteps(steps, device=device)
    starts = scheduler.timesteps[::scheduler.order]  # the timestep of each step's first evaluation
    if len(starts) != steps or not bool((starts[1:] < starts[:-1]).all()):
        raise ArgumentError("steps", steps, f"gives fewer distinct timesteps with {type(scheduler).__name__} (its "
                                            "timestep spacing rounds some together); use fewer steps")
    return skip * scheduler.order


def nfe(scheduler, steps: int, skip: int = 0) -> int:
    """UNet evaluations ``sample(..., steps=steps, skip=skip)`` spends (the teleport costs none). See module doc."""
    s = copy.deepcopy(scheduler)
    begin = _plan(s, steps, skip)
    return len(s.timesteps) - begin


def equal_nfe_steps(scheduler, steps: int, skip: int) -> int:
    """The plain-sampler (``skip = 0``) step count with the NFE of ``(steps, skip)``.

    The largest n with ``nfe(scheduler, n, 0) <= nfe(scheduler, steps, skip)``: when no n matches exactly the baseline
    rounds down, never spending more than the teleport run. Exact for all of ``SCHEDULERS``, where it is
    ``steps - skip`` (heun: 2 (steps - skip) - 1 on both sides).
    """
    target = nfe(scheduler, steps, skip)
    lo, hi = 1, steps  # nfe(., 0) increases with n and nfe(1, 0) = 1 <= target <= nfe(steps, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if nfe(scheduler, mid, 0) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


def sigma_skip(scheduler, steps: int, skip: int) -> float:
    """The VE sigma where step ``skip`` starts: the teleport's destination (for ``skip = 0`` the first step's sigma)."""
    s = copy.deepcopy(scheduler)
    begin = _plan(s, steps, skip)
    return float(_noise_level(s, begin)[0])


def _teleport(scheduler, gaussian: Gaussian, x: torch.Tensor, begin: int) -> torch.Tensor:
    """The scheduler's state ``x [B, C, H, W]`` at timestep index 0 -> its state at ``begin``, by the exact jump."""
    sigma_from, a_from = _noise_level(scheduler, 0)
    sigma_to, a_to = _noise_level(scheduler, begin)
    flat = x.reshape(x.shape[0], -1)  # [B, D]
    if isinstance(scheduler, _VE_SAMPLE):
        out = gaussian.teleport(flat, sigma_from, sigma_to)
    else:
        out = ve_to_vp(gaussian.teleport(vp_to_ve(flat, a_from), sigma_from, sigma_to), a_to)
    return out.reshape(x.shape)


def sample(unet, scheduler, noise: torch.Tensor, *, steps: int, skip: int = 0, gaussian: Gaussian | None = None,
           generator=None, progress: bool = False) -> torch.Tensor:
    """Run ``scheduler`` for ``steps`` steps from standard normal ``noise [B, C, H, W]``; return x0 ``[B, C, H, W]``.

    ``skip = k > 0`` replaces the first k steps by ``gaussian.teleport`` (see module doc). ``generator`` (one
    ``torch.Generator`` or a list of B) feeds the stochastic schedulers' per-step noise. Runs on ``noise``'s device
    and dtype; the UNet must live there.
    """
    _check(steps, skip)
    if skip > 0:
        if gaussian is None:
            raise ValueError(f"gaussian: skip = {skip} > 0 needs the Gaussian to teleport with, got None")
        if gaussian.dim != noise[0].numel():
            raise ValueError(f"gaussian: dimension {gaussian.dim} != C*H*W = {noise[0].numel()} of the noise")
        if not isinstance(scheduler, _VE_SAMPLE + _VP_SAMPLE):
            raise ValueError(f"scheduler: skip > 0 supports {', '.join(SCHEDULERS)}, got {type(scheduler).__name__}")
        gaussian = gaussian.to(noise.device)
    if isinstance(generator, list) and len(generator) != noise.shape[0]:
        raise ValueError(f"generator: a list needs one generator per image ({noise.shape[0]}), got {len(generator)}")
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}

    with torch.inference_mode():
        # timesteps of the full run; step `skip` starts at timestep index `begin`
        begin = _plan(scheduler, steps, skip, device=noise.device)
        x = noise * scheduler.init_noise_sigma
        # the first `skip` steps: one exact Gaussian probability-flow jump, then the scheduler resumes at `begin`
        if skip > 0:
            x = _teleport(scheduler, gaussian, x, begin)
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(begin)
        # the remaining steps: diffusers' own loop
        for t in tqdm(scheduler.timesteps[begin:], desc=f"sample skip={skip}", disable=not progress, leave=False):
            eps = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return x.clone()


def seeded(fn, seeds, *, shape, batch_size: int = 64, device="cpu", dtype=torch.float32, desc: str = "sample",
           progress: bool = False) -> torch.Tensor:
    """``fn(noise [b, C, H, W], generators)`` -> x0 over batches of ``seeds``: ``[len(seeds), C, H, W]`` float32 on CPU.

    Image i's standard normal noise (drawn on ``device`` in ``dtype``) and ``generators[i]`` (for per-step noise) come
    only from ``torch.Generator().manual_seed(seeds[i])`` (a CPU generator, so the same on every device): no result
    depends on ``batch_size`` or on which other images are sampled alongside, up to the round-off of batched kernels
    (~1e-6 on CPU; ``hls.distributed.shard`` keeps the batches themselves identical, so the number of processes never
    changes a byte). ``shape`` is ``(C, H, W)``.
    """
    seeds = [int(s) for s in seeds]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError("batch_size", batch_size, "must be an integer >= 1")
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    bar = tqdm(total=len(seeds), desc=desc, unit="img", disable=not progress)
    for start in range(0, len(seeds), batch_size):
        generators = [torch.Generator().manual_seed(s) for s in seeds[start:start + batch_size]]
        noise = randn_tensor((len(generators), *shape), generator=generators, device=device, dtype=dtype)
        out[start:start + len(generators)] = fn(noise, generators).to("cpu", torch.float32)
        bar.update(len(generators))
    bar.close()
    return out


def sample_seeded(unet, scheduler, seeds, *, shape, steps: int, skip: int = 0, gaussian: Gaussian | None = None,
                  batch_size: int = 64, device="cpu", progress: bool = False) -> torch.Tensor:
    """One image per seed with ``sample`` (see ``seeded``): ``[len(seeds), C, H, W]`` float32 on CPU, in model space
    ([-1, 1]-ish). ``shape`` is ``(C, H, W)``; the UNet must live on ``device``.
    """
    _check(steps, skip)
    if gaussian is not None:
        gaussian = gaussian.to(device)  # once, not per batch
    return seeded(lambda noise, generators: sample(unet, scheduler, noise, steps=steps, skip=skip, gaussian=gaussian,
                                                   generator=generators),
                  seeds, shape=shape, batch_size=batch_size, device=torch.device(device),
                  dtype=getattr(unet, "dtype", torch.float32), desc=f"sample skip={skip}", progress=progress)
