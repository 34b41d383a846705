"""Stage score_error: how well the Gaussian, isotropic and mean-only scores explain the network's score across
noise levels (plots/score_error.{csv,png}), and the skip this predicts for the configured sampler
(metrics/score_error.json: σ* = the largest σ where the Gaussian's explained variance in ``score_error.space`` is
below ``score_error.threshold``; reported for both spaces)."""

import sys

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from common import atomic_path, check, check_choice, check_int, device, load_params, write_json  # noqa: E402

from hls.data import subset, to_model  # noqa: E402
from hls.gaussian import Gaussian  # noqa: E402
from hls.models import check_compatible, load_model  # noqa: E402
from hls.sampling import SCHEDULERS, make_scheduler, skip_sigma  # noqa: E402
from hls.score_error import SPACES, critical_sigma, plot, predicted_skip, score_errors, sigma_grid  # noqa: E402


def main():
    p = load_params()
    e, s = p["score_error"], p["sampler"]
    images = np.load("data/dataset/test_images.npy", mmap_mode="r")  # [N, H, W, C]
    n = check_int(e["n"], "score_error.n", 2, len(images))
    grid = check_int(e["sigmas"], "score_error.sigmas", 2)
    threshold = e["threshold"]
    check(isinstance(threshold, float) and 0 < threshold < 1, "score_error.threshold", threshold, "must be in (0, 1)")
    space = check_choice(e["space"], "score_error.space", SPACES)
    check_choice(s["scheduler"], "sampler.scheduler", SCHEDULERS)
    steps = check_int(s["steps"], "sampler.steps", 1)
    dev = device(p["device"])
    try:
        unet, scheduler_config = load_model(p["model"]["source"])
        check_compatible(unet, images.shape[1:], p["model"]["source"], p["data"]["name"])
    except (RuntimeError, ValueError) as err:
        sys.exit(f"error: {err}")

    scheduler = make_scheduler(s["scheduler"], scheduler_config)
    alphas_cumprod = scheduler.alphas_cumprod
    _, timesteps = sigma_grid(alphas_cumprod, grid)
    df = score_errors(unet.to(dev), alphas_cumprod, Gaussian.load("data/gaussian.safetensors"),
                      to_model(subset(images, n, p["seed"])), timesteps, seed=p["seed"], device=dev, progress=True)
    step_sigmas = [skip_sigma(scheduler, steps, k) for k in range(steps)]  # [steps], descending
    predictions = {}
    for name in SPACES:
        sigma_star = critical_sigma(df, threshold, space=name)
        predictions[name] = {"sigma_star": sigma_star, "predicted_skip": predicted_skip(step_sigmas, sigma_star)}
    sigma_star, skip = predictions[space]["sigma_star"], predictions[space]["predicted_skip"]

    with atomic_path("plots/score_error.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path("plots/score_error.png") as tmp:
        plot(df, tmp, threshold=threshold, sigma_star=sigma_star)
    write_json("metrics/score_error.json", {
        "sigma_star": sigma_star, "predicted_skip": skip, "space": space, "threshold": threshold,
        "sigma_at_predicted_skip": round(step_sigmas[skip], 6), "by_space": predictions, "scheduler": s["scheduler"],
        "steps": steps, "n_images": n,
    })
    print(f"{space} space: σ* = {sigma_star}, predicted free skip {skip} of {steps} {s['scheduler']} steps; "
          f"all spaces: {predictions}")


if __name__ == "__main__":
    main()
