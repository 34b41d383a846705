"""Stage aggregate: the sweep's FIDs as one table (plots/fid_vs_skip.csv), its figure (plots/fid_vs_skip.png) and
the summary metrics/sweep.json: the largest free skip (FID within ``sweep.tolerance`` of skip 0), the NFE it saves,
the real-data FID floor, and the skip that the score-error stage predicts."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from common import atomic_path, check, load_params, write_json  # noqa: E402

COLUMNS = ["skip", "sigma_skip", "steps", "nfe", "fid", "baseline_steps", "baseline_nfe", "fid_baseline_same_nfe"]


def free_skip(table: pd.DataFrame, tolerance: float):
    """Largest skip whose FID is within ``tolerance`` (relative) of skip 0's; None without skip 0 in the sweep."""
    if 0 not in set(table.skip):
        return None
    reference = table.set_index("skip").fid[0]
    return int(table[table.fid <= (1 + tolerance) * reference].skip.max())


def figure(table: pd.DataFrame, floor: float, path) -> None:
    """FID against NFE for the teleport sampler and the plain sampler at equal NFE, with the real-data floor."""
    sns.set_theme(style="whitegrid")
    long = pd.concat([
        table.assign(sampler="teleport + sampler", x=table.nfe, y=table.fid),
        table.dropna(subset=["fid_baseline_same_nfe"]).assign(sampler="plain sampler, same NFE", x=lambda t: t.baseline_nfe,
                                                               y=lambda t: t.fid_baseline_same_nfe),
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
    p = load_params()
    skips = p["sweep"]["skips"]
    check(isinstance(skips, list) and 0 in skips and len(set(skips)) == len(skips)
          and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in skips),
          "sweep.skips", skips, "must be a list of distinct integers >= 0 that includes 0")
    tolerance = p["sweep"]["tolerance"]
    check(0 <= tolerance < 1, "sweep.tolerance", tolerance, "must be a relative FID tolerance in [0, 1)")
    records = [json.loads(Path(f"data/sweep_fid/skip-{k}.json").read_text()) for k in sorted(skips)]
    table = pd.DataFrame(records).reindex(columns=COLUMNS)
    at_zero = table.skip == 0  # skip 0 is the plain sampler itself
    table.loc[at_zero, ["baseline_steps", "baseline_nfe", "fid_baseline_same_nfe"]] = table.loc[
        at_zero, ["steps", "nfe", "fid"]].to_numpy()
    floor = json.loads(Path("data/fid_floor.json").read_text())["fid_floor"]
    prediction = json.loads(Path("metrics/score_error.json").read_text())

    with atomic_path("plots/fid_vs_skip.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    figure(table, floor, "plots/fid_vs_skip.png")
    best = free_skip(table, tolerance)
    by_skip = table.set_index("skip")
    summary = {
        "free_skip": best, "tolerance": tolerance, "fid_floor": floor,
        "nfe_saved": None if best is None else int(by_skip.nfe[0] - by_skip.nfe[best]),
        "predicted_skip": prediction["predicted_skip"], "sigma_star": prediction["sigma_star"],
        "fid": {str(k): float(v) for k, v in by_skip.fid.items()},
        "fid_baseline_same_nfe": {str(k): float(v) for k, v in by_skip.fid_baseline_same_nfe.dropna().items()},
        "n_samples": int(records[0]["n_samples"]), "n_ref": int(records[0]["n_ref"]),
    }
    write_json("metrics/sweep.json", summary)
    print(table.to_string(index=False))
    print(json.dumps({k: summary[k] for k in ("free_skip", "nfe_saved", "predicted_skip", "fid_floor")}))


if __name__ == "__main__":
    main()
