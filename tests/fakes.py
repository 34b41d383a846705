"""What the tests share: tiny stand-ins for what the pipeline downloads or trains (datasets in torchvision's on-disk
formats, a random two-level UNet, a diffusers DDPM pipeline folder), the DDPM training schedule written out
independently of diffusers and hls, the exact epsilon-predictor of Gaussian data (the oracle UNet), and a runner for
the project's commands."""

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from hls.gaussian import Gaussian
from hls.train import make_unet

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
# The DDPM training schedule (1000 linear betas 1e-4..0.02) in numpy: prod_{s <= t} (1 - beta_s), and VE sigmas.
TRAINING_ALPHAS_CUMPROD = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
TRAINING_SIGMAS = np.sqrt((1 - TRAINING_ALPHAS_CUMPROD) / TRAINING_ALPHAS_CUMPROD)  # [1000], increasing
SIGMA_MAX = float(TRAINING_SIGMAS[-1])


def sigma_of_timestep(t, alphas_cumprod=TRAINING_ALPHAS_CUMPROD) -> np.ndarray:
    """The VE sigma of (possibly fractional) training timesteps ``t`` (a number or ``[B]``): log-sigma interpolated
    between integer ones of ``alphas_cumprod`` (float64 ``[T]``), exact at integers up to round-off."""
    a = np.asarray(torch.as_tensor(alphas_cumprod, dtype=F64))
    log_sigmas = 0.5 * np.log((1 - a) / a)
    return np.exp(np.interp(np.asarray(torch.as_tensor(t, dtype=F64)), np.arange(len(a)), log_sigmas))


class OracleUNet(torch.nn.Module):
    """The exact epsilon-predictor of Gaussian data, eps = (x_ve - E[x0 | x_ve]) / sigma, counting its calls and
    keeping its inputs. Its input is the scheduler's model input, the VP sample sqrt(a) * x_ve for every sampler; its
    timestep one for the batch or one per image ``[B]``, on the noise schedule ``alphas_cumprod``."""

    def __init__(self, gaussian: Gaussian, alphas_cumprod=TRAINING_ALPHAS_CUMPROD):
        super().__init__()
        self.gaussian, self.alphas_cumprod = gaussian, alphas_cumprod
        self.calls = 0
        self.inputs = []  # (model input, timestep) of every call

    def forward(self, x, t):
        self.calls += 1
        self.inputs.append((x.clone(), float(t) if torch.as_tensor(t).ndim == 0 else torch.as_tensor(t).clone()))
        sigma = torch.as_tensor(sigma_of_timestep(t, self.alphas_cumprod), dtype=F64).reshape(-1, 1)  # [B|1, 1]
        x_ve = x.reshape(x.shape[0], -1).to(F64) * (1 + sigma**2).sqrt()  # [B, D]
        eps = (x_ve - self.gaussian.denoise(x_ve, sigma[:, 0])) / sigma
        return SimpleNamespace(sample=eps.reshape(x.shape).to(x.dtype))


def small_gaussian(d: int, mean_scale: float = 0.5, seed: int = 0) -> Gaussian:
    """N(mean_scale * z, U diag(linspace(0.5, 0.02)) Uᵀ) in d dimensions, U a random rotation."""
    g = torch.Generator().manual_seed(seed)
    eigvecs, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    return Gaussian(mean_scale * torch.randn(d, generator=g, dtype=F64), torch.linspace(0.5, 0.02, d, dtype=F64),
                    eigvecs)


def record_conversions(monkeypatch, module) -> list[str]:
    """The names of ``module``'s VP <-> VE conversions (``vp_to_ve``, ``ve_to_vp``) in the order they are called."""
    calls = []
    for fn in ("vp_to_ve", "ve_to_vp"):
        original = getattr(module, fn)
        monkeypatch.setattr(module, fn, lambda *a, _f=original, _n=fn: calls.append(_n) or _f(*a))
    return calls


def run(cwd, *args, check=True):
    """Run a command with this interpreter's environment first on PATH (so stages' `python` is ours), offline."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def dvc(cwd, *args, check=True):
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def fake_images(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    """Smooth-ish random uint8 images ``[n, h, w, c]`` (a per-image blob on a per-pixel mean)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    centres = rng.uniform(0.2, 0.8, size=(n, 2, 1, 1))
    blob = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) * 20)  # [n, h, w]
    x = 200 * blob[..., None] + rng.normal(0, 20, size=(n, h, w, c)) + 30
    return x.clip(0, 255).astype(np.uint8)


def write_fashion_mnist(folder, n_train=64, n_test=32, gz=True, seed=0):
    """The four idx files (``.gz`` like Debian's package when ``gz``); returns the arrays written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = fake_images(n, 28, 28, 1, seed + (split == "test"))
        labels = np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)
        opener = gzip.open if gz else open
        suffix = ".gz" if gz else ""
        with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + images[..., 0].tobytes())
        with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + labels.tobytes())
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.int64)
    return arrays


def write_cifar10(root, n_per_batch=8, seed=0):
    """``root/cifar-10-batches-py`` with five train batches and a test batch in CIFAR-10's pickle format."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images = fake_images(n_per_batch, 32, 32, 3, seed + i)  # [n, H, W, C] -> CIFAR's [n, C*H*W]
        batch = {"data": images.transpose(0, 3, 1, 2).reshape(n_per_batch, -1),
                 "labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return folder


def ddpm_config(clip_sample=True):
    """The bundled model's and google/ddpm-cifar10-32's training schedule: 1000 linear betas 1e-4..0.02, epsilon."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=clip_sample).config


def tiny_unet(image_size=8, channels=3, attention=(False, True), seed=0) -> UNet2DModel:
    """A random UNet2DModel with 8 and 16 channels at two levels, in eval mode; weights from ``seed``."""
    torch.manual_seed(seed)
    return make_unet(image_size, channels, [8, 16], 1, list(attention), norm_num_groups=4).eval()


def write_tiny_pipeline(folder, image_size=28, channels=1, seed=0):
    """A random tiny UNet2DModel + the DDPM training schedule saved as a DDPMPipeline folder; returns the UNet."""
    unet = tiny_unet(image_size, channels, attention=(False, False), seed=seed)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(ddpm_config())).save_pretrained(folder)
    return unet
