"""Stage fid_ref: Inception statistics of ``fid_ref.n`` real images of split ``fid_ref.split``."""

import numpy as np
from common import check_choice, check_int, device, load_params
from fid_stats import save_stats

from hls.data import subset
from hls.fid import WEIGHTS, activation_stats, inception


def main():
    p = load_params()
    ref, fid = p["fid_ref"], p["fid"]
    split = check_choice(ref["split"], "fid_ref.split", ("train", "test"))
    weights = check_choice(fid["weights"], "fid.weights", WEIGHTS)
    batch_size = check_int(fid["batch_size"], "fid.batch_size", 1)
    images = np.load(f"data/dataset/{split}_images.npy", mmap_mode="r")
    n = check_int(ref["n"], "fid_ref.n", 2, len(images))
    dev = device(p["device"])

    mu, sigma = activation_stats(subset(images, n, p["seed"]), inception(weights).to(dev), batch_size=batch_size,
                                 device=dev, progress=True)
    save_stats("data/fid_ref.safetensors", mu, sigma)
    print(f"reference statistics of {n} {split} images ({weights} Inception weights)")


if __name__ == "__main__":
    main()
