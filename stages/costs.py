"""Stage costs of the study's optimized family: the step-placement optimizer's cost tables (``hls.optimize``) on the
model itself, one per sigma its samplers (``study.optimized.samplers``) end at, with the Gaussian jump's costs, from
``study.optimized.teacher`` teacher trajectories on seeds no evaluation set uses. The expensive part of every optimized
schedule; each (sampler, budget, start) then searches it (stages/schedule.py)."""

import argparse
from pathlib import Path

from common import atomic_path, device, integer, load_params, params_errors, rule, validate
from hls.gaussian import Gaussian
from hls.models import load_scheduler_config, load_unet
from hls.optimize import sampler_table, save_tables
from hls.schedules import OPTIMIZABLE, end_sigma, make_scheduler

STUDY_RULES = {  # in the study's params file (--grid)
    "study.optimized.samplers": rule(lambda v, p: isinstance(v, list) and v and all(s in OPTIMIZABLE for s in v),
                                     f"must be a list of samplers whose steps can be placed: {', '.join(OPTIMIZABLE)}"),
    "study.optimized.teacher": integer(1), "study.optimized.size": integer(2), "study.optimized.substeps": integer(1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors) whose jump the tables price")
    parser.add_argument("out", type=Path, help="the cost tables to write (.safetensors)")
    parser.add_argument("--grid", default="params.yaml", help="the study's params file (study.optimized)")
    args = parser.parse_args()
    p, grid = load_params(), load_params(args.grid)
    validate(grid, STUDY_RULES, args.grid)
    settings = grid["study"]["optimized"]
    dev = device(p["device"])
    with params_errors(p, source="model.source"):
        config = load_scheduler_config(p["model"]["source"])
        unet = load_unet(p["model"]["source"]).to(dev)
    samplers = {}  # one sampler per sigma they end at: the table depends on nothing else of the sampler
    for name in settings["samplers"]:
        sampler = make_scheduler(name, config)
        samplers.setdefault(end_sigma(sampler), sampler)
    gaussian = Gaussian.load(args.gaussian)
    with params_errors(grid, args.grid, size="study.optimized.size"):
        tables = {end: sampler_table(unet, sampler, gaussian, teacher=settings["teacher"], size=settings["size"],
                                     substeps=settings["substeps"], progress=True, device=dev)
                  for end, sampler in samplers.items()}
    with atomic_path(args.out) as tmp:
        save_tables(tmp, tables)
    print(f"cost tables for the end sigmas {', '.join(f'{end:.6g}' for end in tables)}: {settings['teacher']} teacher "
          f"trajectories, {settings['size']} nodes, {settings['substeps']} substeps")


if __name__ == "__main__":
    main()
