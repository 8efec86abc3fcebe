"""`naming: seed` (with Z candidates and charge tags off) reproduces main's names and BumpNet
files bit for bit on the demo sample (reference in tests/data/seed_reference, made from main at
3429907 before BumpNet-native names; see make_reference.py there)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uproot
from helpers import run_processor

from processor.config import Config, ObjectSelection, validate_config
from processor.output.naming import parse_final_state
from processor.output.postprocess import postprocess
from processor.output.rootfiles import write_bumpnet_file
from processor.physics.histograms import MassGrid
from processor.synthetic import GENERATOR_VERSION, make_demo_sample

REF = Path(__file__).resolve().parent / "data" / "seed_reference"


def seed_config() -> Config:
    """naming: seed, plus (where this version has them) Z candidates, charge tags and
    three-lepton pair masses off."""
    data: dict[str, Any] = {"histogram_creation_task_config": {"naming": "seed"}}
    fields = ObjectSelection.model_fields
    selection: dict[str, Any] = {}
    if "z_candidates" in fields:
        selection["z_candidates"] = {"enabled": False}
    if "charge_tags" in fields:  # three_lepton_pairs follows it
        selection["charge_tags"] = False
    if selection:
        data["object_selection"] = selection
    return validate_config(data)


def reference() -> dict[str, Any]:
    return json.loads((REF / "outputs.json").read_text())


def _grid() -> MassGrid:
    fine = reference()["meta"]["fine_grid"]
    return MassGrid(fine["width_gev"], fine["max_gev"])


def stored_groups() -> dict[str, dict[str, Any]]:
    """The reference's fine histograms (kept final states) and final-state counts per group."""
    grid = _grid()
    groups: dict[str, dict[str, Any]] = {}
    with np.load(REF / "fine_kept.npz") as npz:
        for key in npz.files:
            parts = key.split("|")
            group = groups.setdefault(parts[0], {"hists": {}, "fs_events": {}})
            if parts[1] == "fs_labels":
                labels = npz[key]
                counts = npz[f"{parts[0]}|fs_events"]
                group["fs_events"] = {str(k): int(n) for k, n in zip(labels, counts, strict=True)}
            elif parts[-1] == "idx":
                h = grid.make(False)
                h.view(flow=True)[npz[key]] = npz[key[:-3] + "val"]
                group["hists"][(parts[1], parts[2])] = h
    return groups


def digest(h: Any) -> str:
    parts = [h.values(flow=True), h.variances(flow=True), h.axis().edges()]
    return hashlib.sha256(b"".join(np.asarray(p, "<f8").tobytes() for p in parts)).hexdigest()


def written_digests(groups: dict[str, dict[str, Any]], config: Config, tmp: Path) -> dict[str, Any]:
    """Post-process and write each group as a run does; ``{group|key: (class, sha256)}``."""
    grid = _grid()
    hc = config.histogram_creation_task_config
    out = {}
    for group, content in groups.items():
        res = postprocess(
            content["hists"],
            content["fs_events"],
            grid,
            config,
            False,
            fills=content.get("fills"),
            components=content.get("components"),
        )
        path = tmp / f"{group}.root"
        write_bumpnet_file(path, res, hc.active_views(), hc.stacks_wanted())
        with uproot.open(path) as f:
            for key, cls in f.classnames(cycle=False).items():
                out[f"{group}|{key}"] = (cls, digest(f[key]) if cls.startswith("TH1") else None)
    return out


def test_reference_is_what_main_wrote():
    ref = reference()
    assert ref["meta"]["source"].startswith("main 3429907")
    names = [k.split("|", 1)[1] for k in ref["histograms"]]
    assert "ROI_mass_e0e1j0_cat_2ex_0mx_1jx_0gx_0tx_0bx_width_10.0" in names
    assert {k.split("|")[0] for k in ref["histograms"]} == {"data", "mc"}


def test_seed_naming_reproduces_mains_files_from_the_same_fine_histograms(tmp_path):
    ours = written_digests(stored_groups(), seed_config(), tmp_path)
    theirs = {k: (v["class"], v["sha256"]) for k, v in reference()["histograms"].items()}
    assert sorted(ours) == sorted(theirs)
    differ = [k for k in theirs if ours[k] != theirs[k]]
    assert not differ, differ[:5]


def test_bumpnet_naming_differs_from_the_seed(tmp_path):
    ours = written_digests(stored_groups(), validate_config({}), tmp_path)
    assert not any(k.endswith("_width_10.0") for k in ours)
    assert any(k.startswith("data|rebinned_mass_") for k in ours)


@pytest.mark.slow
def test_seed_mode_on_the_demo_sample_is_bit_identical_to_main(tmp_path):
    if reference()["meta"]["generator_version"] != GENERATOR_VERSION:
        pytest.skip(
            f"the demo generator changed (version {GENERATOR_VERSION}, reference made with "
            f"{reference()['meta']['generator_version']}): remake tests/data/seed_reference"
        )
    files = make_demo_sample()
    config = seed_config()
    fileset: dict[str, Any] = {}
    for path in files:
        is_mc = "_mc_" in path.name
        fileset.setdefault("mc" if is_mc else "data", {"files": {}, "metadata": {"is_mc": is_mc}})
        fileset["mc" if is_mc else "data"]["files"][str(path)] = "analysis"
    out, _ = run_processor(fileset, config)
    stored = stored_groups()
    for group, content in stored.items():
        live = out["groups"][group]
        norm = {(_norm(fs), combo): h for (fs, combo), h in live["hists"].items()}
        assert {_norm(fs): n for fs, n in live["fs_events"].items()} == {
            _norm(fs): n for fs, n in content["fs_events"].items()
        }
        for (fs, combo), h in content["hists"].items():
            np.testing.assert_array_equal(
                norm[(_norm(fs), combo)].values(flow=True), h.values(flow=True), err_msg=combo
            )
    ours = written_digests(out["groups"], config, tmp_path)
    theirs = {k: (v["class"], v["sha256"]) for k, v in reference()["histograms"].items()}
    assert ours == theirs


def _norm(fs: str) -> tuple:
    counts, tag = parse_final_state(fs)
    return tuple(sorted(counts.items())), tag
