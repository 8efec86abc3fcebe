"""BumpNet's loader, emulated: its trailing-bin trim and cuts, on arrays, on BumpNet's own
example file, and the readiness table the manifest and the notebook share."""

from __future__ import annotations

from pathlib import Path

import hist
import numpy as np
import pytest
import uproot

from processor.config import BumpNetCuts
from processor.output.readiness import (
    SM_COMPONENTS,
    bumpnet_classes,
    load_like_bumpnet,
    loader_name,
    loader_verdict,
    readiness_records,
    readiness_rows,
    reason_counts,
)

BUMPNET_FILE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "bumpnet" / "rebinned_NOSYS.root"
)
CUTS = BumpNetCuts()


def test_trailing_bins_below_threshold_are_trimmed_before_the_bin_count():
    values = np.full(30, 10.0)
    values[-8:] = 0.3  # below 0.35
    v = loader_verdict(values, CUTS)
    assert not v.accepted
    assert v.n_bins == 22 and v.stop == 22
    assert v.reasons == ("22 bins < 25 (8 trailing bins ≤ 0.35 trimmed)",)
    assert v.codes == ("too_few_bins",)
    assert v.entries == 220.0  # the trimmed bins' 2.4 events do not count
    # the same histogram without the low tail passes: the trim made the difference
    assert loader_verdict(np.full(30, 10.0), CUTS).accepted


def test_a_bin_exactly_at_the_threshold_is_trimmed_too():
    values = np.full(26, 10.0)
    values[-1] = 0.35  # not above 0.35
    assert loader_verdict(values, CUTS).n_bins == 25
    values[-2] = 0.35
    assert not loader_verdict(values, CUTS).accepted


def test_entries_first_bin_and_empty_histograms():
    low = np.full(30, 3.0)
    assert loader_verdict(low, CUTS).reasons == ("90 entries < 100",)
    first_empty = np.full(30, 5.0)
    first_empty[0] = 0.0
    v = loader_verdict(first_empty, CUTS)
    assert v.reasons == ("first bin is not > 0",) and v.codes == ("first_bin_empty",)
    v = loader_verdict(np.full(30, 0.2), CUTS)
    assert not v.accepted and v.codes == ("no_bin_above",)
    assert v.reasons == ("no bin above 0.35 events",)


def test_skipped_bins_is_a_fraction_of_the_bins_as_in_bumpnet():
    values = np.concatenate([[0.0, 0.0, 0.0], np.full(37, 10.0)])
    assert not loader_verdict(values, CUTS).accepted  # first bin empty
    cuts = BumpNetCuts(skipped_bins=0.1)  # int(0.1 * 40) = 4 bins skipped
    v = loader_verdict(values, cuts)
    assert v.accepted and (v.start, v.n_bins) == (4, 36)


def test_configurable_thresholds():
    values = np.full(20, 4.0)
    assert not loader_verdict(values, CUTS).accepted
    assert loader_verdict(values, BumpNetCuts(min_num_bins=20, min_total_events=80)).accepted
    values[-5:] = 1.0
    assert loader_verdict(values, BumpNetCuts(min_num_bins=20, min_total_events=0)).accepted
    assert not loader_verdict(
        values, BumpNetCuts(min_num_bins=20, min_total_events=0, min_num_events=1.0)
    ).accepted


def test_loader_name_strips_roi_and_rebinned_anywhere_as_bumpnet_does():
    assert (
        loader_name("ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx;1")
        == "mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx"
    )
    assert loader_name("rebinned_mass_e0e1_cat_2ex") == "mass_e0e1_cat_2ex"


def _th1(values, lo=0.0, width=10.0):
    h = hist.Hist(hist.axis.Regular(len(values), lo, lo + width * len(values)))
    h.view()[:] = values
    return h


def test_load_like_bumpnet_on_a_file_of_th1s(tmp_path):
    good = np.linspace(100, 10, 30)
    path = tmp_path / "f.root"
    with uproot.recreate(path) as f:
        f["ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx"] = _th1(good)
        f["rebinned_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx"] = _th1(good)  # never read
        f["outliers_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx"] = _th1(good)  # never read
        f["ROI_mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS"] = _th1(good)
        f["ROI_mass_e0m0_cat_1ex_1mx_0bx_0jx_0Zx"] = _th1(np.full(10, 1.0))
    loaded = {
        h.name: h for h in load_like_bumpnet(path, CUTS, ["mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS"])
    }
    assert sorted(loaded) == [
        "mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx",
        "mass_e0m0_cat_1ex_1mx_0bx_0jx_0Zx",
        "mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS",
    ]
    assert loaded["mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx"].verdict.accepted
    assert loaded["mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS"].verdict.codes == ("blacklisted",)
    assert loaded["mass_e0m0_cat_1ex_1mx_0bx_0jx_0Zx"].verdict.codes == (
        "too_few_bins",
        "too_few_entries",
    )


@pytest.mark.skipif(not BUMPNET_FILE.is_file(), reason="../shared/data/bumpnet not available")
def test_load_like_bumpnet_on_bumpnets_own_example():
    loaded = load_like_bumpnet(BUMPNET_FILE)
    assert [h.name for h in loaded] == ["mass_m0b0b1_cat_0ex_1mx_2bx_0jx_0Zx"]
    h = loaded[0]
    assert h.key == "ROI_mass_m0b0b1_cat_0ex_1mx_2bx_0jx_0Zx"
    assert h.components == ["ttbar_roi"]
    assert "ttbar_roi" in SM_COMPONENTS
    assert np.all(h.bsm == 0)  # ttbar is SM
    assert len(h.values) == 6 and h.edges[0] == pytest.approx(222.4)
    assert h.verdict.accepted  # without cuts: first bin > 0
    with_cuts = load_like_bumpnet(BUMPNET_FILE, CUTS)[0].verdict
    # contents 1.37, 0, 0.58, 0, 0.22, 0.34: the last three are trimmed (after 0.58)
    assert (with_cuts.accepted, with_cuts.n_bins) == (False, 3)
    assert with_cuts.reasons[0] == "3 bins < 25 (3 trailing bins ≤ 0.35 trimmed)"
    assert with_cuts.codes == ("too_few_bins", "too_few_entries")


def test_bumpnet_classes():
    assert bumpnet_classes(["ttbar", "Zee", "ggH125_ZZ4lep", "ttbar"]) == {
        "bumpnet_sm": ["Zee", "ttbar"],
        "bumpnet_bsm": ["ggH125_ZZ4lep"],
    }


def test_readiness_rows_from_spectra():
    from processor.config import validate_config
    from processor.output.postprocess import postprocess
    from processor.physics.histograms import MassGrid

    grid = MassGrid(5.0, 1000.0)
    wide, narrow = grid.make(False), grid.make(False)
    wide.fill(mass=np.repeat(np.arange(100, 400, 10) + 2.0, np.arange(30, 0, -1)))
    narrow.fill(mass=np.repeat([102.0, 112.0], [50, 60]))
    cfg = validate_config(
        {
            "histogram_creation_task_config": {
                "blacklist": ["mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_0gx_0tx"]
            }
        }
    )
    hists = {
        ("2e_0m_0j_0g_0t_0b", "e0e1"): wide,
        ("0e_2m_0j_0g_0t_0b", "m0m1"): wide,
        ("1e_1m_0j_0g_0t_0b", "e0m0"): narrow,
    }
    res = postprocess(
        hists,
        dict.fromkeys(["2e_0m_0j_0g_0t_0b", "0e_2m_0j_0g_0t_0b", "1e_1m_0j_0g_0t_0b"], 500),
        grid,
        cfg,
        False,
    )
    rows = {r.combo: r for r in readiness_rows(res.spectra)}
    assert rows["e0e1"].accepted and rows["e0e1"].reasons == []
    assert rows["m0m1"].blacklisted and not rows["m0m1"].accepted
    assert rows["m0m1"].codes == ["blacklisted"]
    assert rows["e0m0"].codes == ["too_few_bins", "too_few_entries"]
    assert rows["e0m0"].bins_after_trim == 1 and rows["e0m0"].entries_after_trim == 60
    assert rows["e0e1"].loader_name == "mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"
    assert reason_counts(rows.values()) == {
        "blacklisted": 1,
        "too_few_bins": 1,
        "too_few_entries": 1,
    }
    records = readiness_records(res.spectra)
    assert [r["combo"] for r in records] == [s.combo for s in res.spectra]
    assert set(records[0]) >= {"name", "accepted", "reasons", "bins_after_trim", "loader_name"}
