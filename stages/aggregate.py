"""Stage aggregate: the sweep's FIDs with their intervals as one table, its figure and a JSON summary: the largest free
skip (its FID not a loss against skip 0's beyond ``sweep.tolerance``, from the paired interval), the NFE it saves, the
real-data FID floor, and the skip the score-error stage predicts."""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from common import atomic_path, load_params, summary_outputs, validate, write_json  # noqa: E402
from hls.study import compare, free_skip  # noqa: E402

COLUMNS = ["skip", "sigma_skip", "steps", "nfe", "fid", "fid_low", "fid_high", "baseline_steps", "baseline_nfe",
           "fid_baseline_same_nfe", "fid_baseline_same_nfe_low", "fid_baseline_same_nfe_high"]


def figure(table: pd.DataFrame, floor: float, path) -> None:
    """FID against NFE for the teleport sampler and the plain sampler at equal NFE, with the real-data floor."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("teleport + sampler", "nfe", "fid"),
              ("plain sampler, same NFE", "baseline_nfe", "fid_baseline_same_nfe")]
    for (label, x, y), color in zip(series, sns.color_palette("colorblind")):
        t = table.dropna(subset=[y]).sort_values(x)
        ax.errorbar(t[x], t[y], yerr=[t[y] - t[f"{y}_low"], t[f"{y}_high"] - t[y]], label=label, color=color,
                    marker="o", capsize=3)
    for row in table.itertuples():
        ax.annotate(f"skip {row.skip}\nσ={row.sigma_skip:.3g}", (row.nfe, row.fid), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=7)
    ax.axhline(floor, color="grey", linestyle=":", label="real data (floor)")
    ax.set(xlabel="NFE (UNet evaluations)", ylabel="FID (95 % bootstrap interval)",
           title="FID vs NFE: Gaussian teleport vs plain sampler")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_fid", type=Path, help="folder of skip-K.json records and skip-K.safetensors replicates "
                                                     "(stages/fid.py)")
    summary_outputs(parser)
    args = parser.parse_args()
    p = load_params()
    validate(p, "sweep.skips", "sweep.tolerance")
    skips, tolerance = sorted(p["sweep"]["skips"]), p["sweep"]["tolerance"]
    records = [json.loads((args.sweep_fid / f"skip-{k}.json").read_text()) for k in skips]
    table = pd.DataFrame(records).reindex(columns=COLUMNS)
    at_zero = table.skip == 0  # skip 0 is the plain sampler itself
    table.loc[at_zero, COLUMNS[-5:]] = table.loc[at_zero, ["steps", "nfe", "fid", "fid_low", "fid_high"]].to_numpy()
    floor = json.loads(args.floor.read_text())["fid_floor"]
    prediction = json.loads(args.prediction.read_text())

    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    figure(table, floor, args.figure)
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
    write_json(args.metrics, summary)
    print(table.to_string(index=False))
    print(json.dumps({k: summary[k] for k in ("free_skip", "nfe_saved", "predicted_skip", "fid_floor")}))


if __name__ == "__main__":
    main()
