"""Stage score_error: how well analytic scores (the fitted Gaussian, its isotropic and mean-only versions, a low-rank
Gaussian, class and k-means Gaussian mixtures, the training set itself) explain the network's score across noise
levels (a tidy CSV and its figure), and the skip this predicts for the configured sampler (a JSON record:
σ* = the largest σ where the Gaussian's explained variance in ``score_error.space`` is below
``score_error.threshold``; reported for both spaces)."""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from common import atomic_path, check, device, load_params, params_errors, validate, write_json  # noqa: E402
from hls.data import subset, to_model  # noqa: E402
from hls.gaussian import Gaussian  # noqa: E402
from hls.models import load_sampler  # noqa: E402
from hls.sampling import SCHEDULERS, sigma_skip  # noqa: E402
from hls.score_error import (  # noqa: E402
    SPACES,
    approximations,
    critical_sigma,
    plot,
    predicted_skip,
    score_errors,
    sigma_grid,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="uint8 real test images [N, H, W, C] (.npy)")
    parser.add_argument("gaussian", type=Path, help="the fitted Gaussian (.safetensors)")
    parser.add_argument("train_images", type=Path, help="uint8 training images [N, H, W, C] (.npy), for the mixtures")
    parser.add_argument("train_labels", type=Path, help="their int64 class labels [N] (.npy)")
    parser.add_argument("--table", type=Path, required=True, help="tidy CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON record to write")
    args = parser.parse_args()
    p = load_params()
    validate(p, "seed", "sampler.steps", "score_error.n", "score_error.n_sigmas", "score_error.threshold",
             "score_error.lowrank", "score_error.gmm_k", "score_error.delta_n",
             choices={"score_error.space": SPACES, "sampler.scheduler": SCHEDULERS})
    e, s = p["score_error"], p["sampler"]
    images = np.load(args.images, mmap_mode="r")  # [N, H, W, C]
    check(e["n"] <= len(images), "score_error.n", e["n"], f"must be <= {len(images)}, the number of test images")
    train = np.load(args.train_images, mmap_mode="r")  # [N, H, W, C]
    check(e["delta_n"] <= len(train), "score_error.delta_n", e["delta_n"],
          f"must be <= {len(train)}, the number of training images")
    dims = int(np.prod(images.shape[1:]))
    check(e["lowrank"] <= dims, "score_error.lowrank", e["lowrank"], f"must be <= D = {dims}")
    dev = device(p["device"])
    with params_errors(p, source="model.source", steps="sampler.steps", image_shape="data.name"):
        unet, scheduler = load_sampler(p["model"]["source"], s["scheduler"], images.shape[1:], s["steps"])

    models = approximations(Gaussian.load(args.gaussian), to_model(train).flatten(1), np.load(args.train_labels),
                            rank=e["lowrank"], k=e["gmm_k"], delta_n=e["delta_n"], seed=p["seed"])
    _, timesteps = sigma_grid(scheduler.alphas_cumprod, e["n_sigmas"])
    df = score_errors(unet.to(dev), scheduler.alphas_cumprod, models,
                      to_model(subset(images, e["n"], p["seed"])), timesteps, seed=p["seed"], device=dev,
                      progress=True)
    step_sigmas = [sigma_skip(scheduler, s["steps"], k) for k in range(s["steps"])]  # [steps], descending
    predictions = {}
    for space in SPACES:
        sigma_star = critical_sigma(df, e["threshold"], space=space)
        predictions[space] = {"sigma_star": sigma_star, "predicted_skip": predicted_skip(step_sigmas, sigma_star)}
    sigma_star, skip = predictions[e["space"]]["sigma_star"], predictions[e["space"]]["predicted_skip"]

    with atomic_path(args.table) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(args.figure) as tmp:
        plot(df, tmp, threshold=e["threshold"], sigma_star=sigma_star)
    write_json(args.metrics, {
        "sigma_star": sigma_star, "predicted_skip": skip, "space": e["space"], "threshold": e["threshold"],
        "sigma_at_predicted_skip": round(step_sigmas[skip], 6), "by_space": predictions, "scheduler": s["scheduler"],
        "steps": s["steps"], "n_images": e["n"],
    })
    print(f"{e['space']} space: σ* = {sigma_star}, predicted free skip {skip} of {s['steps']} {s['scheduler']} "
          f"steps; all spaces: {predictions}")


if __name__ == "__main__":
    main()
