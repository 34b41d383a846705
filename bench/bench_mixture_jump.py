"""Error against cost of a Gaussian mixture's probability-flow jump, by RK4 step size: what picks ``mixtures.max_step``.

    python bench/bench_mixture_jump.py            # after dvc repro mixtures; the bundled model for the UNet cost

For each mixture of the mixtures stage and each landing sigma, pure noise at sigma_max (one batch of
``--batch`` images, the study's batch size) jumps with ``teleport(max_step=...)``. Error: the RMS distance per pixel to
the jump at ``--reference`` step size, in units of the landing sigma (the noise level the sampler then works at).
Cost: the jump's wall time over one UNet evaluation of the same batch, in the same process (minimum of
``--repeats`` runs each).
"""

from __future__ import annotations

import argparse
import time

import torch

from hls.mixture import MIXTURES, GaussianMixture
from hls.models import load_scheduler_config, load_unet
from hls.schedules import make_scheduler, sigma_max


def seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", default="data/mixtures", help="folder of the mixtures stage")
    parser.add_argument("--model", default="models/fashion_mnist-ddpm")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--sigmas", type=lambda s: [float(v) for v in s.split(",")], default=[10.0, 5.0, 2.0])
    parser.add_argument("--steps", type=lambda s: [float(v) for v in s.split(",")], default=[0.1, 0.2, 0.3, 0.5, 1.0])
    parser.add_argument("--reference", type=float, default=0.02, help="step size of the reference jump")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    unet = load_unet(args.model)
    top = sigma_max(make_scheduler("ddpm", load_scheduler_config(args.model)))  # where every jump starts
    shape = (args.batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        unet_s = seconds(lambda: unet(noise, torch.tensor(500)), args.repeats)
    x = top * noise.reshape(args.batch, -1).double()  # [B, D]
    print(f"one UNet evaluation of {args.batch} images: {unet_s:.3f} s")
    print("mixture      sigma_to  max_step  rk4 steps  error/sigma_to  cost (UNet evaluations)")
    for name in MIXTURES:
        mixture = GaussianMixture.load(f"{args.mixtures}/{name}.safetensors")
        for sigma in args.sigmas:
            reference = mixture.teleport(x, top, sigma, max_step=args.reference)
            for step in args.steps:
                out = mixture.teleport(x, top, sigma, max_step=step)
                error = float((out - reference).square().mean().sqrt()) / sigma
                cost = seconds(lambda m=mixture, s=step, t=sigma: m.teleport(x, top, t, max_step=s), args.repeats)
                n = int(torch.tensor(top / sigma).log().div(step).ceil())
                print(f"{name:12s} {sigma:8g}  {step:8g}  {n:9d}  {error:14.2e}  {cost / unet_s:8.2f}")


if __name__ == "__main__":
    main()
