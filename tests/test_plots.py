"""`dvc plots show/diff` offline in a fresh clone: vega inline in the page, each plot once, the score views on log axes.

A temporary git + DVC repository holds the project's dvc.yaml files, params, .dvc/config, .dvc/plots/ templates and
the committed page template plots/template.html, with tiny CSVs and PNGs in two commits; the tests run in a fresh
`git clone` of it, with no `dvc repro`.
"""

import csv
import json
import re
import shutil
import struct
import sys
import zlib
from pathlib import Path

import pytest
import vl_convert
import yaml
from plots_template import VEGA_LITE_MAJOR, vega_lite_version

from fakes import ROOT, dvc, run

SIGMAS = [0.01, 0.1, 1.0, 10.0, 100.0]
VEGA_DIVS = {"FID_vs_NFE", "Score_approximation", "Equal-NFE_study_slice", "Equal-NFE_study", "Paired_ratios_slice",
             "Paired_ratios", "plots_train_loss_csv"}
STUDIES = ("plots/slice/pareto.csv", "plots/study/pareto.csv")
LANDINGS = ("plots/slice/landings.csv", "plots/study/landings.csv")

def write_png(path: Path, width=4, height=3):
    """A valid grey RGB PNG, no imaging library needed."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([128] * 3 * width) for _ in range(height))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_plots(repo: Path, scale: float):
    """score_error.csv, fid_vs_skip.csv and train_loss.csv with the stages' columns; ``scale`` varies the values."""
    score = []
    for t, sigma in enumerate(SIGMAS):
        for k, approx in enumerate(["gaussian", "isotropic", "mean"]):
            for space in ["denoiser", "score"]:
                error = scale * (k + 1) * 1e-3 / sigma  # falls with sigma, as the score's error does
                for metric, value in [("explained_variance", 1 - error), ("relative_error", error ** 0.5)]:
                    score.append({"sigma": sigma, "timestep": t, "approx": approx, "space": space, "metric": metric,
                                  "value": value, "mean": value, "std": 0.0, "q10": value, "q50": value,
                                  "q90": value, "n": 4})
    score[-2]["value"] = -7613.3  # a mean-only score at low sigma: explained variance far below 0
    write_csv(repo / "plots/score_error.csv", score)
    write_csv(repo / "plots/fid_vs_skip.csv", [
        {"skip": skip, "sigma_skip": 100.0 / (skip + 1), "steps": 10, "nfe": 10 - skip, "fid": scale * (40 + skip ** 2),
         "baseline_steps": 10 - skip, "baseline_nfe": 10 - skip, "fid_baseline_same_nfe": 41 + skip}
        for skip in (0, 2, 4)])
    study = [
        {"scheduler": scheduler, "family": family, "nfe": nfe, "start": start, "sigma_skip": sigma,
         "landing_sigma": sigma or 157.0, "fid": scale * fid, "fid_low": scale * fid - 2, "fid_high": scale * fid + 2,
         "n": 500, "jump_cost": 0.01 if sigma else 0.0, "compute": nfe, "ratio": "", "ratio_low": "",
         "ratio_high": "", "verdict": ""}
        for scheduler, family in (("ddim", "default"), ("dpmsolver", "karras")) for nfe in (5, 10)
        for start, sigma, fid in (("plain", "", 200 / nfe), ("gaussian", 10.0, 150 / nfe), ("noise", 10.0, 300 / nfe))]
    for path in STUDIES:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        write_csv(repo / path, study)
    landings = [  # the slice's have no held-out columns; the study's do, empty where a cell has no held-out twin
        {"scheduler": scheduler, "family": family, "nfe": nfe, "sigma_skip": 10.0, "ratio": 0.75 * scale ** 0.1,
         "ratio_low": 0.72, "ratio_high": 0.78, "verdict": "gain"}
        for scheduler, family in (("ddim", "default"), ("dpmsolver", "karras")) for nfe in (5, 10)]
    write_csv(repo / LANDINGS[0], landings)
    write_csv(repo / LANDINGS[1], [row | ({"heldout_ratio": 0.8, "heldout_ratio_low": 0.77, "heldout_ratio_high": 0.83}
                                          if row["nfe"] == 5 else {"heldout_ratio": "", "heldout_ratio_low": "",
                                                                   "heldout_ratio_high": ""}) for row in landings])
    write_csv(repo / "plots/train_loss.csv", [{"step": step, "loss": scale / (step + 1)} for step in range(5)])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh clone of a git + DVC repository with the project's plot configuration and two commits of plots."""
    origin = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "study/dvc.yaml", "study/params.yaml",
                 "plots/template.html"):
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, origin / name)
    params = yaml.safe_load((origin / "params.yaml").read_text())
    for name in ["samples.png", "fid_vs_skip.png", "score_error.png", "slice/pareto.png", "study/pareto.png",
                 *[f"sweep_samples/skip-{k}.png" for k in params["sweep"]["skips"]]]:
        write_png(origin / "plots" / name)
    run(origin, "git", "init", "-q")
    dvc(origin, "init", "-q")
    shutil.copy(ROOT / ".dvc/config", origin / ".dvc/config")
    shutil.copytree(ROOT / ".dvc/plots", origin / ".dvc/plots")
    for scale in (1.0, 2.0):
        write_plots(origin, scale=scale)
        run(origin, "git", "add", "-A")
        run(origin, "git", "commit", "-qm", f"plots at scale {scale}")
    run(origin.parent, "git", "clone", "-q", str(origin), "clone")
    return origin.parent / "clone"


def page(repo: Path, *command) -> str:
    out = repo / "out" / command[0]
    dvc(repo, "plots", *command, "-o", str(out))
    return (out / "index.html").read_text(encoding="utf-8")


def specs(html: str) -> dict:
    """{div id: vega-lite spec} of every vega view on a dvc-render page."""
    found = re.findall(r'<div id = "([^"]+)">\s*<script type = "text/javascript">\s*var spec = (.*?);\s*vegaEmbed',
                       html, re.S)
    ids = [div for div, _ in found]
    assert len(ids) == len(set(ids)), f"a vega plot is listed twice: {ids}"
    return {div: json.loads(spec) for div, spec in found}


def assert_offline_page(html: str):
    assert 'src="http' not in html and "src='http" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html), "the page loads a script file"
    assert html.count("window.vegaEmbed=") == 1 and len(html) > 500_000, "the vega bundle is not inline"
    titles = re.findall(r"<p>(plots/[^<]+)</p>", html)
    assert len(titles) == len(set(titles)) and "plots/samples.png" in titles, f"an image is listed twice: {titles}"


def assert_log_score_views(spec: dict):
    panels = spec["vconcat"]
    assert [p["transform"][0]["filter"] for p in panels] == ["datum.metric === 'explained_variance'",
                                                           "datum.metric === 'relative_error'"]
    for panel in panels:
        encoding = panel["spec"]["encoding"]
        assert encoding["x"]["scale"]["type"] == "log" and encoding["y"]["scale"]["type"] == "log"
        assert encoding["color"]["field"] == "approx" and encoding["strokeDash"]["field"] == "rev"
        assert panel["facet"]["column"]["field"] == "space"


def assert_compiles(spec: dict) -> str:
    """Render with vl-convert (Vega-Lite to SVG, no browser); the SVG proves the spec is valid and draws marks."""
    svg = vl_convert.vegalite_to_svg(spec, vl_version=vega_lite_version(VEGA_LITE_MAJOR))
    assert svg.count("<path") > 10
    return svg


def test_the_committed_page_template_is_offline_and_current(tmp_path):
    template = (ROOT / "plots/template.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in template and "{scripts}" not in template and 'charset="utf-8"' in template
    assert "window.vegaEmbed=" in template and "<script src" not in template
    run(ROOT, sys.executable, ROOT / "stages/plots_template.py", tmp_path / "page.html")
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == template  # what the stage writes today


def test_show_renders_each_plot_once_offline(repo):
    html = page(repo, "show")
    assert_offline_page(html)
    views = specs(html)
    assert set(views) == VEGA_DIVS
    score = views["Score_approximation"]
    assert_log_score_views(score)
    assert len(score["data"]["values"]) == len(SIGMAS) * 3 * 2 * 2
    assert {row["rev"] for row in score["data"]["values"]} == {"workspace"}
    for name in ("Score_approximation", "FID_vs_NFE", "Equal-NFE_study", "Equal-NFE_study_slice", "Paired_ratios",
                 "Paired_ratios_slice"):
        assert_compiles(views[name])
    ratios = views["Paired_ratios"]
    assert ratios["facet"]["field"] == "scheduler" and len(ratios["data"]["values"]) == 4
    assert ratios["spec"]["layer"][1]["encoding"]["y"]["scale"] == {"zero": False, "nice": False}  # fitted
    study = views["Equal-NFE_study"]
    assert study["facet"]["field"] == "sampler" and len(study["data"]["values"]) == 12
    assert study["spec"]["encoding"]["x"]["scale"]["type"] == "log"


@pytest.mark.parametrize("rev", ["HEAD", "HEAD~1"])
def test_diff_tells_revisions_apart(repo, rev):
    html = page(repo, "diff", rev)
    assert_offline_page(html)
    views = specs(html)
    assert set(views) == VEGA_DIVS
    score, fid, study = views["Score_approximation"], views["FID_vs_NFE"], views["Equal-NFE_study"]
    assert_log_score_views(score)
    for spec in (score, fid, study):
        assert {row["rev"] for row in spec["data"]["values"]} == {rev, "workspace"}
    assert fid["encoding"]["strokeDash"]["field"] == "rev"
    for spec in (score, fid, study):
        assert rev in assert_compiles(spec) and "workspace" in assert_compiles(spec)  # the revision legends


@pytest.mark.skipif(not any(map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                    reason="no Chromium installed (Debian: apt-get install -y chromium)")
def test_views_render_in_headless_chromium(repo):
    html = repo / "out/show/index.html"
    if not html.exists():
        page(repo, "show")
    out = run(repo, sys.executable, ROOT / "bench/check_plots_browser.py", html)
    assert "OK: 7 vega views rendered offline" in out.stdout, out.stdout
