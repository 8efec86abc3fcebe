"""Post-processing on hand-built histograms with hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest

from processor.config import validate_config
from processor.output.postprocess import (
    bumpnet_rejections,
    postprocess,
    process_spectrum,
    same_flavour_pair,
    unmatched_blacklist,
)
from processor.physics.histograms import MassGrid

GRID = MassGrid(5.0, 200.0)
FS = "2e_0m_0j_0g_0t_0b"


def filled(masses: dict[float, int], weighted: bool = False, weight: float = 1.0):
    h = GRID.make(weighted)
    for m, n in masses.items():
        if weighted:
            h.fill(mass=np.full(n, m), weight=np.full(n, weight))
        else:
            h.fill(mass=np.full(n, m))
    return h


def cfg(**pp):
    hc = pp.pop("hc", {})
    return validate_config(
        {"post_processing_task_config": pp, "histogram_creation_task_config": hc}
    )


SPECTRUM = {12: 3, 47: 10, 52: 5, 61: 2, 95: 1, 150: 4}


def test_peak_removal_and_outlier_split_by_hand():
    s = process_spectrum(FS, "e0e1", filled(SPECTRUM), GRID, cfg(), False)
    assert (s.lo, s.split, s.hi) == (40.0, 70.0, 155.0)
    assert s.removed["peak_removal"] == 3
    assert s.roi.axes[0].edges.tolist() == [40.0, 50.0, 60.0, 70.0]
    assert s.roi.values().tolist() == [10, 5, 2]
    assert s.outliers.axes[0].edges[0] == 70.0
    assert s.outliers.values().tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 4]
    assert s.roi_name == "ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"
    assert s.outlier_name == "outliers_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"
    assert s.names["rebinned"] == "rebinned_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"
    assert s.names["raw"] == "raw_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"


def test_outliers_merged_back_when_not_excluded():
    s = process_spectrum(
        FS, "e0e1", filled(SPECTRUM), GRID, cfg(hc={"exclude_outliers": False}), False
    )
    assert s.outliers is None
    assert s.roi.axes[0].edges[0] == 40.0
    assert s.roi.values().sum() == 10 + 5 + 2 + 1 + 4
    assert len(s.roi.values()) == 12  # 40 .. 160


def test_tallest_bin_tie_takes_the_rightmost():
    s = process_spectrum(FS, "e0e1", filled({22: 7, 33: 1, 64: 7, 71: 2}), GRID, cfg(), False)
    assert s.lo == 60.0
    assert s.removed["peak_removal"] == 8


def test_first_empty_bin_right_after_peak_means_no_split():
    s = process_spectrum(FS, "e0e1", filled({45: 10, 65: 3, 70: 1}), GRID, cfg(), False)
    assert s.split is None and s.outliers is None
    assert s.roi.values().tolist() == [10, 0, 3, 1]


def test_no_peak_removal_starts_at_first_filled_bin():
    s = process_spectrum(
        FS,
        "e0e1",
        filled({12: 3, 47: 10, 52: 5}),
        GRID,
        cfg(peak_removal=False, split_outliers=False),
        False,
    )
    assert s.lo == 10.0
    assert s.roi.values().sum() == 18


def test_z_peak_cut_only_for_same_flavour_pairs():
    masses = {91: 50, 121: 5, 131: 4}
    c = cfg(z_peak_cut=True)
    ee = process_spectrum(FS, "e0e1", filled(masses), GRID, c, False)
    assert ee.removed["z_peak_cut"] == 50
    assert ee.lo == 120.0
    em = process_spectrum("1e_1m_0j_0g_0t_0b", "e0m0", filled(masses), GRID, c, False)
    assert "z_peak_cut" not in em.removed
    assert em.lo == 90.0
    assert (
        same_flavour_pair("e0m0m1j0")
        and same_flavour_pair("e0e1")
        and not same_flavour_pair("e0m0j0j1")
    )


def test_max_mass_cut_and_overflow_counted():
    h = filled({45: 10, 55: 3, 150: 4, 250: 2})  # 250 is above the grid: overflow
    s = process_spectrum(
        FS, "e0e1", h, GRID, cfg(max_mass_cut=True, max_mass_gev=150, split_outliers=False), False
    )
    assert s.removed["max_mass_cut"] == 4
    assert s.removed["overflow"] == 2
    assert s.hi == 60.0
    assert s.roi.values().sum() == 13


def test_rebinning_sums_fine_bins_exactly():
    c = validate_config(
        {
            "histogram_creation_task_config": {"bin_width_gev": 20},
            "post_processing_task_config": {"split_outliers": False},
        }
    )
    s = process_spectrum(FS, "e0e1", filled(SPECTRUM), GRID, c, False)
    assert s.roi.axes[0].edges.tolist()[:3] == [40.0, 60.0, 80.0]
    assert s.roi.values().tolist()[:2] == [15, 2]
    assert "_width_" not in s.roi_name
    seed = c.model_copy(deep=True)
    seed.histogram_creation_task_config.naming = "seed"
    assert process_spectrum(FS, "e0e1", filled(SPECTRUM), GRID, seed, False).roi_name.endswith(
        "_width_20.0"
    )


def test_weighted_values_and_variances_propagate():
    s = process_spectrum(FS, "e0e1", filled(SPECTRUM, weighted=True, weight=0.5), GRID, cfg(), True)
    assert s.roi.values().tolist() == [5.0, 2.5, 1.0]
    assert s.roi.variances().tolist() == [2.5, 1.25, 0.5]


def test_min_events_per_fs_uses_global_totals():
    hists = {(FS, "e0e1"): filled(SPECTRUM), ("1e_1m_0j_0g_0t_0b", "e0m0"): filled(SPECTRUM)}
    res = postprocess(hists, {FS: 100, "1e_1m_0j_0g_0t_0b": 99}, GRID, cfg(), False)
    assert [s.combo for s in res.spectra] == ["e0e1"]
    assert res.dropped_fs == {"1e_1m_0j_0g_0t_0b": 99}


def test_bumpnet_rejections():
    h = filled(SPECTRUM)
    s = process_spectrum(FS, "e0e1", h, GRID, cfg(), False)
    assert bumpnet_rejections(s.roi) == ["3 bins < 25", "17 entries < 100"]
    assert s.rejected == ["3 bins < 25", "17 entries < 100"]
    assert s.verdict is not None and not s.verdict.accepted
    wide = MassGrid(5.0, 1000.0).make(False)
    wide.fill(mass=np.repeat(np.arange(100, 400, 10) + 2.0, np.arange(30, 0, -1)))  # falling
    s2 = process_spectrum(FS, "e0e1", wide, MassGrid(5.0, 1000.0), cfg(), False)
    assert bumpnet_rejections(s2.roi) == [] and s2.rejected == []


def test_loader_cuts_come_from_the_config():
    wide = MassGrid(5.0, 1000.0).make(False)
    wide.fill(mass=np.repeat(np.arange(100, 400, 10) + 2.0, np.arange(30, 0, -1)))
    c = cfg(hc={"bumpnet_cuts": {"min_num_bins": 40, "min_total_events": 1000}})
    s = process_spectrum(FS, "e0e1", wide, MassGrid(5.0, 1000.0), c, False)
    assert s.rejected == ["30 bins < 40", "465 entries < 1000"]


def test_views_raw_rebinned_and_roi_share_one_grid():
    s = process_spectrum(FS, "e0e1", filled(SPECTRUM), GRID, cfg(), False)
    # raw: the fine histogram as accumulated
    assert s.raw.values(flow=True).tolist() == filled(SPECTRUM).values(flow=True).tolist()
    # rebinned: everything (no peak removal, no split) from the first to the last filled bin,
    # in bins of the output width whose edges include the ROI's
    edges = s.rebinned.axes[0].edges
    assert (edges[0], edges[-1]) == (10.0, 160.0)
    assert np.allclose(np.diff(edges), 10.0)
    assert set(s.roi.axes[0].edges) <= set(edges)
    assert s.rebinned.values().tolist() == [3, 0, 0, 10, 5, 2, 0, 0, 1, 0, 0, 0, 0, 0, 4]
    assert s.rebinned.sum() == sum(SPECTRUM.values())


def test_rebinned_view_is_not_cut():
    s = process_spectrum(
        FS, "e0e1", filled({91: 50, 121: 5, 131: 4}), GRID, cfg(z_peak_cut=True), False
    )
    assert s.lo == 120.0
    assert s.rebinned.sum() == 59 and s.rebinned.axes[0].edges[0] == 90.0


def test_rebinned_start_when_the_roi_grid_reaches_below_zero():
    # peak bins of 10 GeV, output bins of 20 GeV: ROI starts at 30, the first filled bin is 5
    c = validate_config(
        {"histogram_creation_task_config": {"bin_width_gev": 20}, "post_processing_task_config": {}}
    )
    s = process_spectrum(FS, "e0e1", filled({7: 1, 33: 10, 41: 3}), GRID, c, False)
    assert s.lo == 30.0
    assert s.rebinned.axes[0].edges[0] == 0.0  # aligned to 0, not to the ROI (would be -10)
    assert s.rebinned.sum() == 14


def test_components_get_the_same_cuts_and_bins_and_add_up_to_the_total():
    a, b = (
        filled({12: 1, 47: 6, 52: 2, 150: 3}),
        filled({12: 2, 47: 4, 52: 3, 61: 2, 95: 1, 150: 1}),
    )
    total = a + b
    c = cfg(z_peak_cut=True, z_peak_cut_gev=20.0)
    s = process_spectrum(FS, "e0e1", total, GRID, c, False, components={"ttbar": a, "Zee": b})
    assert sorted(s.components) == ["Zee", "ttbar"]
    for view, h in s.views().items():
        parts = [comps[view] for comps in s.components.values()]
        for p in parts:
            assert np.array_equal(p.axes[0].edges, h.axes[0].edges), view
        np.testing.assert_array_equal(sum(p.values(flow=True) for p in parts), h.values(flow=True))
    assert s.components["ttbar"]["ROI"].values().tolist() == [6, 2, 0]
    assert s.components["Zee"]["outliers"].values().tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1]


def test_blacklisted_spectra_are_marked_with_or_without_prefix():
    hists = {(FS, "e0e1"): filled(SPECTRUM), ("1e_1m_0j_0g_0t_0b", "e0m0"): filled(SPECTRUM)}
    c = cfg(hc={"blacklist": ["ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx", "mass_x_cat_0ex"]})
    res = postprocess(hists, {FS: 100, "1e_1m_0j_0g_0t_0b": 100}, GRID, c, False)
    marked = {s.combo: s.blacklisted for s in res.spectra}
    assert marked == {"e0e1": True, "e0m0": False}
    assert res.blacklisted == ["ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx"]
    c2 = cfg(hc={"blacklist": ["mass_e0m0_cat_1ex_1mx_0bx_0jx_0Zx_0gx_0tx"]})
    res2 = postprocess(hists, {FS: 100, "1e_1m_0j_0g_0t_0b": 100}, GRID, c2, False)
    assert res2.blacklisted == ["ROI_mass_e0m0_cat_1ex_1mx_0bx_0jx_0Zx_0gx_0tx"]


def test_bumpnets_own_blacklist_entries_match_names_with_zero_photons_and_taus():
    # BumpNet's configs list names without gx/tx; ours carry _0gx_0tx when g and t are types
    m0j0, m0m1 = "0e_1m_1j_0g_0t_0b_0Z", "0e_2m_0j_0g_0t_0b_0Z_OS"
    m0j0g = "0e_1m_1j_1g_0t_0b_0Z"
    hists = {
        (m0j0, "m0j0"): filled(SPECTRUM),
        (m0m1, "m0m1"): filled(SPECTRUM),
        (m0j0g, "m0j0"): filled(SPECTRUM),
        ("0e_2m_0j_0g_0t_0b_0Z_SS", "m0m1"): filled(SPECTRUM),
    }
    counts = dict.fromkeys((fs for fs, _ in hists), 100)
    entries = ["mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx", "ROI_mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS"]
    res = postprocess(hists, counts, GRID, cfg(hc={"blacklist": entries}), False)
    assert sorted(res.blacklisted) == [
        "ROI_mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_0gx_0tx",
        "ROI_mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_0gx_0tx_OS",
    ]  # not the one with a photon (1gx), not the SS pair
    # with photons and taus not object types the names have no gx/tx: exact match, and an
    # entry spelling out _0gx_0tx matches too
    no_g_t = {"object_selection": {"types": ["e", "m", "j"]}}
    c = validate_config(
        {
            **no_g_t,
            "histogram_creation_task_config": {
                "blacklist": ["mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_0gx_0tx"]
            },
        }
    )
    res = postprocess({(m0j0, "m0j0"): filled(SPECTRUM)}, {m0j0: 100}, GRID, c, False)
    assert res.blacklisted == ["ROI_mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx"]
    assert unmatched_blacklist(
        entries + ["mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_1gx"],
        [{"blacklisted": ["ROI_mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_0gx_0tx"]}],
    ) == ["ROI_mass_m0m1_cat_0ex_2mx_0bx_0jx_0Zx_OS", "mass_m0j0_cat_0ex_1mx_0bx_1jx_0Zx_1gx"]


def test_os_and_ss_final_states_have_their_own_min_events_per_fs():
    os_fs, ss_fs = "2e_0m_0j_0g_0t_0b_0Z_OS", "2e_0m_0j_0g_0t_0b_0Z_SS"
    hists = {(os_fs, "e0e1"): filled(SPECTRUM), (ss_fs, "e0e1"): filled(SPECTRUM)}
    # 100 + 60 events of the same counts: OS passes the cut of 100 alone, SS does not
    res = postprocess(hists, {os_fs: 100, ss_fs: 60}, GRID, cfg(), False)
    assert [s.fs for s in res.spectra] == [os_fs]
    assert res.kept_fs == {os_fs: 100} and res.dropped_fs == {ss_fs: 60}
    assert res.spectra[0].roi_name == "ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx_OS"


def test_seed_blacklist_entries_may_omit_the_width():
    hists = {(FS, "e0e1"): filled(SPECTRUM)}
    c = cfg(hc={"naming": "seed", "blacklist": ["mass_e0e1_cat_2ex_0mx_0jx_0gx_0tx_0bx"]})
    res = postprocess(hists, {FS: 100}, GRID, c, False)
    assert res.blacklisted == ["ROI_mass_e0e1_cat_2ex_0mx_0jx_0gx_0tx_0bx_width_10.0"]


def test_collisions_ignore_blacklisted_names():
    hists = {(FS, "e0e1"): filled(SPECTRUM), ("2e_0m_0j_1g_0t_0b", "e0e1"): filled(SPECTRUM)}
    counts = {FS: 100, "2e_0m_0j_1g_0t_0b": 100}
    assert len(postprocess(hists, counts, GRID, cfg(), False).collisions) == 1
    c = cfg(hc={"blacklist": ["mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_1gx_0tx"]})
    assert postprocess(hists, counts, GRID, c, False).collisions == []


@pytest.mark.parametrize("width", [5.0, 10.0])
def test_roi_equals_fine_histogram_summed_over_its_range(width):
    rng = np.random.default_rng(1)
    h = GRID.make(False)
    h.fill(mass=rng.exponential(30, 5000) + 20)
    c = validate_config({"histogram_creation_task_config": {"bin_width_gev": width}})
    s = process_spectrum(FS, "e0e1", h, GRID, c, False)
    fine = h.values()
    edges = s.roi.axes[0].edges
    for lo, hi, v in zip(edges[:-1], edges[1:], s.roi.values(), strict=True):
        hi_eff = min(hi, s.split) if s.split else hi
        assert v == fine[round(lo / 5) : round(hi_eff / 5)].sum()
