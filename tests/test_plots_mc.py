"""Data-vs-MC pages of spectra.pdf: the MC of each data spectrum (stacked per process), the
data/MC panel, flow hints, and the pages of runs without MC or without data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hist
import numpy as np
import pytest
import uproot
from matplotlib.collections import PathCollection
from matplotlib.patches import StepPatch
from test_plots import SMALL_SPECTRA, check_pdf, check_png, n_spectra, write_run_dir

from processor.output import mc_overlay, plots
from processor.output.plotstyle import Hist1D, LabelInfo, _style
from processor.output.spectrum_pages import _SpectrumPage, data_mc_ratio

ROOT = Path(__file__).resolve().parents[1]
INFO = LabelInfo(13.0, 36.6)


def add_processes(run_dir: Path, shares: dict[str, float]) -> None:
    """Split every MC fine histogram of the raw file into processes (``shares`` of each bin,
    the last one taking the rest), written where the runner writes them."""
    path = run_dir / "histograms" / "raw_histograms.root"
    with uproot.open(path) as f:
        kinds = f.classnames(cycle=False)
        hists = {k: f[k].to_hist() for k, c in kinds.items() if c.startswith("TH1")}
    with uproot.recreate(path) as f:
        for key, h in hists.items():
            f[key] = h
            group, name = key.split("/", 1)
            if group != "mc":
                continue
            left = h.values(flow=True).copy()
            for i, (proc, share) in enumerate(shares.items()):
                part = h.copy()
                v = part.view(flow=True)
                mine = left if i == len(shares) - 1 else np.floor(v["value"] * share)
                v["value"] = mine
                v["variance"] = mine * 0.5
                left = left - mine
                f[f"mc/{mc_overlay.RAW_BY_PROCESS}/{proc}/{name}"] = part


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A data + MC run whose MC is split into two processes."""
    run_dir = tmp_path_factory.mktemp("mc_run")
    manifest = write_run_dir(run_dir, spectra=SMALL_SPECTRA)
    add_processes(run_dir, {"ttbar": 0.3, "Zee": 0.7})
    return run_dir, manifest


def _floats(a: object) -> np.ndarray:
    """An artist's data as floats (NaN where masked; a 1-bin histogram comes as objects)."""
    return np.array(
        [np.nan if v is None or v is np.ma.masked else float(v) for v in np.ma.asarray(a)]
    )


def _page(views: list, with_mc: bool) -> _SpectrumPage:
    return _SpectrumPage(INFO, data=True, with_mc=with_mc, processes=["Zee", "ttbar"])


def test_rebin_to_sums_aligned_bins_and_refuses_others() -> None:
    fine = Hist1D(np.arange(10.0), np.arange(10.0) * 2, np.arange(0, 55, 5.0), (1.0, 2.0))
    out = mc_overlay.rebin_to(fine, np.array([10.0, 20.0, 35.0]))
    assert out is not None
    assert out.values.tolist() == [2 + 3, 4 + 5 + 6]
    assert out.variances.tolist() == [10, 30]
    assert out.flow == (1.0, 2.0)
    assert mc_overlay.rebin_to(fine, np.array([10.0, 22.0])) is None  # not a fine edge
    assert mc_overlay.rebin_to(fine, np.array([40.0, 60.0])) is None  # beyond the range


def test_data_spectra_get_their_mc_per_process(mc_run: tuple[Path, dict]) -> None:
    run_dir, manifest = mc_run
    spectra = plots.load_spectra(run_dir, manifest)
    for view in spectra["data"]:
        assert view.with_mc and view.roi is not None
        assert view.mc is not None, view.mc_note
        np.testing.assert_array_equal(view.mc.edges, view.roi.edges)
        assert set(view.mc_parts) == {"ttbar", "Zee"}
        np.testing.assert_allclose(sum(p.values for p in view.mc_parts.values()), view.mc.values)
    assert not any(v.with_mc or v.mc is not None for v in spectra["mc"])


def test_data_page_ratio_is_data_over_mc(mc_run: tuple[Path, dict]) -> None:
    """The data/MC panel's points are the data divided by the MC in every bin with MC; the
    MC is stacked per process under the data; the next page leaves nothing behind."""
    run_dir, manifest = mc_run
    views = plots.load_spectra(run_dir, manifest)["data"]
    with _style():
        page = _page(views, with_mc=True)
        for view in views:
            page.draw(view)
            assert page.rax is not None and page.ratio_points is not None
            x, y = page.ratio_points.get_data()
            centres = 0.5 * (view.roi.edges[1:] + view.roi.edges[:-1])
            np.testing.assert_allclose(_floats(x), centres)
            mc = view.mc.values
            expected = np.where(mc > 0, view.roi.values / np.where(mc > 0, mc, 1), np.nan)
            np.testing.assert_allclose(_floats(y), expected, equal_nan=True)
            assert np.isfinite(expected).any()
            labels = {p.get_label() for p in page.ax.patches if isinstance(p, StepPatch)}
            assert {"MC Zee", "MC ttbar", "MC stat. unc."} <= labels, labels
            legend = [t.get_text() for t in page.ax.get_legend().get_texts()]
            assert "Data (ROI, main spectrum)" in legend
        page.draw(views[0])
        n_artists = len(page.ax.get_children()), len(page.rax.get_children())
        page.draw(views[-1])
        page.draw(views[0])
        assert (len(page.ax.get_children()), len(page.rax.get_children())) == n_artists


def test_ratio_uses_garwood_intervals() -> None:
    data = Hist1D(np.array([0.0, 4.0, 9.0]), np.array([0.0, 4.0, 9.0]), np.arange(4.0))
    mc = Hist1D(np.array([2.0, 0.0, 3.0]), np.ones(3), np.arange(4.0))
    ratio, down, up = data_mc_ratio(data, mc)
    assert ratio[0] == 0 and np.isnan(ratio[1]) and ratio[2] == 3
    assert down[0] == 0 and up[0] == pytest.approx(1.841 / 2, abs=1e-3)  # Garwood 68% of 0
    assert up[2] > down[2] > 0  # asymmetric, wider above


def test_missing_mc_spectrum_is_noted_on_the_data_page(mc_run: tuple[Path, dict]) -> None:
    run_dir, manifest = mc_run
    spectra = plots.load_spectra(run_dir, manifest)
    view = spectra["data"][0]
    view.mc, view.mc_parts, view.mc_note = None, {}, "no MC for this final state and combination"
    with _style():
        page = _page([view], with_mc=True)
        page.draw(view)
    assert page.ratio_points is None
    assert any("no MC for this" in t.get_text() for t in page.rax.texts)


def test_mc_only_and_data_only_runs_keep_the_plain_layout(tmp_path: Path) -> None:
    for group in ("mc", "data"):
        run_dir = tmp_path / group
        manifest = write_run_dir(run_dir, spectra=SMALL_SPECTRA[:1], groups=(group,))
        (view,) = plots.load_spectra(run_dir, manifest)[group]
        assert not view.with_mc and view.mc is None
        with _style():
            page = _SpectrumPage(INFO, data=group == "data", with_mc=view.with_mc)
            page.draw(view)
        assert page.rax is None and page.ratio_points is None
        assert len(page.fig.axes) == 2  # spectrum and Z_LR


def test_mc_pages_of_a_run_with_data_have_no_ratio(mc_run: tuple[Path, dict]) -> None:
    run_dir, manifest = mc_run
    view = plots.load_spectra(run_dir, manifest)["mc"][0]
    with _style():
        page = _SpectrumPage(INFO, data=False, with_mc=view.with_mc)
        page.draw(view)
    assert page.rax is None and len(page.fig.axes) == 2


def test_mc_from_the_bumpnet_file_without_the_raw_file(tmp_path: Path) -> None:
    """Without the raw file the MC ROI of the BumpNet file is used where its bins line up,
    its components (uproot layout ``by_process/<key>/<process>_roi``) stacked."""
    a = hist.Hist(hist.axis.Regular(4, 100, 140), storage=hist.storage.Weight())
    b = hist.Hist(hist.axis.Regular(4, 100, 140), storage=hist.storage.Weight())
    a.view()["value"], b.view()["value"] = [4, 3, 2, 1], [1, 1, 1, 1]
    a.view()["variance"], b.view()["variance"] = [4, 3, 2, 1], [1, 1, 1, 1]
    with uproot.recreate(tmp_path / "mc.root") as f:
        f["ROI_x"] = a + b
        f["by_process/ROI_x/ttbar_roi"] = a
        f["by_process/ROI_x/Zee_roi"] = b
    with uproot.open(tmp_path / "mc.root") as f:
        total, parts = mc_overlay._from_bumpnet(f, "ROI_x", np.array([110.0, 130.0, 140.0]))
        assert total is not None and total.values.tolist() == [3 + 2 + 2, 1 + 1]
        assert {k: v.values.tolist() for k, v in parts.items()} == {
            "ttbar": [5, 1],
            "Zee": [2, 1],
        }
        assert mc_overlay._from_bumpnet(f, "ROI_x", np.array([90.0, 110.0])) == (None, {})


def test_flow_hint_marks_overflow_and_is_cleared(mc_run: tuple[Path, dict]) -> None:
    """A histogram with overflow gets mplhep's flow marker; the next page removes it."""
    run_dir, manifest = mc_run
    views = plots.load_spectra(run_dir, manifest)["data"]
    view = views[0]
    assert view.raw is not None
    view.raw.flow = (0.0, 7.0)
    with _style():
        page = _page(views, with_mc=True)
        page.draw(view)
        markers = [c for c in page.ax.collections if isinstance(c, PathCollection)]
        assert markers
        view.raw.flow = (0.0, 0.0)
        page.draw(view)
        assert not [c for c in page.ax.collections if isinstance(c, PathCollection)]


def test_plots_only_remakes_the_data_mc_pages(mc_run: tuple[Path, dict], tmp_path: Path) -> None:
    """``--plots-only`` from the run directory alone: one page per spectrum, readable PNGs."""
    run_dir, manifest = mc_run
    written = plots.make_plots(run_dir)
    check_pdf(run_dir / "plots" / "spectra.pdf", n_spectra(manifest))
    for path in written:
        if path.suffix == ".png":
            check_png(path)
    before = (run_dir / "plots" / "spectra.pdf").stat().st_mtime_ns
    res = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "--plots-only", "--run-dir", str(run_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run_dir / "plots" / "spectra.pdf").stat().st_mtime_ns > before
    check_pdf(run_dir / "plots" / "spectra.pdf", n_spectra(manifest))
