"""`dvc plots show/diff` offline: vega inline in the page, each plot once, the score views on log axes.

A temporary git + DVC repository holds the project's dvc.yaml, params.yaml, .dvc/config and .dvc/plots/ templates,
tiny CSVs and PNGs; `dvc repro plots_template` makes the page template as a fresh clone would.
"""

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import vl_convert
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))
from plots_template import VEGA_LITE_MAJOR, vega_lite_version  # noqa: E402

SIGMAS = [0.01, 0.1, 1.0, 10.0, 100.0]
VEGA_DIVS = {"FID_vs_NFE", "Score_approximation", "Equal-NFE_study", "Equal-NFE_study_full_grid",
             "plots_train_loss_csv"}


def run(cwd, *args):
    """Run a command with this interpreter first on PATH (so the stage's `python` is ours); fail loudly."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def dvc(cwd, *args):
    return run(cwd, sys.executable, "-m", "dvc", *args)


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
        {"scheduler": scheduler, "nfe": nfe, "sigma_skip": sigma, "start": start, "fid": scale * fid,
         "ci_low": scale * fid - 2, "ci_high": scale * fid + 2, "n": 500, "landing_sigma": sigma or 157.0,
         "ratio": "", "ratio_low": "", "ratio_high": "", "verdict": ""}
        for scheduler in ("ddim", "euler") for nfe in (5, 10)
        for start, sigma, fid in (("plain", "", 200 / nfe), ("gaussian", 10.0, 150 / nfe), ("noise", 10.0, 300 / nfe))]
    for path in ("plots/pareto.csv", "plots/study_full/pareto.csv"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        write_csv(repo / path, study)
    write_csv(repo / "plots/train_loss.csv", [{"step": step, "loss": scale / (step + 1)} for step in range(5)])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The project's plot configuration in a fresh git + DVC repository, one commit, and changed CSVs on top."""
    repo = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for dep in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["plots_template"]["deps"]:
        (repo / dep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / dep, repo / dep)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name in ["samples.png", "fid_vs_skip.png", "score_error.png", "pareto.png", "study_full/pareto.png",
                 *[f"sweep_samples/skip-{k}.png" for k in params["sweep"]["skips"]]]:
        write_png(repo / "plots" / name)
    write_plots(repo, scale=1.0)
    run(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    shutil.copy(ROOT / ".dvc/config", repo / ".dvc/config")
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")
    dvc(repo, "repro", "plots_template")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "plots")
    write_plots(repo, scale=2.0)
    return repo


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


def test_template_stage_writes_an_offline_page(repo):
    template = (repo / "data/plots_template.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in template and "{scripts}" not in template and 'charset="utf-8"' in template
    assert "window.vegaEmbed=" in template and "<script src" not in template
    assert "plots_template" in (repo / "dvc.lock").read_text()


def test_show_renders_each_plot_once_offline(repo):
    html = page(repo, "show")
    assert_offline_page(html)
    views = specs(html)
    assert set(views) == VEGA_DIVS
    score = views["Score_approximation"]
    assert_log_score_views(score)
    assert len(score["data"]["values"]) == len(SIGMAS) * 3 * 2 * 2
    assert {row["rev"] for row in score["data"]["values"]} == {"workspace"}
    for name in ("Score_approximation", "FID_vs_NFE", "Equal-NFE_study"):
        assert_compiles(views[name])
    study = views["Equal-NFE_study"]
    assert study["facet"]["column"]["field"] == "scheduler" and len(study["data"]["values"]) == 12
    assert study["spec"]["encoding"]["x"]["scale"]["type"] == "log"


def test_diff_tells_revisions_apart(repo):
    html = page(repo, "diff", "HEAD")
    assert_offline_page(html)
    views = specs(html)
    assert set(views) == VEGA_DIVS
    score, fid, study = views["Score_approximation"], views["FID_vs_NFE"], views["Equal-NFE_study"]
    assert_log_score_views(score)
    for spec in (score, fid, study):
        assert {row["rev"] for row in spec["data"]["values"]} == {"HEAD", "workspace"}
    assert fid["encoding"]["strokeDash"]["field"] == "rev"
    for spec in (score, fid, study):
        assert "HEAD" in assert_compiles(spec) and "workspace" in assert_compiles(spec)  # the revision legends


@pytest.mark.skipif(not any(map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                    reason="no Chromium installed (Debian: apt-get install -y chromium)")
def test_views_render_in_headless_chromium(repo):
    html = repo / "out/show/index.html"
    if not html.exists():
        page(repo, "show")
    out = run(repo, sys.executable, ROOT / "bench/check_plots_browser.py", html)
    assert "OK: 5 vega views rendered offline" in out.stdout, out.stdout
