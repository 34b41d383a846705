"""Checkpoint comparison: one tidy table and figure from the sweep of several experiments (e.g. the bundled model's
EMA snapshots), and one table of their study slices (every slice cell with its FID interval and its paired ratio to
the plain sampler: the Gaussian and the mixture starts against the network's own flow). Run by hand after the
experiments; it is no dvc.yaml stage because its inputs are experiments, not files::

    dvc exp run -n ckpt-470 -S model.source=models/fashion_mnist-ddpm/snapshots/step-000470 aggregate fid pareto
    python stages/checkpoints.py ckpt-470 ... HEAD --table plots/checkpoints.csv --figure plots/checkpoints.png \
        --slice plots/checkpoints_slice.csv

With ``--update`` the tables gain the given revisions' rows (replacing rows of the same model source) and keep the
others, so that the experiments can run in several sittings: each sitting's collection is committed, and experiment
refs need not outlive it.

With ``--baseline REV`` (e.g. the commit of an earlier bundled model) every slice cell is also compared with the same
cell of that revision, paired (``ratio_vs_baseline``...: the FID ratio with its interval and verdict): the same
seeds, n and bootstrap resamples, another network. A cell the baseline lacks gets no ratio.

Each revision's ``params.yaml``, ``plots/fid_vs_skip.csv``, ``plots/score_error.csv``, ``plots/slice/pareto.csv``,
``data/sweep.json`` (the aggregate stage's record, from the DVC cache) and ``metrics/train.json`` are read with
``dvc.api.read``; the training step comes from the snapshot folder's name (``step-NNNNNN``), or from
``metrics/train.json`` for the final model.
"""

import argparse
import functools
import io
import json
import re
from pathlib import Path

import dvc.api
import numpy as np
import pandas as pd
import yaml
from dvc.repo import Repo
from safetensors.numpy import load

from common import atomic_path
from hls.pareto import COMPARISON, names_of
from hls.study import compare
from hls.sweep import checkpoints_figure
from plotting import save_figure

PAIRED = ["vs_same_nfe", "vs_skip_0"]  # aggregate's paired comparisons of each skip, as COMPARISON columns
COLUMNS = ["step", "epochs", "skip", "sigma_skip", "nfe", "fid", "fid_low", "fid_high", "fid_baseline_same_nfe",
           "fid_baseline_same_nfe_low", "fid_baseline_same_nfe_high",
           *[f"{c}_{key}" for key in PAIRED for c in COMPARISON], "gaussian_ev_score", "free_skip", "predicted_skip",
           "sigma_star", "model"]


@functools.cache
def commit_of(rev: str) -> str | None:
    """An experiment name (of any baseline commit, so that HEAD may move on) -> its commit; other revisions (HEAD, a
    branch, a commit) as they are; None: workspace."""
    if rev == "workspace":
        return None
    with Repo() as repo:
        names = dict(exp for exps in repo.experiments.ls(all_commits=True).values() for exp in exps)
    return names.get(rev, rev)


SLICE = ["step", "epochs", "scheduler", "family", "nfe", "start", "sigma_skip", "fid", "fid_low", "fid_high",
         "jump_cost", "compute", "ratio", "ratio_low", "ratio_high", "verdict", "model"]


def reader(rev: str):
    """``read(path)`` of one revision's files, and its ``(model source, training step, epochs)``."""
    commit = commit_of(rev)

    def read(path, mode="r"):
        return dvc.api.read(path, rev=commit, mode=mode)

    source = yaml.safe_load(read("params.yaml"))["model"]["source"]
    train = json.loads(read("metrics/train.json"))
    match = re.search(r"step-(\d+)", source)
    step = int(match.group(1)) if match else train["steps"]
    return read, (source, step, round(step * train["epochs"] / train["steps"], 2))


BASELINE = [f"{c}_vs_baseline" for c in COMPARISON]  # the columns of hls.pareto's comparisons


def slice_cells(rev: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The study slice of one revision (``plots/slice/pareto.csv``) with its training step, and the bootstrap
    replicates ``[B]`` of its cells by name (``plots/slice/cells/<name>.safetensors``)."""
    read, (source, step, epochs) = reader(rev)
    table = pd.read_csv(io.StringIO(read("plots/slice/pareto.csv"))).assign(step=step, epochs=epochs, model=source)
    names = names_of(table)
    replicates = {name: load(read(f"plots/slice/cells/{name}.safetensors", mode="rb"))["images"] for name in names}
    return table.set_axis(names), replicates


def slice_records(rev: str, baseline: tuple[pd.DataFrame, dict] | None) -> pd.DataFrame:
    """The study slice of one revision in ``SLICE``, and with a ``baseline`` (``slice_cells`` of another revision;
    the same n and resamples) in ``BASELINE`` each cell's paired FID ratio to the same cell there, if it has one."""
    table, replicates = slice_cells(rev)
    if baseline is None:
        return table[SLICE].reset_index(drop=True)
    base, base_replicates = baseline
    rows = {}
    for name in table.index.intersection(base.index):
        if base.n[name] != table.n[name] or len(base_replicates[name]) != len(replicates[name]):
            raise ValueError(f"--baseline: cell {name} has n {base.n[name]} and {len(base_replicates[name])} "
                             f"resamples there, {table.n[name]} and {len(replicates[name])} in {rev}")
        ratio = compare(table.fid[name], replicates[name], base.fid[name], base_replicates[name])
        rows[name] = [ratio[c] for c in COMPARISON]
    ratios = pd.DataFrame.from_dict(rows, orient="index", columns=BASELINE)
    return table[SLICE].join(ratios).reset_index(drop=True)


def records(rev: str) -> pd.DataFrame:
    """The sweep table of one revision with its training step and predictions, in ``COLUMNS``."""
    read, (source, step, epochs) = reader(rev)
    sweep = json.loads(read("data/sweep.json"))
    table = pd.read_csv(io.StringIO(read("plots/fid_vs_skip.csv")))
    scores = pd.read_csv(io.StringIO(read("plots/score_error.csv")))
    ev = scores.query("approx == 'gaussian' and space == 'score' and metric == 'explained_variance'")
    ev = ev.sort_values("sigma")
    # the Gaussian's score-space explained variance where the teleport lands, interpolated in log sigma
    table["gaussian_ev_score"] = np.interp(np.log(table.sigma_skip), np.log(ev.sigma), ev.value)
    # teleport vs the plain sampler at the same NFE and vs skip 0, from the paired intervals (aggregate's record)
    for key in PAIRED:
        paired = pd.DataFrame.from_dict(sweep[key], orient="index").reindex(table.skip.astype(str))
        table = table.join(paired[COMPARISON].add_suffix(f"_{key}").set_axis(table.index))
    return table.assign(step=step, epochs=epochs, model=source, free_skip=sweep["free_skip"],
                        predicted_skip=sweep["predicted_skip"], sigma_star=sweep["sigma_star"])[COLUMNS]


def updated(table: pd.DataFrame, path: Path, update: bool) -> pd.DataFrame:
    """``table`` alone, or with ``update`` the rows of the CSV at ``path`` (if any) whose model ``table`` lacks."""
    if not update or not path.exists():
        return table
    old = pd.read_csv(path)
    return pd.concat([old[~old.model.isin(table.model)], table])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+", help="experiment names or git revisions (HEAD, workspace)")
    parser.add_argument("--table", type=Path, required=True, help="tidy CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--slice", type=Path, help="tidy CSV of the revisions' study slices to write")
    parser.add_argument("--baseline", help="a revision whose slice cells every slice cell is compared with, paired")
    parser.add_argument("--update", action="store_true",
                        help="keep the existing tables' rows of other models (replace those of the same model)")
    args = parser.parse_args()
    table = updated(pd.concat([records(rev) for rev in args.revs]), args.table, args.update)
    table = table.sort_values(["step", "skip"])
    with atomic_path(args.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(checkpoints_figure(table), args.figure)
    print(table.to_string(index=False))
    if args.slice is not None:
        baseline = None if args.baseline is None else slice_cells(args.baseline)
        cells = updated(pd.concat([slice_records(rev, baseline) for rev in args.revs]), args.slice, args.update)
        cells = cells.sort_values(["step", "nfe"], kind="stable")
        with atomic_path(args.slice) as tmp:
            cells.to_csv(tmp, index=False, float_format="%.6g")
        print(cells.to_string(index=False))


if __name__ == "__main__":
    main()
