"""Resumable training: a run stopped and resumed from its saved state gives the bits of a run never stopped, in the
library and through the stage; a state saved with other params or images is refused; a finished run removes it."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import train as stage
import yaml

from hls.train import make_unet, train, training_scheduler

X = torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1  # 6 batches of 16 an epoch
TINY = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention": [False, True], "norm_num_groups": 4}


class Killed(Exception):
    """A stand-in for the process being killed."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny UNets run fastest on one thread, and far faster than on two when other processes load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(state=None, kill_at=None):
    """Train a tiny UNet 12 steps (saving every 4, logging every 3, snapshots at 3 and 9); ``kill_at``: stop right
    after the state of that step is saved. Returns (raw unet, train's output or None, the saved states' bytes)."""
    saved = []

    def save(s):
        buffer = io.BytesIO()
        torch.save(s, buffer)
        saved.append(buffer.getvalue())
        if s["step"] == kill_at:
            raise Killed

    torch.manual_seed(0)
    unet = make_unet(8, 1, **TINY)
    try:
        out = train(unet, training_scheduler(), X, steps=12, batch_size=16, lr=1e-3, warmup=2, ema_decay=0.9, seed=3,
                    snapshot_steps=(3, 9), log_every=3, state=state, save_every=4, save=save, progress=False)
    except Killed:
        out = None
    return unet, out, saved


def load(saved: bytes) -> dict:
    return torch.load(io.BytesIO(saved), weights_only=True)


def assert_same_unet(a, b):
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.fixture(scope="module")
def uninterrupted():
    return run()


@pytest.mark.parametrize("kill_at", [4, 8])  # before and after the epoch boundary at step 7 and snapshot 3
def test_a_resumed_run_gives_the_same_bits(uninterrupted, kill_at):
    unet, (ema, log, snapshots), saved = uninterrupted
    _, killed, states = run(kill_at=kill_at)
    assert killed is None and load(states[-1])["step"] == kill_at
    resumed_unet, (resumed_ema, resumed_log, resumed_snapshots), resumed_states = run(state=load(states[-1]))
    assert_same_unet(resumed_unet, unet)
    assert_same_unet(resumed_ema, ema)
    assert resumed_log == log and [row[0] for row in log] == [3, 6, 9, 12]
    assert resumed_snapshots.keys() == snapshots.keys() == {3, 9}
    for step in snapshots:
        assert resumed_snapshots[step].dtype == torch.float16
        assert_same_unet(resumed_snapshots[step], snapshots[step])
    assert len(resumed_states) == len(saved) - kill_at // 4  # it went on saving every 4 steps and after the last


def test_the_state_holds_what_resuming_needs(uninterrupted):
    state = load(uninterrupted[2][0])
    assert state["step"] == 4 and state["pos"] == 64 and len(state["running"]) == 1  # 1 step since the log at 3
    assert {"unet", "opt", "lr_schedule", "ema", "generator", "order", "log", "snapshots"} <= state.keys()
    assert list(state["snapshots"]) == [3] and state["opt"]["state"] and state["ema"]["optimization_step"] == 4
    assert not torch.equal(state["ema"]["shadow_params"][0], state["unet"]["conv_in.weight"])
    finished = load(uninterrupted[2][-1])
    assert finished["step"] == 12 and list(finished["snapshots"]) == [3, 9]


def test_resuming_a_finished_state_trains_no_more(uninterrupted):
    _, (ema, log, _), _ = uninterrupted
    _, (again, again_log, _), saved = run(state=load(uninterrupted[2][-1]))
    assert_same_unet(again, ema)
    assert again_log == log and saved == []


# the stage, in this process: params.yaml and the images in a temporary folder
PARAMS = {"seed": 0, "train": {"steps": 6, "batch_size": 16, "lr": 0.001, "warmup": 1, "ema_decay": 0.9,
                               "snapshot_epochs": [0.5], "save_every": 2, "device": "cpu", "unet": TINY}}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)  # 4 batches an epoch
    np.save(tmp_path / "images.npy", images)
    return tmp_path


def stage_main(monkeypatch, out="model", params=None):
    if params is not None:
        Path("params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr("sys.argv", ["train.py", "images.npy", out, "--loss", f"{out}.csv", "--metrics",
                                     f"{out}.json"])
    stage.main()


def kill_after_save(monkeypatch, at_step):
    save = stage.save_state

    def save_then_kill(folder, stamp, state):
        save(folder, stamp, state)
        if state["step"] == at_step:
            raise Killed

    monkeypatch.setattr(stage, "save_state", save_then_kill)


def model_bytes(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_stage_resumes_where_it_was_killed_and_removes_its_state(folder, monkeypatch, capsys):
    stage_main(monkeypatch, "whole")
    assert not (folder / "whole.partial").exists()
    assert "snapshots/step-000002/unet/diffusion_pytorch_model.safetensors" in model_bytes(folder / "whole")
    with monkeypatch.context() as m:
        kill_after_save(m, 4)
        with pytest.raises(Killed):
            stage_main(monkeypatch)
    assert (folder / "model.partial" / "state.pt").is_file() and not (folder / "model").exists()
    capsys.readouterr()
    stage_main(monkeypatch)
    assert "resuming at step 4 of 6 from model.partial" in capsys.readouterr().out
    assert not (folder / "model.partial").exists()
    assert model_bytes(folder / "model") == model_bytes(folder / "whole")
    assert pd.read_csv(folder / "model.csv").equals(pd.read_csv(folder / "whole.csv"))
    assert (folder / "model.json").read_text() == (folder / "whole.json").read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {**PARAMS["train"], "lr": 0.002}}, "error: model.partial: train.lr = 0.002: the training state here "
                                                  "was saved with 0.001: restore that, or remove model.partial"),
    ({"seed": 1}, "error: model.partial: seed = 1: the training state here was saved with 0"),
    ({"images": 1}, "error: model.partial: images.sha256 = '"),
])
def test_a_state_from_other_params_or_images_is_refused_and_kept(folder, monkeypatch, capsys, change, message):
    with monkeypatch.context() as m:
        kill_after_save(m, 2)
        with pytest.raises(Killed):
            stage_main(monkeypatch)
    state = (folder / "model.partial" / "state.pt").read_bytes()
    if "images" in change:
        images = np.load(folder / "images.npy")
        images[0, 0, 0, 0] ^= 1
        np.save(folder / "images.npy", images)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        stage_main(monkeypatch, params=PARAMS | {k: v for k, v in change.items() if k != "images"})
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert (folder / "model.partial" / "state.pt").read_bytes() == state and not (folder / "model").exists()


@pytest.mark.parametrize(("epochs", "message"), [
    ([0.5, 7], "train.snapshot_epochs = [0.5, 7]: each must be at least one step and at most the 1.5 epochs"),
    ([0.1], "train.snapshot_epochs = [0.1]: each must be at least one step"),
    ([1, -1], "train.snapshot_epochs = [1, -1]: must be a list of epochs > 0"),
    (0.5, "train.snapshot_epochs = 0.5: must be a list of epochs > 0"),
])
def test_snapshot_epochs_are_checked_before_training(folder, monkeypatch, capsys, epochs, message):
    with pytest.raises(SystemExit):
        stage_main(monkeypatch, params={**PARAMS, "train": {**PARAMS["train"], "snapshot_epochs": epochs}})
    assert f"error: params.yaml: {message}" in capsys.readouterr().err
    assert not (folder / "model.partial").exists() and not (folder / "model").exists()


def test_snapshot_epochs_become_steps():
    p = {"train": {"steps": 14100, "batch_size": 128, "snapshot_epochs": [1, 3, 10, 20]}}
    assert stage.snapshot_steps(p, 60000) == [469, 1406, 4688, 9375]
