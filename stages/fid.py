"""Stage fid / sweep_fid@skip: FID of a sample folder's ``images.npy`` (and ``baseline.npy``) against the reference
statistics, merged with the folder's ``info.json`` into one JSON record."""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import check_choice, check_int, device, load_params, write_json
from fid_stats import load_stats

from hls.fid import WEIGHTS, activation_stats, frechet_distance, inception


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("samples", type=Path, help="folder written by stages/sample.py")
    parser.add_argument("out", type=Path, help="JSON record to write")
    args = parser.parse_args()
    p = load_params()
    weights = check_choice(p["fid"]["weights"], "fid.weights", WEIGHTS)
    batch_size = check_int(p["fid"]["batch_size"], "fid.batch_size", 1)
    dev = device(p["device"])

    mu_ref, sigma_ref = load_stats("data/fid_ref.safetensors")
    record = json.loads((args.samples / "info.json").read_text())
    model = inception(weights).to(dev)
    start = time.time()
    for name, key in (("images", "fid"), ("baseline", "fid_baseline_same_nfe")):
        if (args.samples / f"{name}.npy").exists():
            stats = activation_stats(np.load(args.samples / f"{name}.npy"), model, batch_size=batch_size, device=dev,
                                     progress=True)
            record[key] = round(frechet_distance(*stats, mu_ref, sigma_ref), 4)
    record |= {"n_samples": record.pop("n"), "n_ref": p["fid_ref"]["n"], "ref_split": p["fid_ref"]["split"],
               "inception_weights": weights, "fid_seconds": round(time.time() - start, 1)}
    write_json(args.out, record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
