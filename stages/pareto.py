"""Stage pareto: the equal-NFE study's cells as one tidy table (each FID with its interval and its paired ratio to the
plain sampler at the same budget), the figure, and a JSON summary per scheduler and budget (``hls.pareto``), beside
the real-data floor and the score-error stage's σ*."""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from common import atomic_path, fail, load_params, summary_outputs, write_json  # noqa: E402
from hls.pareto import against_plain, figure, summary  # noqa: E402


def cells(p: dict) -> list[str]:
    """The cell names of the grid in params.yaml: the study stages' output names in dvc.yaml."""
    s = p["study"]
    grid = [f"{sch}-{nfe}" for sch in s["schedulers"] for nfe in s["nfe"]]
    return ([f"{g}-plain" for g in grid] + [f"{g}-gaussian-{sigma}" for g in grid for sigma in s["sigmas"]]
            + [f"{g}-{c}-{sigma}" for g in grid for c in s["controls"] for sigma in s["control_sigmas"]])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study_fid", type=Path, help="folder of <cell>.json records and <cell>.safetensors replicates")
    summary_outputs(parser)
    args = parser.parse_args()
    p = load_params()
    names = cells(p)
    missing = [name for name in names if not (args.study_fid / f"{name}.json").exists()]
    if missing:
        fail("study", f"{len(missing)} cells", f"have no FID record in {args.study_fid} (e.g. {missing[0]}); "
                                               "run dvc repro")
    records = pd.DataFrame([json.loads((args.study_fid / f"{name}.json").read_text()) for name in names])
    replicates = [load_file(args.study_fid / f"{name}.safetensors")["images"] for name in names]
    records = records.rename(columns={"fid_low": "ci_low", "fid_high": "ci_high", "n_samples": "n"})
    table = against_plain(records, replicates)
    floor = json.loads(args.floor.read_text())["fid_floor"]
    prediction = json.loads(args.prediction.read_text())

    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(args.figure) as tmp:
        plt.close(figure(table, floor, tmp))
    write_json(args.metrics, {"schedulers": summary(table, replicates), "fid_floor": floor,
                              "sigma_star": prediction["sigma_star"], "n_samples": int(records.n.iloc[0]),
                              "bootstrap": int(records.bootstrap.iloc[0])})
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
