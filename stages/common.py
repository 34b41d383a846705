"""What every stage shares: its params and their one-line errors, the device, atomic outputs.

A stage checks the params it reads with its own ``RULES`` (``{key: rule}``, a rule returning None or what is
allowed), built from ``integer``, ``choice`` and ``rule``, before any heavy work.
"""

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

from hls.errors import ArgumentError


def load_params(path="params.yaml") -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def fail(key: str, value, allowed: str, file: str = "params.yaml"):
    """Exit 2 with one line naming the parameter, its value and what is allowed (before any heavy work)."""
    print(f"error: {file}: {key} = {value!r}: {allowed}", file=sys.stderr)
    sys.exit(2)


def check(ok: bool, key: str, value, allowed: str, file: str = "params.yaml") -> None:
    if not ok:
        fail(key, value, allowed, file)


def value(p: dict, key: str):
    """``p["a"]["b"]`` for ``key = "a.b"``."""
    for part in key.split("."):
        p = p[part]
    return p


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(low: int, high=None):
    """Rule: an integer >= low (and <= high(params) when given)."""
    def rule(v, p):
        top = None if high is None else high(p)
        ok = _is_int(v) and v >= low and (top is None or v <= top)
        return None if ok else f"must be an integer >= {low}" + ("" if top is None else f" and <= {top}")
    return rule


def choice(options):
    """Rule: one of ``options``."""
    return lambda v, p: None if v in options else f"must be one of {', '.join(map(str, options))}"


def rule(test, allowed):
    """Rule from a predicate ``test(value, params)`` and the text (or ``f(params)``) of what is allowed."""
    return lambda v, p: None if test(v, p) else (allowed(p) if callable(allowed) else allowed)


def validate(p: dict, rules: dict, file: str = "params.yaml") -> None:
    """Check each key of ``rules`` in ``p`` by its rule; exit with one line at the first bad one."""
    for key, check_one in rules.items():
        bad = check_one(value(p, key), p)
        if bad:
            fail(key, value(p, key), bad, file)


@contextlib.contextmanager
def params_errors(p: dict, file: str = "params.yaml", **keys):
    """Turn a library ``ArgumentError`` for argument ``name`` into the one-line error for its key ``keys[name]`` (of
    ``p``, read from ``file``), or for ``(key, value)`` when the argument is one item of a list parameter."""
    try:
        yield
    except ArgumentError as err:
        if err.name not in keys:
            raise
        key, bad = keys[err.name] if isinstance(keys[err.name], tuple) else (keys[err.name], value(p, keys[err.name]))
        fail(key, bad, err.allowed, file)


def device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named torch device."""
    check(name in ("auto", "cpu") or str(name).startswith("cuda"), "device", name, "must be auto, cpu or cuda[:N]")
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

