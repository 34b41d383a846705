"""The stages' shared helpers: atomic outputs and one-line parameter errors."""

import importlib
from pathlib import Path

import pytest
import yaml

from common import atomic_path, choice, fail, integer, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("directory", [False, True])
def test_a_failed_write_leaves_the_old_output_and_no_temp(tmp_path, directory):
    out = tmp_path / "out"
    with atomic_path(out, directory=directory) as tmp:
        (tmp / "a").write_text("old") if directory else tmp.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out, directory=directory) as tmp:
            (tmp / "a").write_text("half") if directory else tmp.write_text("half")
            raise KeyboardInterrupt
    assert ((out / "a") if directory else out).read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_successful_write_replaces_a_folder_whole(tmp_path):
    out = tmp_path / "out"
    for names in (["a", "b"], ["c"]):
        with atomic_path(out, directory=True) as tmp:
            for name in names:
                (tmp / name).write_text(name)
    assert sorted(p.name for p in out.iterdir()) == ["c"]


def test_errors_name_key_value_and_range(capsys):
    steps = {"sampler.steps": integer(1)}
    rules = steps | {"skip": integer(0, lambda p: p["sampler"]["steps"] - 1),
                     "sampler.scheduler": choice(("ddim", "euler"))}
    params = {"sampler": {"steps": 3, "scheduler": "ddim"}, "skip": 1}
    validate(params, rules)
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(SystemExit) as exit_:
            validate({"sampler": {"steps": bad}}, steps)
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"error: params.yaml: sampler.steps = {bad!r}: must be an integer >= 1\n"
    with pytest.raises(SystemExit):
        validate({**params, "skip": 3}, rules)
    assert capsys.readouterr().err == "error: params.yaml: skip = 3: must be an integer >= 0 and <= 2\n"
    with pytest.raises(SystemExit):
        validate({**params, "sampler": {"steps": 3, "scheduler": "lms"}}, rules, "study/params.yaml")
    expected = "error: study/params.yaml: sampler.scheduler = 'lms': must be one of ddim, euler\n"
    assert capsys.readouterr().err == expected
    with pytest.raises(SystemExit):
        fail("skip", -1, "must be >= 0")
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("script", sorted(p.stem for p in (ROOT / "stages").glob("*.py")))
def test_the_committed_params_pass_every_stage_rule(script):
    """Each stage's rules tables accept the committed params: RULES params.yaml, GRID_RULES both params.yaml and the
    study's params file (the slice's axes and the grid's), STUDY_RULES the study's params file (the grid only): the
    defaults are valid, and every rule names a key that exists."""
    module = importlib.import_module(script)
    files = {"GRID_RULES": ["params.yaml", "study/params.yaml"], "STUDY_RULES": ["study/params.yaml"]}
    for name in dir(module):
        if name.endswith("RULES"):
            for file in files.get(name, ["params.yaml"]):
                validate(yaml.safe_load((ROOT / file).read_text()), getattr(module, name), file)
