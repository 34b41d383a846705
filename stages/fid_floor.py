"""Stage fid_floor: FID of ``sampler.n`` real training images against the reference statistics, the best FID a
perfect sampler could reach at this sample size (FID is biased upwards at small N)."""

import argparse
from pathlib import Path

import numpy as np

from common import check, device, load_params, validate, write_json
from hls.data import subset
from hls.fid import BACKENDS, WEIGHTS, activation_stats, frechet_distance, inception, load_stats


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 real training images [N, H, W, C] (.npy)")
    parser.add_argument("ref", type=Path, help="reference statistics (.safetensors)")
    parser.add_argument("out", type=Path, help="JSON record to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, "seed", "sampler.n", "fid.batch_size", choices={"fid.weights": WEIGHTS, "fid.backend": BACKENDS})
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    n = p["sampler"]["n"]
    check(n <= len(images), "sampler.n", n, f"must be <= {len(images)} for the FID floor (the training images)")
    dev = device(p["device"])

    model = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    stats = activation_stats(subset(images, n, p["seed"] + 1), model,
                             batch_size=p["fid"]["batch_size"], device=dev, progress=True)
    floor = frechet_distance(*stats, *load_stats(args.ref))
    write_json(args.out, {"fid_floor": round(floor, 4), "n_samples": n, "n_ref": p["fid_ref"]["n"]})
    print(f"FID floor: {floor:.2f} ({n} real training images vs the reference)")


if __name__ == "__main__":
    main()
