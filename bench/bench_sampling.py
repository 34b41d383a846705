"""Benchmark hls.sampling against diffusers, as ratios measured in one run.

1. Sampler throughput with skip=0 vs diffusers' DDIMPipeline on the same model and noise (goal: >= 1.0x).
2. Wall time of the teleport (as ``sample`` runs it, VP<->VE conversions included) vs one UNet evaluation, same batch
   (goal: < 1).
3. With ``--layouts MODEL``: that model's UNet images/s at several batch sizes with contiguous and with channels-last
   weights (``hls.models.load_unet``'s choice), relative to contiguous at the largest batch (what picks
   ``sampler.batch_size``).

The default model is a randomly initialised UNet2DModel with google/ddpm-cifar10-32's architecture (35.7M parameters,
32 x 32 x 3, D = 3072) and that model's scheduler config; the flags shrink it for a quick run, e.g.

    python bench/bench_sampling.py --sample-size 16 --block-out-channels 16,32,32,32 --norm-num-groups 8 \\
        --batch 8 --steps 5 --teleport-batch 16 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDIMPipeline, UNet2DModel

from hls import sampling
from hls.gaussian import Gaussian
from hls.train import training_scheduler


def cifar_like_unet(args) -> UNet2DModel:
    """google/ddpm-cifar10-32's UNet config (attention at the second level, 16 x 16 for 32 x 32 inputs)."""
    torch.manual_seed(0)
    levels = len(args.block_out_channels)
    down = tuple("AttnDownBlock2D" if i == args.attention_level else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if levels - 1 - i == args.attention_level else "UpBlock2D" for i in range(levels))
    return UNet2DModel(sample_size=args.sample_size, in_channels=args.channels, out_channels=args.channels,
                       block_out_channels=tuple(args.block_out_channels), layers_per_block=args.layers_per_block,
                       down_block_types=down, up_block_types=up, norm_num_groups=args.norm_num_groups,
                       downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6).eval()


def timed(fn, device) -> float:
    """Seconds for one call of ``fn`` (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def random_gaussian(d: int, device) -> Gaussian:
    g = torch.Generator().manual_seed(1)
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64).to(device))
    eigvals = torch.rand(d, generator=g, dtype=torch.float64).sort(descending=True).values.to(device)
    return Gaussian(torch.zeros(d, dtype=torch.float64, device=device), eigvals, eigvecs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda[:N]")
    parser.add_argument("--sample-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--block-out-channels", type=lambda s: [int(c) for c in s.split(",")],
                        default=[128, 256, 256, 256])
    parser.add_argument("--layers-per-block", type=int, default=2)
    parser.add_argument("--attention-level", type=int, default=1, help="resolution level with self-attention")
    parser.add_argument("--norm-num-groups", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256, help="sampler batch size")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--teleport-batch", type=int, default=256, help="batch of the teleport vs UNet comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported, after one warm-up)")
    parser.add_argument("--layouts", help="a model folder for part 3, e.g. models/fashion_mnist-ddpm")
    parser.add_argument("--layout-batches", type=lambda s: [int(b) for b in s.split(",")], default=[25, 50, 100, 250])
    args = parser.parse_args()

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    unet = cifar_like_unet(args).to(device)
    config = training_scheduler().config
    shape = (args.channels, args.sample_size, args.sample_size)
    d = args.channels * args.sample_size ** 2
    n_params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"device {device}, UNet {n_params:.1f}M parameters, images {shape}, D = {d}, "
          f"threads {torch.get_num_threads()}")

    # 1. sampler throughput: hls.sampling.sample (skip=0) vs DDIMPipeline, same model, same noise
    pipe = DDIMPipeline(unet=unet, scheduler=sampling.make_scheduler("ddim", config)).to(device)
    pipe.set_progress_bar_config(disable=True)
    scheduler = sampling.make_scheduler("ddim", config)
    noise = torch.randn((args.batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    results = {}

    def run_pipeline():
        results["diffusers"] = pipe(batch_size=args.batch, generator=torch.Generator().manual_seed(0),
                                    num_inference_steps=args.steps, output_type="pt").images

    def run_ours():
        results["hls"] = (sampling.sample(unet, scheduler, noise, steps=args.steps) / 2 + 0.5).clamp(0, 1)

    times = {"diffusers": [], "hls": []}
    for i in range(args.repeats + 1):
        t_pipe, t_ours = timed(run_pipeline, device), timed(run_ours, device)
        if i > 0:  # the first round is warm-up
            times["diffusers"].append(t_pipe)
            times["hls"].append(t_ours)
    t_pipe, t_ours = statistics.median(times["diffusers"]), statistics.median(times["hls"])
    diff = (results["hls"].float().cpu() - results["diffusers"].float().cpu()).abs().max().item()
    print(f"[1] DDIM {args.steps} steps, batch {args.batch}: DDIMPipeline {t_pipe:.3f} s, hls.sample {t_ours:.3f} s "
          f"-> throughput ratio hls/diffusers {t_pipe / t_ours:.3f}x (goal >= 1.0); max |diff| {diff:.1e}")

    # 2. one teleport (as in sample, VP<->VE included) vs one UNet evaluation, same batch
    gaussian = random_gaussian(d, device)
    x = torch.randn((args.teleport_batch, *shape), generator=torch.Generator().manual_seed(2)).to(device)
    t = torch.tensor(999, device=device)
    scheduler.set_timesteps(args.steps)
    begin = args.steps // 2
    with torch.inference_mode():
        teleport = [timed(lambda: sampling._teleport(scheduler, gaussian, x, begin), device)
                    for _ in range(args.repeats + 1)][1:]
        unet_eval = [timed(lambda: unet(x, t), device) for _ in range(args.repeats + 1)][1:]
    t_tel, t_unet = statistics.median(teleport), statistics.median(unet_eval)
    print(f"[2] batch {args.teleport_batch}, D = {d}: teleport {t_tel * 1e3:.2f} ms (float64), one UNet evaluation "
          f"{t_unet * 1e3:.2f} ms ({unet.dtype}) -> ratio teleport/UNet {t_tel / t_unet:.4f} (goal < 1)")
    if args.layouts:
        layouts(args, device)


def layouts(args, device) -> None:
    """Part 3: images/s of a model's UNet by batch size and weight memory format, one evaluation at t = 500."""
    model = UNet2DModel.from_pretrained(args.layouts, subfolder="unet").eval().to(device)
    config = model.config
    t = torch.tensor(500, device=device)
    rates = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        model = model.to(memory_format=layout)
        for batch in args.layout_batches:
            x = torch.randn((batch, config.in_channels, config.sample_size, config.sample_size)).to(device)
            with torch.inference_mode():
                seconds = [timed(lambda m=model, x=x: m(x, t), device) for _ in range(args.repeats + 1)][1:]
            rates[layout, batch] = batch / statistics.median(seconds)
    reference = rates[torch.contiguous_format, max(args.layout_batches)]
    print(f"[3] {args.layouts}: UNet images/s (ratio to contiguous weights at batch {max(args.layout_batches)})")
    for (layout, batch), rate in rates.items():
        name = "channels-last" if layout == torch.channels_last else "contiguous"
        print(f"    {name:13s} batch {batch:4d}: {rate:7.0f} images/s ({rate / reference:.2f}x)")


if __name__ == "__main__":
    main()
