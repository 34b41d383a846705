"""Training-step throughput of the bundled model's UNet (params.yaml `train.unet`, 28 x 28 x 1, batch
`train.batch_size`) in float32 against bfloat16 autocast, channels_last, both, and torch.compile; then whether the
fastest other arm's loss curve matches float32's.

    python bench/bench_train.py                 # after dvc repro data: the loss check trains on the real images
    python bench/bench_train.py --arms fp32 bf16 --rounds 4 --curve-arms bf16
    OMP_NUM_THREADS=1 python bench/bench_train.py --arms fp32 --curve-steps 0

One step is a step of ``hls.train.train`` but its EMA update (under 1 % of a step): ``diffusion_loss`` forward,
backward, gradient clipping, AdamW and the LR schedule. Each arm trains its own copy of one initial UNet. Arms take
turns (`--rounds` rounds of `--steps` steps each, after `--warmup` untimed steps), so that load from other processes
hits them all; the table gives each arm's median and fastest step in steps/s and their ratios to float32's in the
same run. torch.compile's first step (compiling) is reported apart: it is a cold compile with an empty inductor cache
(`TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`), else mostly a cache read.

The loss check trains float32 and `--curve-arms` (default: the other arm with the highest median speed) from the same
initial weights on the same batches of real training images (`--images`), with the real warm-up and LR schedule, for
`--curve-steps` steps, and compares the mean loss over the last 100 steps with its step-to-step noise and with the
paired difference (the same batch in both arms).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from diffusers.optimization import get_cosine_schedule_with_warmup

from hls.data import to_model
from hls.train import diffusion_loss, make_unet, optimiser_step, training_scheduler

# name: (autocast dtype or None, memory format, torch.compile)
ARMS = {
    "fp32": (None, torch.contiguous_format, False),
    "bf16": (torch.bfloat16, torch.contiguous_format, False),
    "channels_last": (None, torch.channels_last, False),
    "bf16+channels_last": (torch.bfloat16, torch.channels_last, False),
    "compile": (None, torch.contiguous_format, True),
}


def make_arm(name: str, unet, t: dict):
    """A training step ``(x0 [B, C, H, W], noise [B, C, H, W], timesteps [B]) -> loss`` of arm ``name`` on its own
    copy of ``unet`` with its own AdamW and LR schedule (``t``: params.yaml's ``train``)."""
    dtype, memory_format, compiled = ARMS[name]
    unet = copy.deepcopy(unet).to(memory_format=memory_format).train()
    model = torch.compile(unet) if compiled else unet
    opt = torch.optim.AdamW(unet.parameters(), lr=t["lr"])
    lr_schedule = get_cosine_schedule_with_warmup(opt, t["warmup"], t["steps"])
    scheduler = training_scheduler()

    def step(x0, noise, timesteps) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss = diffusion_loss(model, scheduler, x0.to(memory_format=memory_format),
                                  noise.to(memory_format=memory_format), timesteps)
        optimiser_step(unet, opt, loss)
        lr_schedule.step()
        return loss.item()

    return step


def batches(x: torch.Tensor, batch_size: int, seed: int):
    """Endless ``(x0, noise, timesteps)`` of random images of ``x [N, C, H, W]``, the same for equal seeds."""
    g = torch.Generator().manual_seed(seed)
    while True:
        x0 = x[torch.randint(0, len(x), (batch_size,), generator=g)]
        yield x0, torch.randn(x0.shape, generator=g), torch.randint(0, 1000, (batch_size,), generator=g)


def throughput(arms: dict, data, warmup: int, rounds: int, steps: int) -> tuple[dict, dict]:
    """({arm: [seconds per step]}, {arm: seconds of its first step}), the arms timed in turns."""
    first, times = {}, {name: [] for name in arms}
    for name, step in arms.items():
        begin = time.perf_counter()
        step(*next(data))
        first[name] = time.perf_counter() - begin
        for _ in range(warmup):
            step(*next(data))
    for _ in range(rounds):
        for name, step in arms.items():
            for _ in range(steps):
                batch = next(data)
                begin = time.perf_counter()
                step(*batch)
                times[name].append(time.perf_counter() - begin)
    return times, first


def curve(step, data, n: int) -> np.ndarray:
    return np.array([step(*next(data)) for _ in range(n)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="fp32 is always run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per arm after its first")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per arm and round")
    parser.add_argument("--curve-steps", type=int, default=300, help="0: no loss check")
    parser.add_argument("--curve-arms", nargs="+", choices=list(ARMS)[1:], help="default: the fastest but fp32")
    parser.add_argument("--images", type=Path, default=Path("data/dataset/train_images.npy"))
    args = parser.parse_args()
    p = yaml.safe_load(Path("params.yaml").read_text())
    t = p["train"]
    torch.manual_seed(p["seed"])
    unet = make_unet(28, 1, **t["unet"])
    names = ["fp32"] + [name for name in args.arms if name != "fp32"]
    print(f"{sum(q.numel() for q in unet.parameters()) / 1e6:.2f}M parameters, batch {t['batch_size']}, "
          f"{torch.get_num_threads()} threads; {args.rounds} rounds x {args.steps} steps per arm")

    noise_only = torch.rand(1024, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    times, first = throughput({name: make_arm(name, unet, t) for name in names},
                              batches(noise_only, t["batch_size"], 0), args.warmup, args.rounds, args.steps)
    median = {name: statistics.median(v) for name, v in times.items()}
    print("| arm | steps/s (median) | vs fp32 | steps/s (fastest step) | vs fp32 | first step, s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {1 / median[name]:.3f} | {median['fp32'] / median[name]:.2f}x | {1 / min(times[name]):.3f} "
              f"| {min(times['fp32']) / min(times[name]):.2f}x | {first[name]:.1f} |")
    if args.curve_steps < 100 or not (args.curve_arms or names[1:]):
        return

    others = args.curve_arms or [min(names[1:], key=median.get)]
    x = to_model(np.load(args.images))  # [N, C, H, W]
    losses = {name: curve(make_arm(name, unet, t), batches(x, t["batch_size"], 0), args.curve_steps)[-100:]
              for name in ["fp32"] + others}
    print(f"\nloss over steps {args.curve_steps - 99}..{args.curve_steps} (same init, same batches):")
    print("| arm | mean loss | step-to-step std | std of the mean |")
    print("|---|---:|---:|---:|")
    for name, v in losses.items():
        print(f"| {name} | {v.mean():.5f} | {v.std(ddof=1):.5f} | {v.std(ddof=1) / 10:.5f} |")
    for name in others:
        diff = losses[name] - losses["fp32"]
        print(f"| {name} - fp32, paired | {diff.mean():+.2e} | {diff.std(ddof=1):.2e} | {diff.std(ddof=1) / 10:.2e} |")


if __name__ == "__main__":
    main()
