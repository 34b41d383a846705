"""Stage score_error: how well analytic scores (the fitted Gaussian, its isotropic and mean-only versions, a low-rank
Gaussian, the class and k-means Gaussian mixtures, the training set itself) explain the network's score across noise
levels (a tidy CSV and its figure), and the skip this predicts for the configured sampler: σ* = the largest σ where
the Gaussian's explained variance in ``score_error.space`` is below ``score_error.threshold`` (a JSON record for both
spaces, and σ* with its skip as metrics)."""

import argparse
from pathlib import Path

import numpy as np

from common import atomic_path, check, choice, device, integer, load_params, params_errors, rule, validate, write_json
from hls.data import subset, to_model
from hls.gaussian import Gaussian
from hls.mixture import MIXTURES, GaussianMixture
from hls.models import load_sampler
from hls.sampling import SCHEDULERS, skip_sigma
from hls.score_error import SPACES, approximations, critical_sigma, plot, predicted_skip, score_errors, sigma_grid
from plotting import save_figure

RULES = {"seed": integer(0), "sampler.steps": integer(1), "sampler.scheduler": choice(SCHEDULERS),
         "score_error.n": integer(2), "score_error.n_sigmas": integer(2), "score_error.space": choice(SPACES),
         "score_error.threshold": rule(lambda v, p: isinstance(v, float) and 0 < v < 1, "must be in (0, 1)"),
         "score_error.lowrank": integer(0), "score_error.delta_n": integer(1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 real test images [N, H, W, C] (.npy)")
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors)")
    parser.add_argument("mixtures", type=Path, help="folder of the fitted mixtures (stages/mixtures.py)")
    parser.add_argument("train_images", type=Path, help="uint8 training images [N, H, W, C] (.npy), the delta model")
    parser.add_argument("--table", type=Path, required=True, help="tidy CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--record", type=Path, required=True, help="JSON record to write")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON metrics to write: σ* and its skip")
    args = parser.parse_args()
    p = load_params()
    validate(p, RULES)
    e, settings = p["score_error"], p["sampler"]
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    check(e["n"] <= len(images), "score_error.n", e["n"], f"must be <= {len(images)}, the number of test images")
    train = np.load(args.train_images, mmap_mode="r")  # [N, H, W, C]
    check(e["delta_n"] <= len(train), "score_error.delta_n", e["delta_n"],
          f"must be <= {len(train)}, the number of training images")
    dims = int(np.prod(images.shape[1:]))
    check(e["lowrank"] <= dims, "score_error.lowrank", e["lowrank"], f"must be <= D = {dims}")
    dev = device(p["device"])
    with params_errors(p, source="model.source", steps="sampler.steps", image_shape="data.name"):
        unet, scheduler = load_sampler(p["model"]["source"], settings["scheduler"], images.shape[1:], settings["steps"])

    mixtures = {name: GaussianMixture.load(args.mixtures / f"{name}.safetensors") for name in MIXTURES}
    points = to_model(subset(train, e["delta_n"], p["seed"])).flatten(1)  # [delta_n, D]
    models = approximations(Gaussian.load(args.gaussian), mixtures, points, rank=e["lowrank"])
    _, timesteps = sigma_grid(scheduler.alphas_cumprod, e["n_sigmas"])
    df = score_errors(unet.to(dev), scheduler.alphas_cumprod, models, to_model(subset(images, e["n"], p["seed"])),
                      timesteps, seed=p["seed"], device=dev, progress=True)
    step_sigmas = [skip_sigma(scheduler, settings["steps"], k) for k in range(settings["steps"])]  # [steps]
    predictions = {}
    for space in SPACES:
        sigma_star = critical_sigma(df, e["threshold"], space=space)
        predictions[space] = {"sigma_star": sigma_star, "predicted_skip": predicted_skip(step_sigmas, sigma_star)}
    sigma_star, skip = predictions[e["space"]]["sigma_star"], predictions[e["space"]]["predicted_skip"]

    with atomic_path(args.table) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    save_figure(plot(df, threshold=e["threshold"], sigma_star=sigma_star), args.figure)
    write_json(args.record, {
        "sigma_star": sigma_star, "predicted_skip": skip, "space": e["space"], "threshold": e["threshold"],
        "sigma_at_predicted_skip": round(step_sigmas[skip], 6), "by_space": predictions,
        "scheduler": settings["scheduler"], "steps": settings["steps"], "n_images": e["n"],
    })
    write_json(args.metrics, {"sigma_star": sigma_star, "predicted_skip": skip})
    print(f"{e['space']} space: σ* = {sigma_star}, predicted free skip {skip} of {settings['steps']} "
          f"{settings['scheduler']} steps; all spaces: {predictions}")


if __name__ == "__main__":
    main()
