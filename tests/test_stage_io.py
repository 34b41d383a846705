"""The stages' shared helpers: atomic outputs and one-line parameter errors."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stages"))
from common import RULES, atomic_path, fail, validate  # noqa: E402


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
    params = {"sampler": {"steps": 3, "scheduler": "ddim"}, "skip": 1}
    validate(params, "sampler.steps", "skip", choices={"sampler.scheduler": ("ddim", "euler")})
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(SystemExit) as exit_:
            validate({"sampler": {"steps": bad}}, "sampler.steps")
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"error: params.yaml: sampler.steps = {bad!r}: must be an integer >= 1\n"
    with pytest.raises(SystemExit):
        validate({**params, "skip": 3}, "skip")
    assert capsys.readouterr().err == (
        "error: params.yaml: skip = 3: must be an integer with 0 <= skip < sampler.steps = 3\n")
    with pytest.raises(SystemExit):
        validate(params, choices={"sampler.scheduler": ("euler",)})
    assert capsys.readouterr().err == "error: params.yaml: sampler.scheduler = 'ddim': must be one of euler\n"
    with pytest.raises(SystemExit):
        fail("skip", -1, "must be >= 0")
    assert capsys.readouterr().err.count("\n") == 1


def test_every_key_of_params_yaml_that_has_a_rule_passes_it():
    """The defaults satisfy the table (and the table names only keys that exist)."""
    import yaml

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    validate(params, *RULES)
