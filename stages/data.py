"""Stage data: both splits of ``data.name`` as uint8 ``[N, H, W, C]`` images and int64 labels, one .npy each."""

import sys
from pathlib import Path

import numpy as np
from common import atomic_path, check_choice, load_params

from hls.data import DATASETS, load_dataset

OUT = Path("data/dataset")
DOWNLOADS = Path.home() / ".cache" / "hls" / "torchvision"


def main():
    p = load_params()["data"]
    name = check_choice(p["name"], "data.name", DATASETS)
    try:
        arrays = load_dataset(name, p.get("source_dir"), DOWNLOADS)
    except RuntimeError as err:
        sys.exit(f"error: {err}")
    with atomic_path(OUT, directory=True) as tmp:
        for key, array in arrays.items():
            np.save(tmp / f"{key}.npy", array)
    for split in ("train", "test"):
        print(f"{name} {split}: {arrays[f'{split}_images'].shape} uint8 -> {OUT}")


if __name__ == "__main__":
    main()
