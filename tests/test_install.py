"""The installed command: packaged default config, ``--version``/``--write-config``, and a real
non-editable ``pip install`` run from a directory outside the checkout (issue 14)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from processor._version import __version__
from processor.resources import default_config_text
from processor.run.cli import EXIT_OK, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_config_is_the_top_level_config():
    """processor/data/config.yaml is a copy of ./config.yaml: edit both (cp config.yaml processor/data/)."""
    assert default_config_text() == (ROOT / "config.yaml").read_text("utf-8"), (
        "processor/data/config.yaml differs from config.yaml: run `cp config.yaml processor/data/`"
    )


def test_version_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip().endswith(__version__)


def test_write_config_writes_a_valid_commented_config(tmp_path, capsys):
    from processor.config import load_config

    target = tmp_path / "sub" / "my.yaml"
    assert main(["--write-config", str(target)]) == EXIT_OK
    assert target.read_text("utf-8") == (ROOT / "config.yaml").read_text("utf-8")
    assert f"--config {target}" in capsys.readouterr().out
    load_config(target)  # the written file validates as is
    # never overwrites an edited config
    target.write_text("# mine\n")
    assert main(["--write-config", str(target)]) == EXIT_USAGE
    assert "file exists" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"


def _source_tree(dest: Path) -> Path:
    """Copy what a clone would contain (tracked + untracked-not-ignored files) to ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """A fresh venv with the project pip-installed (non-editable) from a copy of the checkout.

    Dependencies come from this interpreter's site-packages, added as a plain path entry (no
    .pth processing there, so this environment's editable install of the project stays off).
    The build itself is a plain ``pip install .`` (isolated build: pip fetches the
    ``[build-system]`` requirements from the configured index).
    """
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the files of the checkout")
    base = tmp_path_factory.mktemp("install")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    vsite = Path(
        subprocess.run(
            [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (vsite / "_deps_from_project_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    src = _source_tree(base / "clone")
    pip = subprocess.run(
        [str(vpy), "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(src)  # nothing may depend on the source tree after the install
    work = base / "elsewhere"
    work.mkdir()
    return {"venv": venv, "work": work, "site": vsite}


def _run(installed: dict[str, Path], *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["BUMPNET_CACHE_DIR"] = str(installed["work"] / "cache")
    env["PATH"] = f"{installed['venv'] / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bumpnet-masses", *args],
        cwd=installed["work"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_installed_package_is_not_the_checkout(installed):
    vpy = installed["venv"] / "bin" / "python"
    res = subprocess.run(
        [str(vpy), "-c", "import processor, cluster; print(processor.__file__, cluster.__file__)"],
        cwd=installed["work"],
        capture_output=True,
        text=True,
        check=True,
    )
    for path in res.stdout.split():
        assert Path(path).is_relative_to(installed["site"]), res.stdout
    assert (installed["venv"] / "bin" / "bumpnet-masses").is_file()


@pytest.mark.slow
def test_installed_version_help_and_write_config(installed):
    res = _run(installed, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"bumpnet-masses {__version__}"

    res = _run(installed, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: bumpnet-masses")
    for option in ("--demo", "--pbs", "--write-config", "--version", "--offline"):
        assert option in res.stdout

    res = _run(installed, "--write-config", "cfg.yaml")
    assert res.returncode == 0, res.stderr
    assert (installed["work"] / "cfg.yaml").read_text("utf-8") == (ROOT / "config.yaml").read_text(
        "utf-8"
    )


@pytest.mark.slow
def test_installed_demo_runs_outside_the_checkout(installed):
    run_dir = installed["work"] / "demo_run"
    res = _run(
        installed, "--local", "--demo", "--workers", "2", "--run-dir", str(run_dir), timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "histograms written:" in res.stdout
    assert (run_dir / "histograms" / "bumpnet_histograms.root").is_file()


#: pip name -> conda-forge name where they differ
_CONDA_NAMES = {"matplotlib": "matplotlib-base"}


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_is_the_pip_environment():
    """environment.yml = dependencies + the test, notebook and xrootd extras, same bounds."""
    import yaml
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    pip_reqs = [
        Requirement(r)
        for r in [
            *project["dependencies"],
            *[
                r
                for extra in ("test", "notebook", "xrootd")
                for r in project["optional-dependencies"][extra]
            ],
        ]
    ]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {}
    for item in env:
        if isinstance(item, dict):
            for pip_item in item.get("pip", []):
                req = Requirement(pip_item)
                conda[req.name] = req.specifier
        elif not item.startswith(("python", "pip", "root")):
            req = Requirement(item.split("#")[0].strip())
            conda[req.name] = req.specifier
    want = {_CONDA_NAMES.get(r.name, r.name): r.specifier for r in pip_reqs}
    assert conda == want


def test_core_lower_bounds_cover_the_features_used():
    """The bounds the code needs (issue 14): a lower bound below these breaks at run time."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    need = {"coffea": "2025.11", "atlasopenmagic": "1.10", "awkward": "2.8.9", "uproot": "5.7.7"}
    reqs = {Requirement(r).name: Requirement(r) for r in _pyproject()["project"]["dependencies"]}
    for name, version in need.items():
        lows = [Version(s.version) for s in reqs[name].specifier if s.operator == ">="]
        assert lows and min(lows) >= Version(version), (name, str(reqs[name].specifier))
