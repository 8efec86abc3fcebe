"""Issue 9's "done when" rules, checked on the source: module sizes, the layers, the public API,
one home for each fact (releases, orders, exit codes, atomic writes, the cache rule) and one base
class for every error. Reads the source with ``ast``; imports only light modules."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant that is not a docstring."""
    tree = _tree(path)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _under(path: Path, *prefixes: str) -> bool:
    return any(_rel(path).startswith(p) for p in prefixes)


# -- sizes and layers ------------------------------------------------------------------------------


def test_no_module_under_processor_is_longer_than_700_lines():
    long = {
        _rel(p): n
        for p in _modules("processor")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700
    }
    assert not long, f"split these modules (issue 9: at most 700 lines): {long}"


LAYER_RULES = {
    # package: imports of processor.* it must not make
    "cluster": ("processor",),
    "processor/physics": (
        "processor.opendata",
        "processor.run",
        "processor.output",
        "processor.synthetic",
        "processor.fsutil",
    ),
    "processor/opendata": ("processor.run", "processor.output", "processor.synthetic"),
    "processor/output": ("processor.run", "processor.synthetic"),
    "processor/synthetic": (
        "processor.opendata",
        "processor.physics",
        "processor.run",
        "processor.output",
        "processor.config",
    ),
}


@pytest.mark.parametrize("package", sorted(LAYER_RULES))
def test_layers_import_only_downwards(package):
    forbidden = LAYER_RULES[package]
    bad = {
        _rel(p): sorted(m for m in _imports(p) if m.startswith(forbidden))
        for p in _modules(package)
    }
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{package} must not import {forbidden}: {bad}"


def test_physics_imports_only_config_and_numeric_libraries():
    allowed_third_party = {"numpy", "awkward", "hist", "vector", "numba"}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = {}
    for p in _modules("processor/physics"):
        for m in _imports(p):
            top = m.split(".")[0]
            if top in stdlib or top in allowed_third_party:
                continue
            if m == "processor.config" or m.startswith("processor.physics"):
                continue
            bad.setdefault(_rel(p), []).append(m)
    assert not bad, bad


# -- the public API --------------------------------------------------------------------------------


def _notebook_code() -> str:
    nb = json.loads((ROOT / "notebooks" / "explore.ipynb").read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    # IPython magics and shell escapes are not Python
    return "\n".join(
        line
        for cell in cells
        for line in cell.splitlines()
        if not line.lstrip().startswith(("%", "!"))
    )


def test_notebook_uses_only_the_public_api():
    import cluster
    import processor

    tree = ast.parse(_notebook_code())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in ("processor", "cluster"):
                    assert a.name == top, f"the notebook imports {a.name}: use {top}'s public names"
                    aliases[a.asname or a.name] = top
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in ("processor", "cluster"):
                assert node.module == top, f"the notebook imports from {node.module}"
                public = {"processor": processor, "cluster": cluster}[top].__all__
                assert all(a.name in public for a in node.names), ast.unparse(node)
    used = {
        (aliases[node.value.id], node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
    }
    public = {"processor": set(processor.__all__), "cluster": set(cluster.__all__)}
    private = sorted(
        f"{pkg}.{name}"
        for pkg, name in used
        if name not in public[pkg] and not name.startswith("__")  # __file__, __version__
    )
    assert not private, f"the notebook uses names outside __all__: {private}"


def test_public_api_resolves_lazily():
    code = (
        "import sys, processor\n"
        "heavy = [m for m in ('coffea', 'dask', 'distributed', 'uproot', 'matplotlib') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in processor.__all__ if getattr(processor, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]


# -- one home for each fact ------------------------------------------------------------------------


def test_release_names_are_written_in_one_module():
    from processor.opendata.releases import RELEASES

    names = set(RELEASES)
    found = {
        f"{_rel(p)}:{line}": value
        for p in _modules("processor", "cluster")
        if not _under(p, "processor/opendata/releases.py", "processor/synthetic/")
        for line, value in _string_constants(p)
        if value in names
    }
    assert not found, f"release names belong in processor/opendata/releases.py: {found}"


def test_type_orders_are_written_once():
    from processor import config

    orders = {config.COMBO_ORDER, config.CATEGORY_ORDER, config.FS_ORDER, config.CHARGE_TAGS}
    found = []
    for p in _modules("processor"):
        if _under(p, "processor/config.py", "processor/synthetic/"):
            continue
        for node in ast.walk(_tree(p)):
            if (
                isinstance(node, ast.Tuple)
                and all(isinstance(e, ast.Constant) for e in node.elts)
                and tuple(e.value for e in node.elts) in orders
            ):
                found.append(f"{_rel(p)}:{node.lineno}")
    assert not found, f"use processor.config's COMBO_ORDER/CATEGORY_ORDER/...: {found}"


def test_exit_codes_are_defined_only_by_the_cli():
    found = []
    for p in _modules("processor", "cluster"):
        for node in ast.walk(_tree(p)):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [
                    n.id
                    for t in targets
                    for n in ast.walk(t)
                    if isinstance(n, ast.Name) and n.ctx.__class__ is ast.Store
                ]
                if any(n.startswith("EXIT_") for n in names):
                    found.append(_rel(p))
    assert set(found) == {"processor/run/cli.py"}, found


#: renames that are not "write a file atomically": the resumable download's kept ``.part`` file
#: and the swap of a whole plots/ directory
RENAME_ALLOWED = {
    "processor/fsutil.py",
    "processor/opendata/download.py",
    "processor/output/plots.py",
}


def test_one_atomic_write_helper():
    found = []
    for p in _modules("processor", "cluster"):
        if _rel(p) in RENAME_ALLOWED:
            continue
        for node in ast.walk(_tree(p)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("replace", "rename")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"
            ):
                found.append(f"{_rel(p)}:{node.lineno}")
    assert not found, f"write through processor.fsutil.atomic_path / atomic_write_*: {found}"


def test_one_cache_directory_rule():
    """Only fsutil.cache_root reads the cache environment (metadata.py follows atlasopenmagic's
    own rule for atlasopenmagic's cache)."""
    found = [
        f"{_rel(p)}:{line}"
        for p in _modules("processor", "cluster")
        if _rel(p) != "processor/fsutil.py"
        for line, value in _string_constants(p)
        if value == "BUMPNET_CACHE_DIR"
        or (value == "XDG_CACHE_HOME" and _rel(p) != "processor/opendata/metadata.py")
    ]
    assert not found, f"use processor.fsutil.cache_root(): {found}"


# -- one base for every error ----------------------------------------------------------------------


def test_every_exception_class_shares_one_base():
    from processor.errors import BumpnetError

    #: a signal, not an error: a KeyboardInterrupt so that ``except Exception`` never swallows it
    not_errors = {"processor.errors.RunInterrupted"}

    def looks_like_an_exception(node: ast.ClassDef) -> bool:
        bases = [ast.unparse(b) for b in node.bases]
        return any(w in b for b in bases for w in ("Error", "Exception", "Interrupt"))

    classes = [
        (_module_name(p), node.name)
        for p in _modules("processor", "cluster")
        for node in ast.walk(_tree(p))
        if isinstance(node, ast.ClassDef)
        and not node.name.startswith("_")
        and looks_like_an_exception(node)
    ]
    bad = []
    n_errors = 0
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            continue
        n_errors += 1
        if f"{module}.{name}" not in not_errors and not issubclass(cls, BumpnetError):
            bad.append(f"{module}.{name}")
    assert n_errors >= 10  # the scan found the package's errors
    assert not bad, f"derive these from processor.errors.BumpnetError: {bad}"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_permissions_the_umask_gives(tmp_path, mask):
    """mkstemp's temporary is 0600; the final file is what a plain open would make."""
    from processor.fsutil import atomic_write_text, current_umask

    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_text(tmp_path / "f.txt", "x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_path_suffix_fsync_and_cleanup(tmp_path):
    """The helper every writer uses: the temporary sibling keeps ``suffix`` (atlasopenmagic picks
    the format from it), is hidden (leading dot), and never survives, whether the block fails or
    not."""
    from processor.fsutil import atomic_path

    target = tmp_path / "metadata-x.json"
    with atomic_path(target, suffix=".tmp.json", fsync=False) as tmp:
        assert (
            tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp.json")
        )
        tmp.write_text("{}")
    assert target.read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "{}"  # the old file stays
    assert [p.name for p in tmp_path.iterdir()] == ["metadata-x.json"]
