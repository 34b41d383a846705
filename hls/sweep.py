"""The skip sweep's figures: FID against NFE for teleport (skip k of a fixed grid) and the plain sampler at equal NFE,
for one model (``figure``) or across training checkpoints (``checkpoints_figure``)."""

from __future__ import annotations

import pandas as pd


def figure(table: pd.DataFrame, floor: float):
    """One sweep (``plots/fid_vs_skip.csv``'s columns): teleport and plain at equal NFE with their 95 % intervals,
    each point annotated with its skip and landing sigma, and the real-data floor. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

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
    return fig


def checkpoints_figure(table: pd.DataFrame):
    """Sweeps of several checkpoints (``stages/checkpoints.py``'s table). Top: FID vs NFE per checkpoint (teleport
    solid, plain at equal NFE dashed), and the Gaussian's score-space unexplained variance at each landing sigma with
    each checkpoint's σ* dotted. Bottom, one panel per NFE (each on its own axis, fitted to its intervals): the paired
    ratio teleport / plain at that NFE with its 95 % interval against the training epochs. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    table = table.assign(checkpoint=[f"step {s} ({e:g} epochs)" for s, e in zip(table.step, table.epochs)])
    order = list(dict.fromkeys(table.sort_values("step").checkpoint))
    colors = dict(zip(order, sns.color_palette(n_colors=len(order))))
    paired = table.dropna(subset=["ratio_vs_same_nfe"]).sort_values("epochs")
    budgets = sorted(paired.nfe.unique())
    fig = plt.figure(figsize=(4 * max(len(budgets), 3), 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    left, right = top.subplots(1, 2)
    long = pd.concat([table.assign(sampler="teleport", y=table.fid),
                      table.assign(sampler="plain, same NFE", y=table.fid_baseline_same_nfe)])
    sns.lineplot(data=long, x="nfe", y="y", hue="checkpoint", hue_order=order, palette=colors, style="sampler",
                 markers=True, ax=left)
    left.set(xlabel="NFE (UNet evaluations)", ylabel="FID", yscale="log",
             title="FID vs NFE: teleport (skip k of 50) vs plain sampler")
    sns.lineplot(data=table.assign(unexplained=1 - table.gaussian_ev_score), x="sigma_skip", y="unexplained",
                 hue="checkpoint", hue_order=order, palette=colors, marker="o", ax=right, legend=False)
    for row in table.drop_duplicates("checkpoint").itertuples():
        if row.sigma_star is not None and not pd.isna(row.sigma_star):
            right.axvline(row.sigma_star, color=colors[row.checkpoint], linestyle=":")
    right.set(xscale="log", yscale="log", xlabel="landing σ of skip k", ylabel="1 − EV (Gaussian, score space)",
              title="Gaussian score error where the teleport lands (dotted: σ*)")
    for ax, nfe in zip(bottom.subplots(1, len(budgets), squeeze=False)[0], budgets):
        t = paired[paired.nfe == nfe]
        ax.plot(t.epochs, t.ratio_vs_same_nfe, color="grey", linewidth=0.8)
        for row in t.itertuples():
            ax.errorbar(row.epochs, row.ratio_vs_same_nfe, yerr=[[row.ratio_vs_same_nfe - row.ratio_low_vs_same_nfe],
                                                                [row.ratio_high_vs_same_nfe - row.ratio_vs_same_nfe]],
                        color=colors[row.checkpoint], marker="o", capsize=3)
        ax.axhline(1, color="grey", linestyle=":")
        ax.set(xscale="log", xlabel="training epochs",
               title=f"{nfe} NFE (skip {t.skip.iloc[0]}, σ {t.sigma_skip.iloc[0]:.3g})",
               ylabel="teleport / plain FID, same NFE" if nfe == budgets[0] else None)
    bottom.suptitle("Paired ratio at equal NFE with its 95 % interval (below 1: teleport better)")
    return fig
