"""An input file stays open across the chunks one worker thread reads from it, never longer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import uproot
from helpers import assert_same_output, run_processor

from processor.config import validate_config
from processor.run import open_files
from processor.run.execute import process
from processor.synthetic import write_sample

REUSE = {open_files.REUSE_OPTION: True}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("reuse")
    return [write_sample(d / f"f{i}.root", "2025e", 3_000, seed=40 + i) for i in range(2)]


@pytest.fixture(autouse=True)
def _nothing_left_open():
    open_files.release_open_files()
    yield
    open_files.release_open_files()


def _count_opens(monkeypatch) -> list[str]:
    opened: list[str] = []
    real = uproot.open

    def spy(path, **options):
        if isinstance(path, dict):  # coffea's form (pre-flight opens by plain path)
            opened.append(next(iter(path)))
        return real(path, **options)

    monkeypatch.setattr(open_files.uproot, "open", spy)
    return opened


def test_same_file_same_thread_is_opened_once_and_the_tree_read_once(files, monkeypatch):
    opened = _count_opens(monkeypatch)
    name = str(files[0])
    with open_files.open_reused({name: None}, **REUSE) as a:
        tree_a = a["analysis"]
    with open_files.open_reused({name: None}, **REUSE) as b:
        tree_b = b["analysis"]
    assert a is b and tree_a is tree_b
    assert opened == [name]
    assert not a.file.closed
    with open_files.open_reused({str(files[1]): None}, **REUSE) as c:
        assert c is not a
    assert a.file.closed, "moving on to another file closes the previous one"
    assert open_files.release_open_files() == 1
    assert c.file.closed


def test_other_options_a_changed_file_or_another_thread_open_afresh(files, tmp_path, monkeypatch):
    opened = _count_opens(monkeypatch)
    copy = tmp_path / "copy.root"
    copy.write_bytes(files[0].read_bytes())
    name = str(copy)
    with open_files.open_reused({name: None}, **REUSE) as a:
        pass
    with open_files.open_reused({name: None}, timeout=7, **REUSE) as b:
        assert b is not a
    copy.write_bytes(files[1].read_bytes())  # rewritten in place: other size/mtime
    os.utime(copy, ns=(1, 1))
    with open_files.open_reused({name: None}, timeout=7, **REUSE) as c:
        assert c is not b and c["analysis"].num_entries == 3_000
    seen = []
    t = threading.Thread(target=lambda: seen.append(open_files.open_reused({name: None}, **REUSE)))
    t.start()
    t.join()
    assert seen[0]._directory is not c  # noqa: SLF001
    assert len(opened) == 4
    assert open_files.release_open_files() == 2


def test_a_failing_chunk_closes_and_forgets_its_file(files):
    name = str(files[0])
    with pytest.raises(RuntimeError), open_files.open_reused({name: None}, **REUSE) as a:
        raise RuntimeError("read failed")
    assert a.file.closed
    with open_files.open_reused({name: None}, **REUSE) as b:
        assert b is not a and not b.file.closed
    assert open_files.release_open_files() == 1


def test_coffea_opens_through_it_and_a_run_leaves_nothing_open(files, monkeypatch):
    """coffea's per-chunk opens go through the reuse; a run closes every file at its end;
    the result equals coffea opening each chunk afresh."""
    import coffea.processor.executor as executor

    assert isinstance(executor.uproot, open_files._UprootReusingFiles)  # noqa: SLF001
    opened = _count_opens(monkeypatch)
    cfg = validate_config({"executor": {"chunksize": 700, "align_clusters": False}})
    fileset = {"d": {"files": {str(f): "analysis" for f in files}, "metadata": {"is_mc": False}}}
    result = process(fileset, cfg, status=False)
    assert result.metrics["chunks"] >= 8
    assert sorted(opened) == sorted(str(f) for f in files), "one open per file, not per chunk"
    assert open_files.release_open_files() == 0, "the run closed its files"
    opened.clear()
    fresh, _ = run_processor(fileset, cfg, chunksize=700)  # coffea alone: no reuse asked
    assert len(opened) == result.metrics["chunks"] + len(files), "every chunk opens afresh"
    assert open_files.release_open_files() == 0
    assert_same_output(result.out, fresh)


def test_without_the_runners_option_nothing_is_kept_open(files):
    with open_files.open_reused({str(files[0]): None}) as a:
        pass
    assert a.file.closed
    assert open_files.release_open_files() == 0


def test_a_file_rewritten_between_two_runs_is_read_anew(files, tmp_path):
    path = tmp_path / "in.root"
    fileset = {"d": {"files": {str(path): "analysis"}, "metadata": {"is_mc": False}}}
    cfg = validate_config({"executor": {"chunksize": 1_000, "align_clusters": False}})
    path.write_bytes(files[0].read_bytes())
    first = process(fileset, cfg, status=False).out
    path.write_bytes(files[1].read_bytes())
    second = process(fileset, cfg, status=False).out
    expected, _ = run_processor(
        {"d": {"files": {str(files[1]): "analysis"}, "metadata": {"is_mc": False}}},
        cfg,
        chunksize=1_000,
    )
    assert first["groups"]["data"]["fs_events"] != second["groups"]["data"]["fs_events"]
    assert second["groups"]["data"]["fs_events"] == expected["groups"]["data"]["fs_events"]
    for key, h in expected["groups"]["data"]["hists"].items():
        assert (second["groups"]["data"]["hists"][key].values() == h.values()).all(), key
