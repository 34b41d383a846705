"""hls.fid against pytorch-fid, measured in one run: Fréchet distance time, feature extraction images/s.

    python bench/bench_fid.py --n 20 --batch-size 10

(a) ``frechet_distance`` vs ``pytorch_fid.fid_score.calculate_frechet_distance`` on real-looking ``--dim``-d statistics.
(b) ``activations`` vs pytorch-fid's own ``get_activations`` (PNG files, ToTensor, NCHW, ``no_grad``) on ``--n``
    Fashion-MNIST-sized random images, both with the same InceptionV3 weights; the features must agree to 1e-4.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

from hls import fid


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def real_looking_stats(n: int, d: int, seed: int):
    """Mean ``[d]`` and covariance ``[d, d]`` of ReLU features with a power-law spectrum, like Inception's pool3."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.arange(1, d + 1)[:, None] ** -0.75
    x = np.maximum(rng.standard_normal((n, d)) @ mix, 0)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def bench_frechet(dim: int) -> None:
    mu1, s1 = real_looking_stats(3000, dim, seed=1)
    mu2, s2 = real_looking_stats(3000, dim, seed=2)
    for frechet in (calculate_frechet_distance, fid.frechet_distance):  # warm-up: BLAS / LAPACK initialisation
        frechet(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8])
    ref, t_ref = timed(calculate_frechet_distance, mu1, s1, mu2, s2)
    ours, t_ours = timed(fid.frechet_distance, mu1, s1, mu2, s2)
    print(f"frechet_distance, {dim}-d: pytorch-fid {t_ref:.3f} s, ours {t_ours:.3f} s, "
          f"speed-up {t_ref / t_ours:.1f}x; FID {ours:.9f} vs {ref:.9f}, |diff| {abs(ours - ref):.2e} "
          f"(relative {abs(ours - ref) / abs(ref):.1e})")


def bench_features(n: int, batch_size: int, ref_batch_size: int) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)  # [N, H, W, 1]
    ours_net = fid.inception()
    ref_net = copy.deepcopy(ours_net)  # identical weights, left in pytorch-fid's NCHW layout
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(Path(tmp) / f"{i:05d}.png") for i in range(n)]
        for path, img in zip(files, images):
            Image.fromarray(img[:, :, 0]).save(path)
        # warm-up: oneDNN builds its kernels on the first batch of each shape
        get_activations(files[:2], ref_net, batch_size=2, num_workers=0)
        fid.activations(images[:2], ours_net, batch_size=2)
        runs = {f"pytorch-fid get_activations, batch {bs}": lambda bs=bs: get_activations(
            files, ref_net, batch_size=bs, num_workers=0) for bs in dict.fromkeys((min(ref_batch_size, n), batch_size))}
        runs[f"hls.fid.activations, batch {batch_size}"] = lambda: fid.activations(images, ours_net,
                                                                                  batch_size=batch_size)
        results = {name: timed(run) for name, run in runs.items()}
    ref_name = next(iter(results))
    ref_act, ref_t = results[ref_name]
    for name, (act, t) in results.items():
        print(f"{name:40s} {n / t:7.2f} images/s  x{ref_t / t:.2f} vs {ref_name}; "
              f"max |feature diff| {np.abs(act - ref_act).max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="images for the feature extraction benchmark")
    parser.add_argument("--batch-size", type=int, default=fid.BATCH_SIZE, help="hls.fid batch size")
    parser.add_argument("--ref-batch-size", type=int, default=50, help="pytorch-fid batch size (its default: 50)")
    parser.add_argument("--dim", type=int, default=2048, help="dimension of the Fréchet distance statistics")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    bench_frechet(args.dim)
    bench_features(args.n, args.batch_size, args.ref_batch_size)


if __name__ == "__main__":
    main()
