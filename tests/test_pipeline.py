"""End to end: the real `dvc` CLI on tiny params in a temporary git copy of the project."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakes import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "skip": 1,
    "train": {"steps": 2, "batch_size": 16, "lr": 0.001, "warmup": 1, "ema_decay": 0.9, "snapshots": [0.5],
              "device": "cpu", "unet": {"block_out_channels": [8, 16], "layers_per_block": 1,
                                        "attention": [False, False], "norm_num_groups": 4}},
    "sampler": {"scheduler": "ddim", "steps": 4, "n": 8, "batch_size": 4},
    "sweep": {"skips": [0, 2], "baseline": True, "tolerance": 0.01},
    "fid_ref": {"split": "test", "n": 16},
    "study": {"schedulers": ["ddim"], "nfe": [2], "sigmas": [5], "controls": ["noise"], "control_sigmas": [5]},
    "fid": {"weights": "tf-fid-helper", "backend": "folded", "bootstrap": 20, "batch_size": 8},
    "score_error": {"n": 4, "n_sigmas": 3, "space": "score", "threshold": 0.999, "lowrank": 4, "gmm_k": 2,
                    "delta_n": 32},
}


def run(cwd, *args, check=True):
    """Run a command with this interpreter's environment first on PATH (so stages' `python` is ours)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def ran(output: str) -> set[str]:
    """Stage names that `dvc repro` / `dvc exp run` says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def set_params(repo: Path, **changes):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params.update(changes)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC copy of the project with tiny params, fake Fashion-MNIST and no trained model."""
    repo = tmp_path_factory.mktemp("hls")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("stages", "hls"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    source = tmp_path_factory.mktemp("fashion")
    write_fashion_mnist(source, n_train=64, n_test=48)
    set_params(repo, **TINY, data={"name": "fashion_mnist", "source_dir": str(source)})
    run(repo, "git", "init", "-q")
    run(repo, sys.executable, "-m", "dvc", "init", "-q")
    run(repo, sys.executable, "-m", "dvc", "config", "core.analytics", "false")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "tiny copy")
    return repo


def test_repro_runs_every_stage_then_nothing(repo):
    first = run(repo, sys.executable, "-m", "dvc", "repro")
    assert ran(first.stdout) >= {"data", "gaussian", "train", "fid_ref", "fid_floor", "sample", "fid", "sweep@0",
                                 "sweep@2", "sweep_fid@0", "sweep_fid@2", "score_error", "aggregate",
                                 "study_plain@ddim-2", "study_jump@ddim-2-5", "study_control@ddim-2-noise-5",
                                 "study_fid_plain@ddim-2", "study_fid_jump@ddim-2-5",
                                 "study_fid_control@ddim-2-noise-5", "pareto"}
    fid = json.loads((repo / "metrics/fid.json").read_text())
    assert fid["skip"] == 1 and fid["nfe"] == 3 and fid["n_samples"] == 8 and fid["fid"] > 0
    table = (repo / "plots/fid_vs_skip.csv").read_text().splitlines()
    assert table[0].startswith("skip,sigma_skip,steps,nfe,fid") and len(table) == 3
    sweep = json.loads((repo / "metrics/sweep.json").read_text())
    assert {"free_skip", "nfe_saved", "predicted_skip", "fid_floor"} <= sweep.keys()
    assert fid["fid_low"] < fid["fid"] < fid["fid_high"] and fid["bootstrap"] == 20
    pareto = pd.read_csv(repo / "plots/pareto.csv")
    assert list(pareto.start) == ["plain", "gaussian", "noise"] and (pareto.nfe == 2).all() and (pareto.n == 8).all()
    assert (pareto.ci_low < pareto.fid).all() and pareto.verdict[1:].isin(["gain", "tie", "loss"]).all()
    summary = json.loads((repo / "metrics/pareto.json").read_text())
    assert summary["schedulers"]["ddim"]["nfe"]["2"]["best"]["sigma_skip"] == 5
    for image in ("fid_vs_skip.png", "samples.png", "score_error.png", "pareto.png"):
        assert (repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"
    assert ran(run(repo, sys.executable, "-m", "dvc", "repro").stdout) == set()
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "tiny run")


def test_forced_reruns_give_identical_bytes(repo):
    """Re-running sampling, FID and score-error stages with unchanged inputs rewrites the same bytes, so DVC keeps
    every downstream stage up to date and dvc.lock does not change."""
    for stage in ("sample", "sweep@2", "sweep_fid@2", "fid_ref", "score_error"):
        run(repo, sys.executable, "-m", "dvc", "repro", "-f", "-s", stage)
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    assert ran(run(repo, sys.executable, "-m", "dvc", "repro").stdout) == set()


def test_exp_show_has_no_timing_columns(repo):
    shown = run(repo, sys.executable, "-m", "dvc", "exp", "show", "--csv").stdout.splitlines()[0]
    assert "fid" in shown.split(",") and not [c for c in shown.split(",") if "second" in c or "time" in c]


def test_exp_run_skip_reruns_only_the_headline(repo):
    out = run(repo, sys.executable, "-m", "dvc", "exp", "run", "-S", "skip=2")
    assert ran(out.stdout) == {"sample", "fid"}
    assert json.loads((repo / "metrics/fid.json").read_text())["skip"] == 2
    shown = run(repo, sys.executable, "-m", "dvc", "exp", "show", "--json").stdout
    assert '"skip": 2' in shown.replace(" ", "").replace('"skip":2', '"skip": 2')
    diff = run(repo, sys.executable, "-m", "dvc", "metrics", "diff").stdout
    assert "metrics/fid.json" in diff and "fid" in diff


def test_adding_a_sweep_value_runs_only_that_item(repo):
    out = run(repo, sys.executable, "-m", "dvc", "exp", "run", "-S", "sweep.skips=[0,2,3]")
    assert ran(out.stdout) == {"sweep@3", "sweep_fid@3", "aggregate"}


def test_adding_a_landing_sigma_runs_only_the_new_cells(repo):
    out = run(repo, sys.executable, "-m", "dvc", "exp", "run", "-S", "study.sigmas=[5,2]")
    assert ran(out.stdout) == {"study_jump@ddim-2-2", "study_fid_jump@ddim-2-2", "pareto"}
    assert set(pd.read_csv(repo / "plots/pareto.csv").sigma_skip.dropna()) == {2, 5}


def test_changing_steps_invalidates_sampling_only(repo):
    run(repo, "git", "checkout", "-q", "--", "params.yaml")
    set_params(repo, sampler={**TINY["sampler"], "steps": 5})
    status = json.loads(run(repo, sys.executable, "-m", "dvc", "status", "--json").stdout)
    assert {"sample", "sweep@0", "sweep@2", "score_error"} <= status.keys()
    assert not {"data", "gaussian", "train", "fid_ref"} & status.keys()
    run(repo, "git", "checkout", "-q", "--", "params.yaml")


def test_fresh_clone_does_not_retrain(repo, tmp_path):
    run(tmp_path, "git", "clone", "-q", str(repo), "clone")
    clone = tmp_path / "clone"
    assert ran(run(clone, sys.executable, "-m", "dvc", "repro", "data").stdout) == {"data"}
    assert "up to date" in run(clone, sys.executable, "-m", "dvc", "status", "train").stdout


SAMPLE = "sample.py data/dataset/test_images.npy data/gaussian.safetensors data/bad"
TRAIN = "train.py data/dataset/train_images.npy models/bad --loss plots/bad.csv --metrics plots/bad.json"
STUDY = "study.py data/dataset/test_images.npy data/gaussian.safetensors data/bad"


@pytest.mark.parametrize(("stage", "changes", "message"), [
    (f"{SAMPLE} --preview plots/bad.png", {"skip": 4},
     "skip = 4: must be an integer with 0 <= skip < sampler.steps = 4"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "scheduler": "plms"}},
     "sampler.scheduler = 'plms': must be one of ddim, ddpm, euler, heun, dpmsolver, unipc"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "n": 2.5}},
     "sampler.n = 2.5: must be an integer >= 1"),
    (f"{SAMPLE} --sweep-skip 1", {"sampler": {**TINY["sampler"], "steps": 2000}},
     "sampler.steps = 2000: must be <= 1000, the model's number of training timesteps"),
    (f"{SAMPLE} --sweep-skip 1", {"model": {"source": "models/none"}},
     "model.source = 'models/none': is not a local folder"),
    ("aggregate.py data/sweep_fid data/fid_floor.json metrics/score_error.json --table plots/bad.csv "
     "--figure plots/bad.png --metrics plots/bad.json", {"sweep": {**TINY["sweep"], "skips": [2, 3]}},
     "sweep.skips = [2, 3]: must be a list of distinct integers in [0, sampler.steps = 4) that includes 0"),
    ("fid_ref.py data/dataset/test_images.npy data/bad", {"fid_ref": {"split": "test", "n": 100000}},
     "fid_ref.n = 100000: must be <= 48, the number of test images"),
    (f"{STUDY} --scheduler heun --nfe 4", {}, "study.nfe = 4: heun spends 2 * steps - 1 evaluations, so only odd "
                                              "budgets are reachable: the nearest are 3 and 5"),
    (f"{STUDY} --scheduler plms --nfe 4", {}, "study.schedulers = 'plms': must be one of ddim, ddpm, euler"),
    (f"{STUDY} --scheduler euler --nfe 4 --start gaussian --sigma-skip 500", {},
     "study.sigmas = 500.0: must be a number with sigma_min = "),
    (f"{STUDY} --scheduler euler --nfe 4 --start cold --sigma-skip 5", {},
     "study.controls = 'cold': each must be one of isotropic, mean, noise"),
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
    assert not (repo / "data/bad").exists()
    assert not list((repo / "plots").glob("bad*")) and not (repo / "models/bad").exists()


def test_checkpoint_experiments_collect_into_one_table(repo, tmp_path):
    """The README's checkpoint comparison on the tiny model: an experiment on its EMA snapshot, then the collector."""
    run(repo, "git", "checkout", "-q", "--", "params.yaml")
    snapshot = "models/fashion_mnist-ddpm/snapshots/step-000001"
    run(repo, sys.executable, "-m", "dvc", "exp", "run", "-n", "ck-1", "-S", f"model.source={snapshot}")
    run(repo, sys.executable, "stages/checkpoints.py", "ck-1", "HEAD", "--table", str(tmp_path / "c.csv"),
        "--figure", str(tmp_path / "c.png"))
    table = pd.read_csv(tmp_path / "c.csv")
    assert table.step.tolist() == [1, 1, 2, 2] and table.skip.tolist() == [0, 2, 0, 2]  # snapshot, then final
    assert table.model.tolist()[:2] == [snapshot] * 2 and (table.fid > 0).all()
    assert table.gaussian_ev_score.notna().all() and (table.gaussian_ev_score <= 1).all()
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
