"""Tiny stand-ins for what the pipeline downloads or trains: datasets in torchvision's on-disk formats and a
random diffusers DDPM pipeline folder."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from diffusers import DDPMPipeline

from hls.train import make_scheduler, make_unet


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


def write_tiny_pipeline(folder, image_size=28, channels=1, seed=0):
    """A random tiny UNet2DModel + the DDPM training scheduler saved as a DDPMPipeline folder."""
    import torch

    torch.manual_seed(seed)
    unet = make_unet(image_size, channels, block_out_channels=[8, 16], layers_per_block=1,
                     attention=[False, False], norm_num_groups=4)
    DDPMPipeline(unet=unet, scheduler=make_scheduler()).save_pretrained(folder)
    return unet
