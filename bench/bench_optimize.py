"""The step-placement optimizer behind ``TeleportPipeline``'s ``sigma_skip="auto"`` (a model without a study table),
timed against one ``__call__`` of ``--n`` images at the same budget, in one run; and how stable its choices are with
a smaller teacher.

    python bench/bench_optimize.py                      # after dvc repro (the bundled model, data/gaussian)
    python bench/bench_optimize.py --sampler heun-default --budgets 5 11 --teachers 4 8 16

For each teacher size: the cost table's seconds (the teacher's trajectories and the step costs: once for every
budget), one search's milliseconds, and per budget the landing and steps it picks. The ratio is the cost table plus
one search over one ``__call__`` of ``--n`` images with that landing and those steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from hls.gaussian import Gaussian
from hls.optimize import evaluation_rule, sampler_table
from hls.pipeline import OPTIMIZER, TeleportPipeline
from hls.schedules import scheduler_name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/fashion_mnist-ddpm")
    parser.add_argument("--gaussian", default="data/gaussian.safetensors")
    parser.add_argument("--sampler", default="dpmsolver-default")
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 7, 11, 21])
    parser.add_argument("--teachers", type=int, nargs="+", default=[OPTIMIZER["teacher"] // 2, OPTIMIZER["teacher"]])
    parser.add_argument("--n", type=int, default=500, help="images of the __call__ it is timed against")
    args = parser.parse_args()
    pipe = TeleportPipeline.from_model(args.model, Gaussian.load(args.gaussian), sampler=args.sampler)
    pipe.set_progress_bar_config(disable=True)
    settings = {**OPTIMIZER}
    print(f"{args.sampler}, grid {settings['size']} nodes, {settings['substeps']} teacher substeps per node; "
          f"one __call__ of {args.n} images")
    print("| teacher | cost table s | search ms | budget | landing σ | steps (σ) | __call__ s | ratio |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    for teacher in args.teachers:
        begin = time.perf_counter()
        table = sampler_table(pipe.unet, pipe.scheduler, pipe.gaussian.analytic, **{**settings, "teacher": teacher})
        table_s = time.perf_counter() - begin
        for nfe in args.budgets:
            begin = time.perf_counter()
            best = table.optimize(nfe, jump=True, **evaluation_rule(pipe.scheduler))
            search_ms = 1e3 * (time.perf_counter() - begin)
            pipe.register_to_config(schedules={scheduler_name(pipe.scheduler): {str(nfe): best.record()}})
            begin = time.perf_counter()
            pipe(args.n, num_inference_steps=nfe, generator=torch.Generator().manual_seed(0), output_type="pt")
            call_s = time.perf_counter() - begin
            landing = "none" if best.landing is None else f"{best.landing:.3g}"
            steps = " ".join(f"{s:.3g}" for s in best.schedule.sigmas)
            print(f"| {teacher} | {table_s:.1f} | {search_ms:.1f} | {nfe} | {landing} | {steps} | {call_s:.1f} | "
                  f"{(table_s + search_ms / 1e3) / call_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
