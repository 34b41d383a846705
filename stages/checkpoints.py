"""Checkpoint comparison: one tidy table and figure from the sweep of several experiments (e.g. the bundled model's
EMA snapshots). Run by hand after the experiments; it is no dvc.yaml stage because its inputs are experiments, not
files::

    dvc exp run -n ckpt-470 -S model.source=models/fashion_mnist-ddpm/snapshots/step-000470 aggregate
    python stages/checkpoints.py ckpt-470 ... HEAD --table plots/checkpoints.csv --figure plots/checkpoints.png

Each revision's ``params.yaml``, ``plots/fid_vs_skip.csv``, ``plots/score_error.csv``, ``metrics/sweep.json`` and
``metrics/train.json`` are read with ``dvc.api.read``; the training step comes from the snapshot folder's name
(``step-NNNNNN``), or from ``metrics/train.json`` for the final model.
"""

import argparse
import io
import json
import re
from pathlib import Path

import dvc.api
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from common import atomic_path  # noqa: E402

COLUMNS = ["step", "epochs", "skip", "sigma_skip", "nfe", "fid", "fid_low", "fid_high", "fid_baseline_same_nfe",
           "fid_baseline_same_nfe_low", "fid_baseline_same_nfe_high", "verdict_vs_same_nfe", "gaussian_ev_score",
           "free_skip", "predicted_skip", "sigma_star", "model"]


def commit_of(rev: str) -> str | None:
    """An experiment name -> its commit; other revisions (HEAD, a branch, a commit) as they are; None: workspace."""
    if rev == "workspace":
        return None
    names = {row["Experiment"]: row["rev"] for row in dvc.api.exp_show() if row.get("Experiment")}
    return names.get(rev, rev)


def records(rev: str) -> pd.DataFrame:
    """The sweep table of one revision with its training step and predictions, in ``COLUMNS``."""
    commit = commit_of(rev)

    def read(path):
        return dvc.api.read(path, rev=commit)

    source = yaml.safe_load(read("params.yaml"))["model"]["source"]
    train = json.loads(read("metrics/train.json"))
    match = re.search(r"step-(\d+)", source)
    step = int(match.group(1)) if match else train["steps"]
    sweep = json.loads(read("metrics/sweep.json"))
    table = pd.read_csv(io.StringIO(read("plots/fid_vs_skip.csv")))
    scores = pd.read_csv(io.StringIO(read("plots/score_error.csv")))
    ev = scores.query("approx == 'gaussian' and space == 'score' and metric == 'explained_variance'")
    ev = ev.sort_values("sigma")
    # the Gaussian's score-space explained variance where the teleport lands, interpolated in log sigma
    table["gaussian_ev_score"] = np.interp(np.log(table.sigma_skip), np.log(ev.sigma), ev.value)
    # teleport vs the plain sampler at the same NFE, from the paired interval (aggregate's metrics)
    table["verdict_vs_same_nfe"] = table.skip.map(lambda k: sweep["vs_same_nfe"].get(str(k), {}).get("verdict"))
    return table.assign(step=step, epochs=round(step * train["epochs"] / train["steps"], 2), model=source,
                        free_skip=sweep["free_skip"], predicted_skip=sweep["predicted_skip"],
                        sigma_star=sweep["sigma_star"])[COLUMNS]


def figure(table: pd.DataFrame, path) -> None:
    """FID vs NFE per checkpoint (teleport solid, plain sampler at equal NFE dashed) and the Gaussian's score-space
    unexplained variance at each landing sigma."""
    sns.set_theme(style="whitegrid")
    table = table.assign(checkpoint=[f"step {s} ({e:g} epochs)" for s, e in zip(table.step, table.epochs)])
    order = list(dict.fromkeys(table.sort_values("step").checkpoint))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    long = pd.concat([table.assign(sampler="teleport", y=table.fid),
                      table.assign(sampler="plain, same NFE", y=table.fid_baseline_same_nfe)])
    sns.lineplot(data=long, x="nfe", y="y", hue="checkpoint", hue_order=order, style="sampler", markers=True,
                 ax=left)
    left.set(xlabel="NFE (UNet evaluations)", ylabel="FID", yscale="log",
             title="FID vs NFE: teleport (skip k of 50) vs plain sampler")
    sns.lineplot(data=table.assign(unexplained=1 - table.gaussian_ev_score), x="sigma_skip", y="unexplained",
                 hue="checkpoint", hue_order=order, marker="o", ax=right, legend=False)
    for row in table.drop_duplicates("checkpoint").itertuples():
        if row.sigma_star is not None and not pd.isna(row.sigma_star):
            right.axvline(row.sigma_star, color=sns.color_palette()[order.index(row.checkpoint)], linestyle=":")
    right.set(xscale="log", yscale="log", xlabel="landing σ of skip k", ylabel="1 − EV (Gaussian, score space)",
              title="Gaussian score error where the teleport lands (dotted: σ*)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+", help="experiment names or git revisions (HEAD, workspace)")
    parser.add_argument("--table", type=Path, required=True, help="tidy CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    table = pd.concat([records(rev) for rev in args.revs]).sort_values(["step", "skip"])
    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    figure(table, args.figure)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
