"""Faults never give a silently wrong result (issue 12): run-directory safety, honest errors,
walltime kills and storage errors, each against real generated files and the real runner."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import uproot
from helpers import assert_same_run_histograms, read_hists

from processor.config import load_config
from processor.synthetic import write_sample

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runner.py"
FAST = ["--executor", "iterative"]


def runner(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """runner.py in a subprocess (own cache directory), output captured."""
    env = {**os.environ, "BUMPNET_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def error_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    (d / "cache").mkdir()
    return d


@pytest.fixture(scope="module")
def inputs(work) -> list[Path]:
    d = work / "inputs"
    d.mkdir()
    return [
        write_sample(
            d / f"ODEO_FEB2025_v0_2to4lep_data15_periodF{i}.2to4lep.root",
            "2025e",
            4_000,
            seed=300 + i,
            kind="data",
            signal_mass_gev=400.0,
        )
        for i in range(2)
    ]


def config_file(d: Path, name: str, electron_pt: float, extra: str = "") -> Path:
    path = d / name
    path.write_text(
        "executor: {chunksize: 1500, align_clusters: false}\n"
        "tasks: {do_plots: false}\n"
        f"object_selection: {{electrons: {{pt_min: {electron_pt}}}}}\n" + extra
    )
    return path


@pytest.fixture(scope="module")
def clean25(work, inputs) -> Path:
    """A clean run with a 25 GeV electron cut (the reference)."""
    d = work / "clean25"
    d.mkdir()
    cfg = config_file(d, "c25.yaml", 25)
    res = runner(
        [*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(d / "r")], d
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return d / "r"


@pytest.fixture(scope="module")
def clean50(work, inputs) -> Path:
    """A clean run with a 50 GeV electron cut."""
    d = work / "clean50"
    d.mkdir()
    cfg = config_file(d, "c50.yaml", 50)
    res = runner(
        [*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(d / "r")], d
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return d / "r"


def _differs(a: Path, b: Path) -> bool:
    ha = read_hists(a / "histograms" / "raw_histograms.root")
    hb = read_hists(b / "histograms" / "raw_histograms.root")
    if ha.keys() != hb.keys():
        return True
    return any(not isinstance(v, str) and not np.array_equal(v[0], hb[k][0]) for k, v in ha.items())


# -- 1. checkpoints keyed by config digest and code version -------------------------------------


def test_reused_run_dir_under_other_config_does_not_reuse_checkpoints(
    work, inputs, clean25, clean50
):
    assert _differs(clean25, clean50), "the two cuts must give different histograms"
    d = work / "reuse"
    d.mkdir()
    run_dir = d / "r"
    args = [*FAST, "--input", *map(str, inputs), "--run-dir", str(run_dir)]
    res = runner([*args, "--config", str(config_file(d, "c25.yaml", 25))], d)
    assert res.returncode == 0, res.stderr[-3000:]
    res = runner([*args, "--config", str(config_file(d, "c50.yaml", 50))], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "object_selection.electrons.pt_min" in res.stderr  # the warning names the change
    assert assert_same_run_histograms(run_dir, clean50) > 5
    # one checkpoint directory per (config digest, code version)
    keys = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(keys) == 2 and all(k.startswith("cfg-") and "_code-" in k for k in keys)


def test_checkpoint_key_changes_with_physics_not_with_cluster(tmp_path):
    from processor.run.execute import checkpoint_key

    a = load_config(config_file(tmp_path, "a.yaml", 25))
    b = load_config(config_file(tmp_path, "b.yaml", 50))
    c = load_config(config_file(tmp_path, "c.yaml", 25, "cluster: {local: {memory_limit: 2GB}}\n"))
    assert checkpoint_key(a) != checkpoint_key(b)
    assert checkpoint_key(a) == checkpoint_key(c)


# -- 2. --resume uses exactly the recorded config and inputs -----------------------------------


def test_resume_with_other_config_is_refused_naming_the_key(work, inputs, clean25):
    d = work / "resume_cfg"
    d.mkdir()
    before = (clean25 / "manifest.json").read_text()
    res = runner(
        [*FAST, "--resume", str(clean25), "--config", str(config_file(d, "c.yaml", 50))], d
    )
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "object_selection.electrons.pt_min" in line and "recorded" in line
    assert "drop --config" in line
    assert (clean25 / "manifest.json").read_text() == before


def test_resume_with_other_input_is_refused(work, inputs, clean25):
    d = work / "resume_input"
    d.mkdir()
    res = runner([*FAST, "--resume", str(clean25), "--input", str(inputs[0])], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "parsing_task_config.inputs" in line


def test_resume_with_the_same_config_and_inputs_is_allowed(work, inputs, clean25):
    d = work / "resume_same"
    d.mkdir()
    import shutil

    run_dir = d / "r"
    shutil.copytree(clean25, run_dir)
    cfg = clean25.parent / "c25.yaml"
    res = runner(
        [*FAST, "--resume", str(run_dir), "--config", str(cfg), "--input", *map(str, inputs)], d
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(run_dir, clean25) > 5


def test_resume_reads_the_recorded_fileset_not_the_config(work, inputs, clean25):
    """The recorded fileset.json is what a resume processes (no re-planning from config)."""
    import shutil

    d = work / "resume_fileset"
    d.mkdir()
    run_dir = d / "r"
    shutil.copytree(clean25, run_dir)
    # the inputs named in config.yaml are gone; fileset.json points to copies that still exist
    moved = d / "moved"
    moved.mkdir()
    fs = json.loads((run_dir / "fileset.json").read_text())
    for spec in fs["fileset"].values():
        spec["files"] = {
            str(shutil.copy(f, moved / Path(f).name)): t for f, t in spec["files"].items()
        }
    (run_dir / "fileset.json").write_text(json.dumps(fs))
    res = runner([*FAST, "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(row["file"].startswith(str(moved)) for row in manifest["inputs"])


# -- 3. run-directory lock, unique new run directories ------------------------------------------


def test_second_run_on_a_locked_run_dir_exits_4(work, inputs):
    d = work / "locked"
    run_dir = d / "r"
    run_dir.mkdir(parents=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running runner holds
        os.write(fd, b"pid 1 on testhost since now\n")
        res = runner([*FAST, "--input", str(inputs[0]), "--run-dir", str(run_dir)], d)
    finally:
        os.close(fd)
    assert res.returncode == 4, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert str(run_dir) in line and "in use by another run" in line and "pid 1" in line
    assert not (run_dir / "manifest.json").exists()
    assert not (run_dir / "config.yaml").exists()


@pytest.mark.slow
def test_two_concurrent_runs_in_one_run_dir(work, inputs, clean25):
    """Two real runs at once on one directory: exactly one runs, the other exits 4."""
    d = work / "concurrent"
    d.mkdir()
    run_dir = d / "r"
    env = {**os.environ, "BUMPNET_CACHE_DIR": str(d / "cache")}
    cfg25 = clean25.parent / "c25.yaml"
    cfg50 = config_file(d, "c50.yaml", 50)
    procs = [
        subprocess.Popen(
            [sys.executable, str(RUNNER), *FAST, "--config", str(cfg), "--input",
             *map(str, inputs), "--run-dir", str(run_dir)],
            cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for cfg in (cfg25, cfg50)
    ]  # fmt: skip
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, err))
    codes = sorted(rc for rc, _ in results)
    if codes == [0, 0]:
        pytest.skip("the runs did not overlap in time on this machine (no contention to test)")
    assert codes == [0, 4], results
    winner = 0 if results[0][0] == 0 else 1
    loser_err = results[1 - winner][1]
    assert "in use by another run" in loser_err
    if winner == 0:
        assert assert_same_run_histograms(run_dir, clean25) > 5


def test_new_run_dirs_are_created_atomically_and_uniquely(tmp_path):
    from processor.run.rundir import create_unique_run_dir

    cfg = load_config(None, {"run_metadata.base_output_dir": str(tmp_path)})
    made: list[Path] = []
    lock = threading.Lock()

    def make() -> None:
        p = create_unique_run_dir(cfg, stamp="20260101_000000")
        with lock:
            made.append(p)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and len(set(made)) == 8
    assert all(p.is_dir() for p in made)


# -- 4. --merge-only refuses differing physics and overlapping inputs --------------------------


def test_merge_of_the_same_run_twice_is_refused(work, clean25):
    d = work / "merge_twice"
    d.mkdir()
    res = runner(["--merge-only", str(clean25), str(clean25), "--run-dir", str(d / "m")], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "listed twice" in line and str(clean25) in line
    assert not (d / "m" / "manifest.json").exists()


def test_merge_of_runs_with_other_cuts_is_refused(work, clean25, clean50):
    d = work / "merge_cuts"
    d.mkdir()
    res = runner(["--merge-only", str(clean25), str(clean50), "--run-dir", str(d / "m")], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "object_selection.electrons.pt_min" in line


def test_merge_of_runs_sharing_an_input_is_refused(work, inputs, clean25):
    d = work / "merge_overlap"
    d.mkdir()
    cfg = clean25.parent / "c25.yaml"
    other = d / "r0"
    res = runner(
        [*FAST, "--config", str(cfg), "--input", str(inputs[0]), "--run-dir", str(other)], d
    )
    assert res.returncode == 0, res.stderr[-3000:]
    res = runner(["--merge-only", str(clean25), str(other), "--run-dir", str(d / "m")], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert inputs[0].name in line and "count twice" in line


def test_merge_of_disjoint_runs_equals_one_run(work, inputs, clean25):
    d = work / "merge_ok"
    d.mkdir()
    cfg = clean25.parent / "c25.yaml"
    halves = []
    for i, f in enumerate(inputs):
        r = d / f"h{i}"
        res = runner([*FAST, "--config", str(cfg), "--input", str(f), "--run-dir", str(r)], d)
        assert res.returncode == 0, res.stderr[-3000:]
        halves.append(r)
    res = runner(["--merge-only", *map(str, halves), "--run-dir", str(d / "m")], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(clean25, d / "m") > 5


# -- 9. config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("- a\n- b\n", "top level must be a mapping"),
        ("cluster: {local: {memory_limit: lots}}\n", "cluster.local.memory_limit"),
        ("cluster: {local: {dashboard_address: 'localhost:99999'}}\n", "cluster.local.dashboard_address"),
        ("cluster: {pbs: {dashboard_address: 'no port'}}\n", "cluster.pbs.dashboard_address"),
    ],
)  # fmt: skip
def test_config_errors_exit_2_naming_the_key(work, inputs, text, key):
    d = work / "cfgerr"
    d.mkdir(exist_ok=True)
    cfg = d / "bad.yaml"
    cfg.write_text(text)
    res = runner([*FAST, "--dry-run", "--config", str(cfg), "--input", str(inputs[0])], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert key in line and str(cfg) in line
    assert "Traceback" not in res.stderr


def test_empty_config_file_says_defaults_are_used(work, inputs):
    d = work / "cfgempty"
    d.mkdir()
    cfg = d / "empty.yaml"
    cfg.write_text("# nothing yet\n")
    res = runner([*FAST, "--dry-run", "--config", str(cfg), "--input", str(inputs[0])], d)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if "empty" in line]
    assert len(lines) == 1 and "built-in defaults" in lines[0] and str(cfg) in lines[0]


def _unused(*_: object) -> None:  # keep imports used by later sections
    return None


_unused(signal, uproot)


# -- 16. weighted histograms carry ROOT's statistics right ---------------------------------------


def test_weighted_histograms_have_fill_counts_and_sumw2(tmp_path):
    from processor.config import validate_config
    from processor.output.postprocess import BUMPNET_MIN_ENTRIES, postprocess_groups
    from processor.output.rootfiles import read_raw_file, write_bumpnet_file, write_raw_file
    from processor.physics.accumulator import total_cutflow
    from processor.physics.histograms import MassGrid
    from processor.run.execute import process

    mc = write_sample(tmp_path / "mc.root", "2025e", 6_000, seed=12, kind="mc", dsid=700001)
    fileset = {"mc": {"files": {str(mc): "analysis"}, "metadata": {"is_mc": True}}}
    cfg = validate_config({"mass_calculation_task_config": {"weighting": "mc"}})
    with _two_workers() as client:
        out = process(fileset, cfg, client=client, status=False).out
    content = out["groups"]["mc"]
    assert content["fills"].keys() == content["hists"].keys()
    raw = tmp_path / "raw.root"
    write_raw_file(raw, out["groups"], total_cutflow(out))
    pp = postprocess_groups(out, cfg)["mc"]
    bump = tmp_path / "bump_mc.root"
    write_bumpnet_file(bump, pp, by_process=False)  # the sums as TH1D (stacks: test_bumpnet_file)
    checked = 0
    with uproot.open(raw) as f:
        for (fs, combo), h in content["hists"].items():
            from processor.output.naming import raw_name

            th1 = f[f"mc/{raw_name(fs, combo)}"]
            n_fills = int(content["fills"][(fs, combo)].sum(flow=True))
            assert th1.member("fEntries") == n_fills
            np.testing.assert_allclose(
                th1.member("fTsumw2"), h.view(flow=False)["variance"].sum(), rtol=1e-12
            )
            assert th1.member("fTsumw2") != pytest.approx(th1.member("fTsumw"))
            checked += 1
    assert checked > 5
    spectra = [s for s in pp.spectra if s.roi is not None]
    with uproot.open(bump) as f:
        for s in spectra:
            th1 = f[s.roi_name]
            assert th1.member("fEntries") == s.roi_entries > 0
            np.testing.assert_allclose(
                th1.member("fTsumw2"), s.roi.view()["variance"].sum(), rtol=1e-12
            )
            # BumpNet's loader sums the bin contents (a sum of weights here), not the fills
            total = s.roi.values()[: s.verdict.stop].sum()
            if "no_bin_above" not in s.verdict.codes:  # else no total is checked
                assert (f"{total:g} entries < {BUMPNET_MIN_ENTRIES:g}" in s.rejected) == (
                    total < BUMPNET_MIN_ENTRIES
                )
    # a merge reads the fill counts back from the raw file
    groups, _ = read_raw_file(raw, MassGrid.from_config(cfg.mass_calculation_task_config))
    for key, c in content["fills"].items():
        np.testing.assert_array_equal(groups["mc"]["fills"][key].view(flow=True), c.view(flow=True))
    try:
        import ROOT
    except ImportError:
        return
    rf = ROOT.TFile.Open(str(bump))
    try:
        for s in spectra:
            h = rf.Get(s.roi_name)
            assert h.GetEntries() == s.roi_entries
            sumw, sumw2 = s.roi.values().sum(), s.roi.variances().sum()
            assert h.GetEffectiveEntries() == pytest.approx(sumw**2 / sumw2, rel=1e-9)
    finally:
        rf.Close()


def _two_workers():
    from helpers import two_worker_client

    return two_worker_client()


# -- 12. SIGTERM (walltime) like Ctrl-C; --resume RUN_DIR continues the recorded run ------------


@pytest.mark.slow
def test_sigterm_then_resume_gives_the_clean_result(work, inputs, clean25):
    d = work / "sigterm"
    d.mkdir()
    run_dir = d / "r"
    env = {**os.environ, "BUMPNET_CACHE_DIR": str(d / "cache")}
    cfg = clean25.parent / "c25.yaml"
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), "--local", "--workers", "1", "--config", str(cfg),
         "--input", *map(str, inputs), "--run-dir", str(run_dir)],
        cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # wait (bounded) until the run is processing: its first checkpoint exists
        for line in proc.stdout:
            if "Dask dashboard" in line:
                break
        for _ in range(600):
            if proc.poll() is not None or list((run_dir / "checkpoints").rglob("*.coffea")):
                break
            threading.Event().wait(0.2)
        if proc.poll() is not None:
            pytest.skip("the run finished before SIGTERM could be sent")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "SIGTERM" in errors[0] and f"--resume {run_dir}" in errors[0]
    assert "Traceback" not in err
    assert not (run_dir / "manifest.json").exists()
    # the recorded run: no --config, no --input
    res = runner(["--local", "--workers", "1", "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(run_dir, clean25) > 5
