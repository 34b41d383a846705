"""Stage mixtures: the Gaussian mixtures fitted to the training images (flattened, in the model's [-1, 1] space), one
safetensors file each (``hls.mixture.MIXTURES``): one Gaussian per class, and one per k-means cluster."""

import argparse
from pathlib import Path

import numpy as np

from common import atomic_path, integer, load_params, validate
from hls.data import to_model
from hls.mixture import fit_mixtures

RULES = {"seed": integer(0), "mixtures.k": integer(1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 training images [N, H, W, C] (.npy)")
    parser.add_argument("labels", type=Path, help="their int64 class labels [N] (.npy)")
    parser.add_argument("out", type=Path, help="folder for <name>.safetensors")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    x = to_model(np.load(args.images, mmap_mode="r")).flatten(1)  # [N, D]
    mixtures = fit_mixtures(x, np.load(args.labels), p["mixtures"]["k"], seed=p["seed"])
    with atomic_path(args.out, directory=True) as tmp:
        for name, mixture in mixtures.items():
            mixture.save(tmp / f"{name}.safetensors")
            print(f"{name}: {mixture.components} components")


if __name__ == "__main__":
    main()
