"""runner.py end to end, in subprocesses: demo, outputs read back, dry run, errors, merging, ROOT."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot
from helpers import SHARED, assert_same_run_histograms

from processor.config import BumpNetCuts
from processor.output.naming import raw_name
from processor.output.readiness import load_like_bumpnet
from processor.output.stacks import WRITER_STACKS, pyroot_available
from processor.synthetic import write_sample

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runner.py"
ROI_RE = re.compile(
    r"^ROI_mass_([a-zA-Z0-9]+)_cat_(\d+ex_\d+mx_\d+bx_\d+jx_\d+Zx_\d+gx_\d+tx)(_OS|_SS)?$"
)


def run(
    args: list[str], tmp: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "BUMPNET_CACHE_DIR": str(tmp / "cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("e2e")
    (d / "cache").mkdir()
    return d


#: runs whose plots and bump scan no test here looks at
FAST = "tasks: {do_plots: false}\npost_processing_task_config: {bump_scan: {enabled: false}}\n"


def fast_config(d: Path) -> Path:
    """A config without plots and bump scan, in ``d``."""
    cfg = d / "fast.yaml"
    cfg.write_text(FAST)
    return cfg


@pytest.fixture(scope="module")
def small_inputs(workdir) -> list[Path]:
    d = workdir / "inputs"
    d.mkdir()
    files = []
    for i in range(4):
        name = f"ODEO_FEB2025_v0_2to4lep_data15_periodD{i}.2to4lep.root"
        files.append(
            write_sample(d / name, "2025e", 6_000, seed=100 + i, kind="data", signal_mass_gev=500.0)
        )
    return files


@pytest.mark.slow
def test_demo_runs_and_writes_a_bumpnet_file(demo_run):
    res, run_dir = demo_run.result, demo_run.run_dir
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Dask dashboard: http://127.0.0.1" in res.stdout
    assert "histograms written:" in res.stdout
    with uproot.open(run_dir / "histograms" / "bumpnet_histograms.root") as f:
        keys = [k.split(";")[0] for k in f.keys()]
        roi = [k for k in keys if k.startswith("ROI_")]
        assert len(roi) >= 10
        for k in roi:
            assert ROI_RE.match(k), k
            assert f.classnames()[k + ";1"] == "TH1D"
            edges = f[k].axis().edges()
            np.testing.assert_allclose(np.diff(edges), 10.0)
            for view in ("raw_", "rebinned_"):  # BumpNet's three views of each spectrum
                assert view + k.removeprefix("ROI_") in keys, k
        # and the bump scan's Z_LR and background beside each scanned ROI (issue 13)
        assert all(
            k.startswith(("ROI_", "rebinned_", "raw_", "outliers_", "zlr_", "scanbkg_"))
            for k in keys
        )
        assert any(k.startswith("zlr_") for k in keys)


@pytest.mark.slow
def test_demo_mc_file_is_stacked_by_process(demo_run):
    run_dir = demo_run.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    mc = manifest["histograms"]["mc"]
    # the demo's two MC datasets match no SM group: each keeps its own name
    assert mc["mc_by_process"]["components"] == ["Synthetic_SM_A", "Synthetic_SM_B"]
    assert mc["mc_by_process"]["bumpnet_bsm"] == ["Synthetic_SM_A", "Synthetic_SM_B"]
    stacked = mc["mc_by_process"]["writer"] == WRITER_STACKS
    assert stacked == pyroot_available()
    with uproot.open(run_dir / mc["file"]) as f:
        classes = f.classnames(cycle=False)
        for spec in mc["spectra"]:
            if not spec["written"]:
                continue
            if stacked:
                assert classes[spec["roi_name"]] == "THStack"
                parts = f[spec["roi_name"]].member("fHists")
                assert {str(h.member("fName")) for h in parts} <= {
                    "Synthetic_SM_A_roi",
                    "Synthetic_SM_B_roi",
                }
                total = np.sum([h.values() for h in parts], axis=0)
            else:
                total = f[spec["roi_name"]].values()
            assert total.sum() == pytest.approx(spec["entries"])


@pytest.mark.slow
def test_manifest_readiness_is_what_the_emulated_loader_finds(demo_run):
    run_dir = demo_run.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cuts = BumpNetCuts(**manifest["bumpnet_cuts"])
    for group, entry in manifest["histograms"].items():
        loaded = load_like_bumpnet(run_dir / entry["file"], cuts)
        accepted = {h.key for h in loaded if h.verdict.accepted}
        assert accepted == {s["roi_name"] for s in entry["spectra"] if s["bumpnet"]["accepted"]}
        assert len(accepted) == entry["n_bumpnet_ready"] > 0, group
        assert {h.key for h in loaded} == {s["roi_name"] for s in entry["spectra"] if s["written"]}


@pytest.mark.slow
def test_roi_contents_equal_the_raw_fine_histogram_over_the_same_range(demo_run):
    run_dir = demo_run.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    checked = 0
    with (
        uproot.open(run_dir / "histograms" / "bumpnet_histograms.root") as out,
        uproot.open(run_dir / "histograms" / "raw_histograms.root") as raw,
    ):
        for spec in manifest["histograms"]["data"]["spectra"]:
            if not spec["roi_name"]:
                continue
            roi = out[spec["roi_name"]]
            fine = raw["data/" + raw_name(spec["fs"], spec["combo"])]
            fine_edges, fine_vals = fine.axis().edges(), fine.values()
            stop = spec["split"] if spec["split"] is not None else np.inf
            for lo, hi, v in zip(
                roi.axis().edges()[:-1], roi.axis().edges()[1:], roi.values(), strict=True
            ):
                sel = (fine_edges[:-1] >= lo - 1e-6) & (fine_edges[1:] <= min(hi, stop) + 1e-6)
                assert v == pytest.approx(fine_vals[sel].sum()), spec["roi_name"]
            checked += 1
    assert checked >= 10


@pytest.mark.slow
def test_manifest_accounts_for_every_generated_event(demo_run, workdir):
    run_dir = demo_run.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    generated = 0
    for item in manifest["inputs"]:
        generated += uproot.open(item["file"])["analysis"].num_entries
        assert item["entries_processed"] == item["entries_expected"]
        assert item["status"] == "ok"
    assert generated == 200_000
    assert manifest["cutflow_total"]["events_read"] == generated
    assert manifest["status"] == "ok" and manifest["failures"] == []
    assert manifest["processing"]["accumulator_bytes"] > 0
    assert manifest["software"]["coffea"] != "not installed"
    for sub in ("plots", "logs", "histograms"):
        assert any((run_dir / sub).iterdir()), sub
    assert (run_dir / "config.yaml").is_file()
    assert not list(run_dir.rglob("*.tmp*"))


@pytest.mark.slow
def test_plots_only_regenerates_plots(demo_run, demo_plots_only):
    run_dir = demo_run.run_dir
    res = demo_plots_only
    assert res.returncode == 0, res.stderr[-2000:]
    pngs = list((run_dir / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (run_dir / "plots" / "spectra.pdf").read_bytes()[:5] == b"%PDF-"


def test_dry_run_writes_nothing(workdir, small_inputs):
    d = workdir / "dry"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text(f"run_metadata: {{base_output_dir: {d / 'out'}}}\n")
    before = sorted(p for p in d.rglob("*"))
    res = run(["--dry-run", "--config", str(cfg), "--input", *map(str, small_inputs)], d)
    assert res.returncode == 0, res.stderr
    assert "entries: 24000" in res.stdout
    assert sorted(p for p in d.rglob("*")) == before


def test_config_typo_exits_2_naming_the_key(workdir):
    cfg = workdir / "typo.yaml"
    cfg.write_text("histogram_creation_task_config:\n  bin_widht_gev: 10\n")
    res = run(["--dry-run", "--config", str(cfg)], workdir)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert (
        "histogram_creation_task_config.bin_widht_gev" in line
        and "did you mean 'bin_width_gev'" in line
    )


def test_usage_error_exits_2(workdir):
    res = run(["--plots-only"], workdir)
    assert res.returncode == 2
    assert "--plots-only needs --run-dir" in res.stderr


def _raw(run_dir: Path) -> dict[str, np.ndarray]:
    with uproot.open(run_dir / "histograms" / "raw_histograms.root") as f:
        return {k: f[k].values(flow=True) for k, c in f.classnames().items() if c == "TH1D"}


def test_merging_two_halves_equals_one_run(workdir, small_inputs):
    d = workdir / "merge"
    d.mkdir()
    common = ["--executor", "iterative", "--config", str(fast_config(d))]
    full, a, b, m = d / "full", d / "a", d / "b", d / "merged"
    assert (
        run([*common, "--input", *map(str, small_inputs), "--run-dir", str(full)], d).returncode
        == 0
    )
    assert (
        run([*common, "--input", *map(str, small_inputs[:2]), "--run-dir", str(a)], d).returncode
        == 0
    )
    assert (
        run([*common, "--input", *map(str, small_inputs[2:]), "--run-dir", str(b)], d).returncode
        == 0
    )
    res = run(["--merge-only", str(a), str(b), "--run-dir", str(m)], d)
    assert res.returncode == 0, res.stderr[-2000:]
    assert assert_same_run_histograms(full, m) > 10
    mf = json.loads((m / "manifest.json").read_text())
    assert mf["cutflow_total"]["events_read"] == 24_000


def test_blacklist_in_the_file_and_the_manifest(workdir, small_inputs):
    """A BumpNet-style entry (no gx/tx) is not written in any view and the manifest says so;
    an entry matching nothing is reported as unmatched."""
    d = workdir / "blacklist"
    d.mkdir()
    typo = "ROI_mass_e0e1_cat_9ex_0mx_0bx_0jx_0Zx"
    cfg = d / "c.yaml"
    cfg.write_text(
        FAST + "histogram_creation_task_config:\n"
        f"  blacklist: [mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_OS, {typo}]\n"
    )
    run_dir = d / "run"
    args = ["--executor", "iterative", "--config", str(cfg), "--run-dir", str(run_dir)]
    res = run([*args, "--input", str(small_inputs[0])], d)
    assert res.returncode == 0, res.stderr[-2000:]
    assert typo in res.stderr  # the unmatched entry is logged
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["blacklist"]["unmatched"] == [typo]
    data = manifest["histograms"]["data"]
    name = "ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx_0gx_0tx_OS"
    assert data["blacklisted"] == [name]
    flagged = [s for s in data["spectra"] if s.get("blacklisted")]
    assert [s["roi_name"] for s in flagged] == [name] and not flagged[0]["written"]
    with uproot.open(run_dir / data["file"]) as f:
        keys = f.keys(cycle=False)
    base = name.removeprefix("ROI_")
    assert not [k for k in keys if k.endswith(base)]  # no raw_/rebinned_/ROI_/outliers_ view
    assert any(k.startswith("ROI_") for k in keys)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real Open Data files not present at {SHARED}")
def test_input_on_real_files(workdir):
    d = workdir / "real"
    d.mkdir()
    res = run(
        [
            "--local",
            "--workers",
            "2",
            "--input",
            str(SHARED / "2020e-13tev_4lep" / "*.root"),
            "--run-dir",
            str(d / "r"),
        ],
        d,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    mf = json.loads((d / "r" / "manifest.json").read_text())
    assert mf["cutflow_total"]["events_read"] == 832
    assert mf["formats"] == {"2020e": 832}


def _hadd() -> str | None:
    try:
        import ROOT  # noqa: F401
    except ImportError:
        return None
    exe = shutil.which("hadd")
    if exe:
        return exe
    import ROOT as R

    cand = Path(R.__file__).parent / "bin" / "hadd"
    return str(cand) if cand.exists() else None


@pytest.mark.root
def test_output_opens_in_root_and_hadd_adds_raw_files(workdir, small_inputs):
    hadd = _hadd()
    if hadd is None:
        pytest.skip("PyROOT/hadd not installed (optional extra 'root')")
    d = workdir / "rootcheck"
    d.mkdir()
    a, b = d / "a", d / "b"
    fast = str(fast_config(d))
    assert (
        run(
            [
                "--executor",
                "iterative",
                "--config",
                fast,
                "--input",
                *map(str, small_inputs[:2]),
                "--run-dir",
                str(a),
            ],
            d,
        ).returncode
        == 0
    )
    assert (
        run(
            [
                "--executor",
                "iterative",
                "--config",
                fast,
                "--input",
                *map(str, small_inputs[2:]),
                "--run-dir",
                str(b),
            ],
            d,
        ).returncode
        == 0
    )
    summed = d / "sum.root"
    subprocess.run(
        [
            hadd,
            "-f",
            str(summed),
            str(a / "histograms/raw_histograms.root"),
            str(b / "histograms/raw_histograms.root"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ra, rb, rs = _raw(a), _raw(b), {}
    with uproot.open(summed) as f:
        rs = {k: f[k].values(flow=True) for k, c in f.classnames().items() if c == "TH1D"}
    assert rs.keys() == ra.keys() | rb.keys()
    for k in rs:
        np.testing.assert_array_equal(rs[k], ra.get(k, 0) + rb.get(k, 0), err_msg=k)
    check = (
        "import ROOT,sys\n"
        "f=ROOT.TFile.Open(sys.argv[1])\n"
        "keys=[k.GetName() for k in f.GetListOfKeys()]\n"
        "rois=[k for k in keys if k.startswith('ROI_')]\n"
        "assert rois\n"
        "for k in rois:\n"
        "    h=f.Get(k); assert h.ClassName()=='TH1D', h.ClassName(); assert h.GetNbinsX()>0\n"
        "print(len(rois), sum(f.Get(k).Integral() for k in rois))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check, str(a / "histograms/bumpnet_histograms.root")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n, integral = out.stdout.split()
    with uproot.open(a / "histograms/bumpnet_histograms.root") as f:
        rois = [k for k in f.keys() if k.startswith("ROI_")]
        assert int(n) == len(rois)
        assert float(integral) == pytest.approx(sum(f[k].values().sum() for k in rois))


def test_maxchunks_quick_look_is_not_a_failure(workdir, small_inputs):
    d = workdir / "maxchunks"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text("executor: {maxchunks: 1, chunksize: 1000, align_clusters: false}\n" + FAST)
    res = run(
        [
            "--executor",
            "iterative",
            "--config",
            str(cfg),
            "--input",
            *map(str, small_inputs),
            "--run-dir",
            str(d / "r"),
        ],
        d,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    mf = json.loads((d / "r" / "manifest.json").read_text())
    assert mf["status"] == "ok"
    assert mf["cutflow_total"]["events_read"] == 1000  # one chunk of the one dataset
    assert "plots:" not in res.stdout


def test_resume_reuses_finished_chunks(workdir, small_inputs):
    import cloudpickle
    import lz4.frame

    d = workdir / "resume"
    d.mkdir()
    run_dir = d / "r"
    cfg = d / "c.yaml"
    cfg.write_text("executor: {chunksize: 2000, align_clusters: false}\n" + FAST)
    args = ["--executor", "iterative", "--config", str(cfg), "--input", *map(str, small_inputs)]
    assert run([*args, "--run-dir", str(run_dir)], d).returncode == 0
    checkpoints = sorted((run_dir / "checkpoints").rglob("*.coffea"))
    assert len(checkpoints) == 12  # 4 files x 3 chunks, one checkpoint each
    first = json.loads((run_dir / "manifest.json").read_text())
    # mark one stored chunk: if --resume reloads checkpoints, the mark shows up in the result
    with lz4.frame.open(checkpoints[0], "rb") as fin:
        chunk = cloudpickle.load(fin)
    out = chunk["out"]  # coffea stores {"out", "metrics", "processed"} per chunk
    dataset = next(iter(out["cutflow"]))
    out["cutflow"][dataset]["events_read"] += 1_000_000
    with lz4.frame.open(checkpoints[0], "wb") as fout:
        cloudpickle.dump(chunk, fout)
    res = run(["--resume", str(run_dir), *args], d)
    assert res.returncode == 0, res.stderr[-2000:]
    second = json.loads((run_dir / "manifest.json").read_text())
    assert (
        second["cutflow_total"]["events_read"] == first["cutflow_total"]["events_read"] + 1_000_000
    )
    assert second["final_states"] == first["final_states"]
