"""Datasets as uint8 image arrays ``[N, H, W, C]``, from a local folder, a Debian package or torchvision's download."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, FashionMNIST

from hls.errors import ArgumentError

DATASETS = ("fashion_mnist", "cifar10")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SPLITS = ("train", "test")


def _fashion_mnist_from_idx(folder: Path) -> dict[str, np.ndarray]:
    """Read the four idx files (plain or ``.gz``) from ``folder`` or ``folder/FashionMNIST/raw`` via torchvision."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name in FASHION_MNIST_FILES:
            candidates = [d / f for d in (folder, folder / "FashionMNIST" / "raw") for f in (name, name + ".gz")]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"{name}[.gz] not found in {folder}")
            opener = gzip.open if found.suffix == ".gz" else open
            with opener(found, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return _arrays({split: FashionMNIST(tmp, train=split == "train", download=False) for split in SPLITS})


def _arrays(datasets) -> dict[str, np.ndarray]:
    """torchvision datasets per split -> ``{split_images: uint8 [N, H, W, C], split_labels: int64 [N]}``."""
    out = {}
    for split, ds in datasets.items():
        images = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        if images.ndim == 3:
            images = images[..., None]
        out[f"{split}_images"] = np.ascontiguousarray(images, dtype=np.uint8)
        out[f"{split}_labels"] = np.asarray(ds.targets, dtype=np.int64)
    return out


def _torchvision(name: str, root: Path, download: bool) -> dict[str, np.ndarray]:
    cls = {"fashion_mnist": FashionMNIST, "cifar10": CIFAR10}[name]
    return _arrays({split: cls(str(root), train=split == "train", download=download) for split in SPLITS})


def load_dataset(name: str, source_dir=None, download_root=None) -> dict[str, np.ndarray]:
    """Both splits of ``name`` as ``{train,test}_images`` uint8 ``[N, H, W, C]`` and ``{train,test}_labels`` int64.

    Sources, tried in order: ``source_dir`` (the idx files for Fashion-MNIST, torchvision's root folder holding
    ``cifar-10-batches-py`` for CIFAR-10); Debian's ``dataset-fashion-mnist`` package; torchvision's download into
    ``download_root``. Every source gives identical arrays. Raises RuntimeError listing what was tried.
    """
    if name not in DATASETS:
        raise ArgumentError("name", name, f"must be one of {', '.join(DATASETS)}")
    attempts = []
    if source_dir:
        attempts.append((f"source_dir {source_dir}", Path(source_dir), False))
    if name == "fashion_mnist":
        attempts.append((f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})", DEBIAN_FASHION_MNIST, False))
    if download_root is not None:
        attempts.append((f"torchvision download into {download_root}", Path(download_root), True))
    failures = []
    for label, folder, download in attempts:
        try:
            if name == "fashion_mnist" and not download:
                return _fashion_mnist_from_idx(folder)
            return _torchvision(name, folder, download)
        except Exception as err:  # each source may fail in its own way; all are reported together
            failures.append(f"{label}: {type(err).__name__}: {err}")
    remedy = (
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
        if name == "fashion_mnist"
        else ""
    )
    raise RuntimeError(
        f"no source of {name} worked ({'; '.join(failures)}). Remedies: {remedy}"
        "a local copy in torchvision's format as source_dir, or network access for torchvision's download."
    )


def to_model(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` -> float32 ``[N, C, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2)  # a copy: inputs may be read-only
    return x.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]`` (clipped, rounded)."""
    x = ((x.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def subset(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``images [N, ...]`` drawn without replacement with ``seed``, kept in their original order."""
    order = np.random.default_rng(seed).permutation(len(images))[:n]
    return np.asarray(images[np.sort(order)])
