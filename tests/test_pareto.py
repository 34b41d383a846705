"""hls.pareto: the study's table, summary and figure on synthetic cells with known answers."""

import numpy as np
import pandas as pd
import pytest

from hls.pareto import COLUMNS, against_plain, figure, nfe_for_fid, summary
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


def cells():
    """Synthetic study: ddim and euler at 5 and 10 NFE; plain, gaussian at sigma 10 and 5, noise at 10."""
    rng = np.random.default_rng(0)
    shared = rng.normal(1.0, 0.02, size=400)  # paired replicates: each set is its FID times the shared factor
    fid = {("plain", None): {5: 60.0, 10: 30.0}, ("gaussian", 10.0): {5: 40.0, 10: 29.8},
           ("gaussian", 5.0): {5: 45.0, 10: 29.0}, ("noise", 10.0): {5: 70.0, 10: 35.0}}
    rows, reps = [], []
    for scheduler, scale in (("euler", 1.0), ("ddim", 1.1)):
        for (start, sigma), by_nfe in fid.items():
            for nfe, value in by_nfe.items():
                f = value * scale
                rows.append({"scheduler": scheduler, "nfe": nfe, "start": start, "sigma_skip": sigma, "fid": f,
                             "ci_low": f - 1, "ci_high": f + 1, "n": 400, "landing_sigma": sigma})
                reps.append(f * (shared + rng.normal(0, 0.002, 400)))
    return pd.DataFrame(rows), reps


def test_against_plain_pairs_each_cell_with_its_budget():
    df, reps = cells()
    table = against_plain(df, reps)
    assert list(table.columns) == COLUMNS and len(table) == len(df)
    assert list(table.start[:4]) == ["plain", "gaussian", "gaussian", "noise"] and table.scheduler.iloc[0] == "ddim"
    assert table[table.start == "plain"].ratio.isna().all()
    row = table.query("scheduler == 'euler' and nfe == 5 and sigma_skip == 10 and start == 'gaussian'")
    i, j = row.index[0], df[(df.scheduler == "euler") & (df.nfe == 5) & (df.start == "plain")].index[0]
    expected = compare(df.fid[i], reps[i], df.fid[j], reps[j])
    assert row.ratio.iloc[0] == pytest.approx(40 / 60) and row.ratio_low.iloc[0] == expected["ratio_low"]
    assert row.verdict.iloc[0] == "gain"
    assert set(table[(table.start == "noise")].verdict) == {"loss"}


def test_summary_picks_the_best_sigma_and_compares_controls_with_the_gaussian():
    df, reps = cells()
    table = against_plain(df, reps)
    out = summary(table, reps)
    euler = out["euler"]["nfe"]
    assert euler["5"]["best"]["sigma_skip"] == 10.0 and euler["10"]["best"]["sigma_skip"] == 5.0
    assert euler["5"]["best"]["verdict"] == "gain" and euler["5"]["plain"]["fid"] == 60.0
    assert euler["10"]["best"]["ratio"] == pytest.approx(29 / 30)
    assert euler["5"]["noise@10"]["ratio_vs_gaussian"] == pytest.approx(70 / 40)
    assert euler["5"]["noise@10"]["verdict_vs_gaussian"] == "loss"
    # the best teleport at 5 NFE (FID 40) equals the plain curve at 10 ** (log 5 + 2/3 log 2): saves 5 * (2^(2/3) - 1)
    assert out["euler"]["nfe_saved"]["5"] == pytest.approx(5 * 2 ** (2 / 3) - 5, abs=0.01)
    assert out["euler"]["nfe_saved"]["10"] is None  # 29 is below every plain FID: outside the curve


def test_figure_has_one_panel_per_scheduler(tmp_path):
    df, reps = cells()
    fig = figure(against_plain(df, reps), floor=20.0, path=tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert [ax.get_title() for ax in fig.axes] == ["ddim", "euler"]
    labels = {t.get_text() for t in fig.axes[-1].get_legend().get_texts()}
    assert labels == {"plain sampler", "Gaussian teleport (best σ)", "noise (best σ)", "real data (floor)"}
