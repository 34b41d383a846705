"""``TeleportPipeline``: budget-mode teleport sampling as a diffusers pipeline (``from_pretrained``, ``__call__``,
``save_pretrained``), landing by default where the equal-NFE study measured the best FID for its scheduler, family and
budget; and ``AnalyticComponent``, the analytic model as a diffusers component saved beside ``unet/`` and
``scheduler/``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from hls import OPTIMIZED
from hls.analytic import F64
from hls.budget import prepare, sample_budget, steps_for_nfe
from hls.errors import ArgumentError, check_generators, check_integer
from hls.gaussian import Gaussian
from hls.mixture import DeltaMixture, GaussianMixture, LowRankGaussian
from hls.models import load_scheduler_config, load_unet
from hls.optimize import evaluation_rule, sampler_table
from hls.schedules import OPTIMIZABLE, Optimized, Schedule, end_sigma, family, make_scheduler, scheduler_name

MODELS = {cls.__name__: cls for cls in (Gaussian, LowRankGaussian, GaussianMixture, DeltaMixture)}
OUTPUT_TYPES = ("pil", "np", "pt")
# the optimizer's settings for ``sigma_skip="auto"``: teacher trajectories, candidate nodes, teacher substeps per node
OPTIMIZER = {"teacher": 16, "size": 48, "substeps": 8}


class AnalyticComponent(ModelMixin, ConfigMixin):
    """An analytic model of ``hls`` (``MODELS``) as a diffusers model: its tensors are float64 buffers, its class and
    their shapes the config, so that ``save_pretrained`` / ``from_pretrained`` round-trip it; ``.analytic`` is the
    model itself."""

    @register_to_config
    def __init__(self, model_class: str = "Gaussian", shapes: dict | None = None):
        super().__init__()
        if model_class not in MODELS:
            raise ArgumentError("model_class", model_class, f"must be one of {', '.join(MODELS)}")
        for name, shape in (shapes or {}).items():
            self.register_buffer(name, torch.zeros(shape, dtype=F64))

    @classmethod
    def of(cls, model) -> AnalyticComponent:
        """The component holding ``model`` (an instance of one of ``MODELS``)."""
        if type(model).__name__ not in MODELS:
            raise ArgumentError("gaussian", type(model).__name__, f"must be an analytic model: {', '.join(MODELS)}")
        tensors = {name: getattr(model, name).detach().cpu() for name in model.TENSORS}
        component = cls(type(model).__name__, {name: list(t.shape) for name, t in tensors.items()})
        for name, tensor in tensors.items():
            getattr(component, name).copy_(tensor)
        return component

    @property
    def analytic(self):
        cls = MODELS[self.config.model_class]
        return cls(**{name: getattr(self, name) for name in cls.TENSORS})


@dataclass
class TeleportPipelineOutput(BaseOutput):
    """``images`` (a list of PIL images, ``[B, H, W, C]`` numpy or ``[B, C, H, W]`` torch in [0, 1]) and the landing
    ``sigma_skip`` they were drawn with (None: the plain sampler)."""

    images: list | np.ndarray | torch.Tensor
    sigma_skip: float | None


def landings_of(table: pd.DataFrame) -> dict:
    """A landings table (``hls.pareto.landings``: scheduler, family, nfe, sigma_skip) as the pipeline's ``landings``
    config: ``{"scheduler-family": {"nfe": sigma_skip}}``, for the families with a grid of landings (the optimized
    family's steps and landings are the pipeline's own ``schedules``)."""
    out = {}
    for row in table[table.family != OPTIMIZED].itertuples():
        out.setdefault(f"{row.scheduler}-{row.family}", {})[str(int(row.nfe))] = float(row.sigma_skip)
    return out


def interpolate_landing(by_budget: dict, nfe: int) -> float:
    """The landing for budget ``nfe`` from measured ``{nfe: sigma}``: linear in log sigma against log NFE between the
    measured budgets, the nearest measured one beyond them."""
    budgets = sorted(int(b) for b in by_budget)
    nearest = min(max(nfe, budgets[0]), budgets[-1])
    if str(nearest) in by_budget:  # a measured budget, or beyond the measured ones
        return float(by_budget[str(nearest)])
    log_sigmas = [math.log(by_budget[str(b)]) for b in budgets]
    return float(math.exp(np.interp(math.log(nfe), np.log(budgets), log_sigmas)))


class TeleportPipeline(DiffusionPipeline):
    """Unconditional sampling with exactly ``num_inference_steps`` UNet evaluations after one analytic jump.

    Components: ``unet`` (a ``UNet2DModel``), ``scheduler`` (a sampler of ``hls.schedules.SCHEDULERS`` in one of its
    spacing families, e.g. ``hls.schedules.make_scheduler``) and ``gaussian`` (an ``hls`` analytic model, such as
    ``hls.gaussian.Gaussian``, or its ``AnalyticComponent``). ``sigma_skip="auto"`` lands where ``landings``
    (``landings_of``, the study's measured best) say for this sampler; without them, where the step-placement optimizer
    (``hls.optimize``, settings ``optimizer``) puts the jump and the steps for the budget, kept in ``schedules``.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, gaussian, landings: dict | None = None,
                 schedules: dict | None = None, optimizer: dict | None = None):
        super().__init__()
        if not isinstance(gaussian, AnalyticComponent):
            gaussian = AnalyticComponent.of(gaussian)
        self.register_modules(unet=unet, scheduler=scheduler, gaussian=gaussian)
        self.register_to_config(landings=landings, schedules=schedules, optimizer={**OPTIMIZER, **(optimizer or {})})
        self._costs = {}  # the optimizer's cost tables by the sigma the scheduler ends at, each once for every budget

    @classmethod
    def from_model(cls, source: str, gaussian, sampler: str = "dpmsolver-default", **config) -> TeleportPipeline:
        """The pipeline of the UNet in any diffusers pipeline folder or hub id ``source`` (``hls.models``), with
        ``sampler`` (scheduler-family, e.g. "unipc-karras") on the model's training noise schedule."""
        scheduler, _, spacing_family = sampler.partition("-")
        return cls(unet=load_unet(source), gaussian=gaussian, scheduler=make_scheduler(
            scheduler, load_scheduler_config(source), spacing_family or "default"), **config)

    def auto(self, nfe: int) -> tuple[float | None, Schedule | None]:
        """``sigma_skip="auto"`` at budget ``nfe`` -> (landing, placed steps): the study's best landing for this
        scheduler and family, interpolated in log NFE (clamped at the measured ends), on the family's steps (None);
        without a study for them, the optimizer's (``optimized``)."""
        sampler = f"{scheduler_name(self.scheduler)}-{family(self.scheduler)}"
        measured = (self.config.landings or {}).get(sampler)
        if measured:
            return interpolate_landing(measured, nfe), None
        if scheduler_name(self.scheduler) not in OPTIMIZABLE:
            raise ArgumentError("sigma_skip", "auto", f"needs a study landing for {sampler} (landings) or a sampler "
                                                      f"whose steps can be placed ({', '.join(OPTIMIZABLE)}); pass a "
                                                      "number or None")
        return self.optimized(nfe)

    def optimized(self, nfe: int) -> tuple[float | None, Schedule]:
        """The optimizer's landing (None: no jump pays) and steps for budget ``nfe`` on this scheduler, from the
        config's ``schedules`` or searched now (the cost table once, then a search per budget) and kept there, so
        that ``save_pretrained`` keeps it."""
        name = scheduler_name(self.scheduler)
        kept = (self.config.schedules or {}).get(name, {}).get(str(nfe))
        if kept is None:
            steps_for_nfe(self.scheduler, nfe)  # a one-line error before the teacher runs
            end = end_sigma(self.scheduler)
            if end not in self._costs:
                self._costs[end] = sampler_table(self.unet, self.scheduler, self.gaussian.analytic,
                                                 **self.config.optimizer, device=self._execution_device)
            kept = self._costs[end].optimize(nfe, jump=True, **evaluation_rule(self.scheduler)).record()
            schedules = {key: dict(value) for key, value in (self.config.schedules or {}).items()}
            schedules.setdefault(name, {})[str(nfe)] = kept
            self.register_to_config(schedules=schedules)
        best = Optimized.of(kept)
        return best.landing, best.schedule

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, num_inference_steps: int = 20, sigma_skip="auto", generator=None,
                 output_type: str = "pil", return_dict: bool = True):
        """``batch_size`` images with exactly ``num_inference_steps`` UNet evaluations: after the jump from sigma_max
        to ``sigma_skip`` ("auto": ``auto``; a number; None: the plain sampler, as diffusers' own pipelines),
        on the scheduler's own spacing family over [sigma_skip -> 0]. ``generator``: one or a list of
        ``batch_size``. ``output_type``: "pil", "np" or "pt". Arguments are checked before any UNet evaluation."""
        if output_type not in OUTPUT_TYPES:
            raise ArgumentError("output_type", output_type, f"must be one of {', '.join(OUTPUT_TYPES)}")
        check_integer("batch_size", batch_size)
        check_generators(generator, batch_size)
        sigma, schedule = self.auto(num_inference_steps) if isinstance(sigma_skip, str) and sigma_skip == "auto" \
            else (sigma_skip, None)
        config = self.unet.config
        size = config.sample_size if isinstance(config.sample_size, (list, tuple)) else (config.sample_size,) * 2
        shape = (batch_size, config.in_channels, *size)
        try:
            budget = prepare(self.scheduler, nfe=num_inference_steps, start="plain" if sigma is None else "jump",
                             sigma_skip=sigma, model=None if sigma is None else self.gaussian.analytic,
                             dim=math.prod(shape[1:]), schedule=schedule, device=self._execution_device)
        except ArgumentError as err:  # the pipeline's analytic model is its component `gaussian`
            raise (ArgumentError("gaussian", err.value, err.allowed) if err.name == "model" else err) from None

        noise = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        x = sample_budget(self.unet, budget, noise, generator=generator, progress=self.progress_bar)
        images = (x / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, sigma
        return TeleportPipelineOutput(images=images, sigma_skip=None if sigma is None else float(sigma))
