"""End to end: the real `dvc` CLI on tiny params in a temporary git copy of the project: the default pipeline, the
study pipeline, re-runs, experiments, refused params that must leave every previous output in place, a fresh clone."""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakes import ROOT, dvc, run, write_fashion_mnist
from hls.pareto import COMPUTE_SLACK, JUMP_STARTS

TINY = {
    "skip": 1,
    "train": {"steps": 2, "batch_size": 16, "lr": 0.001, "warmup": 1, "ema_decay": 0.9, "snapshot_epochs": [0.25],
              "save_every": 1,
              "device": "cpu", "unet": {"block_out_channels": [8, 16], "layers_per_block": 1,
                                        "attention": [False, False], "norm_num_groups": 4}},
    "mixtures": {"k": 2, "max_step": 0.5},
    "sampler": {"scheduler": "ddim", "steps": 4, "n": 8, "batch_size": 4},
    "sweep": {"skips": [0, 2], "baseline": True, "tolerance": 0.01},
    "study": {"n": 8, "samplers": ["ddim-default"], "nfe": [2], "sigmas": [5],
              "controls": {"samplers": ["ddim-default"], "starts": ["noise"], "sigmas": [5]},
              "mixtures": {"samplers": ["ddim-default"], "starts": ["gmm_kmeans"], "sigmas": [5]}},
    "teleport": {"sampler": "ddim-default"},
    "fid_ref": {"split": "test", "n": 16},
    "fid": {"weights": "tf-fid-helper", "backend": "folded", "bootstrap": 20, "batch_size": 8},
    "score_error": {"n": 4, "n_sigmas": 3, "space": "score", "threshold": 0.999, "lowrank": 4, "delta_n": 32},
}
TINY_STUDY = {"study": {"n": 8, "samplers": ["dpmsolver-karras"], "nfe": [3], "sigmas": [20, 5],
                        "controls": {"samplers": ["dpmsolver-karras"], "starts": ["mean"], "sigmas": [5]},
                        "mixtures": {"samplers": ["dpmsolver-karras"], "starts": ["gmm_kmeans"], "sigmas": [5]},
                        "optimized": {"samplers": ["dpmsolver"], "teacher": 2, "size": 6, "substeps": 2}}}


def ran(output: str) -> set[str]:
    """Stage names that `dvc repro` / `dvc exp run` says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def set_params(repo: Path, file="params.yaml", **changes):
    params = yaml.safe_load((repo / file).read_text())
    params.update(changes)
    (repo / file).write_text(yaml.safe_dump(params, sort_keys=False))


def snapshot(repo: Path, *paths) -> dict:
    """{file: bytes} of every file under ``paths``."""
    files = [f for p in paths for f in ([repo / p] if (repo / p).is_file() else sorted((repo / p).rglob("*")))]
    return {f.relative_to(repo).as_posix(): f.read_bytes() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC copy of the project with tiny params, fake Fashion-MNIST and no trained model."""
    repo = tmp_path_factory.mktemp("hls")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("stages", "hls"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "study").mkdir()
    shutil.copy(ROOT / "study/dvc.yaml", repo / "study/dvc.yaml")
    (repo / "study/params.yaml").write_text(yaml.safe_dump(TINY_STUDY, sort_keys=False))
    source = tmp_path_factory.mktemp("fashion")
    write_fashion_mnist(source, n_train=64, n_test=48)
    set_params(repo, **TINY, data={"name": "fashion_mnist", "source_dir": str(source)})
    run(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "tiny copy")
    return repo


def test_repro_runs_every_stage_then_nothing(repo):
    first = dvc(repo, "repro")
    assert ran(first.stdout) == {"data", "gaussian", "mixtures", "train", "fid_ref", "fid_floor", "sample", "fid",
                                 "sweep@0", "sweep@2", "sweep_fid@0", "sweep_fid@2", "score_error", "aggregate",
                                 "plain@ddim-default-2", "jump@ddim-default-2-5", "control@ddim-default-2-noise-5",
                                 "mixture@ddim-default-2-gmm_kmeans-5", "pareto", "teleport", "plots_template"}
    assert json.loads((repo / "metrics/fid.json").read_text()).keys() == {"fid", "fid_low", "fid_high", "nfe"}
    fid = json.loads((repo / "data/fid.json").read_text())
    assert fid["skip"] == 1 and fid["nfe"] == 3 and fid["n_samples"] == 8 and fid["fid_low"] < fid["fid"]
    table = (repo / "plots/fid_vs_skip.csv").read_text().splitlines()
    assert table[0].startswith("skip,sigma_skip,steps,nfe,fid") and len(table) == 3
    assert json.loads((repo / "metrics/sweep.json").read_text()).keys() == {"free_skip", "nfe_saved"}
    assert {"free_skip", "nfe_saved", "predicted_skip", "fid_floor", "vs_same_nfe"} <= json.loads(
        (repo / "data/sweep.json").read_text()).keys()
    pareto = pd.read_csv(repo / "plots/slice/pareto.csv")
    assert list(pareto.start) == ["plain", "gaussian", "gmm_kmeans", "noise"] and (pareto.nfe == 2).all()
    assert (pareto.n == 8).all() and pareto.jump_cost[2] > 0  # the mixture's jump: its measured cost
    assert (pareto.fid_low < pareto.fid).all() and pareto.verdict[1:].isin(["gain", "tie", "loss"]).all()
    assert (pareto.family == "default").all() and pareto.jump_cost[0] == 0 and pareto.jump_cost[1] > 0
    landings = pd.read_csv(repo / "plots/slice/landings.csv")
    assert landings.sigma_skip.tolist() == [5] and landings.edge.tolist() == ["top"]  # one sigma: top and bottom
    # at equal compute a jump counts its measured cost: the tiny UNet is so cheap that the Gaussian's may not fit
    front = json.loads((repo / "metrics/slice.json").read_text())["frontier"]["2"]
    fits = (pareto.start.isin(JUMP_STARTS) & pareto.sigma_skip.notna() & (pareto.compute <= 2 + COMPUTE_SLACK)).any()
    assert set(front) == {"nfe", "compute"} if fits else set(front) == {"nfe"}
    for image in ("fid_vs_skip.png", "samples.png", "score_error.png", "slice/pareto.png", "slice/ratios.png"):
        assert (repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((repo / "data/teleport/model_index.json").read_text())
    assert config["gaussian"] == ["hls.pipeline", "AnalyticComponent"] and config["landings"] == {
        "ddim-default": {"2": 5.0}}
    assert ran(dvc(repo, "repro").stdout) == set()
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "tiny run")


def test_the_readme_example_runs_on_the_pipeline_folder(repo):
    code = ("import torch\nfrom hls import TeleportPipeline\n"
            "pipe = TeleportPipeline.from_pretrained('data/teleport')\n"
            "out = pipe(batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0))\n"
            "print(out.sigma_skip, len(out.images), out.images[0].size)")
    assert run(repo, sys.executable, "-c", code).stdout.split()[-4:] == ["5.0", "2", "(28,", "28)"]


def test_forced_reruns_give_identical_bytes(repo):
    """Re-running sampling, FID, score-error and (plain) cell stages with unchanged inputs rewrites the same bytes, so
    DVC keeps every downstream stage up to date and dvc.lock does not change."""
    for stage in ("sample", "sweep@2", "sweep_fid@2", "fid_ref", "score_error", "plain@ddim-default-2", "mixtures"):
        dvc(repo, "repro", "-f", "-s", stage)
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    assert ran(dvc(repo, "repro").stdout) == set()


def test_exp_show_has_no_timing_columns(repo):
    shown = dvc(repo, "exp", "show", "--csv").stdout.splitlines()[0]
    assert "fid" in shown.split(",") and not [c for c in shown.split(",") if "second" in c or "time" in c]


def test_exp_run_skip_reruns_only_the_headline(repo):
    out = dvc(repo, "exp", "run", "-S", "skip=2")
    assert ran(out.stdout) == {"sample", "fid"}
    assert json.loads((repo / "data/fid.json").read_text())["skip"] == 2
    diff = dvc(repo, "metrics", "diff").stdout
    assert "metrics/fid.json" in diff and "fid" in diff


def test_adding_a_sweep_value_runs_only_that_item(repo):
    out = dvc(repo, "exp", "run", "-S", "sweep.skips=[0,2,3]")
    assert ran(out.stdout) == {"sweep@3", "sweep_fid@3", "aggregate"}


def test_adding_a_landing_sigma_runs_only_the_new_cell(repo):
    out = dvc(repo, "exp", "run", "-S", "study.sigmas=[5,2]")
    assert {"jump@ddim-default-2-2", "pareto"} <= ran(out.stdout) <= {"jump@ddim-default-2-2", "pareto", "teleport"}
    assert set(pd.read_csv(repo / "plots/slice/pareto.csv").sigma_skip.dropna()) == {2, 5}


def test_changing_steps_invalidates_sampling_only(repo):
    run(repo, "git", "checkout", "-q", "--", "params.yaml")
    set_params(repo, sampler={**TINY["sampler"], "steps": 5})
    status = json.loads(dvc(repo, "status", "--json").stdout)
    assert {"sample", "sweep@0", "sweep@2", "score_error"} <= status.keys()
    assert not {"data", "gaussian", "train", "fid_ref", "plain@ddim-default-2"} & status.keys()
    run(repo, "git", "checkout", "-q", "--", "params.yaml")


def test_the_study_pipeline_runs_its_grid_and_keeps_its_results_in_git(repo):
    run(repo, "git", "checkout", "-q", "--", ".")  # undo what the experiments above applied to the workspace
    run(repo, "git", "clean", "-fdq")
    dvc(repo, "checkout", "-f")
    out = dvc(repo, "repro", "study/dvc.yaml")
    cells = {"plain@dpmsolver-karras-3", "jump@dpmsolver-karras-3-20", "jump@dpmsolver-karras-3-5",
             "control@dpmsolver-karras-3-mean-5", "mixture@dpmsolver-karras-3-gmm_kmeans-5",
             "optimized@dpmsolver-3-plain", "optimized@dpmsolver-3-gaussian"}
    optimizer = {"costs", "schedule@dpmsolver-3-plain", "schedule@dpmsolver-3-gaussian"}
    assert ran(out.stdout) == {f"study/dvc.yaml:{c}" for c in cells | optimizer | {"heldout", "pareto"}}
    table = pd.read_csv(repo / "plots/study/pareto.csv")
    assert set(table.family) == {"karras", "optimized"} and len(table) == 7
    schedule = json.loads((repo / "study/schedules/dpmsolver-3-gaussian.json").read_text())
    mine = table[(table.family == "optimized") & (table.start == "gaussian")].iloc[0]
    assert len(schedule["timesteps"]) == 3 and mine.landing_sigma == pytest.approx(schedule["sigmas"][0], rel=1e-5)
    # the held-out block: its own images (seed + n + i), the chosen cells and both optimized ones
    held = {f.stem: json.loads(f.read_text()) for f in (repo / "study/heldout").glob("*.json")}
    assert {"dpmsolver-optimized-3-plain", "dpmsolver-optimized-3-gaussian", "dpmsolver-karras-3-plain"} <= set(held)
    assert all(r["first"] == 8 for r in held.values()) and table.heldout_fid.notna().sum() == len(held)
    twin = table[table.family == "optimized"].set_index("start")
    assert held["dpmsolver-optimized-3-plain"]["fid"] != twin.fid["plain"]  # other images, other FID
    assert pd.read_csv(repo / "plots/study/landings.csv").heldout_ratio.notna().all()
    mixture = table[table.start == "gmm_kmeans"].iloc[0]
    assert mixture.jump_cost > 0 and mixture.compute == pytest.approx(3 + mixture.jump_cost, abs=0.01)
    assert {"ratio_vs_gaussian", "verdict_vs_gaussian"} <= set(table.columns)
    front = pd.read_csv(repo / "plots/study/frontier.csv")
    assert list(front.basis) == ["nfe", "compute"] and front.plain[0] in {"dpmsolver-karras-3-plain",
                                                                         "dpmsolver-optimized-3-plain"}
    # at equal compute a jump counts its measured cost (on the tiny UNet the Gaussian's may not fit)
    fits = (table.start.isin(JUMP_STARTS) & table.sigma_skip.notna() & (table.compute <= 3 + COMPUTE_SLACK)).any()
    assert pd.notna(front.teleport[1]) == fits
    assert json.loads((repo / "metrics/pareto.json").read_text())["frontier"]["3"].keys() == {
        "nfe", "nfe_heldout"} | ({"compute", "compute_heldout"} if fits else set())
    assert len(list((repo / "study/cells").glob("*.json"))) == 7
    assert "study/cells" not in run(repo, "git", "check-ignore", "-v", "study/cells/x.json", check=False).stdout
    assert dvc(repo, "status", "study/dvc.yaml").stdout.strip() == "Data and pipelines are up to date."
    shown = next(iter(json.loads(dvc(repo, "metrics", "show", "--json").stdout).values()))["data"]  # the workspace
    keys = [k for m in shown.values() for k in pd.json_normalize(m["data"]).columns]
    assert "frontier.3.nfe" in keys and len(keys) <= 25, keys
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "tiny study")


def test_a_fresh_clone_reproduces_everything_and_leaves_git_clean(repo, tmp_path):
    """No DVC remote: a clone recomputes its cached outputs, reproduces every committed result to the byte (on the
    same machine), and does not retrain; the study's committed cells are up to date afterwards."""
    run(tmp_path, "git", "clone", "-q", str(repo), "clone")
    clone = tmp_path / "clone"
    assert "train" not in ran(dvc(clone, "repro").stdout)
    assert run(clone, "git", "status", "--porcelain").stdout == ""
    assert dvc(clone, "status").stdout.strip() == "Data and pipelines are up to date."


SAMPLE = "sample.py data/dataset/test_images.npy data/gaussian.safetensors data/bad"
TRAIN = "train.py data/dataset/train_images.npy models/bad --loss plots/bad.csv --metrics plots/bad.json"
CELL = "cell.py data/dataset/test_images.npy models/fid_ref.safetensors data/bad.json --replicates data/bad.st"


@pytest.mark.parametrize(("stage", "changes", "message"), [
    (f"{SAMPLE} --preview plots/bad.png", {"skip": 4}, "skip = 4: must be an integer >= 0 and <= 3"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "scheduler": "plms"}},
     "sampler.scheduler = 'plms': must be one of ddim, ddpm, euler, heun, dpmsolver, unipc, dpmsolver3, unipc_bh1"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "n": 2.5}},
     "sampler.n = 2.5: must be an integer >= 1"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "steps": 2000}},
     "sampler.steps = 2000: must be <= 1000, the model's number of training timesteps"),
    (f"{SAMPLE} --sweep-skip 7", {}, "sweep.skips = 7: each must be an integer in [0, sampler.steps = 4)"),
    (f"{SAMPLE} --sweep-skip 1", {"model": {"source": "models/none"}},
     "model.source = 'models/none': is not a local folder"),
    ("aggregate.py data/sweep_fid data/fid_floor.json data/score_error.json --table plots/bad.csv "
     "--figure plots/bad.png --record data/bad.json --metrics plots/bad.json",
     {"sweep": {**TINY["sweep"], "skips": [2, 3]}},
     "sweep.skips = [2, 3]: must be a list of distinct integers >= 0 that includes 0"),
    ("fid_ref.py data/dataset/test_images.npy data/bad", {"fid_ref": {"split": "test", "n": 100000}},
     "fid_ref.n = 100000: must be <= 48, the number of test images"),
    (f"{CELL} --sampler heun-default --nfe 4", {}, "study.nfe = 4: heun spends 2 * steps - 1 evaluations, so only "
                                                   "odd budgets are reachable: the nearest are 3 and 5"),
    (f"{CELL} --sampler plms-default --nfe 4", {}, "study.samplers = 'plms-default': must be one of ddim, ddpm"),
    (f"{CELL} --sampler unipc-logsnr --nfe 4", {}, "study.samplers = 'unipc-logsnr': unipc supports default, karras"),
    (f"{CELL} --sampler euler-default --nfe 4 --start gaussian --sigma-skip 500 --model data/gaussian.safetensors", {},
     "study.sigmas = 500.0: must be a number with sigma_min = "),
    (f"{CELL} --sampler euler-default --nfe 4 --start cold --sigma-skip 5 --axes study.controls", {},
     "study.controls.starts = 'cold': each must be one of plain, noise, gaussian, isotropic, mean"),
    (f"{CELL} --sampler euler-default --nfe 4", {"study": {**TINY["study"], "n": 1}},
     "study.n = 1: must be an integer >= 2"),
    (f"{CELL} --sampler dpmsolver-optimized --nfe 3", {},
     "--schedule = None: is needed exactly in the family optimized"),
    (f"{CELL} --sampler dpmsolver-optimized --nfe 5 --schedule study/schedules/dpmsolver-3-plain.json", {},
     "--schedule = 'study/schedules/dpmsolver-3-plain.json': holds the schedule of ('dpmsolver', 3, 'plain'), not of "
     "('dpmsolver', 5, 'plain')"),
    ("costs.py data/gaussian.safetensors data/bad.safetensors", {"study": {**TINY["study"], "optimized": {
        "samplers": ["ddim"], "teacher": 2, "size": 6, "substeps": 2}}},
     "study.optimized.samplers = ['ddim']: must be a list of samplers whose steps can be placed: euler, heun"),
    ("costs.py data/gaussian.safetensors data/bad.safetensors", {"study": {**TINY["study"], "optimized": {
        "samplers": ["euler"], "teacher": 2, "size": 5000, "substeps": 2}}},
     "study.optimized.size = 5000: must be <= 1000, the training timesteps above end = 0.0"),
    ("schedule.py study/schedules/costs.safetensors data/bad.json --sampler heun --nfe 3 --start plain "
     "--grid study/params.yaml", {}, "error: study/params.yaml: study.optimized.samplers = ['dpmsolver']: must "
                                    "include heun, whose schedule is asked for"),
    (TRAIN, {"train": {**TINY["train"], "lr": -1.0}}, "train.lr = -1.0: must be a positive float"),
    (TRAIN, {"train": {**TINY["train"], "unet": {**TINY["train"]["unet"], "block_out_channels": []}}},
     "train.unet.block_out_channels = []: must be a non-empty list of positive integers"),
])
def test_bad_params_fail_early_and_write_nothing(repo, stage, changes, message):
    original = (repo / "params.yaml").read_text()
    set_params(repo, **changes)
    try:
        out = run(repo, sys.executable, *f"stages/{stage}".split(), check=False)
    finally:
        (repo / "params.yaml").write_text(original)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    assert not list((repo / "data").glob("bad*")) and not list((repo / "plots").glob("bad*"))
    assert not (repo / "models/bad").exists()


@pytest.mark.parametrize(("stage", "changes", "outputs"), [
    ("train", {"train": {**TINY["train"], "lr": -1.0}},
     ["models/fashion_mnist-ddpm", "metrics/train.json", "plots/train_loss.csv"]),
    ("aggregate", {"sweep": {**TINY["sweep"], "tolerance": 2.0}},
     ["plots/fid_vs_skip.csv", "plots/fid_vs_skip.png", "metrics/sweep.json", "data/sweep.json"]),
    ("sample", {"skip": 9}, ["data/headline", "plots/samples.png"]),
])
def test_a_refused_stage_leaves_its_previous_outputs_in_place(repo, stage, changes, outputs):
    """dvc repro runs the stage, which refuses its params in one line: every output it had (the git-tracked model,
    metrics and plots, and cached folders) is still there, byte for byte."""
    run(repo, "git", "checkout", "-q", "--", "params.yaml")
    before = snapshot(repo, *outputs)
    assert before and all(any(f.startswith(o) for f in before) for o in outputs)
    set_params(repo, **changes)
    try:
        out = dvc(repo, "repro", "-s", stage, check=False)
    finally:
        run(repo, "git", "checkout", "-q", "--", "params.yaml")
    assert out.returncode != 0 and "error: params.yaml: " in out.stderr
    assert snapshot(repo, *outputs) == before


def test_checkpoint_experiments_collect_into_one_table(repo, tmp_path):
    """The README's checkpoint comparison on the tiny model: an experiment on its EMA snapshot, then the collector."""
    run(repo, "git", "checkout", "-q", "--", "params.yaml")
    snapshot_dir = "models/fashion_mnist-ddpm/snapshots/step-000001"
    dvc(repo, "exp", "run", "-n", "ck-1", "-S", f"model.source={snapshot_dir}", "aggregate", "fid", "pareto")

    def collect(*revs_and_flags):
        run(repo, sys.executable, "stages/checkpoints.py", *revs_and_flags, "--table", tmp_path / "c.csv",
            "--figure", tmp_path / "c.png", "--slice", tmp_path / "s.csv", "--baseline", "HEAD")

    collect("ck-1", "HEAD")
    cells = pd.read_csv(tmp_path / "s.csv")
    assert cells.step.tolist() == [1] * 4 + [2] * 4 and cells.start.tolist()[:4] == ["plain", "gaussian",
                                                                                      "gmm_kmeans", "noise"]
    mixture = cells[cells.start == "gmm_kmeans"]
    assert mixture.ratio.notna().all() and mixture.verdict.isin(["gain", "tie", "loss"]).all()
    assert cells.fid.iloc[0] != cells.fid.iloc[4]  # the snapshot's slice, then the final model's
    # every cell against the same cell of HEAD (the final model): paired, so HEAD's own cells are a tie at 1 exactly
    own, snapshot = cells[4:], cells[:4]
    assert (own.ratio_low_vs_baseline == 1).all() and (own.ratio_high_vs_baseline == 1).all()
    assert (own.ratio_vs_baseline == 1).all()
    assert (own.verdict_vs_baseline == "tie").all() and (snapshot.ratio_vs_baseline != 1).all()
    assert (snapshot.ratio_low_vs_baseline < snapshot.ratio_vs_baseline).all()
    table = pd.read_csv(tmp_path / "c.csv")
    assert table.step.tolist() == [1, 1, 2, 2] and table.skip.tolist() == [0, 2, 0, 2]  # snapshot, then final
    assert table.model.tolist()[:2] == [snapshot_dir] * 2 and (table.fid > 0).all()
    assert table.gaussian_ev_score.notna().all() and (table.gaussian_ev_score <= 1).all()
    skip_0 = table[table.skip == 0]  # against itself: exactly 1; vs the same NFE only where a skip saves NFE
    assert (skip_0.ratio_vs_skip_0 == 1).all() and skip_0.ratio_vs_same_nfe.isna().all()
    skipped = table[table.skip > 0]
    assert (skipped.ratio_low_vs_same_nfe < skipped.ratio_vs_same_nfe).all()
    assert (skipped.ratio_vs_same_nfe < skipped.ratio_high_vs_same_nfe).all()
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # a later sitting collects one experiment again into the committed tables: the other model's rows stay
    before = (tmp_path / "c.csv").read_text(), (tmp_path / "s.csv").read_text()
    collect("ck-1", "--update")
    assert ((tmp_path / "c.csv").read_text(), (tmp_path / "s.csv").read_text()) == before
    # ...also once HEAD has moved on from the experiment's baseline: its name still finds it
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", "a later commit")
    try:
        collect("ck-1", "--update")
    finally:
        run(repo, "git", "reset", "-q", "--soft", "HEAD~1")
    assert ((tmp_path / "c.csv").read_text(), (tmp_path / "s.csv").read_text()) == before
