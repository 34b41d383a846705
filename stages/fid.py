"""Stage fid / sweep_fid@skip: FID of a sample folder's ``images.npy`` (and ``baseline.npy``) against the reference
statistics, merged with the folder's ``info.json`` into one JSON record."""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import device, load_params, validate, write_json
from hls.fid import BACKENDS, WEIGHTS, activation_stats, frechet_distance, inception, load_stats


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("samples", type=Path, help="folder written by stages/sample.py")
    parser.add_argument("ref", type=Path, help="reference statistics (.safetensors)")
    parser.add_argument("out", type=Path, help="JSON record to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, "fid.batch_size", choices={"fid.weights": WEIGHTS, "fid.backend": BACKENDS})
    dev = device(p["device"])

    mu_ref, sigma_ref = load_stats(args.ref)
    record = json.loads((args.samples / "info.json").read_text())
    model = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    start = time.time()
    for name, key in (("images", "fid"), ("baseline", "fid_baseline_same_nfe")):
        if (args.samples / f"{name}.npy").exists():
            stats = activation_stats(np.load(args.samples / f"{name}.npy"), model, batch_size=p["fid"]["batch_size"],
                                     device=dev, progress=True)
            record[key] = round(frechet_distance(*stats, mu_ref, sigma_ref), 4)
    record |= {"n_samples": record.pop("n"), "n_ref": p["fid_ref"]["n"], "ref_split": p["fid_ref"]["split"],
               "inception_weights": p["fid"]["weights"], "inception_backend": p["fid"]["backend"]}
    write_json(args.out, record)
    print(json.dumps(record))
    print(f"Inception and FID in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
