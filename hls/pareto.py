"""The equal-NFE study's summary: each cell against the plain sampler of its sampler (scheduler and spacing family) at
its budget, the controls against the Gaussian jump, the best landing per budget (flagged when it lies at the edge of
the sigma grid), the frontier across samplers at equal NFE and at equal compute, and the figure.

A cell is one sample set with its record (``stages/cell.py``: scheduler, family, nfe, start, sigma_skip, fid,
fid_low, fid_high, jump_cost, compute, ...) and its paired bootstrap replicates (``hls.study``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hls.study import compare

JUMP_STARTS = ("gaussian", "isotropic", "mean", "gmm_kmeans", "gmm_classes")  # teleport: a jump with an analytic model
COMPARISON = ["ratio", "ratio_low", "ratio_high", "verdict"]
COLUMNS = ["scheduler", "family", "nfe", "start", "sigma_skip", "landing_sigma", "fid", "fid_low", "fid_high", "n",
           "jump_cost", "compute", *COMPARISON, *(f"{c}_vs_gaussian" for c in COMPARISON)]
LANDINGS = ["scheduler", "family", "nfe", "sigma_skip", "fid", "fid_low", "fid_high", *COMPARISON, "edge",
            "sigmas_tried", "plain_fid", "nfe_saved"]
FRONTIER = ["budget", "basis", "plain", "plain_fid", "plain_fid_low", "plain_fid_high", "teleport", "teleport_fid",
            "teleport_fid_low", "teleport_fid_high", "teleport_compute", *COMPARISON]


def cell_name(row) -> str:
    """``scheduler-family-nfe-start[-sigma]``: the cell's name in the study's stage outputs."""
    sigma = "" if pd.isna(row.sigma_skip) else f"-{row.sigma_skip:g}"
    return f"{row.scheduler}-{row.family}-{row.nfe}-{row.start}{sigma}"


def _paired(cells: pd.DataFrame, replicates: list[np.ndarray], i: int, j) -> dict:
    return {} if j is None else compare(cells.fid[i], replicates[i], cells.fid[j], replicates[j])


def against_plain(cells: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """``cells`` (one record per row, ``replicates[i]`` ``[B]`` of row i) with two paired FID ratios: to the plain
    cell of the same scheduler, family and budget (``ratio``...), and for a control or mixture start to the Gaussian
    jump at the same landing (``ratio_vs_gaussian``...). ``COLUMNS`` order, sorted; the index keeps each row's
    position in ``cells``."""
    cells = cells.reset_index(drop=True)
    key = ["scheduler", "family", "nfe"]
    plain = {tuple(r[key]): i for i, r in cells.iterrows() if r.start == "plain"}
    gaussian = {(*r[key], r.sigma_skip): i for i, r in cells.iterrows() if r.start == "gaussian"}
    rows = []
    for i, r in cells.iterrows():
        to_plain = {} if r.start == "plain" else _paired(cells, replicates, i, plain.get(tuple(r[key])))
        to_gaussian = {} if r.start in ("plain", "gaussian") else _paired(
            cells, replicates, i, gaussian.get((*r[key], r.sigma_skip)))
        rows.append(to_plain | {f"{k}_vs_gaussian": v for k, v in to_gaussian.items()})
    table = pd.concat([cells, pd.DataFrame(rows, index=cells.index)], axis=1).reindex(columns=COLUMNS)
    order = table.start.map({"plain": 0, "gaussian": 1}).fillna(2)  # plain, gaussian, then the other starts
    return table.assign(_order=order).sort_values(["scheduler", "family", "nfe", "_order", "start", "sigma_skip"],
                                                  ascending=[True, True, True, True, True, False]).drop(
        columns="_order")


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


def landings(table: pd.DataFrame) -> pd.DataFrame:
    """The best Gaussian landing per scheduler, family and budget (an ``against_plain`` table): its sigma, FID and
    paired ratio to plain; ``edge`` "top" or "bottom" when it is the largest or smallest sigma tried (the optimum may
    lie beyond: no claim rests on it), else ""; the NFE it saves at equal FID on the plain curve (``nfe_for_fid``;
    empty outside the curve)."""
    rows = []
    for (scheduler, family), sampler in table.groupby(["scheduler", "family"], sort=True):
        plain = sampler[sampler.start == "plain"].sort_values("nfe")
        for nfe, cell in sampler[sampler.start == "gaussian"].groupby("nfe", sort=True):
            best = cell.loc[cell.fid.idxmin()]
            sigmas = sorted(cell.sigma_skip)
            edge = "top" if best.sigma_skip == sigmas[-1] else "bottom" if best.sigma_skip == sigmas[0] else ""
            found = nfe_for_fid(plain.nfe, plain.fid, best.fid) if len(plain) else None
            plain_fid = plain.fid[plain.nfe == nfe]
            rows.append({"scheduler": scheduler, "family": family, "nfe": nfe, **best[["sigma_skip", "fid", "fid_low",
                         "fid_high", *COMPARISON]].to_dict(), "edge": edge,
                         "sigmas_tried": " ".join(f"{s:g}" for s in sigmas),
                         "plain_fid": plain_fid.iloc[0] if len(plain_fid) else np.nan,
                         "nfe_saved": np.nan if found is None else round(found - nfe, 2)})
    return pd.DataFrame(rows, columns=LANDINGS)


def _best(candidates: pd.DataFrame):
    return None if candidates.empty else candidates.fid.idxmin()


def frontier(table: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """Per budget B of the study, the best plain cell over every scheduler and family against the best teleport cell
    (any jump start) over all, paired: at equal NFE (both spend B UNet evaluations) and at equal compute (plain with
    NFE <= B against teleport whose NFE + jump cost, rounded to whole UNet evaluations, is <= B). ``replicates`` by
    the table's index."""
    plain, jumps = table[table.start == "plain"], table[table.start.isin(JUMP_STARTS)]
    rows = []
    for budget in sorted(table.nfe.unique()):
        for basis, p, t in (("nfe", plain[plain.nfe == budget], jumps[jumps.nfe == budget]),
                            ("compute", plain[plain.nfe <= budget], jumps[jumps.compute.round() <= budget])):
            i, j = _best(p), _best(t)
            row = {"budget": budget, "basis": basis}
            if i is not None:
                row |= {"plain": cell_name(table.loc[i]), "plain_fid": table.fid[i], "plain_fid_low": table.fid_low[i],
                        "plain_fid_high": table.fid_high[i]}
            if j is not None:
                row |= {"teleport": cell_name(table.loc[j]), "teleport_fid": table.fid[j],
                        "teleport_fid_low": table.fid_low[j], "teleport_fid_high": table.fid_high[j],
                        "teleport_compute": table.compute[j]}
            if i is not None and j is not None:
                row |= compare(table.fid[j], replicates[j], table.fid[i], replicates[i])
            rows.append(row)
    return pd.DataFrame(rows, columns=FRONTIER)


def figure(table: pd.DataFrame, front: pd.DataFrame | None = None, floor: float | None = None):
    """FID vs NFE (log axes, 95 % intervals): one panel per sampler with the plain sampler, the best Gaussian landing
    per budget (its sigma annotated) and each other start at its best landing; and a last panel with the frontier at
    equal NFE, the best plain and the best teleport cell over all samplers. ``floor`` (real data) dotted. Returns the
    Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

    samplers = list(table[["scheduler", "family"]].drop_duplicates().itertuples(index=False, name=None))
    starts = [s for s in ("plain", *JUMP_STARTS, "noise") if s in set(table.start)]
    colors = dict(zip(starts, sns.color_palette("colorblind", len(starts))))
    panels = len(samplers) + (front is not None)
    columns = min(panels, 4)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(math.ceil(panels / columns), columns, figsize=(4.2 * columns,
                             3.8 * math.ceil(panels / columns)), squeeze=False, sharey=True)
    budgets = sorted(table.nfe.unique())

    def draw(ax, rows, label, color, solid=True, annotate=False):
        best = rows.sort_values("fid").groupby("nfe").head(1).sort_values("nfe")
        ax.errorbar(best.nfe, best.fid, yerr=[best.fid - best.fid_low, best.fid_high - best.fid], label=label,
                    color=color, marker="o", capsize=3, linestyle="-" if solid else "--")
        for r in best.itertuples() if annotate else ():
            ax.annotate(f"σ={r.sigma_skip:g}", (r.nfe, r.fid), textcoords="offset points", xytext=(0, -12),
                        ha="center", fontsize=7)

    for ax, (scheduler, family) in zip(axes.flat, samplers):
        rows = table[(table.scheduler == scheduler) & (table.family == family)]
        for start in starts:
            if (rows.start == start).any():
                label = {"plain": "plain sampler", "gaussian": "Gaussian jump (best σ)"}.get(start, f"{start} (best σ)")
                draw(ax, rows[rows.start == start], label, colors[start], start in ("plain", "gaussian"),
                     start == "gaussian")
        ax.set_title(f"{scheduler}, {family} spacing")
    if front is not None:
        ax = axes.flat[len(samplers)]
        at_nfe = front[front.basis == "nfe"]
        for side, color in (("plain", colors["plain"]), ("teleport", colors.get("gaussian"))):
            ax.errorbar(at_nfe.budget, at_nfe[f"{side}_fid"], yerr=[at_nfe[f"{side}_fid"] - at_nfe[f"{side}_fid_low"],
                        at_nfe[f"{side}_fid_high"] - at_nfe[f"{side}_fid"]], label=f"best {side}, any sampler",
                        color=color, marker="o", capsize=3)
        ax.set_title("frontier at equal NFE")
    for ax in axes.flat[:panels]:
        if floor is not None:
            ax.axhline(floor, color="grey", linestyle=":", label="real data (floor)")
        ax.set(xscale="log", yscale="log", xlabel="NFE (UNet evaluations)")
        ax.set_xticks(budgets, [str(n) for n in budgets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=6)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("FID (95 % bootstrap interval)")
    fig.tight_layout()
    return fig
