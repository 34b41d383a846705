"""Stage train: DDPM-train our own UNet on the training images; save the EMA model (and EMA snapshots) as a
diffusers DDPMPipeline folder, the loss curve as CSV and the run record as JSON (wall time goes to the log only)."""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMPipeline

from common import atomic_path, device, integer, load_params, params_errors, rule, validate, write_json
from hls.data import to_model
from hls.train import make_unet, train, training_scheduler

RULES = {
    "seed": integer(0),
    "train.steps": integer(1),
    "train.batch_size": integer(1),
    "train.warmup": integer(0, lambda p: p["train"]["steps"]),
    "train.lr": rule(lambda v, p: isinstance(v, float) and v > 0, "must be a positive float"),
    "train.ema_decay": rule(lambda v, p: isinstance(v, (int, float)) and 0 <= v < 1, "must be in [0, 1)"),
    "train.snapshots": rule(lambda v, p: isinstance(v, list) and all(isinstance(f, float) and 0 < f < 1 for f in v),
                            "must be a list of fractions of training in (0, 1)"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 training images [N, H, W, C] (.npy)")
    parser.add_argument("out", type=Path, help="the DDPMPipeline folder to write")
    parser.add_argument("--loss", type=Path, required=True, help="loss curve CSV (step, epoch, loss)")
    parser.add_argument("--metrics", type=Path, required=True, help="run record JSON")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    t = p["train"]
    dev = device(t["device"])
    images = np.load(args.images)  # [N, H, W, C]
    torch.manual_seed(p["seed"])  # the UNet's initial weights come from torch's default generator
    with params_errors(p, block_out_channels="train.unet.block_out_channels", attention="train.unet.attention"):
        unet = make_unet(images.shape[1], images.shape[3], **t["unet"])
    x = to_model(images)  # [N, C, H, W]
    steps, batch_size = t["steps"], t["batch_size"]
    snapshot_steps = sorted({max(1, round(f * steps)) for f in t["snapshots"]})
    print(f"training {sum(q.numel() for q in unet.parameters()) / 1e6:.2f}M parameters for {steps} steps "
          f"({steps * batch_size / len(x):.1f} epochs) on {dev}")
    scheduler = training_scheduler()
    start = time.time()
    ema, log, snapshots = train(unet, scheduler, x, steps=steps, batch_size=batch_size, lr=t["lr"],
                                warmup=t["warmup"], ema_decay=t["ema_decay"], seed=p["seed"],
                                snapshot_steps=snapshot_steps, device=dev)
    print(f"trained in {time.time() - start:.0f} s on {dev}")

    with atomic_path(args.out, directory=True) as tmp:
        DDPMPipeline(unet=ema.cpu(), scheduler=scheduler).save_pretrained(tmp)
        for step, snap in snapshots.items():  # fp16 keeps the shipped folder small
            DDPMPipeline(unet=snap.cpu().half(), scheduler=scheduler).save_pretrained(
                tmp / "snapshots" / f"step-{step:06d}")
    with atomic_path(args.loss) as tmp:
        pd.DataFrame(log, columns=["step", "epoch", "loss"]).to_csv(tmp, index=False, float_format="%.6g")
    write_json(args.metrics, {
        "steps": steps, "epochs": round(steps * batch_size / len(x), 3), "final_loss": round(log[-1][2], 6),
        "parameters": sum(q.numel() for q in ema.parameters()), "snapshots": [f"step-{s:06d}" for s in snapshot_steps],
    })


if __name__ == "__main__":
    main()
