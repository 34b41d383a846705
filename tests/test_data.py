"""Datasets from each offline source, the loading errors, and the image conversions."""

import numpy as np
import pytest
import torch

import hls.data
from fakes import write_cifar10, write_fashion_mnist
from hls.data import load_dataset, subset, to_model, to_uint8


def test_fashion_mnist_from_gz_and_plain_idx_files_is_identical(tmp_path):
    written = write_fashion_mnist(tmp_path / "gz", gz=True)
    write_fashion_mnist(tmp_path / "plain", gz=False)
    a = load_dataset("fashion_mnist", tmp_path / "gz")
    b = load_dataset("fashion_mnist", tmp_path / "plain")
    assert a.keys() == b.keys() == written.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes() == written[key].tobytes()
    assert a["train_images"].shape == (64, 28, 28, 1) and a["train_images"].dtype == np.uint8
    assert a["test_labels"].dtype == np.int64


def test_saved_arrays_have_identical_bytes_across_runs(tmp_path):
    write_fashion_mnist(tmp_path / "src")
    for run in ("one", "two"):
        np.save(tmp_path / f"{run}.npy", load_dataset("fashion_mnist", tmp_path / "src")["train_images"])
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "two.npy").read_bytes()


def test_cifar10_from_torchvision_layout(tmp_path, monkeypatch):
    write_cifar10(tmp_path, n_per_batch=4)
    # fake batches cannot match torchvision's md5 checksums of the real files
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    arrays = load_dataset("cifar10", tmp_path)
    assert arrays["train_images"].shape == (20, 32, 32, 3)
    assert arrays["test_images"].shape == (4, 32, 32, 3) and arrays["test_labels"].shape == (4,)


@pytest.mark.skipif(not hls.data.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_package_is_the_real_fashion_mnist():
    arrays = load_dataset("fashion_mnist")
    assert arrays["train_images"].shape == (60000, 28, 28, 1)
    assert arrays["test_images"].shape == (10000, 28, 28, 1)
    assert np.bincount(arrays["train_labels"]).tolist() == [6000] * 10


def test_missing_data_names_every_source_and_the_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(hls.data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(RuntimeError) as err:
        load_dataset("fashion_mnist", tmp_path / "empty")
    message = str(err.value)
    assert "source_dir" in message and "dataset-fashion-mnist" in message and "network access" in message
    assert "data." not in message  # the library names its own arguments, not the pipeline's
    with pytest.raises(ValueError, match="name = 'mnist': must be one of fashion_mnist, cifar10"):
        load_dataset("mnist")


def test_conversions_round_trip():
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 4, 2), dtype=np.uint8)
    x = to_model(images)
    assert x.shape == (3, 2, 5, 4) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), images)
    assert np.array_equal(to_uint8(torch.full((1, 1, 1, 1), 7.0)), [[[[255]]]])  # clipped


def test_subset_is_seeded_and_ordered():
    images = np.arange(100)
    a, b = subset(images, 10, seed=3), subset(images, 10, seed=3)
    assert np.array_equal(a, b) and np.all(np.diff(a) > 0) and len(set(a)) == 10
    assert not np.array_equal(a, subset(images, 10, seed=4))
