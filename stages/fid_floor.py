"""Stage fid_floor: FID of real training images against the reference statistics, the best FID a perfect sampler could
reach at a sample size (FID is biased upwards at small N): at ``sampler.n`` (the sweep's) and ``study.n``."""

import argparse
from pathlib import Path

import numpy as np

from common import check, choice, device, integer, load_params, validate, write_json
from hls.data import subset
from hls.fid import BACKENDS, WEIGHTS, activation_stats, frechet_distance, inception, load_stats

RULES = {"seed": integer(0), "sampler.n": integer(2), "study.n": integer(2), "fid.batch_size": integer(1),
         "fid.weights": choice(WEIGHTS), "fid.backend": choice(BACKENDS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 real training images [N, H, W, C] (.npy)")
    parser.add_argument("ref", type=Path, help="reference statistics (.safetensors)")
    parser.add_argument("out", type=Path, help="JSON record to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    sizes = {"sampler.n": p["sampler"]["n"], "study.n": p["study"]["n"]}
    for key, n in sizes.items():
        check(n <= len(images), key, n, f"must be <= {len(images)} for the FID floor (the training images)")
    dev = device(p["device"])

    model = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    ref = load_stats(args.ref)
    floors = {}
    for n in sorted(set(sizes.values())):
        stats = activation_stats(subset(images, n, p["seed"] + 1), model, batch_size=p["fid"]["batch_size"],
                                 device=dev, progress=True)
        floors[str(n)] = round(frechet_distance(*stats, *ref), 4)
        print(f"FID floor: {floors[str(n)]:.2f} ({n} real training images vs the reference)")
    write_json(args.out, {"fid_floor": floors[str(sizes["sampler.n"])], "by_n": floors, "n_samples": sizes["sampler.n"],
                          "n_ref": p["fid_ref"]["n"]})


if __name__ == "__main__":
    main()
