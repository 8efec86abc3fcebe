"""Config validation: defaults, config.yaml, and one-line errors naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from processor.config import Config, ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def _leaf_keys(model: type, prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = next(
            (
                c
                for c in (ann, *getattr(ann, "__args__", ()))
                if isinstance(c, type) and hasattr(c, "model_fields")
            ),
            None,
        )
        if sub is not None and name not in ("adaptive",):
            keys |= _leaf_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _yaml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in data.items():
        if isinstance(v, dict):  # a section, or a mapping-valued key such as mc_groups
            keys |= _yaml_keys(v, f"{prefix}{k}.") | {prefix + k}
        else:
            keys.add(prefix + k)
    return keys


def test_shipped_config_equals_schema_defaults_and_lists_every_key():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.digest() == Config().digest()
    shipped = _yaml_keys(yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert _leaf_keys(Config) <= shipped


def test_design_defaults():
    cfg = Config()
    sel = cfg.object_selection
    assert (sel.electrons.pt_min, sel.electrons.abs_eta_max) == (25, 2.47)
    assert (sel.muons.pt_min, sel.muons.abs_eta_max) == (25, 2.5)
    assert (sel.jets.pt_min, sel.jets.abs_eta_max) == (30, 4.5)
    assert (sel.photons.pt_min, sel.photons.abs_eta_max) == (25, 2.37)
    assert (sel.taus.pt_min, sel.taus.abs_eta_max) == (20, 2.5)
    # issue 10 defaults: Z candidates (a type of their own), charge tags, three-lepton pairs
    assert sel.active_types() == ("e", "m", "j", "Z", "g", "t")
    z = sel.z_candidates
    assert (z.enabled, z.mass_gev, z.window_gev, z.min_count, z.max_count) == (
        True,
        91.1876,
        10.0,
        0,
        4,
    )
    assert sel.charge_tags and sel.three_lepton_pairs
    assert sel.overlap_removal.enabled == "auto"
    assert (sel.btagging.tagger, sel.btagging.working_point) == ("DL1dv01", 77)
    assert all(sel.cuts(t).min_count == 0 for t in "emjgt")
    assert all(sel.cuts(t).rel_isolation_max is None for t in "emjgt")
    comb = cfg.mass_calculation_task_config.combinations
    assert (comb.min_types, comb.max_types, comb.min_objects, comb.max_objects) == (1, 4, 2, 4)
    assert cfg.mass_calculation_task_config.min_events_per_fs == 100
    assert cfg.histogram_creation_task_config.bin_width_gev == 10


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, True),
        ({"charge_tags": False}, False),
        ({"charge_tags": False, "three_lepton_pairs": True}, True),
        ({"three_lepton_pairs": False}, False),
    ],
)
def test_three_lepton_pairs_follow_charge_tags_unless_set(given, expected):
    """Switching the charge features off (the original's recipe) also drops the charge-tagged
    three-lepton pair masses; an explicit value wins."""
    sel = validate_config({"object_selection": given}).object_selection
    assert sel.three_lepton_pairs is expected


def test_partial_override_keeps_other_defaults():
    cfg = validate_config(
        {"object_selection": {"electrons": {"id": "tight"}, "btagging": {"enabled": True}}}
    )
    assert cfg.object_selection.electrons.pt_min == 25
    assert cfg.object_selection.electrons.id == "tight"
    assert cfg.object_selection.active_types() == ("e", "m", "j", "b", "Z", "g", "t")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"run_metadata": {"run_nme": "x"}},
            "unknown config key 'run_metadata.run_nme': did you mean 'run_name'?",
        ),
        ({"histogram_creaton_task_config": {}}, "did you mean 'histogram_creation_task_config'?"),
        (
            {"object_selection": {"muons": {"pt_mn": 3}}},
            "'object_selection.muons.pt_mn': did you mean 'pt_min'?",
        ),
        ({"tasks": {"do_parsing": True}}, "config key 'tasks.do_parsing' is not used any more"),
        (
            {"executor": {"chunksize": 0}},
            "config key 'executor.chunksize': Input should be greater than 0 (got 0)",
        ),
        ({"parsing_task_config": {"release": "2021"}}, "config key 'parsing_task_config.release'"),
        (
            {"histogram_creation_task_config": {"bin_width_gev": 7}},
            "bin_width_gev=7.0 is not a multiple of mass_calculation_task_config.fine_bin_width_gev=5.0",
        ),
        (
            {"mass_calculation_task_config": {"combinations": {"min_types": 3, "max_types": 2}}},
            "'mass_calculation_task_config.combinations': min_types must be <= max_types",
        ),
        ({"object_selection": {"types": ["e", "e"]}}, "list each object type once"),
        ({"cluster": {"pbs": {"walltime": "4h"}}}, "config key 'cluster.pbs.walltime'"),
    ],
)
def test_errors_name_the_key_and_the_fix(data, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(data, "my.yaml")
    msg = str(err.value)
    assert msg.startswith("my.yaml: ")
    assert expected in msg
    assert "\n" not in msg


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file '.*nope.yaml' not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_metadata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("executor: {chunksize: 1000}\n")
    cfg = load_config(good, {"parsing_task_config.max_files_to_process": 3})
    assert cfg.executor.chunksize == 1000
    assert cfg.parsing_task_config.max_files_to_process == 3


def test_digest_changes_with_content():
    assert validate_config({"executor": {"chunksize": 10}}).digest() != Config().digest()


@pytest.mark.parametrize(
    ("hc", "expected"),
    [
        ({"views": ["raw", "rebinned"]}, "include ROI"),
        ({"views": ["ROI", "ROI"]}, "list each view once"),
        ({"views": ["roi"]}, "histogram_creation_task_config.views"),
        ({"naming": "atlas"}, "histogram_creation_task_config.naming"),
        ({"mc_groups": {"ttbar": ["tt(bar"]}}, "'tt(bar' is not a regular expression"),
        ({"mc_groups": {"t t": ["ttbar"]}}, "must use only letters, digits"),
        ({"mc_groups": {"ttbar": []}}, "has no patterns"),
        ({"blacklist": [" mass_e0e1_cat_2ex"]}, "spaces around it"),
        ({"bumpnet_cuts": {"skipped_bins": 2}}, "bumpnet_cuts.skipped_bins"),
        ({"bumpnet_cuts": {"min_num_bin": 2}}, "did you mean 'min_num_bins'"),
    ],
)
def test_output_keys_are_validated(hc, expected):
    with pytest.raises(ConfigError) as err:
        validate_config({"histogram_creation_task_config": hc}, "my.yaml")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_views_and_mc_by_process_follow_the_naming_unless_set():
    hc = Config().histogram_creation_task_config
    assert (hc.naming, hc.active_views(), hc.stacks_wanted()) == (
        "bumpnet",
        ("raw", "rebinned", "ROI"),
        True,
    )
    assert hc.bumpnet_cuts.model_dump() == {
        "min_num_bins": 25,
        "min_total_events": 100,
        "min_num_events": 0.35,
        "skipped_bins": 0,
    }
    seed = validate_config({"histogram_creation_task_config": {"naming": "seed"}})
    assert seed.histogram_creation_task_config.active_views() == ("ROI",)
    assert not seed.histogram_creation_task_config.stacks_wanted()
    chosen = validate_config(
        {
            "histogram_creation_task_config": {
                "naming": "seed",
                "views": ["ROI", "raw"],
                "mc_by_process": True,
            }
        }
    ).histogram_creation_task_config
    assert chosen.active_views() == ("raw", "ROI") and chosen.stacks_wanted()
