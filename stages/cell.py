"""Stage plain / jump / control / optimized @ cell of the equal-NFE study: ``study.n`` images with exactly ``--nfe``
UNet evaluations by ``--sampler`` (scheduler-family, e.g. dpmsolver-karras) from ``--start`` (plain; noise; or a jump
to ``--sigma-skip`` with the Gaussian in ``--model``, or its isotropic or mean-only version), and their FID with
bootstrap replicates, in one process. In the family ``optimized`` the steps and the Gaussian arm's landing are those of
``--schedule`` (stages/schedule.py). Image i is drawn from seed + ``--first`` + i: 0 for the study's images, n for its
held-out block (stages/heldout.py). The record also carries the jump's cost in UNet evaluations of the same batch,
measured here (the one value of a record that is not reproducible to the byte). Runs under ``torchrun`` (each rank
samples its share of image indices; rank 0 scores and writes)."""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from common import atomic_path, check, choice, device, integer, load_params, params_errors, validate, write_json
from hls import OPTIMIZED, distributed
from hls.budget import JUMPS, prepare, sample_budget_seeded, steps_for_nfe
from hls.data import to_uint8
from hls.fid import BACKENDS, WEIGHTS, activations, fid_with_replicates, inception, load_stats
from hls.gaussian import Gaussian, gaussian_models
from hls.models import check_compatible, load_scheduler_config, load_unet
from hls.schedules import Optimized, make_scheduler
from hls.study import interval

RULES = {"seed": integer(0), "sampler.batch_size": integer(1), "fid.batch_size": integer(1),
         "fid.bootstrap": integer(10), "fid.weights": choice(WEIGHTS), "fid.backend": choice(BACKENDS)}
GRID_RULES = {"study.n": integer(2)}  # in the study's params file (--grid)


class Timed:
    """``fn`` (a UNet, or an analytic model's teleport) with the wall seconds and number of its calls added up."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


class TimedJump:
    """An analytic model whose ``teleport`` is ``Timed``."""

    def __init__(self, model):
        self.model, self.teleport = model, Timed(model.teleport)

    @property
    def dim(self) -> int:
        return self.model.dim

    def to(self, device):
        self.model = self.model.to(device)
        self.teleport.fn = self.model.teleport
        return self


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="real images [N, H, W, C] (.npy) whose shape the samples take")
    parser.add_argument("ref", type=Path, help="reference Inception statistics (.safetensors)")
    parser.add_argument("out", type=Path, help="the cell's JSON record")
    parser.add_argument("--replicates", type=Path, required=True, help="its bootstrap replicate FIDs (.safetensors)")
    parser.add_argument("--sampler", required=True, help="scheduler-family, a value of AXES.samplers")
    parser.add_argument("--nfe", type=int, required=True, help="a value of study.nfe")
    parser.add_argument("--start", default="plain", help="plain, noise or a jump: a value of AXES.starts")
    parser.add_argument("--sigma-skip", type=float, help="the landing sigma, a value of AXES.sigmas")
    parser.add_argument("--model", type=Path, help="the analytic model to jump with (.safetensors)")
    parser.add_argument("--grid", default="params.yaml", help="the study's params file (study.n and the axes)")
    parser.add_argument("--axes", default="study", help="AXES: the section of --grid the values above come from")
    parser.add_argument("--schedule", type=Path, help="the optimized schedule (.json) of the family optimized")
    parser.add_argument("--first", type=int, default=0, help="image i is drawn from seed + first + i")
    return parser.parse_args()


def optimized_schedule(args, scheduler: str) -> Optimized:
    """The schedule record ``--schedule``, which must be the one of this sampler, budget and arm."""
    record = json.loads(args.schedule.read_text())
    arm = "plain" if args.start == "plain" else "gaussian"
    check(args.start in ("plain", "gaussian"), "--start", args.start, f"the family {OPTIMIZED} has the arms plain "
                                                                      "and gaussian", "the command line")
    found = (record["scheduler"], record["nfe"], record["start"])
    check(found == (scheduler, args.nfe, arm), "--schedule", str(args.schedule), f"holds the schedule of {found}, "
          f"not of {(scheduler, args.nfe, arm)}", "the command line")
    return Optimized.of(record)


def main(mixtures: dict | None = None):
    """One cell; ``mixtures`` maps more jump starts to their loaders ``(path, params) -> model``."""
    args = parse_args()
    p, grid = load_params(), load_params(args.grid)
    validate(p, RULES)
    validate(grid, GRID_RULES, args.grid)
    starts = ("plain", "noise", *JUMPS, *(mixtures or {}))
    check(args.start in starts, f"{args.axes}.starts", args.start, f"each must be one of {', '.join(starts)}",
          args.grid)
    check(args.start in ("plain", "noise") or args.model is not None, "--model", None,
          f"the jump start {args.start} needs the analytic model's file", "the command line")
    scheduler, _, family = args.sampler.partition("-")
    check((family == OPTIMIZED) == (args.schedule is not None), "--schedule", None if args.schedule is None else
          str(args.schedule), f"is needed exactly in the family {OPTIMIZED}", "the command line")
    check(args.first >= 0, "--first", args.first, "must be an integer >= 0", "the command line")
    n, batch_size, seed = grid["study"]["n"], p["sampler"]["batch_size"], p["seed"]
    dev = distributed.local_device(device(p["device"]))
    image_shape = np.load(args.images, mmap_mode="r").shape[1:]  # [H, W, C]
    sampler_key, budget_key = (f"{args.axes}.samplers", args.sampler), ("study.nfe", args.nfe)
    with params_errors(grid, args.grid, scheduler=sampler_key, name=sampler_key, family=sampler_key, nfe=budget_key,
                       steps=budget_key, sigma_skip=(f"{args.axes}.sigmas", args.sigma_skip)), \
            params_errors(p, source="model.source", image_shape="data.name"):
        steps = steps_for_nfe(scheduler, args.nfe)
        sampler = make_scheduler(scheduler, load_scheduler_config(p["model"]["source"]),
                                 "default" if family == OPTIMIZED else family or "default")
        placed = None if args.schedule is None else optimized_schedule(args, scheduler)
        sigma_skip = args.sigma_skip if placed is None else placed.landing
        start, model = args.start, None
        if args.start not in ("plain", "noise"):
            if placed is not None and placed.landing is None:
                start = "plain"  # the optimizer chose no jump for this arm: it samples as its plain arm
            else:
                start, model = "jump", TimedJump(gaussian_models(Gaussian.load(args.model))[args.start]
                                                 if args.start in JUMPS else mixtures[args.start](args.model, p))
        budget = prepare(sampler, nfe=args.nfe, start=start, sigma_skip=sigma_skip, model=model,
                         dim=int(np.prod(image_shape)), schedule=None if placed is None else placed.schedule,
                         device=dev)  # laid out and checked once, before the UNet
        unet = load_unet(p["model"]["source"])
        check_compatible(unet, image_shape)

    rank, world = distributed.init(dev)
    indices = distributed.shard(n, rank, world, block=batch_size)  # whole batches: identical bytes at any world size
    network = Timed(unet.to(dev))
    begin = time.perf_counter()
    seeds = [seed + args.first + i for i in indices]
    x = sample_budget_seeded(network, budget, seeds, shape=(image_shape[2], *image_shape[:2]), batch_size=batch_size,
                             device=dev, progress=rank == 0)
    x = distributed.gather(x, indices, n)
    sampling = time.perf_counter() - begin
    distributed.finish()
    if rank != 0:
        return
    # the jump's cost: its seconds per batch over the seconds of one UNet evaluation of a batch
    jump_cost = 0.0 if model is None else model.teleport.seconds / model.teleport.calls / (
        network.seconds / network.calls)

    net = inception(p["fid"]["weights"], p["fid"]["backend"]).to(dev)
    begin = time.perf_counter()
    features = activations(to_uint8(x), net, batch_size=p["fid"]["batch_size"], device=dev, progress=True)
    scoring = time.perf_counter() - begin
    begin = time.perf_counter()
    fid, replicates = fid_with_replicates(features, *load_stats(args.ref), p["fid"]["bootstrap"], seed)
    low, high = interval(fid, replicates)
    bootstrap = time.perf_counter() - begin

    record = {
        "scheduler": scheduler, "family": family, "nfe": args.nfe, "start": args.start, "sigma_skip": sigma_skip,
        "landing_sigma": round(budget.landing, 6),
        "steps": steps, "n": n, "seed": seed, "first": args.first, "fid": round(fid, 4), "fid_low": round(low, 4),
        "fid_high": round(high, 4), "jump_cost": float(f"{jump_cost:.2g}"), "n_ref": p["fid_ref"]["n"],
        "ref_split": p["fid_ref"]["split"], "inception_weights": p["fid"]["weights"],
        "inception_backend": p["fid"]["backend"], "bootstrap": p["fid"]["bootstrap"],
    }
    record["compute"] = round(args.nfe + record["jump_cost"], 2)
    with atomic_path(args.replicates) as tmp:
        save_file({"images": torch.from_numpy(replicates)}, str(tmp))
    write_json(args.out, record)
    timing = {"sampling": round(sampling, 2), "inception": round(scoring, 2), "bootstrap": round(bootstrap, 2)}
    print(f"timing: {json.dumps(timing)}")  # seconds, for the log and bench/bench_study.py
    print(json.dumps(record))


if __name__ == "__main__":
    main()
