"""Wall time of equal-NFE study cells as DVC runs them, against the sampling and Inception time inside them.

    python bench/bench_study.py                                  # after dvc repro (the data, the fitted models)
    python bench/bench_study.py --cells dpmsolver-default:5:plain heun-default:21:gaussian:10 --n 500

Each cell is ``stages/cell.py`` (``stages/cell_mixture.py`` for a mixture start) started as its stage starts it, in a
fresh interpreter, writing to a temporary folder. Its wall time includes the interpreter start-up and imports, loading
the model and the Inception network, the bootstrap and the writes; the cell prints its own sampling and Inception
seconds (the network's forward passes; building it counts as overhead). The overhead ratio is wall / (sampling +
Inception), per cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hls.mixture import MIXTURES

CELLS = ["dpmsolver-default:5:plain", "dpmsolver-default:5:gaussian:10", "ddim-default:21:gaussian:20",
         "heun-default:11:noise:10", "dpmsolver-default:7:gmm_kmeans:5"]


def run_cell(spec: str, grid: Path, out: Path) -> tuple[float, dict, dict]:
    """(wall seconds, the cell's timing line, its record) of one cell ``sampler:nfe:start[:sigma]``."""
    sampler, nfe, start, *sigma = spec.split(":")
    script = "stages/cell_mixture.py" if start in MIXTURES else "stages/cell.py"
    model = f"data/mixtures/{start}.safetensors" if start in MIXTURES else "data/gaussian.safetensors"
    command = [sys.executable, script, "data/dataset/test_images.npy", "models/fashion_mnist-fid_ref.safetensors",
               str(out / "cell.json"), "--replicates", str(out / "cell.safetensors"), "--sampler", sampler,
               "--nfe", nfe, "--start", start, "--grid", str(grid), "--model", model]
    if sigma:
        command += ["--sigma-skip", sigma[0]]
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - begin
    if done.returncode != 0:
        sys.exit(f"{spec}: {done.stderr.strip().splitlines()[-1]}")
    timing = next(json.loads(line.split(":", 1)[1]) for line in done.stdout.splitlines() if line.startswith("timing:"))
    return wall, timing, json.loads((out / "cell.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=CELLS, help="sampler:nfe:start[:sigma] each")
    parser.add_argument("--n", type=int, default=250, help="images per cell (the study's study.n)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(yaml.safe_dump({"study": {"n": args.n}}))
        print(f"n = {args.n} images per cell; seconds")
        print("| cell | wall | sampling | Inception | bootstrap | rest | overhead ratio | jump cost (UNet evals) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for spec in args.cells:
            wall, timing, record = run_cell(spec, grid, Path(tmp))
            work = timing["sampling"] + timing["inception"]
            rest = wall - work - timing["bootstrap"]
            print(f"| {spec} | {wall:.1f} | {timing['sampling']:.1f} | {timing['inception']:.1f} | "
                  f"{timing['bootstrap']:.1f} | {rest:.1f} | {wall / work:.2f} | {record['jump_cost']:g} |",
                  flush=True)


if __name__ == "__main__":
    main()
