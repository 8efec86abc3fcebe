"""The demo finds its bump (issue 13): the injected resonance lands inside BumpNet-ready ROI
histograms, the bump scan finds it there with global Z >= 3, and the background-only MC gives
no window with global Z >= 3 (the false-alarm check). One demo run, in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import uproot

from processor.output.scanning import scan_key
from processor.synthetic import DEMO_SIGNAL_MASS_GEV

ROOT = Path(__file__).resolve().parents[1]
DILEPTON = re.compile(r"^ROI_mass_(e0e1|m0m1)_cat_")
DIJET = re.compile(r"^ROI_mass_j0j1_cat_")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(demo_run) -> tuple[subprocess.CompletedProcess, Path, float]:
    """The session's demo run (tests/conftest.py)."""
    return demo_run.result, demo_run.run_dir, demo_run.seconds


def scanned(manifest: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [
        r
        for r in manifest["histograms"][group]["spectra"]
        if r.get("bump_scan") and "skipped" not in r["bump_scan"]
    ]


def finds_the_bump(row: dict[str, Any]) -> bool:
    scan = row["bump_scan"]
    lo, hi = scan["window_gev"] or (0.0, 0.0)
    return lo <= DEMO_SIGNAL_MASS_GEV <= hi and scan["global_z"] >= 3.0


def test_the_demo_run_succeeds_and_ends_with_the_finding(demo):
    res, run_dir, seconds = demo
    assert res.returncode == 0, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"injected resonance at 400 GeV: found in ROI_mass_\S+, window \[\d+, \d+\] GeV, "
        r"local Z = [\d.]+, global Z [=≥] [\d.]+",
        last,
    ), last
    assert "not a discovery claim" in res.stdout
    print(f"demo wall time {seconds:.0f} s; {last}")


@pytest.mark.parametrize("kind", [DILEPTON, DIJET], ids=["dilepton", "dijet"])
def test_the_resonance_is_found_inside_a_bumpnet_ready_roi(demo, kind):
    _, run_dir, _ = demo
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = [r for r in scanned(manifest, "data") if kind.match(r["roi_name"])]
    found = [r for r in rows if finds_the_bump(r) and not r["rejected"]]
    assert found, [(r["roi_name"], r["rejected"], r["bump_scan"]) for r in rows]
    for r in found:  # inside the ROI, not in the outlier tail
        assert r["lo"] < DEMO_SIGNAL_MASS_GEV < (r["split"] or r["hi"])


def test_background_only_mc_gives_no_window_with_global_z_3(demo):
    _, run_dir, _ = demo
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = scanned(manifest, "mc")
    assert len(rows) >= 20
    false_alarms = [
        (r["roi_name"], r["bump_scan"]["window_gev"], r["bump_scan"]["global_z"])
        for r in rows
        if r["bump_scan"]["global_z"] >= 3.0
    ]
    assert not false_alarms


def test_scan_records_and_zlr_histograms_read_back(demo):
    _, run_dir, _ = demo
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scan = manifest["bump_scan"]
    assert scan["enabled"] and scan["where"] == "on the Dask workers"
    assert scan["trials"]["data"]["n_spectra"] == len(scanned(manifest, "data"))
    data = manifest["histograms"]["data"]
    with uproot.open(run_dir / data["file"]) as f:
        keys = {k.split(";")[0] for k in f.keys()}
        for row in scanned(manifest, "data"):
            zlr = f[scan_key("zlr_", row["roi_name"])]
            roi = f[row["roi_name"]]
            assert list(zlr.axis().edges()) == list(roi.axis().edges())
            assert scan_key("scanbkg_", row["roi_name"]) in keys


def test_plots_only_remakes_the_spectra_with_the_scan(demo, demo_plots_only):
    _, run_dir, _ = demo
    pdf = run_dir / "plots" / "spectra.pdf"
    res = demo_plots_only  # deleted every plot, then --plots-only
    assert res.returncode == 0, res.stderr[-3000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 50_000
