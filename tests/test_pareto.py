"""hls.pareto: the study's table, landings, frontier and figure on synthetic cells with known answers."""

import numpy as np
import pandas as pd
import pytest

from hls.pareto import (
    COLUMNS,
    COMPUTE_SLACK,
    FRONTIER,
    HELDOUT,
    HELDOUT_FRONTIER,
    LANDINGS,
    VS_GRID,
    against_plain,
    cell_name,
    cell_names,
    figure,
    frontier,
    heldout_frontier,
    heldout_names,
    landings,
    nfe_for_fid,
    optimizer_vs_grid,
    ratio_figure,
    read_cells,
    with_heldout,
)
from hls.study import compare


def test_nfe_for_fid_interpolates_in_log_nfe():
    nfes, fids = [5, 10, 20], [40.0, 20.0, 10.0]
    assert nfe_for_fid(nfes, fids, 20.0) == pytest.approx(10)
    assert nfe_for_fid(nfes, fids, 30.0) == pytest.approx(np.sqrt(50))  # halfway between log 5 and log 10
    assert nfe_for_fid(nfes, fids, 40.0) == pytest.approx(5)
    assert nfe_for_fid(nfes, fids, 50.0) is None and nfe_for_fid(nfes, fids, 5.0) is None  # outside the curve
    # on the best-so-far envelope: a worse FID at more NFE never counts
    assert nfe_for_fid([5, 10, 20], [40.0, 20.0, 30.0], 20.0) == pytest.approx(10)
    assert nfe_for_fid([20, 5, 10], [10.0, 40.0, 20.0], 15.0) == pytest.approx(10 * 2 ** 0.5)  # any order


# (start, sigma) -> {nfe: FID} of the synthetic study; the karras family is 10 % worse everywhere
FIDS = {("plain", None): {5: 60.0, 10: 30.0}, ("gaussian", 20.0): {5: 50.0, 10: 29.5},
        ("gaussian", 10.0): {5: 40.0, 10: 29.8}, ("gaussian", 5.0): {5: 45.0, 10: 29.0},
        ("noise", 10.0): {5: 70.0, 10: 35.0}, ("gmm_kmeans", 5.0): {5: 35.0, 10: 28.0}}


def cells():
    """Synthetic study: dpmsolver in two families at 5 and 10 NFE, every start above; the mixture jump costs 4."""
    rng = np.random.default_rng(0)
    shared = rng.normal(1.0, 0.02, size=400)  # paired replicates: each set is its FID times the shared factor
    rows, reps = [], []
    for family, scale in (("default", 1.0), ("karras", 1.1)):
        for (start, sigma), by_nfe in FIDS.items():
            for nfe, value in by_nfe.items():
                f, cost = value * scale, 4.0 if start == "gmm_kmeans" else 0.01 if sigma else 0.0
                rows.append({"scheduler": "dpmsolver", "family": family, "nfe": nfe, "start": start,
                             "sigma_skip": sigma, "landing_sigma": sigma or 157.0, "fid": f, "fid_low": f - 1,
                             "fid_high": f + 1, "n": 400, "jump_cost": cost, "compute": nfe + cost})
                reps.append(f * (shared + rng.normal(0, 0.002, 400)))
    return pd.DataFrame(rows), reps


def test_against_plain_pairs_each_cell_with_its_own_family_and_budget():
    df, reps = cells()
    table = against_plain(df, reps)
    assert list(table.columns) == COLUMNS and len(table) == len(df)
    assert list(table.start[:4]) == ["plain", "gaussian", "gaussian", "gaussian"]
    assert list(table.sigma_skip[1:4]) == [20.0, 10.0, 5.0] and table.family.iloc[0] == "default"
    assert table[table.start == "plain"].ratio.isna().all()
    row = table.query("family == 'karras' and nfe == 5 and sigma_skip == 10 and start == 'gaussian'")
    i = row.index[0]
    j = df[(df.family == "karras") & (df.nfe == 5) & (df.start == "plain")].index[0]
    assert row.ratio.iloc[0] == pytest.approx(40 / 60)  # against karras plain, not default plain (40 / 54.5)
    assert row.ratio_low.iloc[0] == compare(df.fid[i], reps[i], df.fid[j], reps[j])["ratio_low"]
    assert row.verdict.iloc[0] == "gain" and set(table[table.start == "noise"].verdict) == {"loss"}
    noise = table.query("family == 'default' and nfe == 5 and start == 'noise'")
    assert noise.ratio_vs_gaussian.iloc[0] == pytest.approx(70 / 40) and noise.verdict_vs_gaussian.iloc[0] == "loss"
    assert table[table.start == "gaussian"].ratio_vs_gaussian.isna().all()


def test_landings_flag_an_optimum_at_the_edge_of_the_grid():
    df, reps = cells()
    best = landings(against_plain(df, reps))
    assert list(best.columns) == LANDINGS and len(best) == 4
    default = best[best.family == "default"].set_index("nfe")
    assert default.sigma_skip[5] == 10.0 and default.edge[5] == ""  # inside the grid 20, 10, 5
    assert default.sigma_skip[10] == 5.0 and default.edge[10] == "bottom"  # the smallest sigma tried
    assert default.sigmas_tried[5] == "5 10 20" and default.plain_fid[5] == 60.0
    # the best teleport at 5 NFE (FID 40) equals the plain curve at 10 ** (log 5 + 2/3 log 2): saves 5 * (2^(2/3) - 1)
    assert default.nfe_saved[5] == pytest.approx(5 * 2 ** (2 / 3) - 5, abs=0.01)
    assert np.isnan(default.nfe_saved[10])  # 29 is below every plain FID: outside the curve


def test_frontier_at_equal_nfe_and_at_equal_compute():
    df, reps = cells()
    table = against_plain(df, reps)
    front = frontier(table, reps).set_index(["budget", "basis"])
    assert list(front.reset_index().columns) == FRONTIER
    # equal NFE: the mixture jump wins at 5 NFE, over every family
    assert front.teleport[5, "nfe"] == "dpmsolver-default-5-gmm_kmeans-5" and front.plain[5, "nfe"] == \
        "dpmsolver-default-5-plain"
    assert front.ratio[5, "nfe"] == pytest.approx(35 / 60) and front.verdict[5, "nfe"] == "gain"
    # equal compute: at 5 the mixture's 5 + 4 evaluations do not fit, the Gaussian's 5.01 do (within the slack)
    assert front.teleport[5, "compute"] == "dpmsolver-default-5-gaussian-10" and front.teleport_compute[
        5, "compute"] == pytest.approx(5.01)
    # at 10 the mixture's 10 + 4 do not fit: the Gaussian at 10 NFE (29) beats the mixture at 5 NFE (compute 9, 35)
    assert front.teleport[10, "compute"] == "dpmsolver-default-10-gaussian-5"
    assert front.teleport[10, "nfe"] == "dpmsolver-default-10-gmm_kmeans-5"
    assert front.plain[10, "compute"] == "dpmsolver-default-10-plain"


def test_equal_compute_counts_a_jump_cost_beyond_the_slack():
    """A mixture cell of 5 NFE that would be the best teleport at budget 10: its compute 10.4 is not rounded to 10."""
    df, reps = cells()
    i = df.query("family == 'default' and nfe == 5 and start == 'gmm_kmeans'").index[0]
    df.loc[i, "fid"] = 20.0
    for compute, counted in ((10.4, False), (10 + COMPUTE_SLACK / 2, True)):
        df.loc[i, "compute"] = compute
        front = frontier(against_plain(df, reps), reps).set_index(["budget", "basis"])
        assert (front.teleport[10, "compute"] == "dpmsolver-default-5-gmm_kmeans-5") == counted


def test_figure_has_one_panel_per_sampler_and_the_frontier():
    df, reps = cells()
    table = against_plain(df, reps)
    fig = figure(table, frontier(table, reps), floor=20.0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["dpmsolver, default spacing", "dpmsolver, karras spacing", "frontier at equal NFE"]
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert labels == {"plain sampler", "Gaussian jump (best σ)", "gmm_kmeans (best σ)", "noise (best σ)",
                      "real data (floor)"}


def optimized_cells(held_out: bool = False):
    """``cells()`` with the optimized family (plain 55 / 28; the Gaussian arm lands at 12 at 5 NFE, FID 38, and
    chooses no jump at 10 NFE, where it is its plain arm); ``held_out``: every FID 5 % higher but the optimizer's
    Gaussian arm at 5 NFE, 20 % higher (its in-sample luck does not hold)."""
    df, reps = cells()
    rng = np.random.default_rng(1)
    shared = rng.normal(1.0, 0.02, size=400)
    rows = [("plain", None, 5, 55.0), ("gaussian", 12.0, 5, 38.0), ("plain", None, 10, 28.0),
            ("gaussian", None, 10, 28.0)]
    extra = pd.DataFrame([{"scheduler": "dpmsolver", "family": "optimized", "nfe": nfe, "start": start,
                           "sigma_skip": sigma, "landing_sigma": sigma or 157.0, "fid": f, "fid_low": f - 1,
                           "fid_high": f + 1, "n": 400, "jump_cost": 0.0, "compute": float(nfe)}
                          for start, sigma, nfe, f in rows])
    df = pd.concat([df, extra], ignore_index=True)
    reps = reps + [f * (shared + rng.normal(0, 0.002, 400)) for *_, f in rows]
    if held_out:
        scale = np.where((df.family == "optimized") & (df.start == "gaussian") & (df.nfe == 5), 1.2, 1.05)
        df = df.assign(fid=df.fid * scale, fid_low=df.fid_low * scale, fid_high=df.fid_high * scale)
        reps = [r * k for r, k in zip(reps, scale)]
    return df, reps


def test_cell_names_cover_every_axis_and_name_optimized_cells_without_sigma():
    study = {"samplers": ["dpmsolver-default"], "nfe": [5], "sigmas": [10, 5],
             "controls": {"samplers": ["ddim-default"], "starts": ["noise"], "sigmas": [10]},
             "optimized": {"samplers": ["heun"]}}
    assert cell_names(study) == ["dpmsolver-default-5-plain", "dpmsolver-default-5-gaussian-10",
                                 "dpmsolver-default-5-gaussian-5", "ddim-default-5-noise-10",
                                 "heun-optimized-5-plain", "heun-optimized-5-gaussian"]
    df, _ = optimized_cells()
    names = [cell_name(r) for r in df.itertuples()]
    assert "dpmsolver-optimized-5-gaussian" in names and "dpmsolver-default-5-gaussian-10" in names


def test_read_cells_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="2 cells have no record .* \\(e.g. a\\)"):
        read_cells(tmp_path, ["a", "b"])


def test_held_out_cells_are_the_chosen_ones_their_plain_arms_and_every_optimized_cell():
    df, reps = optimized_cells()
    table = against_plain(df, reps)
    best, front = landings(table), frontier(table, reps)
    names = heldout_names(table, best, front)
    assert len(names) == len(set(names))
    assert {"dpmsolver-default-5-gaussian-10", "dpmsolver-default-5-plain", "dpmsolver-karras-10-gaussian-5",
            "dpmsolver-karras-10-plain", "dpmsolver-default-5-gmm_kmeans-5"} <= set(names)  # landings, frontier
    assert {f"dpmsolver-optimized-{n}-{s}" for n in (5, 10) for s in ("plain", "gaussian")} <= set(names)
    assert "dpmsolver-default-5-gaussian-20" not in names and "dpmsolver-default-5-noise-10" not in names
    optimized = best[best.family == "optimized"].set_index("nfe")
    assert optimized.cell[5] == "dpmsolver-optimized-5-gaussian" and optimized.sigmas_tried[5] == "optimizer"
    assert optimized.edge[5] == "" and np.isnan(optimized.sigma_skip[10])


def test_a_gaussian_arm_without_jump_is_not_a_teleport_cell_of_the_frontier():
    df, reps = optimized_cells()
    df.loc[(df.family == "optimized") & (df.nfe == 10), "fid"] = 1.0  # the best cell at 10 NFE by far: but no jump
    front = frontier(against_plain(df, reps), reps).set_index(["budget", "basis"])
    assert front.plain[10, "nfe"] == "dpmsolver-optimized-10-plain"
    assert front.teleport[10, "nfe"] == "dpmsolver-default-10-gmm_kmeans-5"


def test_held_out_columns_pair_the_twins_on_their_own_images():
    df, reps = optimized_cells()
    table = against_plain(df, reps)
    best, front = landings(table), frontier(table, reps)
    names = heldout_names(table, best, front)
    held_df, held_reps = optimized_cells(held_out=True)
    keep = [i for i, r in enumerate(held_df.itertuples()) if cell_name(r) in names]
    held = against_plain(held_df.iloc[keep], [held_reps[i] for i in keep])
    held_reps = [held_reps[i] for i in keep]

    full = with_heldout(table, held)
    assert list(full.columns) == [*COLUMNS, *HELDOUT]
    assert full.heldout_fid.notna().sum() == len(names)
    row = full[(full.family == "optimized") & (full.nfe == 5) & (full.start == "gaussian")].iloc[0]
    assert row.ratio == pytest.approx(38 / 55) and row.heldout_ratio == pytest.approx(38 * 1.2 / (55 * 1.05))

    best = optimizer_vs_grid(with_heldout(best, held, on="cell"), held, held_reps)
    assert list(best.columns) == [*LANDINGS, *HELDOUT, *VS_GRID]
    mine = best[(best.family == "optimized")].set_index("nfe")
    assert mine.grid_cell[5] == "dpmsolver-default-5-gaussian-10"
    assert mine.heldout_ratio_vs_grid[5] == pytest.approx(38 * 1.2 / (40 * 1.05))
    assert mine.heldout_verdict_vs_grid[5] == "loss" and best[best.family != "optimized"].grid_cell.isna().all()
    fids = {cell_name(r): r.fid for r in df.itertuples()}
    plain_ratio = fids["dpmsolver-optimized-5-plain"] / fids["dpmsolver-default-5-plain"]
    assert mine.heldout_plain_ratio_vs_grid[5] == pytest.approx(plain_ratio)  # both plain arms 5 % higher held out
    assert best[best.family != "optimized"].heldout_plain_ratio_vs_grid.isna().all()

    front = heldout_frontier(front, held, held_reps).set_index(["budget", "basis"])
    assert list(front.reset_index().columns) == [*FRONTIER, *HELDOUT_FRONTIER]
    assert front.plain[5, "nfe"] == "dpmsolver-optimized-5-plain"  # the best plain of every family
    assert front.heldout_ratio[5, "nfe"] == pytest.approx(35 / 55)  # both 5 % higher: the same ratio
    assert front.heldout_plain_fid[5, "nfe"] == pytest.approx(55 * 1.05)


def test_ratio_figure_draws_each_claim_with_its_interval_in_sample_and_held_out():
    df, reps = optimized_cells()
    table = against_plain(df, reps)
    best = landings(table)
    fig = ratio_figure(best)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["dpmsolver"]
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert labels == {"default, in-sample", "karras, in-sample", "optimized, in-sample"}
    held = against_plain(*optimized_cells(held_out=True))
    fig = ratio_figure(with_heldout(best, held, on="cell"))
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"default, held-out", "optimized, held-out"} <= labels
    low, high = fig.axes[0].get_ylim()
    assert 0.5 < low < high < 1.2  # fitted to the ratios, not to decades
