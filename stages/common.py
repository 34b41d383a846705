"""What every stage script shares: params and their checks, one-line errors, atomic outputs, the device."""

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


def fail(key: str, value, allowed: str):
    """Exit 2 with one line naming the parameter, its value and what is allowed (before any heavy work)."""
    print(f"error: params.yaml: {key} = {value!r}: {allowed}", file=sys.stderr)
    sys.exit(2)


def check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        fail(key, value, allowed)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _integer(low: int, high=None):
    """Rule: an integer >= low (and <= high(params) when given)."""
    def rule(v, p):
        top = None if high is None else high(p)
        ok = _is_int(v) and v >= low and (top is None or v <= top)
        return None if ok else f"must be an integer >= {low}" + ("" if top is None else f" and <= {top}")
    return rule


def _rule(test, allowed):
    """Rule from a predicate ``test(value, params)`` and the text (or ``f(params)``) of what is allowed."""
    return lambda v, p: None if test(v, p) else (allowed(p) if callable(allowed) else allowed)


def _steps(p):
    return p["sampler"]["steps"]


def _skip_ok(k, p) -> bool:
    return _is_int(k) and 0 <= k < _steps(p)


# Every parameter a stage reads, with what it allows (choices of library names are passed by the stages:
# `validate(p, ..., choices={"sampler.scheduler": SCHEDULERS})`). A rule returns None or what is allowed.
RULES = {
    "seed": _integer(0),
    "skip": _rule(_skip_ok, lambda p: f"must be an integer with 0 <= skip < sampler.steps = {_steps(p)}"),
    "sampler.steps": _integer(1),
    "sampler.n": _integer(1),
    "sampler.batch_size": _integer(1),
    "sweep.skips": _rule(lambda v, p: isinstance(v, list) and 0 in v and len(set(v)) == len(v)
                         and all(_skip_ok(k, p) for k in v),
                         lambda p: f"must be a list of distinct integers in [0, sampler.steps = {_steps(p)}) "
                                   "that includes 0"),
    "sweep.baseline": _rule(lambda v, p: isinstance(v, bool), "must be true or false"),
    "sweep.tolerance": _rule(lambda v, p: isinstance(v, (int, float)) and 0 <= v < 1,
                             "must be a relative FID tolerance in [0, 1)"),
    "fid_ref.n": _integer(2),
    "fid.batch_size": _integer(1),
    "fid.bootstrap": _integer(10),
    "score_error.n": _integer(2),
    "score_error.n_sigmas": _integer(2),
    "score_error.threshold": _rule(lambda v, p: isinstance(v, float) and 0 < v < 1, "must be in (0, 1)"),
    "score_error.lowrank": _integer(0),
    "score_error.gmm_k": _integer(1),
    "score_error.delta_n": _integer(1),
    "train.steps": _integer(1),
    "train.batch_size": _integer(1),
    "train.warmup": _integer(0, lambda p: p["train"]["steps"]),
    "train.lr": _rule(lambda v, p: isinstance(v, float) and v > 0, "must be a positive float"),
    "train.ema_decay": _rule(lambda v, p: isinstance(v, (int, float)) and 0 <= v < 1, "must be in [0, 1)"),
    "train.snapshots": _rule(lambda v, p: isinstance(v, list) and all(isinstance(f, float) and 0 < f < 1 for f in v),
                             "must be a list of fractions of training in (0, 1)"),
}


def summary_outputs(parser) -> None:
    """The summary stages' inputs beside their records and their three outputs: floor, prediction, --table,
    --figure, --metrics (aggregate, pareto)."""
    parser.add_argument("floor", type=Path, help="the FID floor record (stages/fid_floor.py)")
    parser.add_argument("prediction", type=Path, help="the score-error record (stages/score_error.py)")
    parser.add_argument("--table", type=Path, required=True, help="CSV to write")
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")
    parser.add_argument("--metrics", type=Path, required=True, help="JSON summary to write")


def value(p: dict, key: str):
    """``p["a"]["b"]`` for ``key = "a.b"``."""
    for part in key.split("."):
        p = p[part]
    return p


def validate(p: dict, *keys: str, choices: dict | None = None) -> None:
    """Check ``keys`` by ``RULES`` and each ``choices`` key against its allowed names; exit with one line if bad."""
    for key, allowed in (choices or {}).items():
        check(value(p, key) in allowed, key, value(p, key), f"must be one of {', '.join(map(str, allowed))}")
    for key in keys:
        bad = RULES[key](value(p, key), p)
        if bad:
            fail(key, value(p, key), bad)


@contextlib.contextmanager
def params_errors(p: dict, **keys):
    """Turn a library ``ArgumentError`` for argument ``name`` into the one-line error for its key ``keys[name]``, or
    for ``(key, value)`` when the argument is one item of a list parameter."""
    try:
        yield
    except ArgumentError as err:
        if err.name not in keys:
            raise
        key, bad = keys[err.name] if isinstance(keys[err.name], tuple) else (keys[err.name], value(p, keys[err.name]))
        fail(key, bad, err.allowed)


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
