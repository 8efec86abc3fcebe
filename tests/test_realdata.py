"""Real ATLAS Open Data files (../shared/data/atlas-opendata): every format through the processor."""

from __future__ import annotations

import numpy as np
import pytest
import uproot
from helpers import SHARED, run_processor

from processor.config import validate_config
from processor.opendata.formats import FORMATS, required_branches

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"real Open Data files not present at {SHARED}"),
]

SAMPLES = {
    "2025e": ("2025e-13tev-beta_2J2LMET30", "analysis", True),
    "2020e": ("2020e-13tev_4lep", "mini", False),
    "physlite": ("2024r-pp_physlite", "CollectionTree", True),
}


def _fileset(folder: str, tree: str, is_mc: bool) -> dict:
    files = sorted((SHARED / folder).glob("*.root"))
    assert files, folder
    return {folder: {"files": {str(f): tree for f in files}, "metadata": {"is_mc": is_mc}}}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_every_format_runs_and_the_cutflow_accounts_for_every_event(fmt):
    folder, tree, is_mc = SAMPLES[fmt]
    fileset = _fileset(folder, tree, is_mc)
    cfg = validate_config({"mass_calculation_task_config": {"min_events_per_fs": 0}})
    out, metrics = run_processor(fileset, cfg, chunksize=3000)
    entries = {f: uproot.open(f)[tree].num_entries for f in fileset[folder]["files"]}
    assert out["files"] == entries
    cf = out["cutflow"][folder]
    assert cf["events_read"] == sum(entries.values())
    assert (
        cf["events_read"]
        >= cf["after_count_limits"]
        >= cf["in_final_state"]
        >= cf["with_combination"]
        > 0
    )
    group = out["groups"]["mc" if is_mc else "data"]
    assert sum(group["fs_events"].values()) == cf["in_final_state"]
    assert out["formats"] == {fmt: sum(entries.values())}
    read = {c.rsplit("-", 1)[0] for c in metrics["columns"]}
    sel = cfg.object_selection
    assert read == set(required_branches(FORMATS[fmt], sel.active_types(), sel.cuts, sel.btagging))


def test_physlite_zee_peaks_at_the_z_mass():
    folder, tree, is_mc = SAMPLES["physlite"]
    cfg = validate_config(
        {
            "mass_calculation_task_config": {
                "min_events_per_fs": 0,
                "fine_bin_width_gev": 2.0,
                "mass_max_gev": 13000,
            }
        }
    )
    out, _ = run_processor(_fileset(folder, tree, is_mc), cfg)
    hists = out["groups"]["mc"]["hists"]
    ee = sum(h for (fs, combo), h in hists.items() if combo == "e0e1")
    assert ee.values().sum() >= 15
    peak = ee.axes[0].centers[np.argmax(ee.values())]
    assert 85 <= peak <= 97


def test_2020e_four_lepton_data_has_z_peaks_in_dileptons():
    folder, tree, is_mc = SAMPLES["2020e"]
    cfg = validate_config({"mass_calculation_task_config": {"min_events_per_fs": 0}})
    out, _ = run_processor(_fileset(folder, tree, is_mc), cfg)
    hists = out["groups"]["data"]["hists"]
    mm = sum(h for (fs, combo), h in hists.items() if combo in ("e0e1", "m0m1"))
    peak = mm.axes[0].centers[np.argmax(mm.values())]
    assert 85 <= peak <= 97
