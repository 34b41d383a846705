"""Stage pareto (the study slice of dvc.yaml, and the full grid of study/dvc.yaml): the cells of the study's params
(``--grid``) as one table (each FID with its interval, its paired ratio to the plain sampler of the same scheduler,
family and budget, and for the other starts to the Gaussian jump at the same landing), the best landing per budget,
the frontier across samplers and families at equal NFE and at equal compute, the figure, the best landings' paired
ratios as a figure, and the frontier's ratios as metrics. With ``--heldout`` (stages/heldout.py), the chosen cells'
held-out FIDs and paired ratios beside the in-sample ones, and the optimizer's landing against the grid's best,
held-out."""

import argparse
import json
from pathlib import Path

import pandas as pd

from common import atomic_path, fail, load_params, write_json
from hls.pareto import (
    against_plain,
    cell_names,
    figure,
    frontier,
    heldout_frontier,
    heldout_names,
    landings,
    optimizer_vs_grid,
    ratio_figure,
    read_cells,
    with_heldout,
)
from plotting import save_figure


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cells", type=Path, help="folder of <cell>.json records and <cell>.safetensors replicates")
    parser.add_argument("floor", type=Path, help="the FID floor record (stages/fid_floor.py), at the cells' n")
    parser.add_argument("--grid", default="params.yaml", help="the params file of the study's axes")
    parser.add_argument("--heldout", type=Path, help="folder of the held-out cells (stages/heldout.py)")
    for name in ("table", "figure", "ratios", "landings", "frontier", "metrics"):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {name} to write")
    args = parser.parse_args()
    try:
        records, replicates = read_cells(args.cells, cell_names(load_params(args.grid)["study"]))
        table = against_plain(records, replicates)
        best, front = landings(table), frontier(table, replicates)
        if args.heldout is not None:
            held, held_replicates = read_cells(args.heldout, heldout_names(table, best, front))
            held = against_plain(held, held_replicates)
            table, best = with_heldout(table, held), with_heldout(best, held, on="cell")
            best = optimizer_vs_grid(best, held, held_replicates)
            front = heldout_frontier(front, held, held_replicates)
    except FileNotFoundError as err:
        fail("study", "its cells", f"{err}; run dvc repro", args.grid)
    floor = json.loads(args.floor.read_text())["by_n"].get(str(int(records.n.iloc[0])))  # at the cells' n

    for frame, path in ((table, args.table), (best, args.landings), (front, args.frontier)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(figure(table, front, floor), args.figure)
    save_figure(ratio_figure(best), args.ratios)
    ratios = {str(budget): {f"{row.basis}{suffix}": round(value, 4) for row in rows.itertuples()
                            for suffix, value in (("", row.ratio), ("_heldout", getattr(row, "heldout_ratio", None)))
                            if value is not None and not pd.isna(value)}
              for budget, rows in front.groupby("budget")}
    # the ratios are the metrics dvc shows; the list (which dvc metrics show leaves out) is each one in full
    detail = json.loads(front.to_json(orient="records", double_precision=6))
    write_json(args.metrics, {"frontier": ratios, "frontier_cells": detail})
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(best.to_string(index=False))
        print(front.to_string(index=False))


if __name__ == "__main__":
    main()
