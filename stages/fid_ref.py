"""Stage fid_ref: Inception statistics of ``fid_ref.n`` real images (of split ``fid_ref.split``)."""

import argparse
from pathlib import Path

import numpy as np

from common import atomic_path, check, choice, device, integer, load_params, validate
from hls.data import subset
from hls.fid import BACKENDS, WEIGHTS, activation_stats, inception, save_stats

RULES = {"seed": integer(0), "fid_ref.n": integer(2), "fid_ref.split": choice(("train", "test")),
         "fid.batch_size": integer(1), "fid.weights": choice(WEIGHTS), "fid.backend": choice(BACKENDS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 real images [N, H, W, C] (.npy)")
    parser.add_argument("out", type=Path, help="reference statistics (.safetensors)")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    n = p["fid_ref"]["n"]
    check(n <= len(images), "fid_ref.n", n, f"must be <= {len(images)}, the number of {p['fid_ref']['split']} images")
    dev = device(p["device"])

    model = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    mu, sigma = activation_stats(subset(images, n, p["seed"]), model,
                                 batch_size=p["fid"]["batch_size"], device=dev, progress=True)
    with atomic_path(args.out) as tmp:
        save_stats(tmp, mu, sigma)
    print(f"reference statistics of {n} {p['fid_ref']['split']} images ({p['fid']['weights']} Inception weights)")


if __name__ == "__main__":
    main()
