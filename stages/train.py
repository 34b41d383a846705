"""Stage train: DDPM-train our own UNet on the train split; save the EMA model (and EMA snapshots) as a
diffusers DDPMPipeline folder, the loss curve to plots/train_loss.csv and the run record to metrics/train.json."""

import os
import sys
import time

import numpy as np
import pandas as pd
import torch
from common import atomic_path, check, check_int, device, load_params, write_json
from diffusers import DDPMPipeline

from hls.data import to_model
from hls.train import make_scheduler, make_unet, train


def main():
    out = sys.argv[1]
    p = load_params()
    t = p["train"]
    steps = check_int(t["steps"], "train.steps", 1)
    batch_size = check_int(t["batch_size"], "train.batch_size", 1)
    check_int(t["warmup"], "train.warmup", 0, steps)
    check(isinstance(t["lr"], float) and t["lr"] > 0, "train.lr", t["lr"], "must be a positive float")
    check(0 <= t["ema_decay"] < 1, "train.ema_decay", t["ema_decay"], "must be in [0, 1)")
    fractions = t["snapshots"]
    check(all(0 < f < 1 for f in fractions), "train.snapshots", fractions, "must be fractions of training in (0, 1)")
    dev = device(t["device"])

    images = np.load("data/dataset/train_images.npy")  # [N, H, W, C]
    x = to_model(images)  # [N, C, H, W]
    torch.manual_seed(p["seed"])  # the UNet's initial weights come from torch's default generator
    unet = make_unet(images.shape[1], images.shape[3], **t["unet"])
    scheduler = make_scheduler()
    snapshot_steps = sorted({max(1, round(f * steps)) for f in fractions})
    print(f"training {sum(q.numel() for q in unet.parameters()) / 1e6:.2f}M parameters for {steps} steps "
          f"({steps * batch_size / len(x):.1f} epochs) on {dev}")
    start = time.time()
    ema, log, snapshots = train(unet, scheduler, x, steps=steps, batch_size=batch_size, lr=t["lr"],
                                warmup=t["warmup"], ema_decay=t["ema_decay"], seed=p["seed"],
                                snapshot_steps=snapshot_steps, device=dev)
    seconds = time.time() - start

    with atomic_path(out, directory=True) as tmp:
        DDPMPipeline(unet=ema.cpu(), scheduler=scheduler).save_pretrained(tmp)
        for step, snap in snapshots.items():  # fp16 keeps the shipped folder small
            DDPMPipeline(unet=snap.cpu().half(), scheduler=scheduler).save_pretrained(tmp / "snapshots" / f"step-{step:06d}")
    with atomic_path("plots/train_loss.csv") as tmp:
        pd.DataFrame(log, columns=["step", "epoch", "loss"]).to_csv(tmp, index=False, float_format="%.6g")
    hardware = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    write_json("metrics/train.json", {
        "steps": steps, "epochs": round(steps * batch_size / len(x), 3), "final_loss": round(log[-1][2], 6),
        "parameters": sum(q.numel() for q in ema.parameters()), "seconds": round(seconds, 1),
        "hardware": hardware, "snapshots": [f"step-{s:06d}" for s in snapshot_steps], "cpu_count": os.cpu_count(),
    })


if __name__ == "__main__":
    main()
