"""Post-processing on hand-built histograms with hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest

from processor.config import validate_config
from processor.output.naming import bumpnet_view, outlier_name, parse_raw_name, raw_name, roi_name
from processor.output.postprocess import (
    bumpnet_rejections,
    category_collisions,
    postprocess,
    process_spectrum,
    same_flavour_pair,
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
    assert s.roi_name == "ROI_mass_e0e1_cat_2ex_0mx_0jx_0gx_0tx_0bx_width_10.0"
    assert s.outlier_name == "outliers_mass_e0e1_cat_2ex_0mx_0jx_0gx_0tx_0bx_width_10.0"


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
    assert s.roi_name.endswith("_width_20.0")


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
    wide = MassGrid(5.0, 1000.0).make(False)
    wide.fill(mass=np.repeat(np.arange(100, 400, 10) + 2.0, np.arange(30, 0, -1)))  # falling
    s2 = process_spectrum(FS, "e0e1", wide, MassGrid(5.0, 1000.0), cfg(), False)
    assert bumpnet_rejections(s2.roi) == []


def test_names_and_bumpnet_parser_collisions():
    assert (
        roi_name("2e_0m_1j_0g_0t_0b", "e0e1j0", 10)
        == "ROI_mass_e0e1j0_cat_2ex_0mx_1jx_0gx_0tx_0bx_width_10.0"
    )
    assert (
        roi_name("2e_0m_1j_0g_0t_0b", "e0e1j0", 10, bumpnet=False)
        == "ROI_2e_0m_1j_0g_0t_0b_e0e1j0_width_10.0"
    )
    assert outlier_name("2e_0m_1j_0g_0t_0b", "e0e1j0", 2.5).endswith("_width_2.5")
    assert raw_name("1e_1m_0j_0g_0t_1b", "e0m0b0") == "raw_mass_e0m0b0_cat_1ex_1mx_0jx_0gx_0tx_1bx"
    assert parse_raw_name("raw_mass_e0m0b0_cat_1ex_1mx_0jx_0gx_0tx_1bx;1") == (
        "1e_1m_0j_0g_0t_1b_0Z",
        "e0m0b0",
    )
    # Z counts and charge tags survive the raw file's names (interim grammar, issue 10)
    for fs, combo in (
        ("0e_1m_1j_0g_0t_0b_1Z", "m0j0Z0"),
        ("2e_0m_0j_0g_0t_0b_0Z_SS", "e0e1"),
        ("3e_0m_0j_0g_0t_0b_0Z", "e0e2_OS"),
    ):
        assert parse_raw_name(raw_name(fs, combo)) == (fs, combo)
    assert raw_name("0e_1m_1j_0g_0t_0b_1Z", "m0j0Z0").endswith("_cat_0ex_1mx_1jx_0gx_0tx_0bx_1Zx")
    a = roi_name("2e_0m_1j_0g_0t_0b", "e0e1", 10)
    b = roi_name("2e_0m_1j_1g_0t_0b", "e0e1", 10)
    c = roi_name("2e_0m_1j_0g_2t_0b", "e0e1", 10)
    d = roi_name("2e_0m_2j_0g_0t_0b", "e0e1", 10)
    assert bumpnet_view(a) == ("e0e1", (("ex", 2), ("mx", 0), ("jx", 1), ("bx", 0)))
    assert category_collisions([a, b, c, d]) == [sorted([a, b, c])]


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
