"""Faults never give a silently wrong result (issue 12): run-directory safety, honest errors,
walltime kills and storage errors, each against real generated files and the real runner."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uproot
from helpers import (
    assert_same_run_histograms,
    assert_sigterm_exit,
    read_hists,
    wait_until_processing,
)

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


def test_checkpoint_key_follows_the_mc_process_grouping(tmp_path):
    """Chunks carry per-process MC copies filed under mc_groups: both the grouping and whether
    copies are kept at all (mc_by_process, or naming when it is null) key the checkpoints."""
    from processor.configdiff import physics_diff
    from processor.run.execute import checkpoint_key

    def cfg(name: str, extra: str) -> object:
        return load_config(config_file(tmp_path, name, 25, extra))

    base = cfg("base.yaml", "")
    regroup = cfg("g.yaml", "histogram_creation_task_config: {mc_groups: {ttbar: ['nomatch_']}}\n")
    no_stacks = cfg("n.yaml", "histogram_creation_task_config: {mc_by_process: false}\n")
    seed = cfg("s.yaml", "histogram_creation_task_config: {naming: seed}\n")  # null -> off
    seed_stacks = cfg("ss.yaml", "histogram_creation_task_config: {naming: seed, mc_by_process: true}\n")  # fmt: skip
    assert checkpoint_key(regroup) != checkpoint_key(base)
    assert checkpoint_key(no_stacks) != checkpoint_key(base)
    assert checkpoint_key(seed) == checkpoint_key(no_stacks) != checkpoint_key(base)
    assert checkpoint_key(seed_stacks) == checkpoint_key(base)  # naming alone: same chunks
    # a given mc_groups replaces the default mapping: every group differs
    assert "histogram_creation_task_config.mc_groups.ttbar" in physics_diff(base, regroup)
    assert physics_diff(base, seed) == ["histogram_creation_task_config.naming"]
    assert physics_diff(base, seed_stacks) == []


@pytest.fixture(scope="module")
def mc_inputs(work) -> list[Path]:
    d = work / "mc_inputs"
    d.mkdir()
    names = [(700320, "Sh_2214_Zee_maxHTpTV2_BFilter"), (410470, "PhPy8EG_A14_ttbar_hdamp258p75_nonallhad")]  # fmt: skip
    return [
        write_sample(
            d / f"ODEO_FEB2025_v0_2to4lep_mc_{dsid}.{name}.2to4lep.root",
            "2025e",
            3_000,
            seed=40 + i,
            kind="mc",
            dsid=dsid,
        )
        for i, (dsid, name) in enumerate(names)
    ]


def _by_process_groups(run_dir: Path) -> set[str]:
    with uproot.open(run_dir / "histograms" / "raw_histograms.root") as f:
        keys = f.keys(recursive=True, cycle=False)
    return {k.split("/")[2] for k in keys if k.startswith("mc/by_process/") and k.count("/") == 3}


@pytest.mark.slow
def test_reused_run_dir_under_another_mc_grouping_recomputes_and_merges_refuse(work, mc_inputs):
    """Same cuts, other mc_groups (ttbar filed under Zee): a reused --run-dir must not keep the
    old per-process copies (bin by bin equal to a clean run), and a merge of the two is refused."""
    from helpers import assert_same_hists

    d = work / "regroup"
    d.mkdir()
    mc = "mass_calculation_task_config: {weighting: mc}\n"
    regroup = "histogram_creation_task_config: {mc_groups: {ttbar: ['nomatch_'], Zee: ['(^|_)Zee', 'ttbar']}}\n"  # fmt: skip
    cfg_a = config_file(d, "a.yaml", 25, mc)
    cfg_b = config_file(d, "b.yaml", 25, mc + regroup)
    files = ["--input", *map(str, mc_inputs)]
    reused, clean_b = d / "reused", d / "clean_b"
    res = runner([*FAST, "--config", str(cfg_a), *files, "--run-dir", str(reused)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _by_process_groups(reused) == {"Zee", "ttbar"}
    kept = d / "kept_a"
    import shutil

    shutil.copytree(reused, kept)
    res = runner([*FAST, "--config", str(cfg_b), *files, "--run-dir", str(reused)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "histogram_creation_task_config.mc_groups" in res.stderr  # the warning names it
    res = runner([*FAST, "--config", str(cfg_b), *files, "--run-dir", str(clean_b)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _by_process_groups(reused) == _by_process_groups(clean_b) == {"Zee"}
    for name in ("raw_histograms.root", "bumpnet_histograms_mc.root"):
        assert assert_same_hists(reused / "histograms" / name, clean_b / "histograms" / name) > 5
    res = runner(["--merge-only", str(kept), str(clean_b), "--run-dir", str(d / "m")], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "histogram_creation_task_config.mc_groups" in line
    assert not (d / "m" / "manifest.json").exists()


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


def test_relative_inputs_resume_and_merge_from_another_directory(work, inputs, clean25):
    """--input with relative paths: the run records them absolutely, so --resume from another
    directory finds them; a merge sees the same file under two relative names (runs started in
    different directories, one recorded the old relative way) and refuses it."""
    import shutil

    d = work / "relative"
    (d / "in").mkdir(parents=True)
    for f in inputs:
        shutil.copy(f, d / "in" / f.name)
    cfg = clean25.parent / "c25.yaml"
    names = [f"in/{f.name}" for f in inputs]
    res = runner([*FAST, "--config", str(cfg), "--input", *names, "--run-dir", "a"], d)
    assert res.returncode == 0, res.stderr[-3000:]
    fileset = json.loads((d / "a" / "fileset.json").read_text())["fileset"]
    assert all(Path(f).is_absolute() for spec in fileset.values() for f in spec["files"])
    (d / "a" / "manifest.json").unlink()  # as if killed before the end
    elsewhere = d / "elsewhere"
    elsewhere.mkdir()
    res = runner([*FAST, "--resume", str(d / "a")], elsewhere)
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(d / "a", clean25) > 5
    # run b: the first file again, named relative to in/
    res = runner([*FAST, "--config", str(cfg), "--input", inputs[0].name, "--run-dir", "../b"], d / "in")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((d / "a" / "manifest.json").read_text())  # the old, relative record
    manifest["cwd"] = str(d)
    for row in manifest["inputs"]:
        row["file"] = str(Path(row["file"]).relative_to(d))
    (d / "a" / "manifest.json").write_text(json.dumps(manifest))
    res = runner(["--merge-only", "a", "b", "--run-dir", "m"], elsewhere.parent)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert inputs[0].name in line and "count twice" in line
    assert not (d / "m" / "manifest.json").exists()


def test_merge_of_runs_that_read_copies_of_one_file_is_refused(work, inputs, clean25):
    """A copy of an input (as a download of a URL would be) has the same ROOT UUID: a run over
    the copy and a run over the original are not added."""
    import shutil

    d = work / "merge_copy"
    d.mkdir()
    copy = Path(shutil.copy(inputs[0], d / "copy_of_the_first.root"))
    other = d / "r0"
    res = runner([*FAST, "--config", str(clean25.parent / "c25.yaml"), "--input", str(copy), "--run-dir", str(other)], d)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    with uproot.open(copy) as f:
        uuid = str(f.file.uuid)
    assert json.loads((other / "manifest.json").read_text())["inputs"][0]["uuid"] == uuid
    res = runner(["--merge-only", str(clean25), str(other), "--run-dir", str(d / "m")], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert copy.name in line and inputs[0].name in line and "count twice" in line
    assert not (d / "m" / "manifest.json").exists()


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
        wait_until_processing(proc, run_dir, timeout_s=120)
        if proc.poll() is not None:
            pytest.skip("the run finished before SIGTERM could be sent")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_sigterm_exit(proc, err, run_dir)
    assert not (run_dir / "manifest.json").exists()
    # the recorded run: no --config, no --input
    res = runner(["--local", "--workers", "1", "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(run_dir, clean25) > 5


def _start_local_run(
    d: Path, run_dir: Path, cfg: Path, inputs: list[Path], workers: int
) -> subprocess.Popen:
    """A --local run in its own session, returned once its first chunk is checkpointed."""
    env = {**os.environ, "BUMPNET_CACHE_DIR": str(d / "cache")}
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), "--local", "--workers", str(workers), "--config", str(cfg),
         "--input", *map(str, inputs), "--run-dir", str(run_dir)],
        cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_until_processing(proc, run_dir, timeout_s=120)
    return proc


def _dask_worker_processes(pid: int) -> list:
    import psutil

    out = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(child.cmdline())
            if "spawn_main" in cmd and "resource_tracker" not in cmd:
                out.append(child)
    return out


@pytest.mark.slow
def test_sigkill_driver_leaves_no_process_and_resume_gives_the_clean_result(work, inputs, clean25):
    """SIGKILL to the driver only (no handler runs): its worker processes go away by
    themselves, the run-directory lock dies with it, and --resume RUN_DIR (the recorded run)
    reloads the finished chunks: every entry counted once, bin by bin the clean result."""
    import psutil

    d = work / "sigkill_driver"
    d.mkdir()
    run_dir = d / "r"
    proc = _start_local_run(d, run_dir, clean25.parent / "c25.yaml", inputs, workers=1)
    workers: list = []
    try:
        if proc.poll() is not None:
            pytest.skip("the run finished before SIGKILL could be sent")
        workers = _dask_worker_processes(proc.pid)
        assert workers, "no Dask worker process found under the runner"
        n_done = len(list((run_dir / "checkpoints").rglob("*.coffea")))
        proc.kill()  # SIGKILL, the driver alone
        proc.communicate(timeout=60)
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, f"worker processes left behind: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:  # only the processes this test started
            with contextlib.suppress(psutil.Error):
                w.kill()
    assert proc.returncode == -signal.SIGKILL
    assert n_done >= 1 and not (run_dir / "manifest.json").exists()
    res = runner(["--local", "--workers", "1", "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and not manifest["failures"]
    assert [row["entries_processed"] for row in manifest["inputs"]] == [4_000, 4_000]
    assert manifest["cutflow_total"]["events_read"] == 8_000
    assert assert_same_run_histograms(run_dir, clean25) > 5


@pytest.mark.slow
def test_sigkill_worker_during_a_run_gives_the_clean_result(work, inputs, clean25):
    """SIGKILL to one of two worker processes mid-run: the nanny restarts it, Dask reruns its
    tasks, the run exits 0 with the clean result bin by bin."""
    import psutil

    d = work / "sigkill_worker"
    d.mkdir()
    run_dir = d / "r"
    proc = _start_local_run(d, run_dir, clean25.parent / "c25.yaml", inputs, workers=2)
    try:
        if proc.poll() is not None:
            pytest.skip("the run finished before a worker could be killed")
        workers = _dask_worker_processes(proc.pid)
        assert len(workers) == 2, workers
        workers[0].send_signal(signal.SIGKILL)
        psutil.wait_procs(workers[:1], timeout=30)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and not manifest["failures"]
    assert [row["entries_processed"] for row in manifest["inputs"]] == [4_000, 4_000]
    assert assert_same_run_histograms(run_dir, clean25) > 5


# -- 5/6. storage errors (disk full) are never input failures -------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only; skips otherwise), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_full_disk_exits_5_naming_the_path_and_resume_continues(work, inputs, clean25):
    """ENOSPC while checkpointing, with skipbadfiles on: exit 5, one line naming the path and
    --resume; no good input marked failed; after freeing space --resume gives the clean result."""
    d = work / "enospc"
    d.mkdir()
    cfg = config_file(
        d, "c.yaml", 25, "executor: {chunksize: 1500, align_clusters: false, skipbadfiles: true}\n"
    )
    with small_tmpfs(d / "mnt", "40k") as mnt:
        run_dir = mnt / "r"
        res = runner(
            [*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(run_dir)],
            d,
        )
        assert res.returncode == 5, res.stderr[-3000:]
        (line,) = error_lines(res)
        assert "No space left on device" in line and str(run_dir / "checkpoints") in line
        assert "--resume" in line
        assert "Empty list provided to reduction" not in res.stderr
        assert "Traceback" not in res.stderr and "Logging error" not in res.stderr
        assert not (run_dir / "manifest.json").exists()  # no result claiming failed inputs
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        res = runner([*FAST, "--resume", str(run_dir)], d)
        assert res.returncode == 0, res.stderr[-3000:]
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "ok" and not manifest["failures"]
        assert assert_same_run_histograms(run_dir, clean25) > 5


@pytest.mark.slow
def test_full_disk_while_writing_outputs_names_the_final_path(work, inputs):
    """ENOSPC while writing the ROOT files (checkpoints fitted): exit 5 naming the output file."""
    d = work / "enospc_out"
    d.mkdir()
    cfg = config_file(d, "c.yaml", 25)
    with small_tmpfs(d / "mnt", "240k") as mnt:
        run_dir = mnt / "r"
        res = runner(
            [*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(run_dir)],
            d,
        )
        assert res.returncode == 5, res.stderr[-3000:]
        (line,) = error_lines(res)
        assert "No space left on device" in line and str(run_dir / "histograms") in line
        assert ".tmp" not in line  # the final name, not the temporary sibling
        assert not list((run_dir / "histograms").glob(".*.tmp"))


@pytest.mark.slow
def test_full_disk_while_plotting_is_not_a_success(work, inputs):
    """ENOSPC in plots/ (histograms and manifest fitted): exit 5 naming plots/, no summary
    pointing at plots/ as complete, the manifest says the plots are not done."""
    d = work / "enospc_plots"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text("executor: {chunksize: 1500, align_clusters: false}\n")
    with small_tmpfs(d / "mnt", "640k") as mnt:
        run_dir = mnt / "r"
        res = runner([*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(run_dir)], d)  # fmt: skip
        assert res.returncode == 5, res.stderr[-3000:]
        (line,) = error_lines(res)
        assert "No space left on device" in line and str(run_dir / "plots") in line
        assert "plots:" not in res.stdout
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["plots"]["status"] != "ok"


def test_failed_plots_exit_6_and_say_how_to_redo_them(work, inputs, monkeypatch, capsys):
    """A plot that fails for any other reason: exit 6, one line naming plots/ and --plots-only,
    the manifest records it, the summary does not point at plots/."""
    import processor.output.plots as plots_module
    from processor.run import cli

    def broken(run_dir: object) -> list[Path]:
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(plots_module, "make_plots", broken)
    d = work / "plots_fail"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text("executor: {chunksize: 4000, align_clusters: false}\n")
    run_dir = d / "r"
    monkeypatch.setenv("BUMPNET_CACHE_DIR", str(d / "cache"))
    code = cli.main([*FAST, "--config", str(cfg), "--input", str(inputs[0]), "--run-dir", str(run_dir)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 6
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "renderer exploded" in line and "--plots-only" in line and str(run_dir / "plots") in line
    assert "plots:" not in out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["plots"]["status"] == "failed"


# -- 8. --plots-only refuses without its inputs; plots are written as a set ---------------------


@pytest.fixture(scope="module")
def plotted(work, inputs) -> Path:
    """A finished run with its plots."""
    d = work / "plotted"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text("executor: {chunksize: 4000, align_clusters: false}\n")
    res = runner([*FAST, "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(d / "r")], d)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "plots:" in res.stdout
    return d / "r"


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_plots_only_refuses_a_missing_or_truncated_histogram_file(work, plotted, damage):
    import shutil

    d = work / f"plots_only_{damage}"
    run_dir = d / "r"
    shutil.copytree(plotted, run_dir)
    before = {p.name: p.read_bytes() for p in (run_dir / "plots").iterdir()}
    assert "spectra.pdf" in before
    bump = run_dir / "histograms" / "bumpnet_histograms.root"
    if damage == "missing":
        bump.unlink()
    else:
        data = bump.read_bytes()
        bump.write_bytes(data[: len(data) // 2])
    res = runner(["--plots-only", "--run-dir", str(run_dir)], d)
    assert res.returncode == 6, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert str(bump) in line and ("missing" if damage == "missing" else "unreadable") in line
    assert {p.name: p.read_bytes() for p in (run_dir / "plots").iterdir()} == before


def test_plots_only_rewrites_the_set(work, plotted):
    import shutil

    d = work / "plots_only_ok"
    run_dir = d / "r"
    shutil.copytree(plotted, run_dir)
    (run_dir / "plots" / "notes.txt").write_text("mine")  # not ours: kept
    (run_dir / "plots" / "spectra_overview_data_9.png").write_bytes(b"stale")  # ours, stale
    res = runner(["--plots-only", "--run-dir", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    names = {p.name for p in (run_dir / "plots").iterdir()}
    assert names == {p.name for p in (plotted / "plots").iterdir()} | {"notes.txt"}
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".plots")]


def test_plots_only_on_a_locked_run_dir_exits_4_and_leaves_the_plots(work, plotted):
    """--plots-only while a run (or another --plots-only) holds the run directory's lock."""
    import shutil

    d = work / "plots_only_locked"
    run_dir = d / "r"
    shutil.copytree(plotted, run_dir)
    before = {p.name: p.read_bytes() for p in (run_dir / "plots").iterdir()}
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 1 on testhost since now\n")
        res = runner(["--plots-only", "--run-dir", str(run_dir)], d)
    finally:
        os.close(fd)
    assert res.returncode == 4, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert str(run_dir) in line and "in use by another run" in line
    assert {p.name: p.read_bytes() for p in (run_dir / "plots").iterdir()} == before


# -- 7. a read-only output location reports the real cause --------------------------------------


@pytest.mark.parametrize("how", ["run_dir", "base_output_dir", "resume"])
def test_read_only_output_location_names_the_real_cause(work, inputs, clean25, how):
    """--run-dir, base_output_dir or --resume on a read-only file system: exit 5, one line saying
    'Read-only file system' and naming the path, not 'No such file or directory'."""
    import shutil

    d = work / f"readonly_{how}"
    d.mkdir()
    with small_tmpfs(d / "mnt", "8m") as mnt:
        shutil.copytree(clean25, mnt / "done")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        cfg = config_file(d, "c.yaml", 25, f"run_metadata: {{base_output_dir: {mnt / 'out'}}}\n")
        args = {
            "run_dir": ["--config", str(cfg), "--input", str(inputs[0]), "--run-dir", str(mnt / "r")],
            "base_output_dir": ["--config", str(cfg), "--input", str(inputs[0])],
            "resume": ["--resume", str(mnt / "done")],
        }[how]  # fmt: skip
        res = runner([*FAST, *args], d)
    assert res.returncode == 5, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "Read-only file system" in line and str(mnt) in line
    assert "No such file or directory" not in res.stderr


def test_permission_denied_names_the_final_path(tmp_path, monkeypatch):
    """EACCES (chmod'ed output directory; root ignores chmod, so the refusal is injected where
    the OS would raise it): a StorageError naming the final file and the cause."""
    import errno
    import tempfile

    from processor.errors import StorageError
    from processor.fsutil import atomic_write_text

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "manifest.json"
    else:

        def refuse(*args: object, **kwargs: object) -> None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        target = tmp_path / "manifest.json"
    with pytest.raises(StorageError) as err:
        atomic_write_text(target, "{}")
    msg = str(err.value)
    assert str(target) in msg and "Permission denied" in msg and "--resume" in msg
    assert "\n" not in msg
    assert not isinstance(err.value, OSError)  # skipbadfiles=(OSError,) cannot swallow it


# -- 14. transient read errors are retried -------------------------------------------------------


@pytest.mark.skipif(
    tuple(int(x) for x in importlib.metadata.version("coffea").split(".")[:2]) < (2026, 4),
    reason="coffea < 2026.4 opens files for pre-processing without uproot_options: the first "
    "read of each file is not retried there",
)
@pytest.mark.parametrize(
    "mode", [FAST, pytest.param(["--local", "--workers", "1"], marks=pytest.mark.slow)]
)
def test_flaky_http_storage_gives_the_local_result(work, inputs, clean25, mode):
    """A loopback HTTP server answering every 4th request with 503 serves the same files: the
    result equals the local run bin by bin, no input failed, and the 503s were really seen;
    in process and on a real local Dask cluster (the retrying source travels to the workers)."""
    from http_server import LocalHTTPServer

    d = work / f"flaky_{mode[0].strip('-')}"
    d.mkdir()
    cfg = config_file(d, "c.yaml", 25, "executor: {chunksize: 1500, align_clusters: false, io_retry_backoff_s: 0.05}\n")  # fmt: skip
    with LocalHTTPServer(root=inputs[0].parent, fail_every=4) as server:
        urls = [server.url_for(p.name) for p in inputs]
        res = runner([*mode, "--config", str(cfg), "--input", *urls, "--run-dir", str(d / "r")], d)
        served = server.state.file_requests
    assert res.returncode == 0, res.stderr[-3000:]
    assert served >= 8 and "503" in res.stderr and "retry 1 of 3" in res.stderr
    manifest = json.loads((d / "r" / "manifest.json").read_text())
    assert not manifest["failures"]
    assert [row["entries_processed"] for row in manifest["inputs"]] == [4_000, 4_000]
    assert assert_same_run_histograms(d / "r", clean25) > 5


def test_flaky_storage_without_retries_fails_the_chunk_and_names_the_cause(work, inputs):
    """io_retries: 0 with skipbadfiles: the 503 is recorded as the failure reason (exit 3)."""
    from http_server import LocalHTTPServer

    d = work / "flaky0"
    d.mkdir()
    cfg = config_file(d, "c.yaml", 25, "executor: {chunksize: 1500, align_clusters: false, io_retries: 0, skipbadfiles: true}\n")  # fmt: skip
    with LocalHTTPServer(root=inputs[0].parent, fail_every=4) as server:
        res = runner([*FAST, "--config", str(cfg), "--input", server.url_for(inputs[0].name), "--run-dir", str(d / "r")], d)  # fmt: skip
    assert res.returncode == 3, res.stderr[-3000:]
    manifest = json.loads((d / "r" / "manifest.json").read_text())
    assert manifest["failures"] and all("503" in f["reason"] for f in manifest["failures"])


def test_transient_errors_are_classified():
    from processor.opendata.retrying import backoff_s, is_transient

    assert is_transient(ConnectionResetError(104, "Connection reset by peer"))
    assert is_transient(TimeoutError("read timed out"))
    assert is_transient(OSError("XRootD error: [ERROR] Operation expired"))
    wrapped = Exception("Failed processing file")
    wrapped.__cause__ = ConnectionResetError()
    assert is_transient(wrapped)
    assert not is_transient(FileNotFoundError(2, "No such file or directory"))
    assert not is_transient(ValueError("not a ROOT file"))
    assert [backoff_s(k, 1.0) for k in range(7)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    "text", ["executor: {io_retries: -1}\n", "executor: {io_retry_backoff_s: 0}\n"]
)
def test_io_retry_settings_are_validated(work, inputs, text):
    d = work / "cfgretry"
    d.mkdir(exist_ok=True)
    cfg = d / "bad.yaml"
    cfg.write_text(text)
    res = runner([*FAST, "--dry-run", "--config", str(cfg), "--input", str(inputs[0])], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "executor.io_retr" in line


# -- 11. non-ASCII characters in input paths ------------------------------------------------------


@pytest.mark.parametrize(
    "mode", [FAST, pytest.param(["--local", "--workers", "1"], marks=pytest.mark.slow)]
)
def test_non_ascii_input_path_just_works(work, inputs, clean25, mode):
    """Inputs under ``données/ü_*.root`` (and a run directory with an accent), skipbadfiles on,
    in process and on a real local Dask cluster: the clean result bin by bin."""
    import shutil

    d = work / f"unicode_{mode[0].strip('-')}"
    src = d / "données"
    src.mkdir(parents=True)
    copies = [Path(shutil.copy(p, src / f"ü_{i}.root")) for i, p in enumerate(inputs)]
    cfg = config_file(d, "c.yaml", 25, "executor: {chunksize: 1500, align_clusters: false, skipbadfiles: true}\n")  # fmt: skip
    run_dir = d / "résultat"
    res = runner([*mode, "--config", str(cfg), "--input", *map(str, copies), "--run-dir", str(run_dir)], d)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "UnicodeEncodeError" not in res.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert [row["file"] for row in manifest["inputs"]] == [str(p) for p in copies]
    assert all(row["status"] == "ok" for row in manifest["inputs"])
    assert assert_same_run_histograms(run_dir, clean25) > 5


def test_unicode_hash_equals_coffeas_for_ascii():
    from coffea.util import _hash

    from processor.run.coffea_compat import unicode_hash

    items = ("data", "/x/y.root", "analysis")
    digest = hashlib.md5(";".join(items).encode("ascii")).hexdigest()
    assert unicode_hash(items) == int(digest[:16], 16) == _hash(items)
    assert isinstance(unicode_hash(("données", "ü.root")), int)


# -- 10. a file missing a branch: the branch, the format and a fix that helps --------------------


def test_missing_branch_names_branch_format_and_a_working_fix(work, inputs):
    d = work / "nobranch"
    d.mkdir()
    arrays = uproot.open(inputs[0])["analysis"].arrays()
    keep = [k for k in arrays.fields if not k.startswith("jet_")]
    skim = d / "skim.root"
    with uproot.recreate(skim) as f:
        f["analysis"] = {k: arrays[k] for k in keep}
    cfg = config_file(d, "c.yaml", 25)
    res = runner([*FAST, "--config", str(cfg), "--input", str(skim), "--run-dir", str(d / "r")], d)
    assert res.returncode not in (0, 3), res.stderr[-3000:]
    (line,) = error_lines(res)
    assert str(skim) in line and "jet_pt" in line and "format 2025e" in line
    assert "leave 'j' (jets) out of object_selection.types" in line
    # the suggested fix does help
    fixed = config_file(d, "fixed.yaml", 25, "object_selection: {electrons: {pt_min: 25}, types: [e, m, g, t]}\n")  # fmt: skip
    res = runner([*FAST, "--config", str(fixed), "--input", str(skim), "--run-dir", str(d / "r2")], d)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]


# -- 15. TLS key/certificates of a killed --pbs run are removed --------------------------------


def _leave_tls_files(run_dir: Path) -> list[Path]:
    """The files a SIGKILLed --pbs run leaves (dask-jobqueue's NamedTemporaryFile names)."""
    from cluster.batch import TLS_DIRNAME

    tls = run_dir / TLS_DIRNAME
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = [tls / f".dask-jobqueue.worker.{k}.{s}" for k, s in (("key", "k3j2"), ("cert", "x9a1"), ("ca_file", "q0z7"))]  # fmt: skip
    for f in files:
        f.write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
    return files


def test_tls_files_of_a_killed_pbs_run_are_removed_by_the_resume(work, inputs, clean25):
    """An interrupted run (checkpoints, no manifest) with TLS files left: --resume removes them
    at its start and ends with the clean result and no .dask-tls directory."""
    import shutil

    d = work / "tls_resume"
    d.mkdir()
    run_dir = d / "r"
    shutil.copytree(clean25, run_dir)
    (run_dir / "manifest.json").unlink()  # as killed before finishing
    files = _leave_tls_files(run_dir)
    res = runner([*FAST, "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not any(f.exists() for f in files)
    assert not (run_dir / ".dask-tls").exists()
    assert "removed 3 TLS key/certificate file(s)" in res.stderr
    assert assert_same_run_histograms(run_dir, clean25) > 5


def test_tls_files_are_removed_when_a_run_fails_and_when_a_pbs_cluster_starts(work, tmp_path):
    """A run that fails (bad input) still removes them at its end; and creating a batch cluster
    empties the TLS directory before writing new ones."""
    from cluster.batch import _tls
    from cluster.config import BatchClusterConfig

    d = work / "tls_fail"
    d.mkdir()
    run_dir = d / "r"
    run_dir.mkdir()
    files = _leave_tls_files(run_dir)
    res = runner([*FAST, "--input", str(d / "nope.root"), "--run-dir", str(run_dir)], d)
    assert res.returncode != 0
    assert not any(f.exists() for f in files)
    files = _leave_tls_files(tmp_path)
    security, tls_dir = _tls(BatchClusterConfig(), tmp_path)
    assert security is not None and tls_dir is not None and tls_dir.is_dir()
    assert not any(f.exists() for f in files) and not list(tls_dir.iterdir())


# -- 13. a stalled run (workers paused or gone for lack of memory) fails with one line ------------


@pytest.mark.slow
def test_too_little_worker_memory_fails_with_one_line(work, inputs):
    """memory_limit 250MB on a real LocalCluster: workers pause, or are killed and restarted
    over and over; the run fails (no hang) with one line naming cluster.local.memory_limit and
    the measured worker memory, and says how to continue."""
    d = work / "stall"
    d.mkdir()
    cfg = config_file(d, "c.yaml", 25, "executor: {chunksize: 1500, align_clusters: false, stall_timeout_s: 10}\ncluster: {local: {memory_limit: 250MB}}\n")  # fmt: skip
    res = runner(["--local", "--workers", "1", "--config", str(cfg), "--input", *map(str, inputs), "--run-dir", str(d / "r")], d, timeout=600)  # fmt: skip
    assert res.returncode == 1, res.stderr[-3000:]
    (line,) = error_lines(res)
    # which comes first is a race: the worker pauses (a stall) or the nanny kills it (memory)
    assert "stalled" in line or "died every time it ran one chunk" in line, line
    assert "cluster.local.memory_limit" in line
    assert re.search(r"measured worker memory \d+ MB of a \d+ MB limit", line), line
    assert "--resume" in line and "Traceback" not in res.stderr
    assert not (d / "r" / "manifest.json").exists()


def test_stall_timeout_is_validated(work, inputs):
    d = work / "cfgstall"
    d.mkdir()
    cfg = d / "bad.yaml"
    cfg.write_text("executor: {stall_timeout_s: -5}\n")
    res = runner([*FAST, "--dry-run", "--config", str(cfg), "--input", str(inputs[0])], d)
    assert res.returncode == 2, res.stderr[-3000:]
    (line,) = error_lines(res)
    assert "executor.stall_timeout_s" in line


def test_stall_watchdog_names_paused_workers_and_their_memory():
    """The paused-worker branch, with a scheduler that reports one paused worker and never
    progresses: the blocked main thread is interrupted and a StallError says why."""
    import time

    from processor.errors import StallError
    from processor.run.stall import StallWatchdog

    class PausedScheduler:
        def run_on_scheduler(self, fn: object) -> int:
            return 42  # the transition counter never moves

        def scheduler_info(self, n_workers: int = -1) -> dict:
            worker = {"status": "paused", "memory_limit": 250_000_000, "metrics": {"memory": 231_000_000}}  # fmt: skip
            return {"workers": {"tcp://127.0.0.1:1": worker}}

    dog = StallWatchdog(PausedScheduler(), 0.2, "cluster.local.memory_limit", poll_s=0.05)
    with pytest.raises(StallError) as err, dog:
        for _ in range(3000):  # bounded: the watchdog interrupts long before the end
            time.sleep(0.01)
    msg = str(err.value)
    assert "1 of 1 worker(s) paused" in msg and "231 MB of a 250 MB limit" in msg
    assert "cluster.local.memory_limit" in msg


def test_a_chunk_whose_worker_is_killed_every_time_fails_with_the_memory_line():
    """coffea re-raises Dask's KilledWorker (the nanny killed the worker for memory three times
    on one chunk) as a RuntimeError; the watchdog turns it into the same kind of one line as a
    stall: the file, the measured memory, the key to raise and --resume."""
    from distributed.scheduler import KilledWorker

    from processor.errors import StallError
    from processor.run.stall import StallWatchdog

    class Scheduler:
        def run_on_scheduler(self, fn: object) -> int:
            return 1

        def scheduler_info(self, n_workers: int = -1) -> dict:
            worker = {"status": "running", "memory_limit": 250_000_000, "metrics": {"memory": 240_000_000}}  # fmt: skip
            return {"workers": {"tcp://127.0.0.1:1": worker}}

    def coffea_error() -> RuntimeError:
        try:
            raise KilledWorker("chunk-1", "tcp://127.0.0.1:1", 3)
        except KilledWorker as killed:
            try:
                raise RuntimeError(
                    "Work item WorkItem(dataset='data', filename='/data/f.root', treename='t') "
                    "caused a KilledWorker exception (likely a segfault or out-of-memory issue)"
                ) from killed
            except RuntimeError as exc:
                return exc

    dog = StallWatchdog(Scheduler(), 60, "cluster.local.memory_limit", poll_s=0.05)
    with pytest.raises(StallError) as err, dog:
        threading.Event().wait(0.2)  # the watchdog has measured the worker
        raise coffea_error()
    msg = str(err.value)
    assert "died every time it ran one chunk of /data/f.root" in msg
    assert "240 MB of a 250 MB limit" in msg and "cluster.local.memory_limit" in msg
    assert "--resume" in msg
    # any other failure passes through unchanged
    with pytest.raises(ValueError, match="other"), StallWatchdog(Scheduler(), 60, "k", poll_s=0.05):
        raise ValueError("other")


# -- 12 (rest). Ctrl-C to the whole process group: no worker tracebacks -------------------------


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_prints_one_line_and_resume_continues(work, inputs, clean25):
    """SIGINT to the runner's whole process group (what Ctrl-C in a terminal does: the Dask
    worker processes get it too): exit 130, one line, no tracebacks; --resume gives the clean
    result."""
    d = work / "ctrlc"
    d.mkdir()
    run_dir = d / "r"
    env = {**os.environ, "BUMPNET_CACHE_DIR": str(d / "cache")}
    cfg = clean25.parent / "c25.yaml"
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), "--local", "--workers", "1", "--config", str(cfg),
         "--input", *map(str, inputs), "--run-dir", str(run_dir)],
        cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a shell job
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if "Dask dashboard" in line:
                break
        for _ in range(600):
            if proc.poll() is not None or list((run_dir / "checkpoints").rglob("*.coffea")):
                break
            threading.Event().wait(0.2)
        if proc.poll() is not None:
            pytest.skip("the run finished before Ctrl-C could be sent")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "interrupted" in errors[0] and f"--resume {run_dir}" in errors[0]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    res = runner(["--local", "--workers", "1", "--resume", str(run_dir)], d)
    assert res.returncode == 0, res.stderr[-3000:]
    assert assert_same_run_histograms(run_dir, clean25) > 5
