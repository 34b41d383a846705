"""Wall time of one equal-NFE study cell and its share in sampling, Inception and the bootstrap, per scheduler.

    python bench/bench_study.py                               # 100 images, 10 NFE, plain and gaussian@10
    python bench/bench_study.py --n 500 --nfe 5,21 --schedulers ddim,euler,heun,dpmsolver,unipc

A cell is what the stages study_* + study_fid_* do, without process start-up (measured once, below): sample
``--n`` images with ``hls.budget.sample_budget_seeded`` at ``--batch-size``, their Inception features
(``hls.fid.activations``, backend ``--backend``), their FID and ``--bootstrap`` replicates. Needs the default pipeline's
data (``dvc repro gaussian fid_ref``) and the bundled model. Prints images/s of each part, so the time of a grid at
another n (for example 50 000 images per cell on GPUs) follows from it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

from hls.budget import sample_budget_seeded, start_model, steps_for_nfe
from hls.data import to_uint8
from hls.fid import activations, bootstrap_indices, fid_replicates, frechet_distance, inception, load_stats
from hls.gaussian import Gaussian
from hls.models import load_sampler

ORDER = ("sampling", "inception", "bootstrap")


def cell(unet, scheduler, model, args, nfe: int, start: str, sigma_skip) -> dict:
    """Seconds of each part of one cell."""
    seconds = {}
    begin = time.perf_counter()
    h, w, c = args.image_shape
    x = sample_budget_seeded(unet, scheduler, range(args.n), shape=(c, h, w), nfe=nfe, start=start,
                             sigma_skip=sigma_skip, model=model, batch_size=args.batch_size)
    seconds["sampling"] = time.perf_counter() - begin
    begin = time.perf_counter()
    features = activations(to_uint8(x), args.net, batch_size=args.fid_batch_size)
    seconds["inception"] = time.perf_counter() - begin
    begin = time.perf_counter()
    frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), *args.ref)
    fid_replicates(features, *args.ref, bootstrap_indices(args.n, args.bootstrap))
    seconds["bootstrap"] = time.perf_counter() - begin
    return seconds


def startup() -> float:
    """Seconds for a fresh interpreter to import what a study stage imports."""
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import hls.budget, hls.fid, hls.models, hls.study"], check=True)
    return time.perf_counter() - begin


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedulers", type=lambda s: s.split(","), default=["ddim", "euler", "heun", "dpmsolver",
                                                                              "unipc"])
    parser.add_argument("--nfe", type=lambda s: [int(x) for x in s.split(",")], default=[9])
    parser.add_argument("--starts", type=lambda s: s.split(","), default=["plain", "gaussian"])
    parser.add_argument("--sigma-skip", type=float, default=10.0, help="landing sigma of non-plain starts")
    parser.add_argument("--n", type=int, default=100, help="images per cell")
    parser.add_argument("--batch-size", type=int, default=250, help="UNet batch (params: sampler.batch_size)")
    parser.add_argument("--fid-batch-size", type=int, default=10, help="Inception batch (params: fid.batch_size)")
    parser.add_argument("--backend", default="folded", help="Inception backend (params: fid.backend)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (params: fid.bootstrap)")
    parser.add_argument("--model", default="models/fashion_mnist-ddpm")
    parser.add_argument("--images", default="data/dataset/test_images.npy", help="real images: their shape is used")
    parser.add_argument("--gaussian", default="data/gaussian.safetensors")
    parser.add_argument("--ref", default="data/fid_ref.safetensors")
    args = parser.parse_args()
    args.net, args.ref = inception(backend=args.backend), load_stats(args.ref)
    args.image_shape = np.load(args.images, mmap_mode="r").shape[1:]  # [H, W, C]
    gaussian = Gaussian.load(args.gaussian)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n = {args.n}; process start-up (imports) "
          f"{startup():.1f} s per stage, two stages per cell")
    unet, scheduler = load_sampler(args.model, "ddim", args.image_shape, 2)
    cell(unet, scheduler, None, argparse.Namespace(**{**vars(args), "n": 4}), 2, "plain", None)  # warm-up, untimed
    print("| scheduler | nfe | start | total s | " + " | ".join(f"{p} s (share, img/s)" for p in ORDER) + " |")
    print("|---|---|---|---|" + "---|" * len(ORDER))
    for name in args.schedulers:
        for nfe in args.nfe:
            unet, scheduler = load_sampler(args.model, name, args.image_shape, steps_for_nfe(name, nfe))
            for study_start in args.starts:
                start, model = start_model(study_start, gaussian)
                seconds = cell(unet, scheduler, model, args, nfe, start,
                               None if start == "plain" else args.sigma_skip)
                total = sum(seconds.values())
                parts = " | ".join(f"{seconds[p]:.1f} ({seconds[p] / total:.0%}, {args.n / seconds[p]:.0f})"
                                   for p in ORDER)
                print(f"| {name} | {nfe} | {study_start} | {total:.1f} | {parts} |", flush=True)


if __name__ == "__main__":
    main()
