"""Diffusion models: a local diffusers pipeline folder (the bundled model) or a hub id (google/ddpm-cifar10-32)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.utils import logging as diffusers_logging

from hls.errors import ArgumentError
from hls.sampling import nfe
from hls.schedules import make_scheduler


def _where(source: str, err: Exception) -> ArgumentError:
    """The one error for a source that cannot be read: a local folder that is no pipeline, or an unreachable hub id."""
    what = ("is not a diffusers pipeline folder with unet/ and scheduler/" if Path(source).exists() else
            "is not a local folder, and loading it from the Hugging Face hub failed (it needs network access)")
    return ArgumentError("source", source, f"{what} ({type(err).__name__}: {err})")


@contextlib.contextmanager
def _reading(source: str):
    """Read from ``source`` quietly (no notices a user cannot act on); any failure becomes one ArgumentError."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # e.g. the notice that an fp16 folder is loaded as float32
    try:
        with warnings.catch_warnings():  # diffusers passes huggingface_hub an argument it deprecated
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
            yield
    except Exception as err:  # diffusers / huggingface_hub raise many kinds for a missing folder or no network
        raise _where(source, err) from err
    finally:
        diffusers_logging.set_verbosity(verbosity)


def load_scheduler_config(source: str) -> dict:
    """The model's training noise schedule: ``source``'s ``scheduler/scheduler_config.json`` (no weights are read)."""
    with _reading(source):
        return dict(DDPMScheduler.load_config(source, subfolder="scheduler"))


def load_unet(source: str) -> UNet2DModel:
    """``source``'s UNet in float32 and eval mode (fp16 snapshots are cast up), its weights channels-last (faster
    convolutions on CPU: bench/bench_sampling.py)."""
    with _reading(source):
        unet = UNet2DModel.from_pretrained(source, subfolder="unet", torch_dtype=torch.float32).eval()
    return unet.to(memory_format=torch.channels_last)


def check_compatible(unet: UNet2DModel, image_shape) -> None:
    """Raise ArgumentError naming ``image_shape`` when it is not the model's ``[H, W, C]``."""
    h, w, c = image_shape
    size = unet.config.sample_size
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if unet.config.in_channels != c or size != (h, w):
        raise ArgumentError("image_shape", tuple(image_shape), f"the model expects {unet.config.in_channels}-channel "
                                                               f"{size[0]}x{size[1]} images")


def load_sampler(source: str, scheduler: str, image_shape, steps: int, family: str = "default"):
    """(UNet, sampler ``scheduler`` with spacing ``family`` on its training schedule) of ``source`` for images
    ``[H, W, C]``; checks ``scheduler``, ``family`` and ``steps`` on the model's config before reading any weight."""
    config = load_scheduler_config(source)
    sampler = make_scheduler(scheduler, config, family)
    nfe(sampler, steps)
    unet = load_unet(source)
    check_compatible(unet, image_shape)
    return unet, sampler
