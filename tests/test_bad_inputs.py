"""Bad inputs, one file each: never silent, listed with a reason, exit 3 (skip) or 1 (stop)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uproot

from processor.synthetic import write_sample

RUNNER = Path(__file__).resolve().parents[1] / "runner.py"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    good = write_sample(d / "good.root", "2025e", 5_000, seed=5)
    out = {"good": str(good)}
    # separate sources: copies of one file share its UUID, which coffea uses to tell files apart
    raw = write_sample(d / "src1.root", "2025e", 5_000, seed=8).read_bytes()
    (d / "truncated.root").write_bytes(raw[: len(raw) // 2])
    out["truncated"] = str(d / "truncated.root")
    corrupt = bytearray(write_sample(d / "src2.root", "2025e", 5_000, seed=9).read_bytes())
    lo, hi = len(corrupt) // 10, len(corrupt) * 8 // 10  # the baskets; header and streamers intact
    corrupt[lo:hi] = os.urandom(hi - lo)
    (d / "corrupt.root").write_bytes(bytes(corrupt))
    out["corrupt"] = str(d / "corrupt.root")
    (d / "notroot.root").write_bytes(b"this is not a ROOT file\n" * 100)
    out["notroot"] = str(d / "notroot.root")
    with uproot.recreate(d / "wrongtree.root") as f:
        f["events"] = {"x": [1.0, 2.0]}
    out["wrongtree"] = str(d / "wrongtree.root")
    arrays = uproot.open(good)["analysis"].arrays(
        ["lep_pt", "lep_eta", "lep_phi", "lep_type", "jet_pt"]
    )
    with uproot.recreate(d / "missingbranch.root") as f:
        f.mktree(
            "analysis",
            {k: arrays[k].type.content for k in arrays.fields},
            counter_name=lambda c: "n_" + c,
        )
        f["analysis"].extend({k: arrays[k] for k in arrays.fields})
    out["missingbranch"] = str(d / "missingbranch.root")
    out["otherformat"] = str(write_sample(d / "mini2020.root", "2020e", 1_000, seed=6))
    out["url"] = f"http://127.0.0.1:{closed_port()}/unreachable.root"
    out["empty"] = str(write_sample(d / "empty.root", "2025e", 0, seed=7))
    return out


def run(args: list[str], cwd: Path, config: str) -> subprocess.CompletedProcess:
    cfg = cwd / "c.yaml"
    cfg.write_text(config)
    return subprocess.run(
        [sys.executable, str(RUNNER), "--executor", "iterative", "--config", str(cfg), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BUMPNET_CACHE_DIR": str(cwd / "cache")},
    )


BAD = ["truncated", "corrupt", "notroot", "wrongtree", "missingbranch", "otherformat", "url"]
CONFIG = "parsing_task_config: {format: '2025e', tree_name: analysis}\nexecutor: {retries: 0, chunksize: 1000}\n"


def test_skipbadfiles_goes_on_lists_every_failure_and_exits_3(files, tmp_path):
    inputs = [files["good"], files["empty"], *(files[k] for k in BAD)]
    skip = CONFIG.replace("retries: 0", "retries: 0, skipbadfiles: true")
    res = run(["--input", *inputs, "--run-dir", str(tmp_path / "r")], tmp_path, skip)
    assert res.returncode == 3, res.stderr[-3000:]
    mf = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert mf["status"] == "partial"
    failed = {f["file"]: f["reason"] for f in mf["failures"]}
    for key in BAD:
        assert files[key] in failed, (key, failed)
        assert failed[files[key]], key
    rows = {i["file"]: i for i in mf["inputs"]}
    assert (
        rows[files["good"]]["entries_processed"] == 5_000 and rows[files["good"]]["status"] == "ok"
    )
    assert rows[files["empty"]]["entries_expected"] == 0 and rows[files["empty"]]["status"] == "ok"
    assert (
        "missing lep_" in failed[files["missingbranch"]]
        or "lacks branch" in failed[files["missingbranch"]]
    )
    assert (
        "configured format '2025e'" in failed[files["otherformat"]]
        or "no tree 'analysis'" in failed[files["otherformat"]]
    )
    assert "no tree 'analysis'" in failed[files["wrongtree"]]
    assert "PARTIAL" in res.stdout
    for key in BAD:
        assert files[key] in (tmp_path / "r" / "logs" / "run.log").read_text()
    assert (tmp_path / "r" / "histograms" / "bumpnet_histograms.root").is_file()


@pytest.mark.parametrize("key", BAD)
def test_without_skipbadfiles_the_run_stops_with_one_line_naming_the_file(files, tmp_path, key):
    res = run(
        ["--input", files["good"], files[key], "--run-dir", str(tmp_path / "r")],
        tmp_path,
        CONFIG.replace("retries: 0", "retries: 0, skipbadfiles: false"),
    )
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert files[key] in last
    assert not (tmp_path / "r" / "histograms" / "bumpnet_histograms.root").exists()
    assert not list((tmp_path / "r").rglob("*.tmp*"))


def test_missing_input_file_is_named(files, tmp_path):
    missing = str(tmp_path / "nope.root")
    res = run(["--input", files["good"], missing], tmp_path, CONFIG)
    assert res.returncode == 1
    assert "nope.root" in res.stderr.strip().splitlines()[-1]


def test_corrupt_file_never_half_written_output(files, tmp_path):
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
    res = run(
        ["--input", files["corrupt"], "--run-dir", str(tmp_path / "r")],
        tmp_path,
        CONFIG.replace("retries: 0", "retries: 0, skipbadfiles: false"),
    )
    assert res.returncode == 1
    assert not (tmp_path / "r" / "manifest.json").exists()
