"""Diffusion models: a local diffusers pipeline folder (the bundled model) or a hub id such as google/ddpm-cifar10-32."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline, UNet2DModel


def load_model(source: str) -> tuple[UNet2DModel, dict]:
    """``source`` (a local DDPMPipeline folder or a hub id) -> (UNet in float32, eval mode; its scheduler config).

    Raises RuntimeError naming ``model.source`` when the folder is not a pipeline or the hub cannot be reached.
    """
    local = Path(source).exists()
    try:
        pipe = DiffusionPipeline.from_pretrained(source)
    except Exception as err:  # diffusers / huggingface_hub raise many kinds for a missing folder or no network
        where = "is not a diffusers pipeline folder" if local else (
            "is not a local folder, and loading it from the Hugging Face hub failed (it needs network access)")
        raise RuntimeError(f"model.source: {source!r} {where}: {type(err).__name__}: {err}") from err
    if not hasattr(pipe, "unet") or not hasattr(pipe, "scheduler"):
        raise RuntimeError(f"model.source: {source!r} has no unet and scheduler (a DDPM/DDIM pipeline is needed)")
    return pipe.unet.to(torch.float32).eval(), dict(pipe.scheduler.config)


def check_compatible(unet: UNet2DModel, image_shape, source: str, dataset: str) -> None:
    """Raise ValueError when the model's (channels, size) differ from the dataset's images ``[H, W, C]``."""
    h, w, c = image_shape
    size = unet.config.sample_size
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if unet.config.in_channels != c or size != (h, w):
        raise ValueError(
            f"model.source={source} expects {unet.config.in_channels}-channel {size[0]}x{size[1]} images but "
            f"data.name={dataset} has {c}-channel {h}x{w} images"
        )
