"""What every stage script shares: params, one-line validation errors, atomic outputs, the device."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import yaml


def load_params(path="params.yaml") -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def fail(key: str, value, allowed: str):
    """Exit 2 with one line naming the parameter, its value and what is allowed (before any heavy work)."""
    print(f"error: params.yaml: {key} = {value!r}: {allowed}", file=sys.stderr)
    sys.exit(2)


def check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        fail(key, value, allowed)


def check_int(value, key: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (high=None: no upper bound); booleans are not integers."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    check(ok, key, value, f"must be an integer >= {low}" + ("" if high is None else f" and <= {high}"))
    return value


def check_choice(value, key: str, choices) -> str:
    check(value in choices, key, value, f"must be one of {', '.join(map(str, choices))}")
    return value


def device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named torch device."""
    check(name == "auto" or name == "cpu" or str(name).startswith("cuda"), "device", name, "must be auto, cpu or cuda[:N]")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        fail("device", name, "CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def atomic_path(path, directory: bool = False):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp if directory else tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
