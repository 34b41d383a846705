"""Stage sample (headline, and each sweep@skip item): ``sampler.n`` images with the first ``--skip`` steps replaced by
the Gaussian teleport; sweep items also sample the plain sampler at the same NFE (``sweep.baseline``). Runs unchanged under
``torchrun --nproc-per-node N`` (each rank samples its share of image indices; rank 0 writes)."""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import atomic_path, check, check_choice, check_int, device, load_params
from torchvision.utils import save_image

from hls import distributed
from hls.data import to_uint8
from hls.gaussian import Gaussian
from hls.models import check_compatible, load_model
from hls.sampling import SCHEDULERS, equal_nfe_steps, make_scheduler, nfe, sample_seeded, skip_sigma


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep-skip", type=int, help="a value of sweep.skips (default: the headline's `skip`)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: images.npy [, baseline.npy], info.json")
    parser.add_argument("--grid", type=Path, help="also write a PNG grid of the first 64 images")
    return parser.parse_args()


def main():
    args = parse_args()
    p = load_params()
    s = p["sampler"]
    check_choice(s["scheduler"], "sampler.scheduler", SCHEDULERS)
    steps = check_int(s["steps"], "sampler.steps", 1)
    n = check_int(s["n"], "sampler.n", 1)
    batch_size = check_int(s["batch_size"], "sampler.batch_size", 1)
    check_int(p["seed"], "seed", 0)
    sweep = args.sweep_skip is not None
    skip, key = (args.sweep_skip, "sweep.skips") if sweep else (p["skip"], "skip")
    check(isinstance(skip, int) and not isinstance(skip, bool) and 0 <= skip < steps, key, skip,
          f"must be an integer with 0 <= skip < sampler.steps = {steps}")
    dev = device(p["device"])
    image_shape = np.load("data/dataset/test_images.npy", mmap_mode="r").shape[1:]  # [H, W, C]
    try:
        unet, scheduler_config = load_model(p["model"]["source"])
        check_compatible(unet, image_shape, p["model"]["source"], p["data"]["name"])
    except (RuntimeError, ValueError) as err:
        sys.exit(f"error: {err}")
    scheduler = make_scheduler(s["scheduler"], scheduler_config)
    gaussian = Gaussian.load("data/gaussian.safetensors") if skip > 0 else None

    rank, world = distributed.init(dev)
    dev = distributed.local_device(dev)
    indices = distributed.shard(n, rank, world, block=batch_size)  # whole batches: identical bytes at any world size
    shape = (image_shape[2], image_shape[0], image_shape[1])
    runs = {"images": (steps, skip)}
    if sweep and p["sweep"]["baseline"] and skip > 0:
        runs["baseline"] = (equal_nfe_steps(scheduler, steps, skip), 0)
    info = {"scheduler": s["scheduler"], "steps": steps, "skip": skip, "n": n, "seed": p["seed"],
            "sigma_skip": round(skip_sigma(scheduler, steps, skip), 6)}
    outputs = {}
    for name, (run_steps, run_skip) in runs.items():
        start = time.time()
        x = sample_seeded(unet.to(dev), scheduler, [p["seed"] + i for i in indices], shape=shape, steps=run_steps,
                          skip=run_skip, gaussian=gaussian, batch_size=batch_size, device=dev, progress=rank == 0)
        outputs[name] = distributed.gather(x, indices, n)
        prefix = "" if name == "images" else "baseline_"
        info |= {f"{prefix}steps": run_steps, f"{prefix}nfe": nfe(scheduler, run_steps, run_skip),
                 f"{prefix}seconds": round(time.time() - start, 1)}
    distributed.finish()
    if rank != 0:
        return

    with atomic_path(args.out, directory=True) as tmp:
        for name, x in outputs.items():
            np.save(tmp / f"{name}.npy", to_uint8(x))
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if args.grid:
        with atomic_path(args.grid) as tmp:
            save_image((outputs["images"][:64] + 1) / 2, tmp, nrow=8, padding=1, format="png")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
