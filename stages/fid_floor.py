"""Stage fid_floor: FID of ``sampler.n`` real training images against the reference statistics, the best FID a
perfect sampler could reach at this sample size (FID is biased upwards at small N)."""

import numpy as np
from common import check_int, device, load_params, write_json
from fid_stats import load_stats

from hls.data import subset
from hls.fid import activation_stats, frechet_distance, inception


def main():
    p = load_params()
    images = np.load("data/dataset/train_images.npy", mmap_mode="r")
    n = check_int(p["sampler"]["n"], "sampler.n", 2, len(images))
    dev = device(p["device"])
    stats = activation_stats(subset(images, n, p["seed"] + 1), inception(p["fid"]["weights"]).to(dev),
                             batch_size=p["fid"]["batch_size"], device=dev, progress=True)
    floor = frechet_distance(*stats, *load_stats("data/fid_ref.safetensors"))
    write_json("data/fid_floor.json", {"fid_floor": round(floor, 4), "n_samples": n, "n_ref": p["fid_ref"]["n"]})
    print(f"FID floor: {floor:.2f} ({n} real training images vs the reference)")


if __name__ == "__main__":
    main()
