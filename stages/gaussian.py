"""Stage gaussian: the exact moments of the training images (``hls.moments.Moments``: the same bytes on any machine),
from which ``Gaussian.load`` builds N(mean, Σ) in the model's [-1, 1] space."""

import argparse
from pathlib import Path

import numpy as np

from common import atomic_path
from hls.gaussian import Gaussian
from hls.moments import Moments


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 training images [N, H, W, C] (.npy)")
    parser.add_argument("out", type=Path, help="their exact moments (.safetensors)")
    args = parser.parse_args()
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    moments = Moments.of(images.transpose(0, 3, 1, 2))  # [N, C, H, W]: pixels in the order the model's tensors hold
    with atomic_path(args.out) as tmp:
        moments.save(tmp)
    gaussian = Gaussian.from_moments(moments)
    lam = gaussian.eigvals
    print(f"fitted D={gaussian.dim} Gaussian to {len(images)} images: trace {lam.sum():.1f}, "
          f"top eigenvalue {lam[0]:.2f}, {int((lam > 1e-6 * lam[0]).sum())} eigenvalues above 1e-6 of the top")


if __name__ == "__main__":
    main()
