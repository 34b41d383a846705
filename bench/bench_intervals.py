"""Do the study's bootstrap intervals hold? K independent seed blocks of one plain and one teleport cell.

    python bench/bench_intervals.py                   # after dvc repro; 8 blocks of 250 images, about 5 minutes
    python bench/bench_intervals.py --blocks 10 --n 500 --sampler heun-default --nfe 11 --sigma-skip 10

Block k draws image i from seed k * n + i, so blocks are independent sample sets of the same cell. For each block the
plain cell and the teleport cell (a Gaussian jump to ``--sigma-skip``) get their FID, 95 % bootstrap interval and
paired ratio exactly as a study cell does (``hls.fid.fid_with_replicates``, ``hls.study.interval`` and ``compare``,
the same resamples). Printed: each block, then the spread of the FIDs and of the ratio across blocks beside the mean
bootstrap spread (the standard deviation of the replicates), and the coverage: the share of blocks whose interval
holds the mean over blocks. If the intervals are honest the spreads agree and the coverage is near 95 %.
"""

from __future__ import annotations

import argparse

import numpy as np

from hls.budget import prepare, sample_budget_seeded, steps_for_nfe
from hls.data import to_uint8
from hls.fid import activations, fid_with_replicates, inception, load_stats
from hls.gaussian import Gaussian
from hls.models import load_sampler
from hls.study import compare, interval


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--n", type=int, default=250, help="images per block (the study's study.n)")
    parser.add_argument("--sampler", default="dpmsolver-default", help="scheduler-family")
    parser.add_argument("--nfe", type=int, default=5)
    parser.add_argument("--sigma-skip", type=float, default=10.0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--model", default="models/fashion_mnist-ddpm")
    args = parser.parse_args()
    scheduler, _, family = args.sampler.partition("-")
    unet, sampler = load_sampler(args.model, scheduler, (28, 28, 1), steps_for_nfe(scheduler, args.nfe),
                                 family or "default")
    gaussian = Gaussian.load("data/gaussian.safetensors")
    ref, net = load_stats("models/fashion_mnist-fid_ref.safetensors"), inception(backend="folded")
    arms = {"plain": {"start": "plain"}, "teleport": {"start": "jump", "sigma_skip": args.sigma_skip,
                                                       "model": gaussian}}
    rows = []
    print("| block | plain FID [95 %] | teleport FID [95 %] | ratio [95 %] |")
    print("|---:|---|---|---|")
    for block in range(args.blocks):
        seeds = range(block * args.n, (block + 1) * args.n)
        out = {}
        for arm, kwargs in arms.items():
            x = sample_budget_seeded(unet, prepare(sampler, nfe=args.nfe, **kwargs), seeds, shape=(1, 28, 28),
                                     batch_size=args.batch_size)
            fid, replicates = fid_with_replicates(activations(to_uint8(x), net), *ref, args.bootstrap)
            out[arm] = (fid, replicates, interval(fid, replicates))
        ratio = compare(out["teleport"][0], out["teleport"][1], out["plain"][0], out["plain"][1])
        rows.append({"plain": out["plain"], "teleport": out["teleport"], "ratio": ratio})
        print(f"| {block} | {out['plain'][0]:.2f} [{out['plain'][2][0]:.2f}, {out['plain'][2][1]:.2f}] | "
              f"{out['teleport'][0]:.2f} [{out['teleport'][2][0]:.2f}, {out['teleport'][2][1]:.2f}] | "
              f"{ratio['ratio']:.3f} [{ratio['ratio_low']:.3f}, {ratio['ratio_high']:.3f}] |", flush=True)

    print(f"\n{args.sampler}, {args.nfe} NFE, teleport to sigma {args.sigma_skip:g}; {args.blocks} blocks of "
          f"{args.n} images")
    print("| statistic | mean over blocks | spread across blocks (sd) | mean bootstrap sd | coverage of 95 % |")
    print("|---|---:|---:|---:|---:|")
    for arm in ("plain", "teleport"):
        fids = np.array([r[arm][0] for r in rows])
        inside = np.mean([r[arm][2][0] <= fids.mean() <= r[arm][2][1] for r in rows])
        boot = np.mean([r[arm][1].std(ddof=1) for r in rows])
        print(f"| FID, {arm} | {fids.mean():.2f} | {fids.std(ddof=1):.2f} | {boot:.2f} | {inside:.0%} |")
    ratios = np.array([r["ratio"]["ratio"] for r in rows])
    inside = np.mean([r["ratio"]["ratio_low"] <= ratios.mean() <= r["ratio"]["ratio_high"] for r in rows])
    boot = np.mean([(r["teleport"][1] / r["plain"][1]).std(ddof=1) for r in rows])
    print(f"| ratio teleport / plain | {ratios.mean():.4f} | {ratios.std(ddof=1):.4f} | {boot:.4f} | {inside:.0%} |")


if __name__ == "__main__":
    main()
