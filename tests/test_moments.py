"""hls.moments: exact image moments and k-means, and the same bytes whatever the threads or the CPU's code path."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from hls.errors import ArgumentError
from hls.gaussian import Gaussian
from hls.mixture import GaussianMixture, cluster_moments, fit_mixtures
from hls.moments import Moments, kmeans


def images(n=300, shape=(4, 4), seed=0) -> np.ndarray:
    """Random uint8 images with structure (a shared pattern times a per-image gain, plus noise): [n, *shape]."""
    rng = np.random.default_rng(seed)
    pattern = rng.uniform(0, 255, size=shape)
    gain = rng.uniform(0, 1, size=(n, *(1,) * len(shape)))
    return np.clip(pattern * gain + rng.normal(0, 20, size=(n, *shape)), 0, 255).round().astype(np.uint8)


def test_moments_are_numpy_integer_sums():
    x = images()
    groups = np.arange(len(x)) % 3
    m = Moments.of(x, groups, chunk=37)  # several chunks
    flat = x.reshape(len(x), -1).astype(np.int64)
    for j in range(3):
        rows = flat[groups == j]
        assert int(m.counts[j]) == len(rows)
        np.testing.assert_array_equal(m.sums[j].numpy(), rows.sum(0))
        np.testing.assert_array_equal(m.grams[j].numpy(), rows.T @ rows)
        model = rows / 127.5 - 1  # hls.data.to_model's space
        np.testing.assert_allclose(m.means()[j].numpy(), model.mean(0), rtol=0, atol=1e-13)
        np.testing.assert_allclose(m.covariances()[j].numpy(), np.cov(model, rowvar=False), rtol=0, atol=1e-13)


def test_gaussian_and_mixture_load_from_moments(tmp_path):
    x = images()
    m = Moments.of(x)
    m.save(tmp_path / "g.safetensors")
    fitted = Gaussian.fit(torch.from_numpy(x.reshape(len(x), -1)).double() / 127.5 - 1)
    loaded = Gaussian.load(tmp_path / "g.safetensors")
    z = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(loaded.denoise(z, 0.3), fitted.denoise(z, 0.3), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(loaded.teleport(z, 80.0, 0.5), fitted.teleport(z, 80.0, 0.5), rtol=1e-10, atol=1e-10)
    mixtures = fit_mixtures(x, np.arange(len(x)) % 2, 3, seed=1)
    mixtures["gmm_kmeans"].save(tmp_path / "k.safetensors")
    mixture = GaussianMixture.load(tmp_path / "k.safetensors", max_step=0.25)
    assert mixture.max_step == 0.25 and mixture.components == len(mixtures["gmm_kmeans"].counts)
    torch.testing.assert_close(mixture.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(Moments.load(tmp_path / "k.safetensors").grams, mixtures["gmm_kmeans"].grams)


def test_kmeans_is_a_fixed_point_of_lloyd_in_exact_arithmetic():
    """At convergence every image is nearest (exact rational distances) to its own cluster's mean."""
    x = images(n=60, shape=(3,), seed=4)
    assign = kmeans(x, 4, seed=2)
    flat = [[int(v) for v in row] for row in x]
    centres = {}
    for j in set(assign.tolist()):
        members = [row for row, a in zip(flat, assign.tolist()) if a == j]
        centres[j] = [Fraction(sum(col), len(members)) for col in zip(*members)]
    for row, a in zip(flat, assign.tolist()):
        dist = {j: sum((v - c) ** 2 for v, c in zip(row, centre)) for j, centre in centres.items()}
        assert dist[a] == min(dist.values())
    assert torch.equal(kmeans(x, 4, seed=2), assign)  # reproducible


def test_cluster_moments_drop_groups_of_one():
    x = np.concatenate([images(n=50, shape=(2,), seed=1), np.array([[255, 0]], dtype=np.uint8)])
    m = cluster_moments(x, 6, seed=0)
    assert bool((m.counts >= 2).all()) and int(m.counts.sum()) <= len(x)


def test_bad_input_names_the_argument():
    for call, name in [(lambda: Moments.of(np.zeros((4, 3))), "images"),
                       (lambda: Moments.of(np.zeros((4, 3), np.uint8), [0, 1]), "groups"),
                       (lambda: Moments.of(np.zeros((3, 2), np.uint8), [0, 0, 1]).covariances(), "counts"),
                       (lambda: kmeans(np.zeros((4, 3), np.uint8), 5), "k"),
                       (lambda: kmeans(np.zeros((4, 3), np.uint8), 2, iters=0), "iters"),
                       (lambda: Gaussian.from_moments(Moments.of(images(), np.arange(300) % 2)), "moments")]:
        with pytest.raises(ArgumentError) as info:
            call()
        assert info.value.name == name


FIT = """
import hashlib, sys, tempfile, numpy as np
sys.path.insert(0, {tests!r})
from test_moments import images
from hls.mixture import fit_mixtures
from hls.moments import Moments
x = images(n=3000, shape=(8, 8))
with tempfile.TemporaryDirectory() as tmp:
    files = {{"gaussian": Moments.of(x), **fit_mixtures(x, np.arange(len(x)) % 3, 5, seed=0)}}
    for name, moments in files.items():
        moments.save(f"{{tmp}}/{{name}}")
    print(" ".join(hashlib.md5(open(f"{{tmp}}/{{name}}", "rb").read()).hexdigest() for name in files))
"""


@pytest.mark.parametrize("env", [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
                                 {"MKL_CBWR": "COMPATIBLE"}, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}])
def test_fitted_bytes_do_not_depend_on_threads_or_code_path(env):
    """The fitting stages' files come out with the same bytes with one thread, two, MKL's conditional numerical
    reproducibility mode and its AVX2 code path (standing in for another CPU)."""
    tests = os.path.dirname(__file__)

    def run(extra):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
        done = subprocess.run([sys.executable, "-c", FIT.format(tests=tests)], env={**base, **extra},
                              capture_output=True, text=True, check=True)
        return done.stdout.split()

    reference = run({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert len(reference) == 3 and run(env) == reference
    assert hashlib.md5(b"").hexdigest() not in reference


@pytest.mark.parametrize("script", ["gaussian", "mixtures"])
def test_fitting_stages_keep_the_pixels_in_the_models_order(tmp_path, script):
    """RGB images stored [N, H, W, C]: the stages' models live in the UNet's [C, H, W] order, as the float fit of the
    model-space images (``hls.data.to_model``) does."""
    from fakes import ROOT
    from hls.data import to_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 2, 3, 3), dtype=np.uint8)  # [N, H, W, C], C = 3
    images[:, :, :, 0] //= 4  # the red channel darker: the channels differ in mean and variance
    labels = np.arange(40) % 2
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "params.yaml").write_text("seed: 0\nmixtures: {k: 2, max_step: 0.5}\n")
    args = ["images.npy", "labels.npy", "out"] if script == "mixtures" else ["images.npy", "out.safetensors"]
    subprocess.run([sys.executable, str(ROOT / "stages" / f"{script}.py"), *args], cwd=tmp_path, check=True,
                   capture_output=True)
    x = to_model(images).flatten(1).to(torch.float64)  # [N, C*H*W] in [-1, 1]
    if script == "gaussian":
        model, reference = Gaussian.load(tmp_path / "out.safetensors"), Gaussian.fit(x)
        torch.testing.assert_close(model.mean, reference.mean)
        cov = (model.eigvecs * model.eigvals) @ model.eigvecs.T  # U diag(λ) Uᵀ
        torch.testing.assert_close(cov, (reference.eigvecs * reference.eigvals) @ reference.eigvecs.T)
    else:
        mixture = GaussianMixture.load(tmp_path / "out" / "gmm_classes.safetensors")
        for c in range(2):
            torch.testing.assert_close(mixture.means[c], x[labels == c].mean(0))
