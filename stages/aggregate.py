"""Stage aggregate: the sweep's FIDs with their intervals as one table, its figure and a JSON summary: the largest free
skip (its FID not a loss against skip 0's beyond ``sweep.tolerance``, from the paired interval), the NFE it saves, the
real-data FID floor, and the skip the score-error stage predicts."""

import argparse
import json
from pathlib import Path

import pandas as pd
from safetensors.numpy import load_file

from common import atomic_path, load_params, rule, validate, write_json
from hls.study import compare, free_skip
from hls.sweep import figure
from plotting import save_figure

COLUMNS = ["skip", "sigma_skip", "steps", "nfe", "fid", "fid_low", "fid_high", "baseline_steps", "baseline_nfe",
           "fid_baseline_same_nfe", "fid_baseline_same_nfe_low", "fid_baseline_same_nfe_high"]
RULES = {
    "sweep.skips": rule(lambda v, p: isinstance(v, list) and 0 in v and len(set(v)) == len(v)
                        and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in v),
                        "must be a list of distinct integers >= 0 that includes 0"),
    "sweep.tolerance": rule(lambda v, p: isinstance(v, (int, float)) and 0 <= v < 1,
                            "must be a relative FID tolerance in [0, 1)"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_fid", type=Path, help="folder of skip-K.json records and skip-K.safetensors replicates "
                                                     "(stages/fid.py)")
    parser.add_argument("floor", type=Path, help="the FID floor record (stages/fid_floor.py)")
    parser.add_argument("prediction", type=Path, help="the score-error record (stages/score_error.py)")
    parser.add_argument("--table", type=Path, required=True, help="CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--record", type=Path, required=True, help="JSON summary to write")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON metrics to write: free skip, NFE saved")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    skips, tolerance = sorted(p["sweep"]["skips"]), p["sweep"]["tolerance"]
    records = [json.loads((args.sweep_fid / f"skip-{k}.json").read_text()) for k in skips]
    table = pd.DataFrame(records).reindex(columns=COLUMNS)
    at_zero = table.skip == 0  # skip 0 is the plain sampler itself
    table.loc[at_zero, COLUMNS[-5:]] = table.loc[at_zero, ["steps", "nfe", "fid", "fid_low", "fid_high"]].to_numpy()
    floor = json.loads(args.floor.read_text())["fid_floor"]
    prediction = json.loads(args.prediction.read_text())

    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(figure(table, floor), args.figure)
    by_skip = table.set_index("skip")
    replicates = {k: load_file(args.sweep_fid / f"skip-{k}.safetensors") for k in skips}  # {skip: {set: [B]}}
    teleport = {k: r["images"] for k, r in replicates.items()}
    best = free_skip(by_skip.fid.to_dict(), teleport, tolerance)
    paired = {  # paired FID ratios: each skip vs skip 0, and vs the plain sampler at its NFE
        "vs_skip_0": {str(k): compare(by_skip.fid[k], teleport[k], by_skip.fid[0], teleport[0]) for k in skips},
        "vs_same_nfe": {str(k): compare(by_skip.fid[k], teleport[k], by_skip.fid_baseline_same_nfe[k],
                                        replicates[k]["baseline"]) for k in skips if "baseline" in replicates[k]},
    }
    summary = {
        "free_skip": best, "tolerance": tolerance, "fid_floor": floor,
        "nfe_saved": None if best is None else int(by_skip.nfe[0] - by_skip.nfe[best]),
        "predicted_skip": prediction["predicted_skip"], "sigma_star": prediction["sigma_star"],
        "fid": {str(k): float(v) for k, v in by_skip.fid.items()},
        "fid_baseline_same_nfe": {str(k): float(v) for k, v in by_skip.fid_baseline_same_nfe.dropna().items()},
        "n_samples": int(records[0]["n_samples"]), "n_ref": int(records[0]["n_ref"]), **paired,
    }
    write_json(args.record, summary)
    write_json(args.metrics, {k: summary[k] for k in ("free_skip", "nfe_saved")})
    print(table.to_string(index=False))
    print(json.dumps({k: summary[k] for k in ("free_skip", "nfe_saved", "predicted_skip", "fid_floor")}))


if __name__ == "__main__":
    main()
