"""Inception statistics on disk: safetensors with ``mu [2048]`` and ``sigma [2048, 2048]`` (deterministic bytes)."""

import numpy as np
import torch
from common import atomic_path
from safetensors.torch import load_file, save_file


def save_stats(path, mu: np.ndarray, sigma: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        save_file({"mu": torch.from_numpy(np.ascontiguousarray(mu)),
                   "sigma": torch.from_numpy(np.ascontiguousarray(sigma))}, str(tmp))


def load_stats(path) -> tuple[np.ndarray, np.ndarray]:
    t = load_file(str(path))
    return t["mu"].numpy(), t["sigma"].numpy()
