"""Stage mixtures: the Gaussian mixtures of the training images (``hls.mixture.MIXTURES``: one Gaussian per class, and
one per k-means cluster), each as the exact moments of its groups (``hls.moments``: the same bytes on any machine),
one safetensors file each, from which ``GaussianMixture.load`` builds the mixture."""

import argparse
from pathlib import Path

import numpy as np

from common import atomic_path, integer, load_params, validate
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
    images = np.load(args.images, mmap_mode="r").transpose(0, 3, 1, 2)  # [N, C, H, W]: the model's pixel order
    mixtures = fit_mixtures(images, np.load(args.labels), p["mixtures"]["k"], seed=p["seed"])
    with atomic_path(args.out, directory=True) as tmp:
        for name, mixture in mixtures.items():
            mixture.save(tmp / f"{name}.safetensors")
            print(f"{name}: {len(mixture.counts)} components")


if __name__ == "__main__":
    main()
