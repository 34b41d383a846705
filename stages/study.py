"""Stage study_plain / study_jump / study_control @ cell: one sample set of the equal-NFE study, ``sampler.n`` images
with exactly ``--nfe`` UNet evaluations (``hls.budget``): the plain sampler, or a ``--start`` at ``--sigma-skip``.
Runs unchanged under ``torchrun --nproc-per-node N`` (each rank samples its share of image indices; rank 0 writes)."""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import atomic_path, check, device, load_params, params_errors, validate
from hls import distributed
from hls.budget import JUMPS, budget_schedule, landing_sigma, sample_budget_seeded, start_model, steps_for_nfe
from hls.data import to_uint8
from hls.gaussian import Gaussian
from hls.models import load_sampler

CONTROLS = (*JUMPS[1:], "noise")  # isotropic, mean, noise: compared with gaussian at the same sigma_skip


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="real images [N, H, W, C] (.npy) whose shape the samples take")
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors): gaussian, isotropic, mean")
    parser.add_argument("out", type=Path, help="output folder: images.npy, info.json")
    parser.add_argument("--scheduler", required=True, help="a value of study.schedulers")
    parser.add_argument("--nfe", type=int, required=True, help="a value of study.nfe")
    parser.add_argument("--start", default="plain", help="plain, gaussian or a value of study.controls")
    parser.add_argument("--sigma-skip", type=float, help="a value of study.sigmas / study.control_sigmas")
    return parser.parse_args()


def main():
    args = parse_args()
    p = load_params()
    validate(p, "seed", "sampler.n", "sampler.batch_size")
    control = args.start not in ("plain", "gaussian")  # study_control cells: their own starts and sigmas
    sigmas = "study.control_sigmas" if control else "study.sigmas"
    if control:
        check(args.start in CONTROLS, "study.controls", args.start, f"each must be one of {', '.join(CONTROLS)}")
    n, batch_size, seed = p["sampler"]["n"], p["sampler"]["batch_size"], p["seed"]
    dev = device(p["device"])
    image_shape = np.load(args.images, mmap_mode="r").shape[1:]  # [H, W, C]
    with params_errors(p, source="model.source", image_shape="data.name", scheduler=("study.schedulers",
                       args.scheduler), nfe=("study.nfe", args.nfe), steps=("study.nfe", args.nfe),
                       sigma_skip=(sigmas, args.sigma_skip)):
        steps = steps_for_nfe(args.scheduler, args.nfe)
        unet, scheduler = load_sampler(p["model"]["source"], args.scheduler, image_shape, steps)
        budget_start, model = start_model(args.start, Gaussian.load(args.gaussian))
        budget_schedule(scheduler, nfe=args.nfe, start=budget_start, sigma_skip=args.sigma_skip)  # before sampling

    rank, world = distributed.init(dev)
    dev = distributed.local_device(dev)
    indices = distributed.shard(n, rank, world, block=batch_size)  # whole batches: identical bytes at any world size
    shape = (image_shape[2], image_shape[0], image_shape[1])
    start = time.time()
    x = sample_budget_seeded(unet.to(dev), scheduler, [seed + i for i in indices], shape=shape, nfe=args.nfe,
                             start=budget_start, sigma_skip=args.sigma_skip, model=model, batch_size=batch_size,
                             device=dev, progress=rank == 0)
    x = distributed.gather(x, indices, n)
    distributed.finish()
    if rank != 0:
        return
    print(f"{n} images, {args.scheduler}, nfe {args.nfe}, start {args.start} in {time.time() - start:.1f} s")

    landing = landing_sigma(scheduler, nfe=args.nfe, start=budget_start, sigma_skip=args.sigma_skip)
    info = {"scheduler": args.scheduler, "nfe": args.nfe, "start": args.start, "sigma_skip": args.sigma_skip,
            "landing_sigma": round(landing, 6), "steps": steps, "n": n, "seed": seed}
    with atomic_path(args.out, directory=True) as tmp:
        np.save(tmp / "images.npy", to_uint8(x))
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    print(json.dumps(info))


if __name__ == "__main__":
    main()
