"""Stage pareto (the study slice of dvc.yaml, and the full grid of study/dvc.yaml): the cells of the study's params
(``--grid``) as one table (each FID with its interval, its paired ratio to the plain sampler of the same scheduler,
family and budget, and for the other starts to the Gaussian jump at the same landing), the best landing per budget,
the frontier across samplers at equal NFE and at equal compute, the figure, and the frontier's ratios as metrics."""

import argparse
import json
from pathlib import Path

import pandas as pd
from safetensors.numpy import load_file

from common import atomic_path, fail, load_params, write_json
from hls.pareto import against_plain, figure, frontier, landings
from plotting import save_figure


def cell_names(study: dict) -> list[str]:
    """The cells of the study's axes, by the names of their stage outputs (dvc.yaml, study/dvc.yaml)."""
    grid = [f"{sampler}-{nfe}" for sampler in study["samplers"] for nfe in study["nfe"]]
    names = [f"{g}-plain" for g in grid] + [f"{g}-gaussian-{sigma}" for g in grid for sigma in study["sigmas"]]
    for axes in (study[key] for key in ("controls", "mixtures") if key in study):
        names += [f"{sampler}-{nfe}-{start}-{sigma}" for sampler in axes["samplers"] for nfe in study["nfe"]
                  for start in axes["starts"] for sigma in axes["sigmas"]]
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cells", type=Path, help="folder of <cell>.json records and <cell>.safetensors replicates")
    parser.add_argument("floor", type=Path, help="the FID floor record (stages/fid_floor.py), at the cells' n")
    parser.add_argument("--grid", default="params.yaml", help="the params file of the study's axes")
    for name in ("table", "figure", "landings", "frontier", "metrics"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {name} to write")
    args = parser.parse_args()
    names = cell_names(load_params(args.grid)["study"])
    missing = [name for name in names if not (args.cells / f"{name}.json").exists()]
    if missing:
        fail("study", f"{len(missing)} cells", f"have no record in {args.cells} (e.g. {missing[0]}); run dvc repro",
             args.grid)
    records = pd.DataFrame([json.loads((args.cells / f"{name}.json").read_text()) for name in names])
    replicates = [load_file(args.cells / f"{name}.safetensors")["images"] for name in names]
    table = against_plain(records, replicates)
    best, front = landings(table), frontier(table, replicates)
    floor = json.loads(args.floor.read_text())["by_n"].get(str(int(records.n.iloc[0])))  # at the cells' n

    for frame, path in ((table, args.table), (best, args.landings), (front, args.frontier)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(figure(table, front, floor), args.figure)
    ratios = {str(budget): {row.basis: round(row.ratio, 4) for row in rows.itertuples() if not pd.isna(row.ratio)}
              for budget, rows in front.groupby("budget")}
    # the ratios are the metrics dvc shows; the list (which dvc metrics show leaves out) is each one in full
    detail = json.loads(front.to_json(orient="records", double_precision=6))
    write_json(args.metrics, {"frontier": ratios, "frontier_cells": detail})
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(best.to_string(index=False))
        print(front.to_string(index=False))


if __name__ == "__main__":
    main()
