"""Stage schedule of the study's optimized family: the optimized schedule of one sampler (``--sampler``, a value of
``study.optimized.samplers``) at one budget (``--nfe``) for one arm (``--start``: plain, or gaussian, which may start
with the Gaussian jump), searched on the cost tables (stages/costs.py). Its record (the steps, the landing or null,
the predicted error, the path) is what the cell of that arm reads."""

import argparse
from pathlib import Path

from common import check, load_params, params_errors, write_json
from hls.budget import steps_for_nfe
from hls.models import load_scheduler_config
from hls.optimize import evaluation_rule, load_tables
from hls.schedules import end_sigma, make_scheduler

STARTS = ("plain", "gaussian")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("costs", type=Path, help="the cost tables (stages/costs.py)")
    parser.add_argument("out", type=Path, help="the schedule record to write (.json)")
    parser.add_argument("--sampler", required=True, help="a value of study.optimized.samplers")
    parser.add_argument("--nfe", type=int, required=True, help="a value of study.nfe")
    parser.add_argument("--start", required=True, choices=STARTS, help="the arm")
    parser.add_argument("--grid", default="params.yaml", help="the study's params file")
    args = parser.parse_args()
    p, grid = load_params(), load_params(args.grid)
    samplers = grid["study"]["optimized"]["samplers"]
    check(args.sampler in samplers, "study.optimized.samplers", samplers, f"must include {args.sampler}, whose "
                                                                          "schedule is asked for", args.grid)
    tables = load_tables(args.costs)
    with params_errors(p, source="model.source"), params_errors(
            grid, args.grid, name=("study.optimized.samplers", args.sampler), nfe=("study.nfe", args.nfe),
            steps=("study.nfe", args.nfe), budget=("study.nfe", args.nfe)):
        sampler = make_scheduler(args.sampler, load_scheduler_config(p["model"]["source"]))
        steps_for_nfe(sampler, args.nfe)
        end = end_sigma(sampler)
        check(end in tables, "study.optimized.samplers", args.sampler, f"has no cost table in {args.costs} (its end "
                                                                       f"sigma {end:.6g}); run dvc repro", args.grid)
        best = tables[end].optimize(args.nfe, jump=args.start == "gaussian", **evaluation_rule(sampler))
    write_json(args.out, {"scheduler": args.sampler, "nfe": args.nfe, "start": args.start, **best.record()})
    landing = "no jump" if best.landing is None else f"jump to sigma {best.landing:.4g}"
    print(f"{args.sampler} {args.nfe} NFE {args.start}: {landing}, sigmas {best.schedule.sigmas.round(3).tolist()}, "
          f"predicted error {best.error:.4g}")


if __name__ == "__main__":
    main()
