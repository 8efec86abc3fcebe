"""The bump scan inside a run (issue 13): tasks, MC background, workers, ROOT keys, summary."""

from __future__ import annotations

from types import SimpleNamespace

import hist
import numpy as np
import pytest
import uproot

from processor.config import Config
from processor.output.scanning import (
    ScanTask,
    add_scan_histograms,
    mc_on_edges,
    run_scan_task,
    scan_key,
    scan_run,
    scan_tasks,
)
from processor.run.app import demo_finding_line, scan_summary_lines

SQRT_S = 13000.0
EDGES = np.arange(100.0, 710.0, 10.0)  # 61 bins of 10 GeV


def falling(edges: np.ndarray, norm: float = 4.0e7) -> np.ndarray:
    """Expected counts of a smooth m^-3 spectrum in ``edges``."""
    return norm * (edges[:-1] ** -2 - edges[1:] ** -2) / 2.0


def toy_counts(seed: int, bump: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = falling(EDGES)
    centres = 0.5 * (EDGES[:-1] + EDGES[1:])
    mu = mu + bump * np.exp(-0.5 * ((centres - 400.0) / 8.0) ** 2)
    return rng.poisson(mu).astype(float)


def roi(values: np.ndarray, edges: np.ndarray = EDGES) -> hist.Hist:
    h = hist.Hist(hist.axis.Regular(len(edges) - 1, edges[0], edges[-1]))
    h.view()[:] = values
    return h


def spectrum(name: str, values: np.ndarray, fs: str = "2e", combo: str = "e0e1") -> SimpleNamespace:
    edges = EDGES[: len(values) + 1]
    return SimpleNamespace(fs=fs, combo=combo, roi_name=name, roi=roi(values, edges))


def config(**scan: object) -> Config:
    return Config.model_validate({"post_processing_task_config": {"bump_scan": scan}})


def test_scan_key_replaces_the_roi_prefix():
    assert scan_key("zlr_", "ROI_mass_e0e1_cat_2ex") == "zlr_mass_e0e1_cat_2ex"
    assert scan_key("zlr_", "2e_e0e1") == "zlr_2e_e0e1"


def test_config_section_defaults_and_validation():
    cfg = Config().post_processing_task_config.bump_scan
    assert cfg.enabled and cfg.background == "fit"
    # the pipeline's defaults: cheap at first, escalated far enough to resolve global Z >= 3
    assert (cfg.n_pseudo_experiments, cfg.max_pseudo_experiments) == (100, 1000)
    assert cfg.skip_leading_bins == 2
    with pytest.raises(Exception, match="min_window_bins"):
        config(min_window_bins=5, max_window_bins=3)
    with pytest.raises(Exception, match="backgroundd|extra"):
        config(backgroundd="mc")


def test_mc_on_edges_sums_the_fine_bins_by_hand():
    fine = hist.Hist(hist.axis.Regular(10, 0.0, 10.0), storage=hist.storage.Weight())
    fine.view().value[:] = np.arange(10.0)
    fine.view().variance[:] = 1.0
    got = mc_on_edges(fine, np.array([2.0, 4.0, 7.0]), weighted=True)
    np.testing.assert_allclose(got, [2 + 3, 4 + 5 + 6])


def test_tasks_use_the_mc_of_the_same_spectrum_only_when_asked_and_weighted():
    counts = toy_counts(1)
    fine = hist.Hist(hist.axis.Regular(700, 0.0, 700.0), storage=hist.storage.Weight())
    fine.view().value[100:] = np.repeat(falling(EDGES) / 10.0, 10)
    out = {"groups": {"mc": {"hists": {("2e", "e0e1"): fine}}}}
    groups = {
        "data": SimpleNamespace(spectra=[spectrum("ROI_a", counts)]),
        "mc": SimpleNamespace(spectra=[spectrum("ROI_a", counts)]),
    }
    cfg = config(background="mc")
    cfg.mass_calculation_task_config.weighting = "mc"
    tasks = {t.group: t for t in scan_tasks(groups, out, cfg, SQRT_S)}
    np.testing.assert_allclose(tasks["data"].mc_background, falling(EDGES))
    assert tasks["mc"].mc_background is None  # MC itself: always against a fit
    assert tasks["mc"].config["background"] == "fit"
    cfg.mass_calculation_task_config.weighting = "none"  # unweighted MC: fit, with a warning
    assert all(t.mc_background is None for t in scan_tasks(groups, out, cfg, SQRT_S))


def test_scan_task_is_reproducible_and_finds_a_toy_bump():
    cfg = config(max_pseudo_experiments=1000).post_processing_task_config.bump_scan
    task = ScanTask("data", "ROI_toy", toy_counts(7, bump=60.0), EDGES, SQRT_S, cfg.model_dump())
    a, b = run_scan_task(task), run_scan_task(task)
    assert a.record == b.record
    lo, hi = a.record["window_gev"]
    assert lo <= 400.0 <= hi
    assert a.record["global_z"] >= 3.0
    assert a.zlr.shape == (len(EDGES) - 1,)
    # the leading bins are left out: zero Z_LR and background there, window bins in ROI units
    assert a.record["skipped_leading_bins"] == 2
    assert not a.zlr[:2].any() and not a.background[:2].any() and a.background[2:].all()
    assert EDGES[a.record["window_bins"][0]] == lo and EDGES[a.record["window_bins"][1]] == hi
    small = ScanTask("data", "ROI_s", np.ones(5), np.arange(6.0) * 10, SQRT_S, cfg.model_dump())
    assert "skipped" in run_scan_task(small).record


def test_scan_run_on_dask_workers_matches_in_process_and_writes_keys(tmp_path):
    distributed = pytest.importorskip("distributed")
    cfg = config(n_pseudo_experiments=50, max_pseudo_experiments=50)
    groups = {
        "data": SimpleNamespace(
            spectra=[spectrum("ROI_a", toy_counts(3)), spectrum("ROI_b", np.ones(3))]
        )
    }
    local = scan_run(groups, {"groups": {}}, cfg, SQRT_S)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        remote = scan_run(groups, {"groups": {}}, cfg, SQRT_S, client=client)
    assert remote.where == "on the Dask workers" and local.where == "in process"
    assert remote.records() == local.records()
    assert "skipped" in local.records()["data"]["ROI_b"]
    assert local.trials["data"]["n_spectra"] == 1
    assert local.trials["data"]["most_significant"] == "ROI_a"

    path = tmp_path / "b.root"
    with uproot.recreate(path) as f:
        f["ROI_a"] = roi(toy_counts(3))
    keys = add_scan_histograms(path, local.outcomes["data"])
    assert keys == ["zlr_a", "scanbkg_a"]
    with uproot.open(path) as f:
        assert {k.split(";")[0] for k in f.keys()} == {"ROI_a", "zlr_a", "scanbkg_a"}
        np.testing.assert_allclose(f["zlr_a"].values(), local.outcomes["data"]["ROI_a"].zlr)
        np.testing.assert_allclose(f["zlr_a"].axis().edges(), EDGES)
        np.testing.assert_allclose(
            f["scanbkg_a"].values(), local.outcomes["data"]["ROI_a"].background
        )


def test_disabled_scan_does_nothing():
    cfg = config(enabled=False)
    groups = {"data": SimpleNamespace(spectra=[spectrum("ROI_a", toy_counts(3))])}
    assert scan_run(groups, {"groups": {}}, cfg, SQRT_S).outcomes == {}


def test_summary_lines_and_demo_line():
    record = {
        "window_gev": [390.0, 410.0],
        "local_z": 8.0,
        "global_z": 3.4,
        "global_p": 1 / 3000,
        "global_z_is_lower_bound": True,
        "background": "fit",
    }
    other = {**record, "window_gev": [200.0, 220.0], "global_z": 5.0, "local_z": 9.0}
    manifest = {
        "bump_scan": {
            "enabled": True,
            "n_scanned": 2,
            "n_spectra": 3,
            "where": "in process",
            "seconds": 1.0,
            "trials": {
                "data": {
                    "n_spectra": 2,
                    "z_run": 3.1,
                    "z_run_is_lower_bound": True,
                    "most_significant": "ROI_x",
                }
            },
            "summary": ["data/ROI_x: ..."],
        },
        "histograms": {
            "data": {
                "spectra": [
                    {"roi_name": "ROI_x", "bump_scan": record},
                    {"roi_name": "ROI_y", "bump_scan": {"skipped": "too few bins"}},
                ]
            },
            "mc": {"spectra": [{"roi_name": "ROI_m", "bump_scan": other}]},
        },
    }
    lines = scan_summary_lines(manifest)
    assert "not a discovery claim" in lines[0]
    assert "Z ≥ 3.10" in lines[1]
    line = demo_finding_line(manifest)
    assert line == (
        "injected resonance at 400 GeV: found in ROI_x, window [390, 410] GeV, "
        "local Z = 8.0, global Z ≥ 3.4"
    )
    manifest["histograms"]["data"]["spectra"][0]["bump_scan"] = {"skipped": "x"}
    assert "not found" in demo_finding_line(manifest)


def test_spectrum_page_draws_fit_window_and_zlr_panel_and_clears_them(tmp_path):
    from processor.output.plotstyle import Hist1D, LabelInfo, SpectrumView
    from processor.output.spectrum_pages import _SpectrumPage

    counts = toy_counts(7, bump=60.0)
    cfg = config(max_pseudo_experiments=1000).post_processing_task_config.bump_scan
    out = run_scan_task(ScanTask("data", "ROI_t", counts, EDGES, SQRT_S, cfg.model_dump()))

    def view(scan: dict | None, with_hists: bool) -> SpectrumView:
        v = SpectrumView("data", "2e", "e0e1", "ROI_t", "", 100.0, None, 700.0, [])
        v.roi = Hist1D(counts, counts, EDGES)
        v.scan = scan
        if with_hists:
            v.scan_bkg = Hist1D(out.background, out.background, EDGES)
            v.zlr = Hist1D(out.zlr, np.zeros_like(out.zlr), EDGES)
        return v

    page = _SpectrumPage(LabelInfo(13.0, None), data=True)
    fig = page.draw(view(out.record, True))
    labels = [t.get_text() for t in page.ax.get_legend().get_texts()]
    assert any(t.startswith("Most significant window [") for t in labels), labels
    assert any(t.startswith("Bump-scan background (fit") for t in labels), labels
    assert len(page.zax.patches) >= 2  # Z_LR stairs + window band
    fig.savefig(tmp_path / "scan.png")
    assert (tmp_path / "scan.png").stat().st_size > 10_000
    page.draw(view({"skipped": "too few bins"}, False))  # the next page: no leftovers
    labels = [t.get_text() for t in page.ax.get_legend().get_texts()]
    assert not any("window" in t or "background" in t for t in labels), labels
    assert not page.zax.patches
    assert any("bump scan skipped: too few bins" in t.get_text() for t in page.zax.texts)
