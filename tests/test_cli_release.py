"""runner.py on a configured release, against a local server that answers like the ATLAS Open Data
API: --dry-run prints datasets and file counts, caches the metadata, and --offline reuses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from http_server import LocalHTTPServer

ROOT = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).parent / "data" / "atom_api_releases.json"


@pytest.fixture
def api():
    doc = json.loads(RECORDED.read_text())
    with LocalHTTPServer() as server:
        for release, entries in doc.items():
            if not release.startswith("_"):
                server.set_api(release, entries)
        yield server


def dry_run(tmp_path: Path, api_url: str, *extra: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "release.yaml"
    cfg.write_text(
        f"run_metadata: {{base_output_dir: {tmp_path / 'out'}}}\n"
        "parsing_task_config: {release: 2025e-13tev-beta, skim: 2to4lep, samples: both, max_files_to_process: 1}\n"
    )
    env = {
        **os.environ,
        "ATLAS_API_BASE_URL": api_url,
        "BUMPNET_CACHE_DIR": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "--dry-run", "--config", str(cfg), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_dry_run_on_a_release_prints_datasets_and_file_counts(api, tmp_path):
    doc = json.loads(RECORDED.read_text())["2025e-13tev-beta"]
    res = dry_run(tmp_path, api.url)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln.strip() for ln in res.stdout.splitlines()]
    data_lines = [ln for ln in lines if ln.startswith("data ")]
    mc_lines = [ln for ln in lines if ln.startswith("MC ")]
    assert data_lines and mc_lines
    assert all(" 1/" in ln and "files" in ln for ln in data_lines + mc_lines)
    n_datasets = int(next(ln for ln in lines if "dataset(s)" in ln).split()[0])
    assert n_datasets == len(data_lines) + len(mc_lines) <= len(doc)
    assert api.count("/datasets") >= 1
    assert not (tmp_path / "out").exists()  # a dry run writes no run directory
    # the metadata is cached: an offline dry run needs no API at all
    before = api.count("/")
    res2 = dry_run(tmp_path, "http://127.0.0.1:9", "--offline")
    assert res2.returncode == 0, res2.stderr[-2000:]
    assert [ln for ln in res2.stdout.splitlines() if ln.strip().startswith(("data ", "MC "))] == [
        ln for ln in res.stdout.splitlines() if ln.strip().startswith(("data ", "MC "))
    ]
    assert api.count("/") == before


def test_offline_with_a_cold_cache_says_what_is_missing(tmp_path):
    res = dry_run(tmp_path, "http://127.0.0.1:9", "--offline")
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "2025e-13tev-beta" in last
