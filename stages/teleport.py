"""Stage teleport: the bundled model as a ``hls.TeleportPipeline`` folder (unet, scheduler ``teleport.sampler``, the
fitted Gaussian), its ``sigma_skip="auto"`` taken from the study's best landings (``--landings``) and the score-error
stage's σ*; load it with ``TeleportPipeline.from_pretrained``."""

import argparse
import json
from pathlib import Path

import pandas as pd

from common import atomic_path, load_params, params_errors
from hls.gaussian import Gaussian
from hls.pipeline import TeleportPipeline, landings_of


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors)")
    parser.add_argument("landings", type=Path, help="the study's best landings (stages/pareto.py --landings)")
    parser.add_argument("prediction", type=Path, help="the score-error record (stages/score_error.py)")
    parser.add_argument("out", type=Path, help="the pipeline folder to write")
    args = parser.parse_args()
    p = load_params()
    with params_errors(p, name="teleport.sampler", family="teleport.sampler", source="model.source"):
        pipe = TeleportPipeline.from_model(p["model"]["source"], Gaussian.load(args.gaussian),
                                           sampler=str(p["teleport"]["sampler"]),
                                           landings=landings_of(pd.read_csv(args.landings)),
                                           sigma_star=json.loads(args.prediction.read_text())["sigma_star"])
    with atomic_path(args.out, directory=True) as tmp:
        pipe.save_pretrained(tmp)
    print(f"wrote {args.out}: {type(pipe.scheduler).__name__} {p['teleport']['sampler']}, auto landings "
          f"{pipe.config.landings}, sigma_star {pipe.config.sigma_star}")


if __name__ == "__main__":
    main()
