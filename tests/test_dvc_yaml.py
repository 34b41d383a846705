"""dvc.yaml and study/dvc.yaml declare what each stage reads: every project module its script imports (transitively),
every file its command names, every parameter it validates. Stage scripts name no data file: paths come from `cmd`."""

import ast
import shlex
from pathlib import Path

import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = ("data/", "models/", "plots/", "metrics/", "study/")
# read by stages but not declared, because they never change results (batch sizes: round-off only)
UNDECLARED = {"sampler.batch_size", "fid.batch_size"}


def stages():
    with Repo(str(ROOT)) as repo:
        return list(repo.index.stages)


STAGES = {stage.addressing: stage for stage in stages()}


def script(stage) -> Path:
    return ROOT / next(token for token in shlex.split(stage.cmd) if token.startswith("stages/"))


def local_files(module: str) -> list[Path]:
    """The project files an import of ``module`` runs: ``hls.x`` -> hls/__init__.py and hls/x.py, ``common`` ->
    stages/common.py."""
    parts = module.split(".")
    if parts[0] != "hls":
        paths = [ROOT / "stages" / f"{parts[0]}.py"]
    else:
        paths = [ROOT / "hls/__init__.py"] + [ROOT.joinpath(*parts[:i]).with_suffix(".py") for i in
                                               range(2, len(parts) + 1)]
    return [path for path in paths if path.is_file()]


def _nodes(tree):
    """Every node of ``tree`` but those inside a module's ``__getattr__`` (imports there run on attribute access only,
    as ``hls.TeleportPipeline``'s)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not (isinstance(node, ast.FunctionDef) and node.name == "__getattr__"):
            todo += list(ast.iter_child_nodes(node))


def imported_files(path: Path) -> set[str]:
    """``path`` and every project module it imports, directly or through other project modules."""
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in _nodes(ast.parse(current.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            todo += [f for name in names for f in local_files(name)]
    return {p.relative_to(ROOT).as_posix() for p in seen}


def declared(stage) -> tuple[set[str], set[str], set[str]]:
    """(file deps, outs, param keys) of a stage; its params files count as file deps."""
    params = [d for d in stage.deps if isinstance(d, ParamsDependency)]
    deps = {d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)} | {d.def_path for d in params}
    return deps, {o.def_path for o in stage.outs}, {key for d in params for key in d.params}


def _keys(node) -> list[set[str]]:
    """The keys a call argument names, each as its set of alternatives: ``"a.b"`` -> [{"a.b"}],
    ``"a.b" if x else "c.d"`` -> [{"a.b", "c.d"}] (one branch runs), a dict -> one set per key."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [{node.value}]
    if isinstance(node, ast.IfExp):
        return [set().union(*_keys(node.body), *_keys(node.orelse))]
    if isinstance(node, ast.Dict):
        return [k for key in node.keys for k in _keys(key)]
    return []


def _rule_keys(node, tables: dict) -> list[set[str]]:
    """The keys of a ``validate`` rules argument: a table's name, ``A | B``, ``A if c else B`` (one of them runs)."""
    if isinstance(node, ast.Name):
        return tables.get(node.id, [])
    if isinstance(node, ast.BinOp):
        return _rule_keys(node.left, tables) + _rule_keys(node.right, tables)
    if isinstance(node, ast.IfExp):
        return [set().union(*_rule_keys(node.body, tables), *_rule_keys(node.orelse, tables))]
    return _keys(node)


def validated_keys(path: Path) -> list[set[str]]:
    """Parameter keys a stage script (or a stage script it imports) checks, each as its set of alternatives: those of
    the rules tables its ``validate(p, RULES)`` calls pass, and those ``params_errors(p, name="e.f")`` names."""
    keys = []
    for script in (ROOT / f for f in imported_files(path) if f.startswith("stages/") and f != "stages/common.py"):
        tree = ast.parse(script.read_text())
        tables = {target.id: _keys(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value, ast.Dict)}
        for node in ast.walk(tree):
            name = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
            if name == "validate" and len(node.args) > 1:
                keys += _rule_keys(node.args[1], tables)
            elif name == "params_errors":
                keys += [k for kw in node.keywords for k in _keys(kw.value)]
    return keys


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_imported_module_is_a_dependency(name):
    deps, _, _ = declared(STAGES[name])
    missing = imported_files(script(STAGES[name])) - deps
    assert not missing, f"stage {name} imports {sorted(missing)} without declaring them in dvc.yaml"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_path_in_the_command_is_declared_and_every_data_dependency_is_in_the_command(name):
    deps, outs, _ = declared(STAGES[name])
    paths = {t for t in shlex.split(STAGES[name].cmd) if t.startswith(DATA_FOLDERS)}
    assert paths <= deps | outs, f"stage {name}: {sorted(paths - deps - outs)} in cmd but not declared"
    # the model folder is read through the `model.source` parameter, not the command
    data_deps = {d for d in deps if d.startswith(DATA_FOLDERS) and not d.startswith("models/")}
    assert data_deps <= paths, f"stage {name}: declares {sorted(data_deps - paths)} that its cmd never passes"
    assert outs <= paths, f"stage {name}: writes {sorted(outs - paths)} that its cmd never names"


# stages/checkpoints.py is run by hand on experiments and reads their outputs by the names the stages give them
@pytest.mark.parametrize("path", sorted(set((ROOT / "stages").glob("*.py")) - {ROOT / "stages/checkpoints.py"}),
                         ids=lambda p: p.name)
def test_stage_scripts_name_no_data_file(path):
    literals = [n.value for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith(DATA_FOLDERS)]
    assert not literals, f"{path.name} names {literals}: take paths from the command line"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_validated_parameter_is_declared(name):
    _, _, params = declared(STAGES[name])

    def covered(key):
        return key in UNDECLARED or any(key == p or key.startswith(p + ".") for p in params)

    undeclared = [keys for keys in validated_keys(script(STAGES[name])) if not any(map(covered, keys))]
    assert not undeclared, f"stage {name} reads {undeclared} without declaring them as params"


def test_every_fid_stage_declares_the_inception_weights_and_backend():
    """A changed backend re-runs every Inception statistic, so no recorded FID silently changes meaning."""
    fid_stages = [name for name, stage in STAGES.items() if "hls/fid.py" in declared(stage)[0]]
    assert {"fid_ref", "fid_floor", "fid", "sweep_fid@0"} <= set(fid_stages)
    for name in fid_stages:
        assert {"fid.weights", "fid.backend"} <= declared(STAGES[name])[2], name


def test_the_checks_see_what_they_check():
    """The helpers above find real imports and keys (so the tests above cannot pass vacuously)."""
    assert {"stages/common.py", "hls/__init__.py", "hls/sampling.py", "hls/errors.py"} <= imported_files(
        ROOT / "stages/sample.py")
    keys = validated_keys(ROOT / "stages/sample.py")
    assert all(k in keys for k in ({"seed"}, {"model.source"}, {"sampler.steps"}, {"sweep.baseline", "skip"}))
    mixture_keys = validated_keys(ROOT / "stages/cell_mixture.py")
    assert {"mixtures.max_step"} in mixture_keys and {"fid.backend"} in mixture_keys and {"study.n"} in mixture_keys
    assert len(STAGES) >= 13 and "sweep@0" in STAGES and "study/dvc.yaml:pareto" in STAGES


def test_study_cells_depend_on_no_score_error_and_only_mixture_cells_on_the_mixtures():
    """A study cell's code is only what it runs: an edit to the score error or to the mixtures re-runs none of the
    Gaussian, plain and control cells."""
    cells = {name: declared(stage)[0] for name, stage in STAGES.items()
             if script(stage).name in ("cell.py", "cell_mixture.py")}  # the held-out stage runs every kind of cell
    assert len(cells) > 300
    for name, deps in cells.items():
        assert "hls/score_error.py" not in deps, name
        assert ("hls/mixture.py" in deps) == ("mixture@" in name), name
