"""notebooks/explore.ipynb: stored without outputs, and runs top to bottom in a fresh kernel.

The notebook is executed with nbclient in a temporary working directory, with a ``python3``
kernel spec that runs *this* interpreter (the project's venv), so the kernel imports the same
package as the tests. It writes its BumpNet ROOT file to ``$BUMPNET_NOTEBOOK_OUTPUT``; the demo
sample comes from the usual cache (``$BUMPNET_CACHE_DIR/demo`` or ``~/.cache/bumpnet-masses/demo``),
which is generated once, verified by sha256 and locked, so sharing it between runs is safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
import uproot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_REL = "notebooks/explore.ipynb"
NOTEBOOK = REPO / NOTEBOOK_REL
#: the whole notebook (demo cached) takes ~25 s on 2 cores; generous bounds for slow machines
CELL_TIMEOUT_S = 240
OUTPUT_FILE = "bumpnet_histograms.root"


def _assert_stripped(nb: nbformat.NotebookNode, where: str) -> None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], (
            f"{where}: code cell {i} has outputs; clear them before committing"
        )
        assert cell.execution_count is None, f"{where}: code cell {i} has an execution count"
    assert "widgets" not in nb.metadata, f"{where}: stored widget state; clear it before committing"


def _git_versions() -> list[tuple[str, str]]:
    """The notebook as committed (HEAD) and as staged (index), where git has it."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return []
    found = []
    for rev in (f"HEAD:{NOTEBOOK_REL}", f":{NOTEBOOK_REL}"):
        proc = subprocess.run(
            [git, "-C", str(REPO), "show", rev], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            found.append((rev, proc.stdout))
    return found


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    _assert_stripped(nb, str(NOTEBOOK))
    for rev, text in _git_versions():
        _assert_stripped(nbformat.reads(text, as_version=4), f"git {rev}")


def test_real_release_cell_is_off_by_default() -> None:
    """The network cell exists, is clearly marked, and is guarded by USE_RELEASE = False."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    headers = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and "Real release (needs network)" in c.source
    ]
    assert len(headers) == 1, "exactly one 'Real release (needs network)' section expected"
    guarded = cells[headers[0] + 1]
    assert guarded.cell_type == "code"
    assert re.search(r"^USE_RELEASE = False\b", guarded.source, re.M)
    assert "if USE_RELEASE:" in guarded.source
    assert "cleanup" in cells[-1].metadata.get("tags", []), "the last cell must close the cluster"


def _kernel_spec_for_this_python(jupyter_path: Path) -> None:
    """A ``python3`` kernel spec (found first via JUPYTER_PATH) that runs sys.executable."""
    spec_dir = jupyter_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bumpnet-masses test)",
        "language": "python",
        # this checkout's package first, whatever the venv's editable install points at
        "env": {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jupyter_path = tmp_path / "jupyter"
    _kernel_spec_for_this_python(jupyter_path)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    out_dir = tmp_path / "out"
    monkeypatch.setenv("BUMPNET_NOTEBOOK_OUTPUT", str(out_dir))
    workdir = tmp_path / "work"
    workdir.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.perf_counter()
    with client.setup_kernel():
        done = False
        try:
            for index, cell in enumerate(list(nb.cells)):
                client.execute_cell(cell, index)  # raises CellExecutionError on any error
            done = True
        finally:
            if not done:  # a cell failed: still run the clean-up cell(s) so no cluster leaks
                for index, cell in enumerate(list(nb.cells)):
                    if "cleanup" in cell.metadata.get("tags", []):
                        with contextlib.suppress(Exception):
                            client.execute_cell(cell, index)
        # the kernel ran the venv's interpreter
        probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    elapsed = time.perf_counter() - started
    printed = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream")
    assert Path(printed.strip()).resolve() == Path(sys.executable).resolve()

    text = "\n".join(
        o.get("text", "") + json.dumps(o.get("data", {}))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert re.search(r"Dask dashboard: http://127\.0\.0\.1:\d+/status", text)
    assert "cluster closed" in text
    assert "image/png" in text, "the notebook should draw spectra"

    root_file = out_dir / OUTPUT_FILE
    assert root_file.is_file(), f"the notebook did not write {root_file}"
    assert (out_dir / OUTPUT_FILE.replace(".root", "_mc.root")).is_file()
    with uproot.open(root_file) as f:
        keys = f.keys(cycle=False)
        roi = [k for k in keys if k.startswith("ROI_")]
        assert roi, f"{root_file} has no ROI_ histograms"
        grammar = r"ROI_mass_\w+?_cat_\d+ex_\d+mx_\d+bx_\d+jx_\d+Zx_\d+gx_\d+tx(_OS|_SS)?"
        assert all(re.fullmatch(grammar, k) for k in roi)
        assert all(f[k].classname == "TH1D" for k in roi)
        assert all(
            k.replace("ROI_", view, 1) in keys for k in roi for view in ("raw_", "rebinned_")
        )
        assert sum(f[k].values().sum() for k in roi) > 0
    assert "MC by process" in text  # the MC file's writer is printed
    print(f"notebook executed in {elapsed:.1f} s")
