"""Schedules as values: the timesteps and VE sigmas a diffusers sampler visits, laid out by a spacing family over
[sigma_hi -> end] with a given number of steps, and put on a copy of the scheduler.

A sampler's *family* names how its steps are spaced (``FAMILIES``): ``default`` is what each sampler is usually run
with (ddim / ddpm: the "leading" integer stride of the DDIM paper; euler / heun: Karras sigmas; dpmsolver / unipc:
timesteps linear in t), ``karras`` (rho = 7) and ``logsnr`` (uniform in log sigma, DPM-Solver's own choice,
diffusers' ``use_lu_lambdas``). ``make_scheduler(name, config, family)`` configures diffusers so that its own
``set_timesteps(n)`` lays out the family over the model's whole range (the plain sampler); ``layout`` lays out the
same family over [sigma_hi -> end], in the scheduler's own arithmetic, so that with sigma_hi at the plain schedule's
first sigma the two are equal (tested), and ``apply`` puts a layout on a copy of the scheduler.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import diffusers
import numpy as np
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

from hls.errors import ArgumentError
from hls.gaussian import alpha_cumprod_from_sigma, sigma_from_alpha_cumprod

SCHEDULERS = ("ddim", "ddpm", "euler", "heun", "dpmsolver", "unipc", "dpmsolver3", "unipc_bh1")
# name -> (class, the settings that define the sampler on top of the model's own config; they tell apart two samplers
# of one class)
CLASSES = {
    "ddim": (DDIMScheduler, {}),  # eta = 0 is the default of DDIMScheduler.step
    "ddpm": (DDPMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmsolver": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),  # 2M
    "unipc": (UniPCMultistepScheduler, {"solver_type": "bh2"}),
    "dpmsolver3": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 3}),  # 3M
    # UniPC-bh1: its B(h) = h is infinite on a last step into sigma 0 (NaN samples), so it ends at sigma_min
    "unipc_bh1": (UniPCMultistepScheduler, {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}),
}
# sampler -> {family: spacing}; the spacings are those below
FAMILIES = {
    "ddim": {"default": "leading"},
    "ddpm": {"default": "leading"},
    "euler": {"default": "karras"},
    "heun": {"default": "karras"},
    "dpmsolver": {"default": "linspace", "karras": "karras", "logsnr": "logsnr"},
    "unipc": {"default": "linspace", "karras": "karras"},
    "dpmsolver3": {"default": "linspace"},
    "unipc_bh1": {"default": "linspace"},
}
# samplers whose diffusers step takes any placed steps (``hls.optimize``); ddim's step always goes to t - T // N (a
# fixed stride; DPM-Solver of order 1 is the same update), and ddpm is stochastic, which the optimizer's
# deterministic teacher does not model
OPTIMIZABLE = ("euler", "heun", "dpmsolver", "unipc", "dpmsolver3", "unipc_bh1")
# spacing -> the diffusers config that makes set_timesteps(n) lay it out over the model's whole range
_CONFIG = {
    "leading": {"timestep_spacing": "leading"},
    "linspace": {"timestep_spacing": "linspace"},
    "karras": {"timestep_spacing": "linspace", "use_karras_sigmas": True},
    "logsnr": {"timestep_spacing": "linspace", "use_lu_lambdas": True},
}
_SPACINGS = ("leading", "linspace", "trailing")
RHO = 7.0  # Karras et al.'s exponent, as diffusers' _convert_to_karras
# Schedulers whose state is the VE sample x0 + sigma * eps; the others hold the VP sample sqrt(a) * x_ve.
VE_SAMPLE = (EulerDiscreteScheduler, HeunDiscreteScheduler)


def _model_scheduler(model_config) -> SchedulerMixin:
    """The model's own scheduler (class ``_class_name``, DDPMScheduler if absent) built from its config."""
    name = dict(model_config).get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"model scheduler config: _class_name {name!r} is not a diffusers scheduler class")
    return cls.from_config(dict(model_config))


def make_scheduler(name: str, model_config, family: str = "default", *,
                   timestep_spacing: str | None = None) -> SchedulerMixin:
    """The sampler ``name`` (``SCHEDULERS``) with spacing ``family`` (``FAMILIES[name]``) on the model's noise schedule.

    ``model_config``: the model's scheduler config (a dict or ``pipeline.scheduler.config``). Every training value of
    it is passed explicitly, because diffusers' ``from_config`` replaces values that were defaults of the source class
    by the target class's defaults (e.g. Stable Diffusion's betas for heun); raises if ``alphas_cumprod`` differs.
    ``timestep_spacing`` overrides the family's ("leading", "linspace" or "trailing"; then ``layout`` refuses it).
    """
    if name not in CLASSES:
        raise ArgumentError("name", name, f"must be one of {', '.join(SCHEDULERS)}")
    if family not in FAMILIES[name]:
        raise ArgumentError("family", family, f"{name} supports {', '.join(FAMILIES[name])}")
    if timestep_spacing not in (None, *_SPACINGS):
        raise ArgumentError("timestep_spacing", timestep_spacing, f"must be one of None, {', '.join(_SPACINGS)}")
    reference = _model_scheduler(model_config)
    config = {k: v for k, v in reference.config.items() if k not in ("_use_default_values", "timestep_spacing")}
    cls, settings = CLASSES[name]
    settings = {**settings, **_CONFIG[FAMILIES[name][family]]}
    if timestep_spacing is not None:
        settings["timestep_spacing"] = timestep_spacing
    scheduler = cls.from_config(config, **settings)
    if not torch.equal(scheduler.alphas_cumprod, reference.alphas_cumprod):
        raise RuntimeError(f"make_scheduler({name!r}): alphas_cumprod differs from the model's training schedule")
    return scheduler


def scheduler_name(scheduler) -> str:
    """A name of ``SCHEDULERS`` or a scheduler of one of their classes -> its name."""
    if isinstance(scheduler, str):
        if scheduler not in SCHEDULERS:
            raise ArgumentError("scheduler", scheduler, f"must be one of {', '.join(SCHEDULERS)}")
        return scheduler
    for name, (cls, settings) in CLASSES.items():
        if type(scheduler) is cls and all(scheduler.config.get(k) == v for k, v in settings.items()):
            return name
    raise ArgumentError("scheduler", type(scheduler).__name__, f"must be a scheduler of {', '.join(SCHEDULERS)} "
                                                               "(hls.schedules.make_scheduler)")


def spacing(scheduler) -> str:
    """How ``scheduler``'s own ``set_timesteps`` spaces its steps: "karras", "logsnr" or its timestep spacing."""
    config = scheduler.config
    if config.get("use_karras_sigmas"):
        return "karras"
    if config.get("use_lu_lambdas"):
        return "logsnr"
    return config.get("timestep_spacing", "leading")


def family(scheduler) -> str:
    """The family (``FAMILIES``) of a configured scheduler; ArgumentError when its spacing is none of its families."""
    name, found = scheduler_name(scheduler), spacing(scheduler)
    families = [f for f, s in FAMILIES[name].items() if s == found]
    if not families:
        supported = ", ".join(f"{f} ({s})" for f, s in FAMILIES[name].items())
        raise ArgumentError("scheduler", f"{name} with {found} spacing", f"must have one of the families {supported}")
    return families[0]


def holds_ve(scheduler) -> bool:
    """Whether the scheduler's state is the VE sample (euler, heun) rather than the VP sample."""
    return isinstance(scheduler, VE_SAMPLE)


# --- sigma <-> timestep --------------------------------------------------------------------------------------------


def train_sigmas(alphas_cumprod) -> np.ndarray:
    """The VE sigma of every training timestep ``[T]``, increasing, computed as diffusers does (float32)."""
    a = torch.as_tensor(alphas_cumprod).detach().cpu()
    return np.array(((1 - a) / a) ** 0.5)


def timestep_of_sigma(sigma, alphas_cumprod) -> np.ndarray:
    """The fractional training timestep of each VE ``sigma`` (log-sigma interpolation, diffusers' ``_sigma_to_t``
    to the bit) -> float64 array of sigma's shape."""
    log_sigmas = np.log(train_sigmas(alphas_cumprod))  # [T]
    log_sigma = np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10))
    dists = log_sigma.reshape(1, -1) - log_sigmas[:, np.newaxis]  # [T, n]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_sigmas) - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = np.clip((lo - log_sigma.reshape(-1)) / (lo - hi), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(np.shape(sigma))


def model_sigmas(alphas_cumprod) -> torch.Tensor:
    """The VE sigma of every training timestep in float64: ``alphas_cumprod [T]`` -> ``[T]`` (increasing for DDPM)."""
    return sigma_from_alpha_cumprod(torch.as_tensor(alphas_cumprod).detach().cpu())


def nearest_timestep(alphas_cumprod, sigma) -> np.ndarray:
    """The integer training timestep whose sigma is nearest each of ``sigma`` in log sigma (ties: the smaller)."""
    query = np.asarray(sigma, dtype=np.float64)
    if not bool((query > 0).all()):
        raise ValueError(f"nearest_timestep: sigmas must be > 0, got {query.tolist()}")
    log_model = np.log(model_sigmas(alphas_cumprod).numpy())  # [T]
    return np.abs(log_model[:, None] - np.log(query.reshape(1, -1))).argmin(axis=0).reshape(query.shape)


def sigma_min(scheduler) -> float:
    """The model's smallest VE sigma (training timestep 0): where every Karras or log-SNR schedule ends."""
    return float(model_sigmas(scheduler.alphas_cumprod)[0])


def sigma_max(scheduler) -> float:
    """The model's largest VE sigma (training timestep T - 1): where every jump starts, and where the plain schedule
    starts for every family but ddim / ddpm's "leading" one (which starts at t = (n - 1) T // n)."""
    return float(model_sigmas(scheduler.alphas_cumprod)[-1])


def karras(sigma_hi: float, sigma_lo: float, n: int) -> np.ndarray:
    """``n`` Karras (rho = 7) sigmas from ``sigma_hi`` down to ``sigma_lo`` (float64 ``[n]``), diffusers' arithmetic."""
    ramp = np.linspace(0, 1, n)
    return (sigma_hi ** (1 / RHO) + ramp * (sigma_lo ** (1 / RHO) - sigma_hi ** (1 / RHO))) ** RHO


# --- schedules ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The steps a sampler takes: ``timesteps [S]`` (the UNet's timestep at each step's start), ``sigmas [S + 1]``
    (float64 VE sigma at each step's start, then where the last step ends) and ``inference_steps``, the n its own
    ``set_timesteps(n)`` needs to take them (S, except for ddim, whose stride is T // n)."""

    timesteps: np.ndarray
    sigmas: np.ndarray
    inference_steps: int

    @property
    def steps(self) -> int:
        return len(self.timesteps)


@dataclass(frozen=True)
class Optimized:
    """One budget's optimized schedule: ``schedule`` (the UNet steps: timesteps of the path's nodes but the end,
    sigmas of all of them), ``landing`` (the jump's VE sigma, where the schedule starts; None: no jump, the schedule
    starts at sigma_max), ``error`` (the path's total cost, the predicted error) and ``path`` (its node indices)."""

    schedule: Schedule
    landing: float | None
    error: float
    path: tuple[int, ...]

    def record(self) -> dict:
        """A JSON-able record of it (``of`` reads it back); the error to 6 digits, so that a table recomputed on
        another CPU gives the same record when it gives the same path."""
        return {"timesteps": self.schedule.timesteps.tolist(), "sigmas": self.schedule.sigmas.tolist(),
                "landing": self.landing, "error": float(f"{self.error:.6g}"), "path": list(self.path)}

    @classmethod
    def of(cls, record: dict) -> Optimized:
        """The ``Optimized`` a ``record`` holds."""
        timesteps = np.array(record["timesteps"], dtype=np.int64)
        schedule = Schedule(timesteps, np.array(record["sigmas"], dtype=np.float64), len(timesteps))
        return cls(schedule, record["landing"], float(record["error"]), tuple(record["path"]))


def end_sigma(scheduler) -> float:
    """The VE sigma the last step lands on: 0 (x0) or sigma_min, as the scheduler's config says."""
    if isinstance(scheduler, DDIMScheduler):
        return float(sigma_from_alpha_cumprod(scheduler.final_alpha_cumprod))
    if scheduler.config.get("final_sigmas_type", "zero") == "sigma_min":
        return float(train_sigmas(scheduler.alphas_cumprod)[0])
    return 0.0


def _ddim_grid(train_steps: int, top: int, steps: int) -> tuple[np.ndarray, int]:
    """``steps`` timesteps of one stride ``s = T // n`` from the grid top nearest ``top``, and that n.

    DDIMScheduler.step goes from t to t - T // num_inference_steps, so its steps keep one stride and the last
    timestep lies in [0, s); not every top has such a stride (it must lie in (top / steps, top / (steps - 1)]), so the
    top is the reachable one nearest ``top`` (ties: the larger stride).
    """
    best = None  # (distance, t0, stride, n)
    for n in range(1, train_steps + 1):  # strides T // n, largest first
        stride = train_steps // n
        lo, hi = (steps - 1) * stride, min(steps * stride - 1, train_steps - 1)
        if lo > hi:
            continue
        t0 = min(max(top, lo), hi)
        if best is None or abs(t0 - top) < best[0]:
            best = (abs(t0 - top), t0, stride, n)
    _, t0, stride, n = best
    return t0 - stride * np.arange(steps, dtype=np.int64), n


def _check_room(steps: int, top: int, sigma_hi: float) -> None:
    if steps - 1 > top:
        raise ArgumentError("steps", steps, f"need {steps} distinct timesteps in [0, t = {top}] (sigma "
                                            f"{sigma_hi:.6g}); use fewer steps or a larger sigma")


def layout(scheduler, steps: int, sigma_hi: float) -> Schedule:
    """``scheduler``'s family (``spacing``) over [sigma_hi -> end] with ``steps`` steps, in its own arithmetic.

    karras / logsnr: sigmas from sigma_hi down to sigma_min, Karras or geometric, each UNet timestep the fractional
    one of its sigma (dpmsolver, unipc: rounded, as diffusers). linspace: integer timesteps linear from t_hi, the
    training timestep nearest sigma_hi, to 0. leading: ddim's one-stride grid from t_hi (``_ddim_grid``), ddpm's
    evenly spaced integers from t_hi to 0. The sigmas of integer timesteps are the model's.
    """
    name, kind = scheduler_name(scheduler), spacing(scheduler)
    if kind not in FAMILIES[name].values():
        family(scheduler)  # raises, naming the families
    train = train_sigmas(scheduler.alphas_cumprod)  # [T] float32 values, as diffusers reads them
    end = end_sigma(scheduler)
    if kind in ("karras", "logsnr"):
        if kind == "karras":
            sigmas = karras(float(sigma_hi), float(train[0]), steps)
        else:  # diffusers' _convert_to_lu: linear between the float32 log sigmas of the ends
            lo, hi = float(np.log(train[0])), float(np.log(np.float32(sigma_hi)))
            sigmas = np.exp(hi + np.linspace(0, 1, steps) * (lo - hi))
        timesteps = timestep_of_sigma(sigmas, scheduler.alphas_cumprod)
        if isinstance(scheduler, (DPMSolverMultistepScheduler, UniPCMultistepScheduler)):
            timesteps = timesteps.round().astype(np.int64)
        return Schedule(timesteps, np.append(sigmas, end), steps)
    top = int(nearest_timestep(scheduler.alphas_cumprod, sigma_hi))
    _check_room(steps, top, sigma_hi)
    inference_steps = steps
    if kind == "linspace":
        timesteps = np.linspace(0, top, steps + 1).round()[::-1][:-1].astype(np.int64)
    elif name == "ddim":
        timesteps, inference_steps = _ddim_grid(scheduler.config.num_train_timesteps, top, steps)
    else:  # ddpm
        timesteps = np.floor(np.linspace(top, 0, steps) + 0.5).astype(np.int64)  # not np.round: half-to-even ties
    return Schedule(timesteps, np.append(train[timesteps].astype(np.float64), end), inference_steps)


def apply(scheduler, schedule: Schedule, device=None) -> SchedulerMixin:
    """A copy of ``scheduler`` set to take ``schedule``'s steps; the caller's scheduler is not modified.

    ddpm takes them through diffusers' custom timesteps. The others have no custom schedule that keeps their own
    arithmetic (euler's custom sigmas recompute the timesteps from float32 sigmas; ddim, unipc have none; heun and
    dpmsolver refuse custom timesteps with Karras sigmas), so their own ``set_timesteps`` resets every counter and
    history, then the two arrays it set are replaced (heun: each inner step twice, as its set_timesteps does).
    """
    out = copy.deepcopy(scheduler)
    if isinstance(out, DDPMScheduler):
        out.set_timesteps(timesteps=schedule.timesteps.tolist(), device=device)
        return out
    out.set_timesteps(schedule.inference_steps, device=device)
    timesteps = torch.from_numpy(schedule.timesteps)
    sigmas = torch.from_numpy(schedule.sigmas.astype(np.float32))
    if isinstance(out, HeunDiscreteScheduler):
        timesteps = torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)])
        sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    out.timesteps = timesteps.to(device=device, dtype=out.timesteps.dtype)
    if hasattr(out, "sigmas"):
        out.sigmas = sigmas
    if hasattr(out, "set_begin_index"):
        out.set_begin_index(0)  # the first step is index 0, even where rounding repeats a timestep
    return out


def noise_level(scheduler, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(VE sigma, VP alpha_cumprod) in float64 at timestep index ``index`` of the scheduler's current timesteps."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:  # euler, heun, dpmsolver, unipc keep their VE sigma grid
        sigma = torch.as_tensor(sigmas[index], dtype=torch.float64).cpu()
        return sigma, alpha_cumprod_from_sigma(sigma)
    a = scheduler.alphas_cumprod[int(scheduler.timesteps[index])].to(torch.float64)  # ddim, ddpm
    return sigma_from_alpha_cumprod(a), a
