"""Tiny stand-ins for what the pipeline downloads or trains: datasets in torchvision's on-disk formats, a random
two-level UNet, the DDPM training schedule and a diffusers DDPM pipeline folder."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from hls.train import make_unet


def fake_images(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    """Smooth-ish random uint8 images ``[n, h, w, c]`` (a per-image blob on a per-pixel mean)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    centres = rng.uniform(0.2, 0.8, size=(n, 2, 1, 1))
    blob = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) * 20)  # [n, h, w]
    x = 200 * blob[..., None] + rng.normal(0, 20, size=(n, h, w, c)) + 30
    return x.clip(0, 255).astype(np.uint8)


def write_fashion_mnist(folder, n_train=64, n_test=32, gz=True, seed=0):
    """The four idx files (``.gz`` like Debian's package when ``gz``); returns the arrays written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = fake_images(n, 28, 28, 1, seed + (split == "test"))
        labels = np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)
        opener = gzip.open if gz else open
        suffix = ".gz" if gz else ""
        with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images[..., 0].tobytes())
        with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    return arrays


def write_cifar10(root, n_per_batch=8, seed=0):
    """``root/cifar-10-batches-py`` with five train batches and a test batch in CIFAR-10's pickle format."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = fake_images(n_per_batch, 32, 32, 3, seed + i)  # [n, H, W, C] -> CIFAR's [n, C*H*W]
        batch = {"data": images.transpose(0, 3, 1, 2).reshape(n_per_batch, -1),
                 "labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return folder


def ddpm_config(clip_sample=True):
    """The bundled model's and google/ddpm-cifar10-32's training schedule: 1000 linear betas 1e-4..0.02, epsilon."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=clip_sample).config


def tiny_unet(image_size=8, channels=3, attention=(False, True), seed=0) -> UNet2DModel:
    """A random UNet2DModel with 8 and 16 channels at two levels, in eval mode; weights from ``seed``."""
    torch.manual_seed(seed)
    return make_unet(image_size, channels, [8, 16], 1, list(attention), norm_num_groups=4).eval()


def write_tiny_pipeline(folder, image_size=28, channels=1, seed=0):
    """A random tiny UNet2DModel + the DDPM training schedule saved as a DDPMPipeline folder; returns the UNet."""
    unet = tiny_unet(image_size, channels, attention=(False, False), seed=seed)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(ddpm_config())).save_pretrained(folder)
    return unet
