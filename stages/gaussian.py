"""Stage gaussian: fit N(mean, Σ) to the training images (flattened, in the model's [-1, 1] space)."""

import numpy as np
from common import atomic_path

from hls.data import to_model
from hls.gaussian import Gaussian

OUT = "data/gaussian.safetensors"


def main():
    images = np.load("data/dataset/train_images.npy", mmap_mode="r")  # [N, H, W, C]
    gaussian = Gaussian.fit(to_model(images).flatten(1))  # [N, D]
    with atomic_path(OUT) as tmp:
        gaussian.save(tmp)
    lam = gaussian.eigvals
    print(f"fitted D={gaussian.dim} Gaussian to {len(images)} images: trace {lam.sum():.1f}, "
          f"top eigenvalue {lam[0]:.2f}, {int((lam > 1e-6 * lam[0]).sum())} eigenvalues above 1e-6 of the top")


if __name__ == "__main__":
    main()
