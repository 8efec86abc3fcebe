"""MC datasets onto BumpNet's SM process groups: the default mapping on real release names,
configuration, and unmapped datasets."""

from __future__ import annotations

import pytest

from processor.config import Config, validate_config
from processor.output.mcgroups import (
    DEFAULT_MC_GROUPS,
    SM_GROUPS,
    component_name,
    group_of_metadata,
    mc_group,
)
from processor.output.readiness import SM_COMPONENTS


@pytest.mark.parametrize(
    ("physics_short", "group"),
    [
        # 2025e-13tev-beta
        ("Sh_2211_Zee_maxHTpTV2_BFilter", "Zee"),
        ("Sh_2211_Zmumu_maxHTpTV2_CVetoBVeto", "Zmumu"),
        ("Sh_2211_Ztautau_maxHTpTV2_CFilterBVeto", "Ztautau"),
        ("Sh_2214_Ztt_maxHTpTV2_Mll10_40_BFilter", "Ztautau"),
        ("Sh_2211_Wenu_maxHTpTV2_BFilter", "Wlnu"),
        ("Sh_2211_Wmunu_maxHTpTV2_CVetoBVeto", "Wlnu"),
        ("Sh_2211_Wtaunu_maxHTpTV2_BFilter", "Wtaunu"),
        ("PhPy8EG_A14_ttbar_hdamp258p75_nonallhad", "ttbar"),
        ("PhPy8EG_A14_ttbar_hdamp258p75_dil", "ttbar"),
        ("MadGraphPythia8EvtGen_A14NNPDF23_ttbarWW", "ttXX"),
        ("aMcAtNloPythia8EvtGen_MEN30NLO_A14N23LO_ttW", "ttX"),
        ("aMcAtNloPythia8EvtGen_MEN30NLO_A14N23LO_ttZnunu", "ttX"),
        ("MGPy8EG_A14N23LO_ttee", "ttX"),
        ("PhPy8EG_A14NNPDF23_NNPDF30ME_ttH125_semilep", "ttX"),
        ("aMcAtNloPythia8EvtGen_A14NNPDF31_SM4topsNLO", "ttXX"),
        ("PhPy8EG_A14_tchan_BW50_lept_top", "singletop"),
        ("PhPy8EG_A14_tW_dyn_DR_incl_antitop", "singletop"),
        ("PowhegPythia8EvtGen_A14_singletop_schan_lept_antitop", "singletop"),
        ("Sh_2212_llll", "VV"),
        ("Sh_2212_lllv", "VV"),
        ("Sh_2211_ZqqZll", "VV"),
        ("Sh_2211_WlvZqq", "VV"),
        ("Sh_2212_WpqqWmlv", "VV"),
        # 2020e-13tev
        ("Zee", "Zee"),
        ("Zmumu_PTV0_70_CVetoBVeto", "Zmumu"),
        ("Wplusenu", "Wlnu"),
        ("Wminusmunu", "Wlnu"),
        ("Wplustaunu", "Wtaunu"),
        ("ttbar_lep", "ttbar"),
        ("single_top_tchan", "singletop"),
        ("single_antitop_wtchan", "singletop"),
        ("ttW", "ttX"),
        ("llll", "VV"),
        ("ZqqZll", "VV"),
        # Higgs and BSM samples keep their own name (BumpNet counts them as BSM)
        ("ggH125_ZZ4lep", "ggH125_ZZ4lep"),
        (
            "PowhegPythia8EvtGen_NNLOPS_nnlo_30_ggH125_ZZ4l",
            "PowhegPythia8EvtGen_NNLOPS_nnlo_30_ggH125_ZZ4l",
        ),
        (
            "PowhegPy8EG_NNLOPS_nnlo_30_ggH125_tautaul13l7",
            "PowhegPy8EG_NNLOPS_nnlo_30_ggH125_tautaul13l7",
        ),
        ("Pythia8EvtGen_A14NNPDF23LO_zprime3000_tt", "Pythia8EvtGen_A14NNPDF23LO_zprime3000_tt"),
    ],
)
def test_default_mapping_on_release_names(physics_short, group):
    assert mc_group(physics_short) == group


def test_the_default_groups_are_bumpnets_sm_groups():
    assert set(DEFAULT_MC_GROUPS) == set(SM_GROUPS)
    assert {f"{g}_roi" for g in SM_GROUPS} == set(SM_COMPONENTS)
    assert Config().histogram_creation_task_config.mc_groups == DEFAULT_MC_GROUPS


def test_process_metadata_is_tried_after_physics_short():
    assert mc_group("Sample_XYZ", process="pp>ttbar") == "ttbar"
    assert mc_group("Sh_2211_Zee_x", process="pp>ttbar") == "Zee"
    assert mc_group(None, process="pp>X", dsid=123456) == "mc_123456"
    assert mc_group(None, None, None, fallback="my dataset/1") == "my_dataset_1"


def test_a_configured_mapping_replaces_the_default_first_match_wins():
    cfg = validate_config(
        {
            "histogram_creation_task_config": {
                "mc_groups": {"Higgs": ["H125"], "VV": ["ZZ"], "other": [".*"]}
            }
        }
    )
    mapping = cfg.histogram_creation_task_config.mc_groups
    assert mc_group("ggH125_ZZ4lep", mapping=mapping) == "Higgs"
    assert mc_group("Sh_2212_ZZ", mapping=mapping) == "VV"
    assert mc_group("Sh_2211_Zee_maxHTpTV2_BFilter", mapping=mapping) == "other"


def test_group_of_coffea_metadata():
    meta = {
        "dataset": "mc_700320_Zee",
        "physics_short": "Sh_2211_Zee_maxHTpTV2_BFilter",
        "dsid": 700320,
    }
    assert group_of_metadata(meta) == "Zee"
    assert group_of_metadata({"dataset": "mc_1", "dsid": 1, "physics_short": None}) == "mc_1"


def test_component_names_are_root_safe():
    assert component_name("a/b;c d") == "a_b_c_d"
    assert component_name("///") == "unknown"
