"""Stage heldout of the study: every cell whose choice was made on the study's images (each best landing and its
plain arm, both cells of each frontier pair; ``hls.pareto.heldout_names``) and every optimized cell, measured again
on the held-out block (image i from seed + n + i), each by the same stage script with the same arguments as its
study cell. Resumes: a held-out record is kept while its study cell's record (but the measured jump cost) and its
command are unchanged; records of cells no longer chosen are removed."""

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from common import fail, load_params, write_json
from hls import OPTIMIZED
from hls.mixture import MIXTURES
from hls.pareto import against_plain, cell_names, frontier, heldout_names, landings, names_of, read_cells

UNMEASURED = ("jump_cost", "compute")  # measured times: they differ from run to run


def twin(record: dict, command: list[str]) -> str:
    """The fingerprint that a held-out record keeps: its study cell's record and the command that measures it."""
    kept = {k: v for k, v in record.items() if k not in UNMEASURED}
    return hashlib.md5(json.dumps([kept, command], sort_keys=True).encode()).hexdigest()


def command(row, name: str, args) -> list[str]:
    """The stage command of the study cell ``row`` (a record), writing its held-out twin ``name`` into ``args.out``
    (the script and its arguments; the launcher goes before it)."""
    mixture = row.start in MIXTURES
    out = [f"stages/{'cell_mixture' if mixture else 'cell'}.py", str(args.images),
           str(args.ref), str(args.out / f"{name}.json"), "--replicates", str(args.out / f"{name}.safetensors"),
           "--sampler", f"{row.scheduler}-{row.family}", "--nfe", str(row.nfe), "--start", row.start,
           "--grid", args.grid, "--first", str(row.n)]
    if row.start != "plain":
        out += ["--model", str(args.mixtures / f"{row.start}.safetensors" if mixture else args.gaussian)]
    if row.family == OPTIMIZED:
        out += ["--schedule", str(args.schedules / f"{row.scheduler}-{row.nfe}-{row.start}.json")]
    elif row.start != "plain":
        out += ["--sigma-skip", f"{row.sigma_skip:g}"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cells", type=Path, help="the study's cells (records and replicates)")
    parser.add_argument("out", type=Path, help="the folder of held-out cells to write")
    parser.add_argument("--images", type=Path, required=True, help="real images (the cells' first argument)")
    parser.add_argument("--ref", type=Path, required=True, help="reference Inception statistics")
    parser.add_argument("--gaussian", type=Path, required=True, help="the fitted Gaussian")
    parser.add_argument("--mixtures", type=Path, required=True, help="the folder of fitted mixtures")
    parser.add_argument("--schedules", type=Path, required=True, help="the folder of optimized schedules")
    parser.add_argument("--grid", default="params.yaml", help="the study's params file")
    parser.add_argument("--launcher", default="python", help="how each cell starts (params: launcher)")
    args = parser.parse_args()
    try:
        table, replicates = read_cells(args.cells, cell_names(load_params(args.grid)["study"]))
    except FileNotFoundError as err:
        fail("study", "its cells", f"{err}; run dvc repro", args.grid)
    table = against_plain(table, replicates)
    names = heldout_names(table, landings(table), frontier(table, replicates))
    by_name = dict(zip(names_of(table), table.itertuples()))
    rows = {name: by_name[name] for name in names}
    args.out.mkdir(parents=True, exist_ok=True)
    for k, (name, row) in enumerate(rows.items(), start=1):
        record = args.out / f"{name}.json"
        cmd = command(row, name, args)
        fingerprint = twin(json.loads((args.cells / f"{name}.json").read_text()), cmd)
        if record.exists() and json.loads(record.read_text()).get("twin") == fingerprint:
            print(f"heldout {k}/{len(rows)} {name}: kept", flush=True)
            continue
        print(f"heldout {k}/{len(rows)} {name}: measuring", flush=True)
        done = subprocess.run([*shlex.split(args.launcher), *cmd])
        if done.returncode != 0:
            sys.exit(done.returncode)
        write_json(record, json.loads(record.read_text()) | {"twin": fingerprint})
    for stale in (f for f in args.out.iterdir() if f.stem not in rows):  # and what an interrupted write left
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    print(f"{len(rows)} held-out cells in {args.out}")


if __name__ == "__main__":
    main()
