"""Stage data: both splits of ``data.name`` as uint8 ``[N, H, W, C]`` images and int64 labels, one .npy each."""

import argparse
import sys
from pathlib import Path

import numpy as np

from common import atomic_path, choice, load_params, validate
from hls.data import DATASETS, load_dataset

DOWNLOADS = Path.home() / ".cache" / "hls" / "torchvision"
RULES = {"data.name": choice(DATASETS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="folder for {train,test}_{images,labels}.npy")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    name = p["data"]["name"]
    try:
        arrays = load_dataset(name, p["data"]["source_dir"], DOWNLOADS)
    except RuntimeError as err:
        sys.exit(f"error: params.yaml: data.name = {name!r}: {err} (data.source_dir names a local copy)")
    with atomic_path(args.out, directory=True) as tmp:
        for key, array in arrays.items():
            np.save(tmp / f"{key}.npy", array)
    for split in ("train", "test"):
        print(f"{name} {split}: {arrays[f'{split}_images'].shape} uint8 -> {args.out}")


if __name__ == "__main__":
    main()
