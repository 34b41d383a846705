"""The equal-NFE study's summary: each cell against the plain sampler at its budget, the best landing sigma, the NFE
teleport saves, and the figure (one panel per scheduler, FID vs NFE).

A cell is one sample set: ``scheduler``, ``nfe``, ``start`` (plain, gaussian or a control) and ``sigma_skip`` (None
for plain), with its FID, interval and paired bootstrap replicates (``hls.study``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hls.study import compare

COLUMNS = ["scheduler", "nfe", "sigma_skip", "start", "fid", "ci_low", "ci_high", "n", "landing_sigma", "ratio",
           "ratio_low", "ratio_high", "verdict"]


def against_plain(cells: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """``cells`` (one row per cell: scheduler, nfe, start, sigma_skip, fid, ...; ``replicates[i]`` ``[B]`` of row i)
    with the paired FID ratio to the plain cell of the same scheduler and budget (ratio, ratio_low, ratio_high,
    verdict; empty for plain cells and for budgets without a plain cell), in ``COLUMNS`` order, sorted; its index
    keeps each row's position in ``cells`` (and ``replicates``)."""
    cells = cells.reset_index(drop=True)
    plain = {(r.scheduler, r.nfe): i for i, r in cells.iterrows() if r.start == "plain"}
    rows = []
    for i, r in cells.iterrows():
        j = plain.get((r.scheduler, r.nfe))
        rows.append({} if r.start == "plain" or j is None else
                    compare(r.fid, replicates[i], cells.fid[j], replicates[j]))
    table = pd.concat([cells, pd.DataFrame(rows, index=cells.index)], axis=1)
    table["order"] = table.start.map({"plain": 0, "gaussian": 1}).fillna(2)  # plain, gaussian, then the controls
    return table.sort_values(["scheduler", "nfe", "order", "start", "sigma_skip"]).reindex(columns=COLUMNS)


def nfe_for_fid(nfes, fids, target: float) -> float | None:
    """The NFE at which a sampler's curve (``nfes [k]``, ``fids [k]``) reaches FID ``target``: on its best-so-far
    envelope (the lowest FID at no more NFE), linear in log NFE between measured budgets. None when ``target`` lies
    outside the measured range (above the FID at the smallest budget, or below the best)."""
    order = np.argsort(nfes)
    log_n = np.log(np.asarray(nfes, dtype=np.float64)[order])
    best = np.minimum.accumulate(np.asarray(fids, dtype=np.float64)[order])
    if not best[-1] <= target <= best[0]:
        return None
    i = int(np.argmax(best <= target))
    if i == 0:
        return float(math.exp(log_n[0]))
    t = (best[i - 1] - target) / (best[i - 1] - best[i])
    return float(math.exp(log_n[i - 1] + t * (log_n[i] - log_n[i - 1])))


def _interval(row) -> dict:
    return {"fid": row.fid, "ci_low": row.ci_low, "ci_high": row.ci_high}


def summary(table: pd.DataFrame, replicates: list[np.ndarray]) -> dict:
    """Per scheduler and budget (an ``against_plain`` table; ``replicates`` by its index): the plain FID, the best
    Gaussian landing sigma with its FID and paired ratio to plain (verdict from the interval), each control against
    the Gaussian at the same sigma; per scheduler the NFE the best teleport saves at equal FID (``nfe_for_fid`` on the
    plain curve; None outside it)."""
    out = {}
    for scheduler, rows in table.groupby("scheduler", sort=True):
        plain = rows[rows.start == "plain"].sort_values("nfe")
        budgets, saved = {}, {}
        for nfe, cell in rows.groupby("nfe", sort=True):
            entry = {}
            if (cell.start == "plain").any():
                entry["plain"] = _interval(cell[cell.start == "plain"].iloc[0])
            gaussian = cell[cell.start == "gaussian"]
            if len(gaussian):
                best = gaussian.loc[gaussian.fid.idxmin()]
                paired = {} if pd.isna(best.ratio) else {k: best[k] for k in ("ratio", "ratio_low", "ratio_high",
                                                                              "verdict")}
                entry["best"] = {"sigma_skip": best.sigma_skip, **_interval(best), **paired}
                found = nfe_for_fid(plain.nfe, plain.fid, best.fid) if len(plain) else None
                saved[str(nfe)] = None if found is None else round(found - nfe, 2)
            for _, control in cell[~cell.start.isin(["plain", "gaussian"])].iterrows():
                match = gaussian[np.isclose(gaussian.sigma_skip, control.sigma_skip)]
                vs = {} if match.empty else compare(control.fid, replicates[control.name], match.fid.iloc[0],
                                                    replicates[match.index[0]])
                entry[f"{control.start}@{control.sigma_skip:g}"] = _interval(control) | {
                    f"{k}_vs_gaussian" if k != "verdict" else "verdict_vs_gaussian": v for k, v in vs.items()}
            budgets[str(nfe)] = entry
        out[scheduler] = {"nfe": budgets, "nfe_saved": saved}
    return out


def figure(table: pd.DataFrame, floor: float | None = None, path=None):
    """One panel per scheduler: FID vs NFE (log axes, 95 % intervals) of the plain sampler, the best Gaussian teleport
    per budget (its landing sigma annotated) and each control at its best sigma; ``floor`` (real data) dotted. Saves a
    PNG at ``path`` when given. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

    schedulers = sorted(table.scheduler.unique())
    starts = [s for s in ("plain", "gaussian", "isotropic", "mean", "noise") if s in set(table.start)]
    colors = dict(zip(starts, sns.color_palette("colorblind", len(starts))))
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(schedulers), figsize=(4.2 * len(schedulers), 4), squeeze=False, sharey=True)
    for ax, scheduler in zip(axes[0], schedulers):
        rows = table[table.scheduler == scheduler]
        for start in starts:
            best = rows[rows.start == start].sort_values("fid").groupby("nfe").head(1).sort_values("nfe")
            if best.empty:
                continue
            label = {"plain": "plain sampler", "gaussian": "Gaussian teleport (best σ)"}.get(start, f"{start} (best σ)")
            ax.errorbar(best.nfe, best.fid, yerr=[best.fid - best.ci_low, best.ci_high - best.fid], label=label,
                        color=colors[start], marker="o", capsize=3, linestyle="-" if start in ("plain", "gaussian")
                        else "--")
            if start == "gaussian":
                for r in best.itertuples():
                    ax.annotate(f"σ={r.sigma_skip:g}", (r.nfe, r.fid), textcoords="offset points", xytext=(0, -12),
                                ha="center", fontsize=7)
        if floor is not None:
            ax.axhline(floor, color="grey", linestyle=":", label="real data (floor)")
        ax.set(xscale="log", yscale="log", xlabel="NFE (UNet evaluations)", title=scheduler)
        ax.set_xticks(sorted(rows.nfe.unique()), [str(n) for n in sorted(rows.nfe.unique())])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set_ylabel("FID (95 % bootstrap interval)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return fig
