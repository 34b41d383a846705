"""Stage aggregate: the sweep's FIDs as one table, its figure and a JSON summary: the largest free skip (FID within
``sweep.tolerance`` of skip 0), the NFE it saves, the real-data FID floor, and the skip the score-error stage
predicts."""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from common import atomic_path, load_params, validate, write_json  # noqa: E402
from hls.score_error import free_skip  # noqa: E402

COLUMNS = ["skip", "sigma_skip", "steps", "nfe", "fid", "baseline_steps", "baseline_nfe", "fid_baseline_same_nfe"]


def figure(table: pd.DataFrame, floor: float, path) -> None:
    """FID against NFE for the teleport sampler and the plain sampler at equal NFE, with the real-data floor."""
    sns.set_theme(style="whitegrid")
    long = pd.concat([
        table.assign(sampler="teleport + sampler", x=table.nfe, y=table.fid),
        table.dropna(subset=["fid_baseline_same_nfe"]).assign(
            sampler="plain sampler, same NFE", x=lambda t: t.baseline_nfe, y=lambda t: t.fid_baseline_same_nfe),
    ])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=long, x="x", y="y", hue="sampler", style="sampler", markers=True, dashes=False, ax=ax)
    for row in table.itertuples():
        ax.annotate(f"skip {row.skip}\nσ={row.sigma_skip:.3g}", (row.nfe, row.fid), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=7)
    ax.axhline(floor, color="grey", linestyle=":", label="real data (floor)")
    ax.set(xlabel="NFE (UNet evaluations)", ylabel="FID", title="FID vs NFE: Gaussian teleport vs plain sampler")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_fid", type=Path, help="folder of skip-K.json records (stages/fid.py)")
    parser.add_argument("floor", type=Path, help="the FID floor record (stages/fid_floor.py)")
    parser.add_argument("prediction", type=Path, help="the score-error record (stages/score_error.py)")
    parser.add_argument("--table", type=Path, required=True, help="CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON summary to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, "sweep.skips", "sweep.tolerance")
    skips, tolerance = sorted(p["sweep"]["skips"]), p["sweep"]["tolerance"]
    records = [json.loads((args.sweep_fid / f"skip-{k}.json").read_text()) for k in skips]
    table = pd.DataFrame(records).reindex(columns=COLUMNS)
    at_zero = table.skip == 0  # skip 0 is the plain sampler itself
    table.loc[at_zero, ["baseline_steps", "baseline_nfe", "fid_baseline_same_nfe"]] = table.loc[
        at_zero, ["steps", "nfe", "fid"]].to_numpy()
    floor = json.loads(args.floor.read_text())["fid_floor"]
    prediction = json.loads(args.prediction.read_text())

    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    figure(table, floor, args.figure)
    by_skip = table.set_index("skip")
    best = free_skip(by_skip.fid.to_dict(), tolerance)
    summary = {
        "free_skip": best, "tolerance": tolerance, "fid_floor": floor,
        "nfe_saved": None if best is None else int(by_skip.nfe[0] - by_skip.nfe[best]),
        "predicted_skip": prediction["predicted_skip"], "sigma_star": prediction["sigma_star"],
        "fid": {str(k): float(v) for k, v in by_skip.fid.items()},
        "fid_baseline_same_nfe": {str(k): float(v) for k, v in by_skip.fid_baseline_same_nfe.dropna().items()},
        "n_samples": int(records[0]["n_samples"]), "n_ref": int(records[0]["n_ref"]),
    }
    write_json(args.metrics, summary)
    print(table.to_string(index=False))
    print(json.dumps({k: summary[k] for k in ("free_skip", "nfe_saved", "predicted_skip", "fid_floor")}))


if __name__ == "__main__":
    main()
