"""Stage train: DDPM-train our own UNet on the training images; save the EMA model (and EMA snapshots) as a
diffusers DDPMPipeline folder, the loss curve as CSV and the run record as JSON (wall time goes to the log only).

Training resumes: every ``train.save_every`` steps the whole training state goes to ``--state`` (default: the model
folder's name + ``.partial``, beside it: a plain folder that git can carry to another machine), and the same command
started again continues from it to the same model as a run never stopped (on the same machine and thread count). A
state saved with other params or other images is refused with a one-line error rather than overwritten: it may hold
hours of training. The state is removed once the model is written.
"""

import argparse
import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMPipeline

from common import atomic_path, check, device, fail, integer, load_params, params_errors, rule, validate, write_json
from hls.data import to_model
from hls.train import make_unet, train, training_scheduler

RULES = {
    "seed": integer(0),
    "train.steps": integer(1),
    "train.batch_size": integer(1),
    "train.warmup": integer(0, lambda p: p["train"]["steps"]),
    "train.lr": rule(lambda v, p: isinstance(v, float) and v > 0, "must be a positive float"),
    "train.ema_decay": rule(lambda v, p: isinstance(v, (int, float)) and 0 <= v < 1, "must be in [0, 1)"),
    "train.snapshot_epochs": rule(lambda v, p: isinstance(v, list) and all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0 for e in v), "must be a list of epochs > 0"),
    "train.save_every": integer(1),
}
STATE_FILE = "state.pt"


def snapshot_steps(p: dict, n: int) -> list[int]:
    """The steps of ``train.snapshot_epochs`` over ``n`` images (step = round(epoch * n / batch_size)), checked to
    fall within training."""
    t = p["train"]
    steps = sorted({round(e * n / t["batch_size"]) for e in t["snapshot_epochs"]})
    epochs = t["steps"] * t["batch_size"] / n
    check(all(1 <= s <= t["steps"] for s in steps), "train.snapshot_epochs", t["snapshot_epochs"],
          f"each must be at least one step and at most the {epochs:g} epochs of training "
          f"(train.steps x train.batch_size / {n} images)")
    return steps


def fingerprint(p: dict, images: np.ndarray) -> dict:
    """What a saved training state must share with this run: the seed, every train param, the images' shape and
    a hash of their bytes (``images`` uint8 [N, H, W, C])."""
    return {"seed": p["seed"], **{f"train.{key}": v for key, v in p["train"].items()},
            "images.shape": list(images.shape),
            "images.sha256": hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()}


def load_state(folder: Path, expected: dict) -> dict | None:
    """The training state saved in ``folder`` (None when there is none); exit with one line naming the first key
    whose value differs from ``expected``."""
    if not (folder / STATE_FILE).is_file():
        return None
    saved = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    for key in sorted(saved["fingerprint"].keys() | expected.keys()):
        was = saved["fingerprint"].get(key)
        if was != expected.get(key):
            fail(key, expected.get(key), f"the training state here was saved with {was!r}: restore that, or remove "
                 f"{folder} to train from the start", file=str(folder))
    return saved["training"]


def save_state(folder: Path, stamp: dict, state: dict) -> None:
    with atomic_path(folder / STATE_FILE) as tmp:
        torch.save({"fingerprint": stamp, "training": state}, tmp)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, help="uint8 training images [N, H, W, C] (.npy)")
    parser.add_argument("out", type=Path, help="the DDPMPipeline folder to write")
    parser.add_argument("--loss", type=Path, required=True, help="loss curve CSV (step, epoch, loss)")
    parser.add_argument("--metrics", type=Path, required=True, help="run record JSON")
    parser.add_argument("--state", type=Path, help="folder of the resumable training state (default: OUT.partial)")
    args = parser.parse_args()
    state_dir = args.state or args.out.with_name(args.out.name + ".partial")
    p = load_params()
    validate(p, RULES)
    t = p["train"]
    dev = device(t["device"])
    images = np.load(args.images)  # [N, H, W, C]
    snapshots_at = snapshot_steps(p, len(images))
    stamp = fingerprint(p, images)
    state = load_state(state_dir, stamp)
    torch.manual_seed(p["seed"])  # the UNet's initial weights come from torch's default generator
    with params_errors(p, block_out_channels="train.unet.block_out_channels", attention="train.unet.attention"):
        unet = make_unet(images.shape[1], images.shape[3], **t["unet"])
    x = to_model(images)  # [N, C, H, W]
    steps, batch_size = t["steps"], t["batch_size"]
    print(f"training {sum(q.numel() for q in unet.parameters()) / 1e6:.2f}M parameters for {steps} steps "
          f"({steps * batch_size / len(x):.2f} epochs) on {dev}")
    if state is not None:
        print(f"resuming at step {state['step']} of {steps} from {state_dir}")
    scheduler = training_scheduler()
    start = time.time()
    ema, log, snapshots = train(unet, scheduler, x, steps=steps, batch_size=batch_size, lr=t["lr"],
                                warmup=t["warmup"], ema_decay=t["ema_decay"], seed=p["seed"],
                                snapshot_steps=snapshots_at, state=state, save_every=t["save_every"],
                                save=lambda s: save_state(state_dir, stamp, s), device=dev)
    print(f"trained in {time.time() - start:.0f} s on {dev}")

    with atomic_path(args.out, directory=True) as tmp:
        DDPMPipeline(unet=ema.cpu(), scheduler=scheduler).save_pretrained(tmp)
        for step, snap in snapshots.items():  # fp16 keeps the shipped folder small
            DDPMPipeline(unet=snap.cpu(), scheduler=scheduler).save_pretrained(tmp / "snapshots" / f"step-{step:06d}")
    with atomic_path(args.loss) as tmp:
        pd.DataFrame(log, columns=["step", "epoch", "loss"]).to_csv(tmp, index=False, float_format="%.6g")
    write_json(args.metrics, {
        "steps": steps, "epochs": round(steps * batch_size / len(x), 3), "final_loss": round(log[-1][2], 6),
        "parameters": sum(q.numel() for q in ema.parameters()), "snapshots": [f"step-{s:06d}" for s in snapshots_at],
    })
    shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
