"""Stage teleport: the bundled model as a ``hls.TeleportPipeline`` folder (unet, scheduler ``teleport.sampler``, the
fitted Gaussian), its ``sigma_skip="auto"`` taken from the study's best landings (``landings``) and, for the budgets
``study.nfe``, the step-placement optimizer's landings and steps where its sampler takes placed steps (used where no
landing was measured); load it with
``TeleportPipeline.from_pretrained``."""

import argparse
from pathlib import Path

import pandas as pd

from common import atomic_path, integer, load_params, params_errors, rule, validate
from hls.gaussian import Gaussian
from hls.pipeline import TeleportPipeline, landings_of
from hls.schedules import OPTIMIZABLE, scheduler_name

RULES = {"study.nfe": rule(lambda v, p: isinstance(v, list) and all(integer(1)(n, p) is None for n in v),
                           "must be a list of integers >= 1")}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors)")
    parser.add_argument("landings", type=Path, help="the study's best landings (stages/pareto.py --landings)")
    parser.add_argument("out", type=Path, help="the pipeline folder to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    with params_errors(p, name="teleport.sampler", family="teleport.sampler", source="model.source",
                       scheduler="teleport.sampler", nfe="study.nfe"):
        pipe = TeleportPipeline.from_model(p["model"]["source"], Gaussian.load(args.gaussian),
                                           sampler=str(p["teleport"]["sampler"]),
                                           landings=landings_of(pd.read_csv(args.landings)))
        pipe.set_progress_bar_config(disable=True)
        optimizable = scheduler_name(pipe.scheduler) in OPTIMIZABLE
        optimized = {nfe: pipe.optimized(nfe) for nfe in p["study"]["nfe"]} if optimizable else {}
    with atomic_path(args.out, directory=True) as tmp:
        pipe.save_pretrained(tmp)
    print(f"wrote {args.out}: {type(pipe.scheduler).__name__} {p['teleport']['sampler']}, auto landings "
          f"{pipe.config.landings}, optimized landings {({n: o[0] for n, o in optimized.items()})}")


if __name__ == "__main__":
    main()
