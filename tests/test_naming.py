"""Histogram names: BumpNet's grammar, the seed's names, plain names, raw-file names, and how
BumpNet's own parsers (emulated) read every name we write."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.config import validate_config
from processor.output.naming import (
    BUMPNET_COMBO_ORDER,
    NameStyle,
    bumpnet_combination,
    fs_count_name,
    name_tag,
    outlier_name,
    parse_final_state,
    parse_fs_count_name,
    parse_raw_name,
    raw_name,
    roi_name,
    spectrum_name,
    split_combination,
    strip_view,
    view_name,
)
from processor.output.readiness import category_collisions, loader_name, parse_bumpnet_name
from processor.physics.finalstates import fs_label

BUMPNET = NameStyle()
NO_G_T = NameStyle(photons=False, taus=False)
SEED = NameStyle(naming="seed")


@pytest.mark.parametrize(
    ("fs", "combo", "style", "expected"),
    [
        # BumpNet's own examples (DESIGN §9), photons and taus not active types
        ("0e_1m_0j_0g_0t_0b_1Z", "m0Z0", NO_G_T, "mass_m0Z0_cat_0ex_1mx_0bx_0jx_1Zx"),
        ("1e_1m_1j_0g_0t_0b_0Z_SS", "e0m0", NO_G_T, "mass_e0m0_cat_1ex_1mx_0bx_1jx_0Zx_SS"),
        ("2e_0m_1j_0g_0t_1b_0Z_OS", "e0e1", NO_G_T, "mass_e0e1_cat_2ex_0mx_1bx_1jx_0Zx_OS"),
        ("0e_0m_2j_0g_0t_0b_1Z", "j1Z0", NO_G_T, "mass_j1Z0_cat_0ex_0mx_0bx_2jx_1Zx"),
        ("0e_1m_0j_0g_0t_2b_0Z", "m0b0b1", NO_G_T, "mass_m0b0b1_cat_0ex_1mx_2bx_0jx_0Zx"),
        # three-lepton pair masses: the combination's tag ends the name
        ("3e_0m_0j_0g_0t_0b_0Z", "e0e2_OS", NO_G_T, "mass_e0e2_cat_3ex_0mx_0bx_0jx_0Zx_OS"),
        (
            "3e_0m_0j_0g_0t_0b_0Z",
            "e1e2_SS",
            BUMPNET,
            "mass_e1e2_cat_3ex_0mx_0bx_0jx_0Zx_0gx_0tx_SS",
        ),
        # gx/tx when photons/taus are active types, before the tag
        (
            "2e_0m_1j_1g_2t_0b_0Z_OS",
            "e0e1g0",
            BUMPNET,
            "mass_e0e1g0_cat_2ex_0mx_0bx_1jx_0Zx_1gx_2tx_OS",
        ),
        (
            "2e_0m_1j_1g_0t_0b",
            "e0e1g0",
            NameStyle(taus=False),
            "mass_e0e1g0_cat_2ex_0mx_0bx_1jx_0Zx_1gx",
        ),
        # today's label (no Z part, no tag) means 0 Z
        ("2e_0m_1j_0g_0t_0b", "e0e1j0", BUMPNET, "mass_e0e1j0_cat_2ex_0mx_0bx_1jx_0Zx_0gx_0tx"),
        # combination labels in BumpNet's order e, m, j, b, Z, g, t
        (
            "1e_0m_1j_1g_1t_1b_1Z",
            "e0j0b0g0t0Z0",
            BUMPNET,
            "mass_e0j0b0Z0g0t0_cat_1ex_0mx_1bx_1jx_1Zx_1gx_1tx",
        ),
    ],
)
def test_bumpnet_grammar(fs, combo, style, expected):
    assert spectrum_name(fs, combo, style) == expected
    assert "_width_" not in expected


def test_three_views_and_the_outlier_name():
    fs, combo = "2e_0m_1j_0g_0t_0b_0Z", "e0e1j0"
    base = "mass_e0e1j0_cat_2ex_0mx_0bx_1jx_0Zx_0gx_0tx"
    assert [
        view_name(v, spectrum_name(fs, combo, BUMPNET)) for v in ("raw", "rebinned", "ROI")
    ] == [
        f"raw_{base}",
        f"rebinned_{base}",
        f"ROI_{base}",
    ]
    assert roi_name(fs, combo) == f"ROI_{base}"
    assert outlier_name(fs, combo) == f"outliers_{base}"
    assert not outlier_name(fs, combo).startswith("ROI")  # BumpNet's loader never reads it
    assert strip_view(f"rebinned_{base};1") == base
    with pytest.raises(ValueError, match="unknown view 'roi'"):
        view_name("roi", base)


@pytest.mark.parametrize("fs", ["2e_0m_1j_0g_0t_0b", "2e_0m_1j_0g_0t_0b_0Z"])
def test_seed_naming_reproduces_todays_names(fs):
    assert roi_name(fs, "e0e1j0", SEED) == "ROI_mass_e0e1j0_cat_2ex_0mx_1jx_0gx_0tx_0bx_width_10.0"
    assert (
        outlier_name(fs, "e0e1j0", NameStyle(naming="seed", width=2.5))
        == "outliers_mass_e0e1j0_cat_2ex_0mx_1jx_0gx_0tx_0bx_width_2.5"
    )
    # seed names list all six counts whatever the active types
    assert roi_name(fs, "e0e1j0", NameStyle(naming="seed", photons=False, taus=False)).endswith(
        "_0gx_0tx_0bx_width_10.0"
    )


def test_seed_naming_with_z_and_tags_stays_unique():
    assert (
        roi_name("2e_0m_1j_0g_0t_0b_1Z_OS", "e0e1Z0", SEED)
        == "ROI_mass_e0e1Z0_cat_2ex_0mx_1jx_0gx_0tx_0bx_1Zx_OS_width_10.0"
    )


def test_plain_names():
    plain_seed = NameStyle(naming="seed", bumpnet_names=False)
    assert (
        roi_name("2e_0m_1j_0g_0t_0b", "e0e1j0", plain_seed)
        == "ROI_2e_0m_1j_0g_0t_0b_e0e1j0_width_10.0"
    )
    plain = NameStyle(bumpnet_names=False)
    assert (
        roi_name("2e_0m_1j_0g_0t_0b_0Z_OS", "e0e1j0", plain) == "ROI_2e_0m_1j_0g_0t_0b_0Z_OS_e0e1j0"
    )
    assert roi_name("3e_0m_0j_0g_0t_0b_0Z", "e0e2_SS", plain) == "ROI_3e_0m_0j_0g_0t_0b_0Z_e0e2_SS"


def test_style_from_config():
    cfg = validate_config(
        {
            "object_selection": {"types": ["e", "m", "j"]},
            "histogram_creation_task_config": {"use_bumpnet_naming": False, "bin_width_gev": 20},
        }
    )
    assert NameStyle.from_config(cfg) == NameStyle("bumpnet", False, 20.0, False, False)
    cfg = validate_config({"histogram_creation_task_config": {"naming": "seed"}})
    assert NameStyle.from_config(cfg) == NameStyle("seed", True, 10.0, True, True)


def test_label_parsing_and_errors():
    assert parse_final_state("2e_0m_1j_0g_0t_0b") == (
        {"e": 2, "m": 0, "b": 0, "j": 1, "Z": 0, "g": 0, "t": 0},
        None,
    )
    assert parse_final_state("0e_2m_0j_0g_0t_1b_1Z_SS") == (
        {"e": 0, "m": 2, "b": 1, "j": 0, "Z": 1, "g": 0, "t": 0},
        "SS",
    )
    assert split_combination("e0e2_OS") == ("e0e2", "OS")
    assert split_combination("j1Z0") == ("j1Z0", None)
    assert bumpnet_combination("Z0m0j0") == "m0j0Z0"
    assert BUMPNET_COMBO_ORDER == ("e", "m", "j", "b", "Z", "g", "t")
    for bad in ("2e_0m_1x", "", "2e_2e", "e_1m"):
        with pytest.raises(ValueError, match="not a final-state label"):
            parse_final_state(bad)
    for bad in ("e0e1_XX", "E0", "e0-e1", ""):
        with pytest.raises(ValueError, match="not a combination label"):
            split_combination(bad)
    with pytest.raises(ValueError, match="both carry a charge tag"):
        name_tag("2e_0m_0j_0g_0t_0b_0Z_OS", "e0e1_OS")


@pytest.mark.parametrize(
    ("fs", "combo"),
    [
        ("2e_0m_1j_0g_0t_0b", "e0e1j0"),
        ("2e_0m_1j_0g_0t_0b_0Z", "e0e1j0"),
        ("1e_1m_1j_0g_0t_0b_0Z_SS", "e0m0"),
        ("3e_0m_0j_0g_0t_0b_0Z", "e0e2_OS"),
        ("0e_1m_0j_0g_0t_0b_1Z", "m0Z0"),
    ],
)
def test_raw_file_names_round_trip(fs, combo):
    name = raw_name(fs, combo)
    back_fs, back_combo = parse_raw_name(name + ";1")
    assert back_combo == combo
    assert parse_final_state(back_fs) == parse_final_state(fs)
    # and exactly the processor's label (physics.finalstates.fs_label)
    counts, tag = parse_final_state(fs)
    assert back_fs == fs_label(counts, tag)
    assert parse_final_state(parse_fs_count_name(fs_count_name(fs))) == parse_final_state(fs)


def test_raw_file_names_of_older_runs_still_parse():
    # the seed's grammar (and the interim one with _{Z}Zx and a tag), as the processor labels now
    assert parse_raw_name("raw_mass_e0m0b0_cat_1ex_1mx_0jx_0gx_0tx_1bx;1") == (
        "1e_1m_0j_0g_0t_1b_0Z",
        "e0m0b0",
    )
    assert parse_fs_count_name("nevents_cat_2ex_0mx_1jx_0gx_0tx_0bx") == "2e_0m_1j_0g_0t_0b_0Z"
    assert parse_raw_name("raw_mass_m0j0Z0_cat_0ex_1mx_1jx_0gx_0tx_0bx_1Zx_OS") == (
        "0e_1m_1j_0g_0t_0b_1Z_OS",
        "m0j0Z0",
    )
    assert (
        raw_name("1e_1m_0j_0g_0t_1b", "e0m0b0") == "raw_mass_e0m0b0_cat_1ex_1mx_1bx_0jx_0Zx_0gx_0tx"
    )


# -- BumpNet's parsers on our names -------------------------------------------------------------


@st.composite
def spectra(draw):
    """A random final state (counts 0-4 per type, tag or not) and one of its combinations."""
    counts = {t: draw(st.integers(0, 4)) for t in ("e", "m", "j", "g", "t", "b", "Z")}
    types = [t for t in BUMPNET_COMBO_ORDER if counts[t]]
    if not types:
        counts["e"] = 2
        types = ["e"]
    chosen = draw(st.lists(st.sampled_from(types), min_size=1, max_size=len(types), unique=True))
    objects = ""
    for t in draw(st.permutations(chosen)):  # any order in; names must reorder
        first = draw(st.integers(0, counts[t] - 1))
        objects += "".join(f"{t}{i}" for i in range(first, counts[t]))
    tag = draw(st.sampled_from([None, "OS", "SS"]))
    on_combo = draw(st.booleans())
    fs = "_".join(f"{counts[t]}{t}" for t in ("e", "m", "j", "g", "t", "b", "Z"))
    if tag and not on_combo:
        fs += f"_{tag}"
    combo = objects + (f"_{tag}" if tag and on_combo else "")
    return fs, combo, counts, tag


@settings(max_examples=400, deadline=None)
@given(spectra(), st.booleans(), st.booleans())
def test_every_name_round_trips_through_bumpnets_parsers(spectrum, photons, taus):
    fs, combo, counts, tag = spectrum
    style = NameStyle(photons=photons, taus=taus)
    base = spectrum_name(fs, combo, style)
    objects, _ = split_combination(combo)
    for view in ("raw", "rebinned", "ROI"):
        name = view_name(view, base)
        parsed = parse_bumpnet_name(loader_name(name))
        assert parsed.final_state == {
            "ex": counts["e"],
            "mx": counts["m"],
            "bx": counts["b"],
            "jx": counts["j"],
            "Zx": counts["Z"],
        }, name
        assert parsed.charge == tag, name
        assert parsed.observable == bumpnet_combination(objects), name
        letters = [c for c in objects if c.isalpha()]
        assert parsed.objects == {t: letters.count(t) for t in set(letters)}, name
        order = [BUMPNET_COMBO_ORDER.index(c) for c in parsed.observable if c.isalpha()]
        assert order == sorted(order), name
        # the category part is exactly BumpNet's grammar
        category = name.split("_cat_", 1)[1]
        expected = (
            f"{counts['e']}ex_{counts['m']}mx_{counts['b']}bx_{counts['j']}jx_{counts['Z']}Zx"
        )
        expected += f"_{counts['g']}gx" if photons else ""
        expected += f"_{counts['t']}tx" if taus else ""
        expected += f"_{tag}" if tag else ""
        assert category == expected, name
    assert loader_name(view_name("ROI", base)) == base
    assert loader_name(view_name("rebinned", base)) == base


def test_the_loader_name_of_bumpnets_own_key():
    key = "ROI_mass_m0b0b1_cat_0ex_1mx_2bx_0jx_0Zx"  # rebinned_NOSYS.root
    assert roi_name("0e_1m_0j_0g_0t_2b_0Z", "m0b0b1", NO_G_T) == key
    parsed = parse_bumpnet_name(loader_name(key + ";1"))
    assert parsed.observable == "m0b0b1"
    assert parsed.objects == {"m": 1, "b": 2}
    assert parsed.final_state == {"ex": 0, "mx": 1, "bx": 2, "jx": 0, "Zx": 0}
    assert parsed.charge is None


def test_seed_names_hide_the_charge_tag_from_bumpnet():
    name = roi_name("1e_1m_0j_0g_0t_0b_0Z_SS", "e0m0", SEED)
    assert parse_bumpnet_name(loader_name(name)).charge is None  # why bumpnet naming is the default
    assert (
        parse_bumpnet_name(loader_name(roi_name("1e_1m_0j_0g_0t_0b_0Z_SS", "e0m0"))).charge == "SS"
    )


def test_category_collisions_in_the_new_grammar():
    a = roi_name("2e_0m_1j_0g_0t_0b_0Z", "e0e1")
    b = roi_name("2e_0m_1j_1g_0t_0b_0Z", "e0e1")  # differs in gx only
    c = roi_name("2e_0m_1j_0g_2t_0b_0Z", "e0e1")  # differs in tx only
    d = roi_name("2e_0m_2j_0g_0t_0b_0Z", "e0e1")  # jx differs: BumpNet sees it
    e = roi_name("2e_0m_1j_0g_0t_0b_1Z", "e0e1")  # Zx differs
    f = roi_name("2e_0m_1j_0g_0t_0b_0Z_OS", "e0e1")  # tag differs
    g = roi_name("2e_0m_1j_1g_0t_0b_0Z_OS", "e0e1")  # collides with f
    assert category_collisions([a, b, c, d, e, f, g]) == [sorted([a, b, c]), sorted([f, g])]
    assert category_collisions([a, d, e, f]) == []
