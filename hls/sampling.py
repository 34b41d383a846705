"""Skip mode: a diffusers sampler's plain ``steps``-step schedule with its first ``skip`` steps replaced by one exact
Gaussian jump (``Gaussian.teleport``), then the scheduler resumed at step ``skip`` (``set_begin_index``) with a fresh
history (multistep solvers restart at first order, heun with its predictor). A step costs 1 UNet evaluation, heun's 2
(its last, which lands on sigma 0, 1). VP samples are converted to VE and back around the jump.
"""

from __future__ import annotations

import copy
import inspect

import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from hls.errors import ArgumentError, check_generators, check_integer
from hls.gaussian import Gaussian, ve_to_vp, vp_to_ve
from hls.schedules import SCHEDULERS, holds_ve, make_scheduler, noise_level, scheduler_name

__all__ = ["SCHEDULERS", "equal_nfe_steps", "make_scheduler", "nfe", "run", "sample", "sample_seeded", "seeded",
           "progress_loop", "set_steps", "skip_sigma"]


def _check(steps, skip) -> None:
    check_integer("steps", steps)
    check_integer("skip", skip, 0, steps - 1, f"must be an integer with 0 <= skip < steps = {steps}")


def set_steps(scheduler, steps: int, skip: int = 0, device=None) -> int:
    """Set ``scheduler``'s own ``steps``-step schedule (in place, checked: at most T steps, all distinct); return the
    timestep index where step ``skip`` starts."""
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
    planned = copy.deepcopy(scheduler)
    begin = set_steps(planned, steps, skip)
    return len(planned.timesteps) - begin


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


def skip_sigma(scheduler, steps: int, skip: int) -> float:
    """The VE sigma where step ``skip`` starts: the teleport's destination (for ``skip = 0`` the first step's sigma)."""
    planned = copy.deepcopy(scheduler)
    begin = set_steps(planned, steps, skip)
    return float(noise_level(planned, begin)[0])


def _teleport(scheduler, gaussian: Gaussian, x: torch.Tensor, begin: int) -> torch.Tensor:
    """The scheduler's state ``x [B, C, H, W]`` at timestep index 0 -> its state at ``begin``, by the exact jump."""
    sigma_from, a_from = noise_level(scheduler, 0)
    sigma_to, a_to = noise_level(scheduler, begin)
    flat = x.reshape(x.shape[0], -1)  # [B, D]
    if holds_ve(scheduler):
        out = gaussian.teleport(flat, sigma_from, sigma_to)
    else:
        out = ve_to_vp(gaussian.teleport(vp_to_ve(flat, a_from), sigma_from, sigma_to), a_to)
    return out.reshape(x.shape)


def progress_loop(timesteps, progress, desc: str):
    """``timesteps`` to loop over, with a progress bar: ``progress`` True (tqdm), False (none) or a callable that wraps
    an iterable (e.g. a diffusers pipeline's ``progress_bar``)."""
    if callable(progress):
        return progress(timesteps)
    return tqdm(timesteps, desc=desc, disable=not progress, leave=False)


def sample(unet, scheduler, noise: torch.Tensor, *, steps: int, skip: int = 0, gaussian: Gaussian | None = None,
           generator=None, progress=False) -> torch.Tensor:
    """Run ``scheduler`` for ``steps`` steps from standard normal ``noise [B, C, H, W]``; return x0 ``[B, C, H, W]``.

    ``skip = k > 0`` replaces the first k steps by ``gaussian.teleport`` (see module doc). ``generator`` (one
    ``torch.Generator`` or a list of B) feeds the stochastic schedulers' per-step noise; ``progress``: see
    ``progress_loop``. Runs on ``noise``'s device and dtype; the UNet must live there.
    """
    _check(steps, skip)
    if skip > 0:
        if gaussian is None:
            raise ValueError(f"gaussian: skip = {skip} > 0 needs the Gaussian to teleport with, got None")
        if gaussian.dim != noise[0].numel():
            raise ValueError(f"gaussian: dimension {gaussian.dim} != C*H*W = {noise[0].numel()} of the noise")
        scheduler_name(scheduler)  # skip > 0 supports SCHEDULERS only
        gaussian = gaussian.to(noise.device)
    check_generators(generator, noise.shape[0])
    with torch.inference_mode():
        # timesteps of the full run; step `skip` starts at timestep index `begin`
        begin = set_steps(scheduler, steps, skip, device=noise.device)
        x = noise * scheduler.init_noise_sigma
        # the first `skip` steps: one exact Gaussian probability-flow jump, then the scheduler resumes at `begin`
        if skip > 0:
            x = _teleport(scheduler, gaussian, x, begin)
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(begin)
        # the remaining steps: diffusers' own loop
        x = run(unet, scheduler, x, scheduler.timesteps[begin:], generator=generator, progress=progress,
                desc=f"sample skip={skip}")
    return x.clone()


def run(unet, scheduler, x: torch.Tensor, timesteps, *, generator=None, progress=False, desc: str = "sample"):
    """diffusers' own sampling loop: ``scheduler.step`` on the UNet's ``timesteps`` from the state ``x [B, C, H, W]``
    (``generator`` feeds the stochastic schedulers' per-step noise; ``progress``: see ``progress_loop``)."""
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in progress_loop(timesteps, progress, desc=desc):
        eps = unet(scheduler.scale_model_input(x, t), t).sample
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
    return x


def seeded(fn, seeds, *, shape, batch_size: int = 64, device="cpu", dtype=torch.float32, desc: str = "sample",
           progress: bool = False) -> torch.Tensor:
    """``fn(noise [b, C, H, W], generators)`` -> x0 over batches of ``seeds``: ``[len(seeds), C, H, W]`` float32 on CPU.

    Image i's standard normal noise (drawn on ``device`` in ``dtype``) and ``generators[i]`` (for per-step noise) come
    only from ``torch.Generator().manual_seed(seeds[i])`` (a CPU generator, so the same on every device): no result
    depends on ``batch_size`` or on which other images are sampled alongside, up to the round-off of batched kernels
    (``hls.distributed.shard`` keeps the batches themselves identical, so the number of processes never changes a
    byte). ``shape`` is ``(C, H, W)``.
    """
    seeds = [int(s) for s in seeds]
    check_integer("batch_size", batch_size)
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
