"""Tests of processor.output.plots on fake run directories written like the runner writes them."""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

import hist
import matplotlib.image
import numpy as np
import pypdf
import pytest
import uproot

from processor.config import Config
from processor.fsutil import current_umask
from processor.output import plots
from processor.output.naming import raw_name
from processor.output.postprocess import process_spectrum
from processor.physics.histograms import MassGrid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID = MassGrid(5.0, 13000.0)

#: (fs, combo, kind) of the default fake run; kind selects the shape of the spectrum
DEFAULT_SPECTRA = (
    ("2e_0m_0j_0g_0t_0b", "e0e1", "z_tail_outliers"),
    ("0e_2m_0j_0g_0t_0b", "m0m1", "z_tail"),
    ("2e_0m_1j_0g_0t_0b", "e0e1j0", "falling"),
    ("1e_1m_0j_1g_0t_0b", "e0m0g0", "tiny"),
)
#: one spectrum with an outlier tail, one that BumpNet would reject
SMALL_SPECTRA = (DEFAULT_SPECTRA[0], DEFAULT_SPECTRA[3])


def _masses(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Invariant masses of one fake spectrum (GeV)."""
    if kind == "tiny":  # BumpNet would reject: few entries, few bins
        return rng.uniform(100, 180, 60)
    falling = 60 + rng.exponential(70, 20_000)
    if kind == "falling":
        return falling
    z = 91.19 + 2.5 * rng.standard_cauchy(30_000)
    z = z[(z > 40) & (z < 400)]
    out = np.concatenate([z, falling])
    if kind == "z_tail_outliers":  # a few far events after an empty gap
        out = np.concatenate([out[out < 1200], rng.uniform(2500, 2600, 4), [4012.0]])
    else:  # tail cut at 700 GeV: no outlier tail
        out = out[out < 700]
    return out


def write_run_dir(
    run_dir: Path,
    spectra: tuple[tuple[str, str, str], ...] = DEFAULT_SPECTRA,
    groups: tuple[str, ...] = ("data", "mc"),
    write_raw: bool = True,
    luminosity_fb: float | None = 36.6,
    n_dropped: int = 4,
    seed: int = 1,
) -> dict[str, Any]:
    """A run directory exactly in the runner's layout; returns the manifest.

    ``n_dropped`` final states per group fall below min_events_per_fs.
    """
    rng = np.random.default_rng(seed)
    config = Config()
    (run_dir / "histograms").mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    manifest: dict[str, Any] = {
        "release": "2025e-13tev-beta",
        "sqrt_s_tev": 13,
        "luminosity_fb": luminosity_fb,
        "final_states": {},
        "histograms": {},
        "processing": {
            "wall_time_s": 3723.4,
            "events": 12_345_678,
            "events_per_s": 3315.7,
            "bytes_read": 7_345_000_000,
            "chunks": 312,
            "n_files": 48,
            "n_failed_files": 1,
            "n_failed_chunks": 0,
            "accumulator_bytes": 48_000_000,
        },
        "status": "partial",
    }
    raw_hists: dict[str, hist.Hist] = {}
    for group in groups:
        weighted = group == "mc"
        entries: list[dict[str, Any]] = []
        fs_info: dict[str, dict[str, Any]] = {}
        out_name = f"histograms/bumpnet_histograms_{group}.root"
        with uproot.recreate(run_dir / out_name) as f:
            for fs, combo, kind in spectra:
                m = _masses(kind, rng)
                h = GRID.make(weighted)
                if weighted:
                    h.fill(m, weight=rng.uniform(0.5, 1.5, len(m)))
                else:
                    h.fill(m)
                raw_hists[f"{group}/{raw_name(fs, combo)}"] = h
                spec = process_spectrum(fs, combo, h, GRID, config, weighted)
                if spec.roi is not None:
                    f[spec.roi_name] = spec.roi
                if spec.outliers is not None:
                    f[spec.outlier_name] = spec.outliers
                entries.append(
                    {
                        "roi_name": spec.roi_name,
                        "outlier_name": spec.outlier_name,
                        "has_outliers": spec.outliers is not None,
                        "fs": fs,
                        "combo": combo,
                        "lo": spec.lo,
                        "split": spec.split,
                        "hi": spec.hi,
                        "rejected": spec.rejected,
                    }
                )
                fs_info[fs] = {
                    "events": len(m),
                    "sumw": float(h.sum().value if weighted else h.sum()),
                    "kept": True,
                }
        for i in range(n_dropped):  # final states below min_events_per_fs
            fs_info[f"{i % 5}e_{i // 5}m_0j_0g_1t_0b"] = {
                "events": 3 + i,
                "sumw": 3.0 + i,
                "kept": False,
            }
        manifest["final_states"][group] = fs_info
        manifest["histograms"][group] = {"file": out_name, "spectra": entries}
    if write_raw:
        with uproot.recreate(run_dir / "histograms" / "raw_histograms.root") as f:
            for key, h in raw_hists.items():
                f[key] = h
    n_kept = sum(
        d["events"] for g in manifest["final_states"].values() for d in g.values() if d["kept"]
    )
    manifest["cutflow_total"] = {
        "events_read": 12_345_678,
        "after_count_limits": 9_876_543,
        "in_final_state": 1_234_567,
        "with_combination": 1_200_000,
        "final_states_kept": n_kept,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def n_spectra(manifest: dict[str, Any]) -> int:
    """Spectra listed in a manifest."""
    return sum(len(g["spectra"]) for g in manifest["histograms"].values())


def bookmarks(manifest: dict[str, Any]) -> list[str]:
    """The bookmark of each spectrum page, in the manifest's order."""
    return [
        f"{group}: {s['combo']} | {s['fs']}"
        for group, entry in manifest["histograms"].items()
        for s in entry["spectra"]
    ]


def check_png(path: Path) -> None:
    """A real, readable PNG of a sensible size."""
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), (path, img.shape)
    assert 300 <= img.shape[0] <= 5000 and 300 <= img.shape[1] <= 5000, (path, img.shape)
    assert img[..., :3].std() > 0.01, f"{path} is blank"


def check_pdf(path: Path, pages: int, titles: list[str] | None = None) -> None:
    """A real PDF with the given number of pages, one bookmark per page (``titles``, in page
    order, when given)."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF"), path
    assert data.rstrip().endswith(b"%%EOF"), path
    reader = pypdf.PdfReader(path)
    assert len(reader.pages) == pages
    outline = [(item.title, reader.get_destination_page_number(item)) for item in reader.outline]
    assert [page for _, page in outline] == list(range(pages)), outline
    if titles is not None:
        assert [title for title, _ in outline] == titles
    assert reader.metadata.title == "BumpNet mass spectra"


def expected_files(run_dir: Path, groups: tuple[str, ...]) -> set[Path]:
    """The files make_plots must write for a run with a few spectra per group."""
    p = run_dir / "plots"
    names = {"spectra.pdf", "final_state_counts.png", "cutflow.png", "processing_summary.png"}
    names |= {f"spectra_overview_{g}.png" for g in groups}
    return {p / n for n in names}


def no_temporaries(run_dir: Path) -> None:
    """Atomic writes leave no temporary files behind."""
    assert not [p for p in (run_dir / "plots").iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[Path]]:
    """A run with data and MC, plotted once: (run dir, manifest, files written)."""
    run_dir = tmp_path_factory.mktemp("full_run")
    manifest = write_run_dir(run_dir, n_dropped=plots.TOP_FINAL_STATES + 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = plots.make_plots(run_dir)
    assert not [str(w.message) for w in caught if "Glyph" in str(w.message)]
    return run_dir, manifest, written


def test_make_plots_full_run(full_run: tuple[Path, dict[str, Any], list[Path]]) -> None:
    """Both groups: every file written, valid, one PDF page per spectrum."""
    run_dir, manifest, written = full_run
    assert set(written) == expected_files(run_dir, ("data", "mc"))
    assert len(written) == len(set(written))
    for path in written:
        assert path.parent == run_dir / "plots"
        if path.suffix == ".png":
            check_png(path)
    check_pdf(run_dir / "plots" / "spectra.pdf", n_spectra(manifest), bookmarks(manifest))
    no_temporaries(run_dir)
    # readable as the umask allows, like any file the user writes (not mkstemp/mkdtemp's 0600/0700)
    mask = current_umask()
    assert (run_dir / "plots").stat().st_mode & 0o777 == 0o777 & ~mask
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in written)


def test_fake_run_covers_the_edge_cases(
    full_run: tuple[Path, dict[str, Any], list[Path]],
) -> None:
    """The fake run holds spectra with and without outliers, and a rejected one."""
    _, manifest, _ = full_run
    specs = manifest["histograms"]["data"]["spectra"]
    assert any(s["has_outliers"] for s in specs)
    assert any(not s["has_outliers"] for s in specs)
    assert any(s["rejected"] for s in specs)
    assert any(not s["rejected"] for s in specs)


def test_rerun_overwrites_and_removes_stale(tmp_path: Path) -> None:
    """A second call rewrites every file and drops overview pages it no longer makes."""
    write_run_dir(tmp_path, spectra=SMALL_SPECTRA[:1], groups=("data",))
    first = plots.make_plots(tmp_path)
    stale = tmp_path / "plots" / "spectra_overview_data_7.png"
    stale.write_bytes(PNG_MAGIC)
    unrelated = tmp_path / "plots" / "my_notes.txt"
    unrelated.write_text("keep me")
    before = {p: p.stat().st_mtime_ns for p in first}
    time.sleep(0.01)
    second = plots.make_plots(tmp_path)
    assert second == first
    assert all(p.stat().st_mtime_ns > before[p] for p in second)
    assert not stale.exists()
    assert unrelated.exists()
    check_pdf(tmp_path / "plots" / "spectra.pdf", 1)
    no_temporaries(tmp_path)


def test_missing_files_warn_and_still_plot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No raw file, no MC histogram file, a ROI name not in its file: warnings, every page."""
    manifest = write_run_dir(tmp_path, spectra=SMALL_SPECTRA, write_raw=False)
    (tmp_path / manifest["histograms"]["mc"]["file"]).unlink()
    manifest["histograms"]["data"]["spectra"][0]["roi_name"] = "ROI_not_there"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="processor.output.plots"):
        written = plots.make_plots(tmp_path)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("raw fine-grid file" in m for m in warned), warned
    assert any("mc histogram file" in m for m in warned), warned
    assert set(written) == expected_files(tmp_path, ("data", "mc"))
    check_pdf(tmp_path / "plots" / "spectra.pdf", n_spectra(manifest))
    for path in written:
        if path.suffix == ".png":
            check_png(path)


def test_empty_groups_and_no_spectra(tmp_path: Path) -> None:
    """No spectra at all: no PDF and no overview, the summaries still appear."""
    write_run_dir(tmp_path, spectra=(), groups=("data", "mc"))
    (tmp_path / "plots" / "spectra.pdf").write_bytes(b"%PDF old")
    written = plots.make_plots(tmp_path)
    names = {p.name for p in written}
    assert names == {"final_state_counts.png", "cutflow.png", "processing_summary.png"}
    assert not (tmp_path / "plots" / "spectra.pdf").exists()
    for path in written:
        check_png(path)


def test_minimal_manifest(tmp_path: Path) -> None:
    """A manifest with none of the optional sections (synthetic run, unknown lumi)."""
    (tmp_path / "manifest.json").write_text(
        json.dumps({"release": None, "sqrt_s_tev": 8, "luminosity_fb": None, "status": "ok"})
    )
    written = plots.make_plots(tmp_path)
    assert {p.name for p in written} == {
        "final_state_counts.png",
        "cutflow.png",
        "processing_summary.png",
    }
    for path in written:
        check_png(path)


def test_one_group_only_empty_other(tmp_path: Path) -> None:
    """An MC group listed with no spectra and no final states does not break anything."""
    manifest = write_run_dir(tmp_path, spectra=SMALL_SPECTRA[:1], groups=("data",))
    manifest["histograms"]["mc"] = {"file": "histograms/bumpnet_histograms_mc.root", "spectra": []}
    manifest["final_states"]["mc"] = {}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    written = plots.make_plots(tmp_path)
    assert set(written) == expected_files(tmp_path, ("data",))


def test_missing_manifest(tmp_path: Path) -> None:
    """Not a run directory: a clear error."""
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        plots.make_plots(tmp_path)


def test_many_spectra_paginate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More spectra than fit one overview: several pages, still one PDF page per spectrum."""
    monkeypatch.setattr(plots, "OVERVIEW_PANELS", 4)  # 16 in production; 4 keeps this fast
    kinds = ("z_tail_outliers", "z_tail", "falling", "tiny")
    n = plots.OVERVIEW_PANELS + 1
    spectra = tuple(
        (f"{i % 4}e_{(i // 4) % 4}m_{i // 16}j_0g_0t_0b", "e0e1", kinds[i % 4]) for i in range(n)
    )
    manifest = write_run_dir(tmp_path, spectra=spectra, groups=("data",))
    written = plots.make_plots(tmp_path)
    overviews = sorted(p.name for p in written if p.name.startswith("spectra_overview"))
    assert overviews == ["spectra_overview_data_1.png", "spectra_overview_data_2.png"]
    for name in overviews:
        check_png(tmp_path / "plots" / name)
    check_pdf(tmp_path / "plots" / "spectra.pdf", n_spectra(manifest))


def _page_streams(path: Path) -> list[bytes]:
    """What each page of a PDF draws (its content stream), in page order; the numbers of the
    document's resource names (/A3 gs, /M50 Do, /F1 Tf) depend on the pages before, so they go."""
    return [
        re.sub(rb"/([A-Z]+)\d+\b", rb"/\1", page.get_contents().get_data())
        for page in pypdf.PdfReader(path).pages
    ]


def test_pdf_in_parallel_parts_equals_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spectra.pdf rendered in parts on two processes and joined has the pages of a one-process
    rendering, in the same (manifest) order, with a bookmark per spectrum."""
    kinds = ("z_tail_outliers", "z_tail", "falling", "tiny")
    spectra = tuple((f"{i % 5}e_{i // 5}m_0j_0g_0t_0b", "e0e1", kinds[i % 4]) for i in range(11))
    runs = {}
    for n_proc in ("1", "2"):
        run_dir = tmp_path / f"p{n_proc}"
        run_dir.mkdir()
        manifest = write_run_dir(run_dir, spectra=spectra, groups=("data", "mc"))
        monkeypatch.setenv("BUMPNET_PLOT_PROCESSES", n_proc)
        plots.make_plots(run_dir)
        check_pdf(run_dir / "plots" / "spectra.pdf", n_spectra(manifest), bookmarks(manifest))
        no_temporaries(run_dir)
        runs[n_proc] = _page_streams(run_dir / "plots" / "spectra.pdf")
    assert plots.plot_processes(100) == 2
    assert len(plots.split_views(list(range(22)), plots.PDF_PARTS_PER_PROCESS * 2)) == 6
    assert len(runs["2"]) == 22
    assert runs["2"] == runs["1"]


def test_failing_plot_raises_after_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One failing plot does not stop the others, but is reported; the plots are a set, so the
    earlier plots stay exactly as they were and nothing temporary is left."""
    write_run_dir(tmp_path, spectra=(), groups=("data",))
    earlier = plots.make_plots(tmp_path)
    before = {p: p.read_bytes() for p in earlier}

    def boom(*args: Any, **kwargs: Any) -> None:
        raise ValueError("broken")

    monkeypatch.setattr(plots, "plot_cutflow", boom)
    with pytest.raises(plots.PlotsError, match="cutflow.png: ValueError: broken") as err:
        plots.make_plots(tmp_path)
    assert "--plots-only" in str(err.value)
    assert {p: p.read_bytes() for p in earlier} == before
    assert sorted((tmp_path / "plots").iterdir()) == sorted(earlier)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".plots")]


def test_raw_rebinning_aligns_with_roi() -> None:
    """The grey spectrum's bins share the ROI's edges and keep every entry."""
    edges = np.arange(0, 1001, 5.0)
    values = np.arange(200, dtype=float)
    raw = plots.Hist1D(values, values.copy(), edges)
    out = plots._rebin_raw(raw, 10.0, 95.0)
    assert out.values.sum() == values.sum()
    assert 95.0 in out.edges and 105.0 in out.edges
    assert out.edges[0] == 0 and out.edges[-1] == 1000


def test_labels() -> None:
    """Axis, title and number helpers."""
    assert plots._mass_label("e0m1g0") == r"$m_{e_{0}\,\mu_{1}\,\gamma_{0}}$"
    assert plots._fs_pretty("2e_0m_1j_0g_0t_0b") == r"$2e\,1j$"
    assert plots._mass_label("j0Z0") == r"$m_{j_{0}\,Z_{0}}$"
    assert plots._mass_label("e0e2_OS") == r"$m_{e_{0}\,e_{2}}$ (OS)"
    assert plots._fs_pretty("0e_2m_0j_0g_0t_0b_1Z_SS") == r"$2\mu\,1Z\,\mathrm{SS}$"
    assert plots._rlabel(plots.LabelInfo(13.0, None)) == "√s = 13 TeV"
    assert "36.6" in plots._rlabel(plots.LabelInfo(13.0, 36.6))
    assert plots._duration(3723.4) == "1 h 02 min 03 s"
    assert plots._bytes(3 * 2**30) == "3 GiB"


def test_raw_file_name_from_config_yaml(tmp_path: Path) -> None:
    """A run whose config renamed the raw file: its config.yaml says where it is."""
    manifest = write_run_dir(tmp_path, spectra=SMALL_SPECTRA[:1], groups=("data",))
    hist_dir = tmp_path / "histograms"
    (hist_dir / "raw_histograms.root").rename(hist_dir / "fine.root")
    (tmp_path / "config.yaml").write_text(
        "histogram_creation_task_config:\n  raw_output_file: fine.root\n"
    )
    views = plots.load_spectra(tmp_path, manifest)["data"]
    assert views[0].raw is not None and views[0].roi is not None
    assert views[0].raw.total >= views[0].roi.total
    assert not views[0].problems


def test_unreadable_histogram_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A histogram uproot cannot read becomes a note on its page, not a failure."""
    manifest = write_run_dir(tmp_path, spectra=SMALL_SPECTRA[:1], groups=("data",))

    def broken(directory: Any, name: str) -> None:
        raise ValueError("not a TH1")

    monkeypatch.setattr(plots, "_read_th1", broken)
    views = plots.load_spectra(tmp_path, manifest)["data"]
    assert views[0].roi is None and "unreadable" in views[0].problems[0]
    plots.make_plots(tmp_path)
    check_pdf(tmp_path / "plots" / "spectra.pdf", 1)


def test_thstack_spectra_are_summed_and_blacklisted_ones_noted(tmp_path: Path) -> None:
    """MC by process (THStack) is drawn as the sum of its components; a blacklisted spectrum
    is not looked for in the file."""
    from processor.output.stacks import Item, pyroot_available, write_with_pyroot

    if not pyroot_available():
        pytest.skip("PyROOT not installed (extra 'root')")
    a = hist.Hist(hist.axis.Regular(3, 100, 130))
    b = hist.Hist(hist.axis.Regular(3, 100, 130))
    a.view()[:] = [5, 3, 1]
    b.view()[:] = [2, 2, 0]
    write_with_pyroot(tmp_path / "mc.root", [Item("ROI_x", a + b, "ROI", {"ttbar": a, "Z": b})])
    with uproot.open(tmp_path / "mc.root") as f:
        h = plots._read_th1(f, "ROI_x")
        assert h is not None
        assert h.values.tolist() == [7, 5, 1]
        assert h.edges.tolist() == [100, 110, 120, 130]
        view = plots.SpectrumView(
            group="mc", fs="2e_0m_0j_0g_0t_0b", combo="e0e1", roi_name="ROI_x",
            outlier_name="", lo=100.0, split=None, hi=130.0, rejected=["blacklisted"],
        )  # fmt: skip
        plots._fill_view(view, {"blacklisted": True, "has_outliers": False}, f, None)
    assert view.roi is None
    assert view.problems == ["blacklisted: not written to the BumpNet file"]
