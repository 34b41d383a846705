"""hls.fid against pytorch-fid, measured in one run: Fréchet distance time; Inception backends' images/s, features, FID.

    python bench/bench_fid.py                  # small defaults: 20 images, 3 rounds, every backend installed
    python bench/bench_fid.py --n 20 --repeats 8 --batch-sizes 10,5 --extra compile,bf16,compile-bf16 \\
        --fid-set test=data/dataset/test_images.npy:2000 --fid-set train=data/dataset/train_images.npy:500 \\
        --fid-set skip0=data/sweep/skip-0/images.npy --fid-pair skip0:test --fid-pair train:test

(a) ``frechet_distance`` vs ``pytorch_fid.fid_score.calculate_frechet_distance`` on real-looking ``--dim``-d statistics.
(b) ``hls.fid.activations`` with each ``--backends`` x ``--batch-sizes`` (and the ``--extra`` candidates that hls does
    not offer) vs pytorch-fid's own ``get_activations`` (PNG files, ToTensor, NCHW, ``no_grad``) at its best
    ``--ref-batch-sizes``, all with the same InceptionV3 weights, on the first ``--n`` of ``--images`` (real images when
    the file exists, else smooth random ones). Every candidate runs once per round, in a shuffled order; a candidate's
    time is its best round (other work on the machine only adds time), so ratios come from one run. ``setup`` is
    building the model plus its first batch (export, compilation, kernel selection). Feature differences are against
    the ``fp32`` backend, absolute and relative to the largest fp32 feature.
(c) With ``--fid-pair``: FID of each pair of ``--fid-set`` image sets with every candidate (batch ``fid.BATCH_SIZE``),
    relative difference to the ``fp32`` protocol's FID (each set's statistics computed once per candidate).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import random
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

from hls import fid
from hls.data import subset

# candidates measured here, not offered by hls.fid: FID moved by more than 0.1 % (bf16), or too little gained for a
# setup of 15 s per process (compile) or for a new dependency (onnxruntime, openvino: pip install them to measure)
EXTRA = ("compile", "onnxruntime", "openvino", "bf16", "compile-bf16", "openvino-bf16")


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def real_looking_stats(n: int, d: int, seed: int):
    """Mean ``[d]`` and covariance ``[d, d]`` of ReLU features with a power-law spectrum, like Inception's pool3."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * np.arange(1, d + 1)[:, None] ** -0.75
    x = np.maximum(rng.standard_normal((n, d)) @ mix, 0)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def bench_frechet(dim: int) -> None:
    mu1, s1 = real_looking_stats(3000, dim, seed=1)
    mu2, s2 = real_looking_stats(3000, dim, seed=2)
    for frechet in (calculate_frechet_distance, fid.frechet_distance):  # warm-up: BLAS / LAPACK initialisation
        frechet(mu1[:8], s1[:8, :8], mu2[:8], s2[:8, :8])
    ref, t_ref = timed(calculate_frechet_distance, mu1, s1, mu2, s2)
    ours, t_ours = timed(fid.frechet_distance, mu1, s1, mu2, s2)
    print(f"frechet_distance, {dim}-d: pytorch-fid {t_ref:.3f} s, ours {t_ours:.3f} s, "
          f"speed-up {t_ref / t_ours:.1f}x; FID {ours:.9f} vs {ref:.9f}, |diff| {abs(ours - ref):.2e} "
          f"(relative {abs(ours - ref) / abs(ref):.1e})")


# --- candidates hls.fid does not offer (same interface: [B, 3, H, W] in [0, 1] -> [[B, 2048, 1, 1]]) ---------------


class Pool3(torch.nn.Module):
    """pytorch-fid's InceptionV3 as one tensor out, for exporters: [B, 3, H, W] in [0, 1] -> [B, 2048]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0].flatten(1)


class Autocast(torch.nn.Module):
    """pytorch-fid's module under bfloat16 autocast (oneDNN bf16 kernels on CPUs with avx512_bf16 / AMX)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return [y.float() for y in self.net(x)]


class Compiled(torch.nn.Module):
    """torch.compile (inductor, ``freezing``: conv-BN folding and weight prepacking), optionally bf16 autocast."""

    def __init__(self, net, bf16: bool):
        super().__init__()
        import torch._inductor.config

        torch._inductor.config.freezing = True
        self.net = torch.compile(Pool3(copy.deepcopy(net)).to(memory_format=torch.channels_last), dynamic=False)
        self.bf16 = bf16

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return [self.net(x).float()[:, :, None, None]]


class OnnxRuntime(torch.nn.Module):
    """The network exported by ``torch.onnx.export`` (TorchScript exporter), run by ONNX Runtime's CPU provider."""

    def __init__(self, net):
        super().__init__()
        import onnxruntime

        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated (the torch.export one needs onnx)
            torch.onnx.export(Pool3(net).eval(), (torch.rand(2, 3, 28, 28),), buffer, input_names=["x"],
                              dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, opset_version=17, dynamo=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        self.session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def forward(self, x):
        y = self.session.run(None, {"x": x.contiguous().numpy()})[0]
        return [torch.from_numpy(y)[:, :, None, None]]


class OpenVINO(torch.nn.Module):
    """The network exported with ``torch.export`` (dynamic batch, height, width), compiled by OpenVINO for the CPU.

    ``precision`` is always set: OpenVINO's default on CPUs with bfloat16 instructions is bf16.
    """

    def __init__(self, net, precision: str):
        super().__init__()
        import openvino

        dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=2), 3: torch.export.Dim("width", min=2)}
        with torch.no_grad():
            program = torch.export.export(Pool3(net).eval(), (torch.rand(2, 3, 28, 28),), dynamic_shapes=(dims,))
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        compiled = openvino.Core().compile_model(openvino.convert_model(program), "CPU", config)
        self.request = compiled.create_infer_request()

    def forward(self, x):
        y = self.request.infer({0: x.contiguous().numpy()})[0]  # [B, 2048] in a reused buffer
        return [torch.from_numpy(y.copy())[:, :, None, None]]


def build(name: str, base: torch.nn.Module) -> torch.nn.Module:
    if name == "bf16":
        return Autocast(copy.deepcopy(base))
    if name in ("compile", "compile-bf16"):
        return Compiled(base, bf16=name == "compile-bf16")
    if name == "onnxruntime":
        return OnnxRuntime(base)
    if name in ("openvino", "openvino-bf16"):
        return OpenVINO(base, precision="bf16" if name == "openvino-bf16" else "f32")
    return fid.inception(backend=name)


def installed(name: str) -> bool:
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino-bf16": "openvino"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


# --- (b) throughput and features -------------------------------------------------------------------------------------


def load_images(path, n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` uint8 ``[n, H, W, C]`` images of ``path``, else smooth random 28 x 28 ones."""
    if path and Path(path).is_file():
        return np.array(np.load(path, mmap_mode="r")[:n]), f"{path}[:{n}]"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28] / 28
    centres = rng.uniform(0.2, 0.8, size=(n, 2, 1, 1))
    blob = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) * 20)  # [n, 28, 28]
    return (200 * blob[..., None] + rng.normal(0, 20, (n, 28, 28, 1)) + 30).clip(0, 255).astype(np.uint8), "random"


def bench_features(args, candidates: list[str]) -> dict:
    """Table (b); returns {candidate: model} for (c)."""
    images, source = load_images(args.images, args.n)
    base = fid.inception()
    ref_net = copy.deepcopy(base)  # pytorch-fid's own path: NCHW float32
    runs, setup, models = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(Path(tmp) / f"{i:05d}.png") for i in range(len(images))]
        for path, img in zip(files, images):
            Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(path)
        with contextlib.redirect_stderr(io.StringIO()):  # get_activations' tqdm bar
            _, setup["pytorch-fid"] = timed(get_activations, files[:2], ref_net, batch_size=2, num_workers=0)
        for bs in args.ref_batch_sizes:
            runs[("pytorch-fid", bs)] = lambda bs=bs: get_activations(files, ref_net, batch_size=bs, num_workers=0)
        for name in candidates:
            start = time.perf_counter()
            models[name] = build(name, base)
            fid.activations(images[: max(args.batch_sizes)], models[name], batch_size=max(args.batch_sizes))
            setup[name] = time.perf_counter() - start
            print(f"built {name} in {setup[name]:.1f} s", flush=True)
            for bs in args.batch_sizes:
                runs[(name, bs)] = lambda m=models[name], bs=bs: fid.activations(images, m, batch_size=bs)
        best, acts = {key: np.inf for key in runs}, {}
        for round_ in range(args.repeats):
            order = list(runs)
            random.Random(round_).shuffle(order)
            for key in order:
                with contextlib.redirect_stderr(io.StringIO()):
                    acts[key], seconds = timed(runs[key])
                best[key] = min(best[key], seconds)
    ref_key = min((key for key in runs if key[0] == "pytorch-fid"), key=best.get)
    fp32 = acts[("fp32", args.batch_sizes[0])]
    scale = np.abs(fp32).max()
    print(f"\n(b) {len(images)} images ({source}), {torch.get_num_threads()} threads, best of {args.repeats} rounds; "
          f"ratio: throughput / pytorch-fid get_activations at batch {ref_key[1]}; diff: vs fp32, max over features")
    print("| backend | batch | threads | images/s | ratio | setup s | max abs diff | max rel diff |")
    print("|---|---|---|---|---|---|---|---|")
    for key in runs:
        diff = np.abs(acts[key] - fp32).max()
        print(f"| {key[0]} | {key[1]} | {torch.get_num_threads()} | {len(images) / best[key]:.1f} | "
              f"{best[ref_key] / best[key]:.2f}x | {setup[key[0]]:.1f} | {diff:.1e} | {diff / scale:.1e} |")
    return models


# --- (c) FID -----------------------------------------------------------------------------------------------------


def bench_fid_pairs(args, models: dict) -> None:
    sets = {}
    for spec in args.fid_set:
        name, _, rest = spec.partition("=")
        path, _, n = rest.partition(":")
        images = np.load(path, mmap_mode="r")
        sets[name] = subset(images, int(n), seed=0) if n and int(n) < len(images) else np.array(images)
    pairs = [tuple(p.split(":")) for p in args.fid_pair]
    unknown = {s for p in pairs for s in p} - set(sets)
    if unknown:
        raise SystemExit(f"--fid-pair names unknown sets {sorted(unknown)}; --fid-set defines {sorted(sets)}")
    used = sorted({s for p in pairs for s in p})
    print(f"\n(c) FID per pair (sets: {', '.join(f'{s} n={len(sets[s])}' for s in used)}); in brackets: relative "
          "difference to fp32; seconds: features of all sets")
    print("| backend | " + " | ".join(f"{a} vs {b}" for a, b in pairs) + " | max abs rel diff | seconds |")
    print("|---|" + "---|" * (len(pairs) + 2))
    fp32 = None
    for name, model in models.items():  # fp32 first; each row printed as soon as it is known
        stats, start = {}, time.perf_counter()
        for s in used:
            stats[s] = fid.activation_stats(sets[s], model, batch_size=fid.BATCH_SIZE)
        values = [fid.frechet_distance(*stats[a], *stats[b]) for a, b in pairs]
        fp32 = fp32 or values
        rel = [(v - r) / r for v, r in zip(values, fp32)]
        print(f"| {name} | " + " | ".join(f"{v:.4f} ({d:+.1e})" for v, d in zip(values, rel))
              + f" | {max(map(abs, rel)):.1e} | {time.perf_counter() - start:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="images for the throughput benchmark")
    parser.add_argument("--images", default="data/dataset/test_images.npy", help="uint8 [N, H, W, C] .npy images")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(fid.BACKENDS),
                        help="hls.fid backends, comma-separated (default: all of them that are installed)")
    parser.add_argument("--extra", type=lambda s: [x for x in s.split(",") if x], default=[],
                        help=f"other candidates, comma-separated: {','.join(EXTRA)}")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[fid.BATCH_SIZE],
                        help="hls.fid batch sizes, comma-separated")
    parser.add_argument("--ref-batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50],
                        help="pytorch-fid batch sizes (its default: 50); the fastest is the reference")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every candidate")
    parser.add_argument("--fid-set", action="append", default=[], metavar="NAME=PATH[:N]",
                        help="uint8 image set for (c), optionally N of them (hls.data.subset, seed 0)")
    parser.add_argument("--fid-pair", action="append", default=[], metavar="A:B", help="two --fid-set names")
    parser.add_argument("--dim", type=int, default=2048, help="dimension of the Fréchet distance statistics")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    bad = [c for c in args.backends if c not in fid.BACKENDS] + [c for c in args.extra if c not in EXTRA]
    if bad:
        parser.error(f"unknown candidates {bad}; backends: {fid.BACKENDS}, extra: {EXTRA}")
    candidates = ["fp32"] + [c for c in args.backends + args.extra if c != "fp32"]
    skipped = [c for c in candidates if not installed(c)]
    candidates = [c for c in candidates if installed(c)]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads" + (f"; not installed: {skipped}" if skipped else ""))
    bench_frechet(args.dim)
    models = bench_features(args, candidates)
    if args.fid_pair:
        bench_fid_pairs(args, models)


if __name__ == "__main__":
    main()
