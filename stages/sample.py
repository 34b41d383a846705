"""Stage sample (the headline, and each sweep@skip item): ``sampler.n`` images with the first ``skip`` steps
replaced by the Gaussian teleport; sweep items also sample the plain sampler at the same NFE (``sweep.baseline``).
Runs unchanged under ``torchrun --nproc-per-node N`` (each rank samples its share of image indices; rank 0 writes)."""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from torchvision.utils import save_image

from common import atomic_path, check, choice, device, integer, load_params, params_errors, rule, validate
from hls import distributed
from hls.data import to_uint8
from hls.gaussian import Gaussian
from hls.models import load_sampler
from hls.sampling import SCHEDULERS, equal_nfe_steps, nfe, sample_seeded, skip_sigma

RULES = {"seed": integer(0), "sampler.steps": integer(1), "sampler.n": integer(1), "sampler.batch_size": integer(1),
         "sampler.scheduler": choice(SCHEDULERS)}
HEADLINE_RULES = {"skip": integer(0, lambda p: p["sampler"]["steps"] - 1)}
SWEEP_RULES = {"sweep.baseline": rule(lambda v, p: isinstance(v, bool), "must be true or false")}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="real images [N, H, W, C] (.npy) whose shape the samples take")
    parser.add_argument("gaussian", type=Path, help="the Gaussian to teleport with (.safetensors)")
    parser.add_argument("out", type=Path, help="output folder: images.npy [, baseline.npy], info.json")
    parser.add_argument("--sweep-skip", type=int, help="a value of sweep.skips (default: the headline's `skip`)")
    parser.add_argument("--preview", type=Path, help="also write a PNG grid of the first 64 images")
    return parser.parse_args()


def main():
    args = parse_args()
    p = load_params()
    sweep = args.sweep_skip is not None
    validate(p, RULES | (SWEEP_RULES if sweep else HEADLINE_RULES))
    settings = p["sampler"]
    steps, n, batch_size, seed = settings["steps"], settings["n"], settings["batch_size"], p["seed"]
    skip = args.sweep_skip if sweep else p["skip"]
    if sweep:  # an item of sweep.skips, from the command line
        check(0 <= skip < steps, "sweep.skips", skip, f"each must be an integer in [0, sampler.steps = {steps})")
    dev = device(p["device"])
    image_shape = np.load(args.images, mmap_mode="r").shape[1:]  # [H, W, C]
    with params_errors(p, source="model.source", steps="sampler.steps", image_shape="data.name"):
        unet, scheduler = load_sampler(p["model"]["source"], settings["scheduler"], image_shape, steps)
    gaussian = Gaussian.load(args.gaussian) if skip > 0 else None

    rank, world = distributed.init(dev)
    dev = distributed.local_device(dev)
    indices = distributed.shard(n, rank, world, block=batch_size)  # whole batches: identical bytes at any world size
    shape = (image_shape[2], image_shape[0], image_shape[1])
    runs = {"images": (steps, skip)}
    if sweep and p["sweep"]["baseline"] and skip > 0:
        runs["baseline"] = (equal_nfe_steps(scheduler, steps, skip), 0)
    info = {"scheduler": settings["scheduler"], "steps": steps, "skip": skip, "n": n, "seed": seed,
            "sigma_skip": round(skip_sigma(scheduler, steps, skip), 6)}
    outputs = {}
    for name, (run_steps, run_skip) in runs.items():
        start = time.time()
        x = sample_seeded(unet.to(dev), scheduler, [seed + i for i in indices], shape=shape, steps=run_steps,
                          skip=run_skip, gaussian=gaussian, batch_size=batch_size, device=dev, progress=rank == 0)
        outputs[name] = distributed.gather(x, indices, n)
        prefix = "" if name == "images" else "baseline_"
        info |= {f"{prefix}steps": run_steps, f"{prefix}nfe": nfe(scheduler, run_steps, run_skip)}
        if rank == 0:
            print(f"{name}: {n} images, {run_steps} steps, skip {run_skip} in {time.time() - start:.1f} s")
    distributed.finish()
    if rank != 0:
        return

    with atomic_path(args.out, directory=True) as tmp:
        for name, x in outputs.items():
            np.save(tmp / f"{name}.npy", to_uint8(x))
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if args.preview:
        with atomic_path(args.preview) as tmp:
            save_image((outputs["images"][:64] + 1) / 2, tmp, nrow=8, padding=1, format="png")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
