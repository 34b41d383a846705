"""The equal-NFE study's summary: each cell against the plain sampler of its sampler (scheduler and spacing family) at
its budget, the controls against the Gaussian jump, the best landing per budget (flagged when it lies at the edge of
the sigma grid), the frontier across samplers at equal NFE and at equal compute, and the figure.

A cell is one sample set with its record (``stages/cell.py``: scheduler, family, nfe, start, sigma_skip, fid,
fid_low, fid_high, jump_cost, compute, ...) and its paired bootstrap replicates (``hls.study``). In the ``optimized``
family the step-placement optimizer (``hls.optimize``) chose the steps and, for the Gaussian arm, the landing.

Every choice above (the best landing, the frontier's cells) is made on the images it is measured on, so its FID is
biased low. The held-out cells (``heldout_names``: the chosen cells, their plain arms and every optimized cell) are
measured again on a disjoint block of images; ``with_heldout`` and ``heldout_frontier`` carry those FIDs and paired
ratios beside the in-sample ones, and a claim stands on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from hls import OPTIMIZED
from hls.study import compare

JUMP_STARTS = ("gaussian", "isotropic", "mean", "gmm_kmeans", "gmm_classes")  # teleport: a jump with an analytic model
COMPARISON = ["ratio", "ratio_low", "ratio_high", "verdict"]
COLUMNS = ["scheduler", "family", "nfe", "start", "sigma_skip", "landing_sigma", "fid", "fid_low", "fid_high", "n",
           "jump_cost", "compute", *COMPARISON, *(f"{c}_vs_gaussian" for c in COMPARISON)]
LANDINGS = ["scheduler", "family", "nfe", "sigma_skip", "cell", "fid", "fid_low", "fid_high", *COMPARISON, "edge",
            "sigmas_tried", "plain_fid", "nfe_saved"]
FRONTIER = ["budget", "basis", "plain", "plain_fid", "plain_fid_low", "plain_fid_high", "teleport", "teleport_fid",
            "teleport_fid_low", "teleport_fid_high", "teleport_compute", *COMPARISON]
HELDOUT = ["heldout_fid", "heldout_fid_low", "heldout_fid_high", *(f"heldout_{c}" for c in COMPARISON)]
HELDOUT_FRONTIER = ["heldout_plain_fid", "heldout_teleport_fid", *(f"heldout_{c}" for c in COMPARISON)]
VS_GRID = ["grid_cell", *(f"heldout_{c}_vs_grid" for c in COMPARISON),
           *(f"heldout_plain_{c}_vs_grid" for c in COMPARISON)]


def cell_name(row) -> str:
    """``scheduler-family-nfe-start[-sigma]``: the cell's name in the study's stage outputs (an optimized cell has no
    sigma in its name: the optimizer chose it)."""
    sigma = "" if pd.isna(row.sigma_skip) or row.family == OPTIMIZED else f"-{row.sigma_skip:g}"
    return f"{row.scheduler}-{row.family}-{row.nfe}-{row.start}{sigma}"


def names_of(frame: pd.DataFrame) -> list[str]:
    """``cell_name`` of each row of a table of cells, in its order."""
    return [cell_name(row) for row in frame.itertuples()]


def cell_names(study: dict) -> list[str]:
    """The cells of a study's axes (params ``study``: samplers, nfe, sigmas, and optionally controls, mixtures and
    optimized), by the names of their stage outputs (dvc.yaml, study/dvc.yaml)."""
    grid = [f"{sampler}-{nfe}" for sampler in study["samplers"] for nfe in study["nfe"]]
    names = [f"{g}-plain" for g in grid] + [f"{g}-gaussian-{sigma}" for g in grid for sigma in study["sigmas"]]
    for axes in (study[key] for key in ("controls", "mixtures") if key in study):
        names += [f"{sampler}-{nfe}-{start}-{sigma}" for sampler in axes["samplers"] for nfe in study["nfe"]
                  for start in axes["starts"] for sigma in axes["sigmas"]]
    if "optimized" in study:
        names += [f"{scheduler}-{OPTIMIZED}-{nfe}-{start}" for scheduler in study["optimized"]["samplers"]
                  for nfe in study["nfe"] for start in ("plain", "gaussian")]
    return names


def read_cells(folder, names: list[str]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The records (one row each) and bootstrap replicates ``[B]`` of the cells ``names`` in ``folder``
    (``<name>.json``, ``<name>.safetensors``); FileNotFoundError naming how many are missing and the first."""
    folder = Path(folder)
    missing = [name for name in names if not (folder / f"{name}.json").exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} cells have no record in {folder} (e.g. {missing[0]})")
    records = pd.DataFrame([json.loads((folder / f"{name}.json").read_text()) for name in names])
    return records, [load_file(folder / f"{name}.safetensors")["images"] for name in names]


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
    """The best Gaussian landing per scheduler, family and budget (an ``against_plain`` table): its sigma, cell, FID
    and paired ratio to plain; ``edge`` "top" or "bottom" when it is the largest or smallest sigma tried (the optimum
    may lie beyond: no claim rests on it), else ""; the NFE it saves at equal FID on the plain curve (``nfe_for_fid``;
    empty outside the curve). In the optimized family the one Gaussian cell is the optimizer's landing (sigma empty
    where it chose no jump; ``sigmas_tried`` "optimizer")."""
    rows = []
    for (scheduler, family), sampler in table.groupby(["scheduler", "family"], sort=True):
        plain = sampler[sampler.start == "plain"].sort_values("nfe")
        for nfe, cell in sampler[sampler.start == "gaussian"].groupby("nfe", sort=True):
            best = cell.loc[cell.fid.idxmin()]
            sigmas = sorted(cell.sigma_skip)
            edge = "" if family == OPTIMIZED else "top" if best.sigma_skip == sigmas[-1] else \
                "bottom" if best.sigma_skip == sigmas[0] else ""
            found = nfe_for_fid(plain.nfe, plain.fid, best.fid) if len(plain) else None
            plain_fid = plain.fid[plain.nfe == nfe]
            rows.append({"scheduler": scheduler, "family": family, "nfe": nfe, "sigma_skip": best.sigma_skip,
                         "cell": cell_name(best), **best[["fid", "fid_low", "fid_high", *COMPARISON]].to_dict(),
                         "edge": edge, "sigmas_tried": "optimizer" if family == OPTIMIZED else " ".join(
                             f"{s:g}" for s in sigmas),
                         "plain_fid": plain_fid.iloc[0] if len(plain_fid) else np.nan,
                         "nfe_saved": np.nan if found is None else round(found - nfe, 2)})
    return pd.DataFrame(rows, columns=LANDINGS)


def _best(candidates: pd.DataFrame):
    return None if candidates.empty else candidates.fid.idxmin()


COMPUTE_SLACK = 0.1  # UNet evaluations: a jump's measured cost up to this counts as none at equal compute (the
# Gaussian's, about 0.02, and its timing noise); a mixture's flow (several evaluations) is never rounded away


def frontier(table: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """Per budget B of the study, the best plain cell over every scheduler and family against the best teleport cell
    (any jump start) over all, paired: at equal NFE (both spend B UNet evaluations) and at equal compute (plain with
    NFE <= B against teleport whose NFE + jump cost is <= B + ``COMPUTE_SLACK``). A teleport cell
    jumps: an optimized Gaussian cell whose optimizer chose no jump is its plain arm and does not count. ``replicates``
    by the table's index."""
    plain = table[table.start == "plain"]
    jumps = table[table.start.isin(JUMP_STARTS) & table.sigma_skip.notna()]
    rows = []
    for budget in sorted(table.nfe.unique()):
        for basis, p, t in (("nfe", plain[plain.nfe == budget], jumps[jumps.nfe == budget]),
                            ("compute", plain[plain.nfe <= budget], jumps[jumps.compute <= budget + COMPUTE_SLACK])):
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


def heldout_names(table: pd.DataFrame, best: pd.DataFrame, front: pd.DataFrame) -> list[str]:
    """The cells to measure again on held-out images, in the table's order: each best landing (``best``, a
    ``landings`` table) and its plain arm, every cell of the optimized family, and both cells of every frontier pair
    (``front``, a ``frontier`` table)."""
    chosen = set(best.cell) | {f"{r.scheduler}-{r.family}-{r.nfe}-plain" for r in best.itertuples()}
    chosen |= {name for side in ("plain", "teleport") for name in front[side].dropna()}
    return [name for name, family in zip(names_of(table), table.family) if name in chosen or family == OPTIMIZED]


def _positions(frame: pd.DataFrame) -> dict:
    """{cell name: index} of a table's rows."""
    return dict(zip(names_of(frame), frame.index))


def with_heldout(frame: pd.DataFrame, heldout: pd.DataFrame, on: str | None = None) -> pd.DataFrame:
    """``frame`` with the ``HELDOUT`` columns (FID, interval, paired ratio to the plain arm) of its cells' held-out
    twins (``heldout``: an ``against_plain`` table of the held-out cells), by cell name: the row's own (an
    ``against_plain`` table) or the one in column ``on`` (``landings``: "cell"); empty where a cell has no twin."""
    names = names_of(frame) if on is None else list(frame[on])
    twins = heldout.set_axis(names_of(heldout))[["fid", "fid_low", "fid_high", *COMPARISON]].reindex(names)
    return pd.concat([frame, twins.set_axis(HELDOUT, axis=1).set_axis(frame.index)], axis=1)


def heldout_frontier(front: pd.DataFrame, heldout: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """``front`` (a ``frontier`` table, chosen in-sample) with ``HELDOUT_FRONTIER``: its two cells' held-out FIDs and
    their paired ratio, teleport over plain (``heldout`` with ``replicates`` by its index)."""
    index = _positions(heldout)
    rows = []
    for r in front.itertuples():
        i, j = index.get(r.plain), index.get(r.teleport)
        row = {} if i is None else {"heldout_plain_fid": heldout.fid[i]}
        row |= {} if j is None else {"heldout_teleport_fid": heldout.fid[j]}
        if i is not None and j is not None:
            row |= {f"heldout_{k}": v for k, v in compare(heldout.fid[j], replicates[j], heldout.fid[i],
                                                          replicates[i]).items()}
        rows.append(row)
    return pd.concat([front, pd.DataFrame(rows, index=front.index, columns=HELDOUT_FRONTIER)], axis=1)


def optimizer_vs_grid(best: pd.DataFrame, heldout: pd.DataFrame, replicates: list[np.ndarray]) -> pd.DataFrame:
    """``best`` (``landings``) with ``VS_GRID`` on its optimized rows: the default family's best grid landing of the
    same scheduler and budget (``grid_cell``), the held-out paired ratio of the optimizer's Gaussian cell to it
    (``heldout_ratio_vs_grid``...) and that of the optimizer's plain arm to the default family's plain arm
    (``heldout_plain_ratio_vs_grid``...); ``heldout`` with ``replicates`` by its index."""
    index = _positions(heldout)
    grid = {(r.scheduler, r.nfe): r.cell for r in best.itertuples() if r.family == "default"}
    rows = []
    for r in best.itertuples():
        cell = grid.get((r.scheduler, r.nfe)) if r.family == OPTIMIZED else None
        row = {} if cell is None else {"grid_cell": cell}
        plain = (f"{r.scheduler}-{OPTIMIZED}-{r.nfe}-plain", f"{r.scheduler}-default-{r.nfe}-plain")
        for prefix, (mine, theirs) in (("heldout_", (r.cell, cell)), ("heldout_plain_", plain)):
            i, j = index.get(theirs), index.get(mine)
            if cell is not None and i is not None and j is not None:
                row |= {f"{prefix}{k}_vs_grid": v for k, v in compare(heldout.fid[j], replicates[j], heldout.fid[i],
                                                                      replicates[i]).items()}
        rows.append(row)
    return pd.concat([best, pd.DataFrame(rows, index=best.index, columns=VS_GRID)], axis=1)


def _panels(n: int, height: float, **kwargs):
    """``(figure, axes [rows, columns])`` of ``n`` panels, at most 4 a row, ``height`` inches a row, the unused
    ones hidden; ``kwargs`` to ``plt.subplots``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    columns = min(n, 4)
    rows = math.ceil(n / columns)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, height * rows), squeeze=False, **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def figure(table: pd.DataFrame, front: pd.DataFrame | None = None, floor: float | None = None):
    """FID vs NFE (log axes, 95 % intervals): one panel per sampler with the plain sampler, the best Gaussian landing
    per budget (its sigma annotated) and each other start at its best landing; and a last panel with the frontier at
    equal NFE, the best plain and the best teleport cell over all samplers. ``floor`` (real data) dotted. Returns the
    Figure."""
    import seaborn as sns
    from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

    samplers = list(table[["scheduler", "family"]].drop_duplicates().itertuples(index=False, name=None))
    starts = [s for s in ("plain", *JUMP_STARTS, "noise") if s in set(table.start)]
    colors = dict(zip(starts, sns.color_palette("colorblind", len(starts))))
    panels = len(samplers) + (front is not None)
    fig, axes = _panels(panels, 3.8, sharey=True)
    budgets = sorted(table.nfe.unique())

    def draw(ax, rows, label, color, solid=True, annotate=False):
        best = rows.sort_values("fid").groupby("nfe").head(1).sort_values("nfe")
        ax.errorbar(best.nfe, best.fid, yerr=[best.fid - best.fid_low, best.fid_high - best.fid], label=label,
                    color=color, marker="o", capsize=3, linestyle="-" if solid else "--")
        for r in (r for r in best.itertuples() if annotate and not pd.isna(r.sigma_skip)):
            ax.annotate(f"σ={r.sigma_skip:.3g}", (r.nfe, r.fid), textcoords="offset points", xytext=(0, -12),
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
    for row in axes:
        row[0].set_ylabel("FID (95 % bootstrap interval)")
    fig.tight_layout()
    return fig


def ratio_figure(best: pd.DataFrame):
    """The claims of a ``landings`` table: teleport / plain (paired FID ratio, 95 % interval) of each best landing
    against NFE, one panel per scheduler (each on its own axis, fitted to its ratios), one colour per family. With
    held-out columns (``with_heldout``) the held-out ratio is drawn filled beside the hollow in-sample one. Returns
    the Figure."""
    import seaborn as sns

    schedulers = list(dict.fromkeys(best.scheduler))
    colors = dict(zip(dict.fromkeys(best.family), sns.color_palette("colorblind", best.family.nunique())))
    sides = [("", "in-sample", "none")] + ([("heldout_", "held-out", None)] if "heldout_ratio" in best else [])
    fig, axes = _panels(len(schedulers), 3.4)
    budgets = sorted(best.nfe.unique())
    position = {nfe: k for k, nfe in enumerate(budgets)}
    for ax, scheduler in zip(axes.flat, schedulers):
        mine = best[best.scheduler == scheduler]
        arms = [(family, side) for family in dict.fromkeys(mine.family) for side in sides]
        width = 0.8 / len(arms)
        for k, (family, (prefix, label, face)) in enumerate(arms):
            shown = mine[(mine.family == family) & mine[f"{prefix}ratio"].notna()]
            ratio = shown[f"{prefix}ratio"]
            ax.errorbar([position[n] - 0.4 + width * (k + 0.5) for n in shown.nfe], ratio,
                        yerr=[ratio - shown[f"{prefix}ratio_low"], shown[f"{prefix}ratio_high"] - ratio], fmt="o",
                        color=colors[family], markerfacecolor=face or colors[family], capsize=2,
                        label=f"{family}, {label}")
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set_xticks(range(len(budgets)), [str(n) for n in budgets])
        ax.set(title=scheduler, xlabel="NFE (UNet evaluations)")
        ax.legend(fontsize=6)
    for row in axes:
        row[0].set_ylabel("teleport / plain FID")
    fig.tight_layout()
    return fig
