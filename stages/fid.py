"""Stage fid / sweep_fid@skip: FID of a sample folder's ``images.npy`` (and ``baseline.npy``) against the reference
statistics, each with its bootstrap interval, merged with the folder's ``info.json`` into one JSON record;
``--replicates`` also keeps the replicate FIDs for paired comparisons (``hls.study``)."""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from common import atomic_path, choice, device, integer, load_params, validate, write_json
from hls.fid import BACKENDS, WEIGHTS, activations, fid_with_replicates, inception, load_stats
from hls.study import interval

SETS = {"images": "fid", "baseline": "fid_baseline_same_nfe"}  # file stem -> record key
RULES = {"seed": integer(0), "fid.batch_size": integer(1), "fid.bootstrap": integer(10),
         "fid.weights": choice(WEIGHTS), "fid.backend": choice(BACKENDS)}
METRICS = ("fid", "fid_low", "fid_high", "nfe")  # of the record, for --metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("samples", type=Path, help="folder written by stages/sample.py")
    parser.add_argument("ref", type=Path, help="reference statistics (.safetensors)")
    parser.add_argument("out", type=Path, help="JSON record to write")
    parser.add_argument("--replicates", type=Path, help="also write each set's replicate FIDs [fid.bootstrap] here "
                                                        "(.safetensors, one tensor per set: images, baseline)")
    parser.add_argument("--metrics", type=Path, help="also write the record's headline numbers here (JSON)")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    dev = device(p["device"])

    mu_ref, sigma_ref = load_stats(args.ref)
    record = json.loads((args.samples / "info.json").read_text())
    model = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    replicates = {}
    for name, key in SETS.items():
        if not (args.samples / f"{name}.npy").exists():
            continue
        start = time.time()
        features = activations(np.load(args.samples / f"{name}.npy"), model, batch_size=p["fid"]["batch_size"],
                               device=dev, progress=True)
        middle = time.time()
        fid, replicates[name] = fid_with_replicates(features, mu_ref, sigma_ref, p["fid"]["bootstrap"], p["seed"])
        lo, hi = interval(fid, replicates[name])
        record |= {key: round(fid, 4), f"{key}_low": round(lo, 4), f"{key}_high": round(hi, 4)}
        print(f"{name}: FID {fid:.4f} [{lo:.4f}, {hi:.4f}]; Inception {middle - start:.1f} s, FID and "
              f"{p['fid']['bootstrap']} bootstrap resamples {time.time() - middle:.1f} s")
    record |= {"n_samples": record.pop("n"), "n_ref": p["fid_ref"]["n"], "ref_split": p["fid_ref"]["split"],
               "inception_weights": p["fid"]["weights"], "inception_backend": p["fid"]["backend"],
               "bootstrap": p["fid"]["bootstrap"]}
    if args.replicates:
        with atomic_path(args.replicates) as tmp:
            save_file({k: torch.from_numpy(v) for k, v in replicates.items()}, str(tmp))
    write_json(args.out, record)
    if args.metrics:
        write_json(args.metrics, {key: record[key] for key in METRICS})
    print(json.dumps(record))


if __name__ == "__main__":
    main()
