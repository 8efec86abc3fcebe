"""cluster/submit.sh: shard jobs + merge job as plain batch jobs (no Dask scheduler).

The settings checks and --dry-run need no batch system; the `pbs` tests submit real jobs to the
testbed (cluster/testbed/start.sh) and compare the merged result with a single in-process run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_same_run_histograms
from pbs_helpers import ENDED_STATES

from processor.synthetic import sample_filename, write_sample

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "cluster" / "submit.sh"
#: Settings of the caller's shell that must not leak into the script under test.
SUBMIT_VARS = {
    *("NUM_JOBS", "RUN_DIR", "CONFIG", "EXTRA_ARGS", "QUEUE", "ACCOUNT", "WALLTIME", "NCPUS"),
    *("MEM", "RESOURCE_SPEC", "PYTHON", "SETUP", "EXECUTOR", "JOB_NAME", "USE_ARRAY"),
    *("PBS_FLAVOR", "QSUB", "QDEL"),
}
N_FILES, N_EVENTS = 4, 5000
JOBS_TIMEOUT_S = 150

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four small 2025e data files (different periods and seeds)."""
    base = tmp_path_factory.mktemp("sample")
    return [
        write_sample(
            base / sample_filename("2025e", "data", period=f"data15_period{p}"),
            "2025e",
            N_EVENTS,
            seed=i,
        )
        for i, p in enumerate("DEFG")
    ]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """Defaults without plots (they take longer than the processing)."""
    path = tmp_path / "config.yaml"
    path.write_text("tasks:\n  do_plots: false\n")
    return path


def run_submit(
    cwd: Path, *args: str, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess:
    """`bash cluster/submit.sh ARGS` in ``cwd`` with exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k not in SUBMIT_VARS}
    env.update(settings)
    return subprocess.run(
        ["bash", str(SUBMIT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def recording_qsub(bin_dir: Path) -> tuple[Path, Path]:
    """A fake qsub that only records that it was called."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "calls"
    script = bin_dir / "qsub"
    script.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(calls))}\necho 99\n')
    script.chmod(0o755)
    return script, calls


# -- no batch system needed --------------------------------------------------------------------


def test_help() -> None:
    proc = run_submit(REPO, "--help")
    assert proc.returncode == 0
    for word in ("NUM_JOBS", "EXTRA_ARGS", "RESOURCE_SPEC", "afterok", "RUN_DIR/logs"):
        assert word in proc.stdout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"NUM_JOBS": "two"}, "NUM_JOBS='two' is not a positive integer"),
        ({"NUM_JOBS": "2", "EXTRA_ARGS": "--run-dir /x"}, "must not contain --run-dir"),
        ({"EXTRA_ARGS": "--pbs"}, "must not contain --pbs"),
        ({"EXTRA_ARGS": "--no-such-option"}, "not a valid runner.py command line"),
        ({"EXTRA_ARGS": "--input '/nonexistent/*.root'"}, "matches no file"),
        ({"CONFIG": "missing.yaml"}, "config file 'missing.yaml' not found"),
        ({"WALLTIME": "4h"}, "WALLTIME='4h' is not HH:MM:SS"),
        ({"NUM_JOBS": "2", "EXECUTOR": "dask"}, "shard jobs run iterative or futures"),
        ({"PBS_FLAVOR": "lsf"}, "PBS_FLAVOR='lsf'"),
        ({"QSUB": "no-such-qsub"}, "'no-such-qsub' not found on PATH"),
        ({"SETUP": "source /nonexistent/env.sh"}, "SETUP failed here"),
    ],
)
def test_bad_settings_fail_before_anything_is_created(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    qsub, calls = recording_qsub(tmp_path / "bin")
    settings = {"QSUB": str(qsub), "RUN_DIR": str(tmp_path / "run"), **settings}
    proc = run_submit(tmp_path, **settings)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("submit.sh: error: ") and message in last, proc.stderr
    assert not (tmp_path / "run").exists()
    assert not calls.exists(), "nothing may be submitted"


def racing_qsub(bin_dir: Path, claim: str) -> tuple[Path, Path]:
    """A fake qsub that, asked for its version (after submit.sh named the run directory, before
    it creates it), claims the directories the bash words ``claim`` expand to, the way a
    concurrent submission would (their jobs/); else it records the call and prints a job ID."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "calls"
    script = bin_dir / "qsub"
    script.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = --version ]; then\n'
        f'  for d in {claim}; do mkdir -p "$d/jobs"; done\n'
        "  echo 'pbs_version = 2024.1'; exit 0\n"
        "fi\n"
        f'echo "$@" >> {shlex.quote(str(calls))}\necho 99\n'
    )
    script.chmod(0o755)
    return script, calls


def test_a_run_directory_claimed_by_a_concurrent_submission_is_not_shared(tmp_path: Path) -> None:
    """Two submissions that chose the same run directory (same second, or the same RUN_DIR):
    the one that finds jobs/ already created takes the next name, or stops if RUN_DIR was given."""
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"run_metadata: {{run_name: race, base_output_dir: {out}}}\ntasks: {{do_plots: false}}\n")  # fmt: skip
    # the default name: every race_<stamp> of the last minute is claimed by "the other" submission
    claim = f'$(now=$(date +%s); for k in $(seq 0 59); do echo {out}/race_$(date -d "@$((now - k))" +%Y%m%d_%H%M%S); done)'  # fmt: skip
    qsub, calls = racing_qsub(tmp_path / "bin", claim)
    proc = run_submit(tmp_path, QSUB=str(qsub), PBS_FLAVOR="auto", CONFIG=str(config))
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.split("run directory:")[1].split()[0])
    assert run_dir.name.startswith("race_") and run_dir.name.endswith("_1"), run_dir
    assert (run_dir / "jobs" / "run.sh").is_file() and (run_dir / "jobs" / "config.yaml").is_file()
    taken = Path(str(run_dir)[: -len("_1")])
    assert [p.name for p in taken.iterdir()] == ["jobs"] and not list((taken / "jobs").iterdir())
    assert calls.read_text().count("\n") == 1
    # RUN_DIR given and claimed in between: stop, submit nothing
    given = tmp_path / "given"
    qsub, calls = racing_qsub(tmp_path / "bin2", str(given))
    proc = run_submit(tmp_path, QSUB=str(qsub), PBS_FLAVOR="auto", CONFIG=str(config), RUN_DIR=str(given))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "just taken by another submission" in last and str(given) in last
    assert not calls.exists() and not list((given / "jobs").iterdir())


@pytest.mark.parametrize(
    ("flavor", "array", "depend", "index_var"),
    [
        ("pbspro", "-J 1-3", "depend=afterok:<shards>", "PBS_ARRAY_INDEX"),
        ("torque", "-t 1-3", "depend=afterokarray:<shards>", "PBS_ARRAYID"),
        ("slurm", "-J 1-3", "depend=afterok:<shards>", "SLURM_ARRAY_TASK_ID"),
    ],
)
def test_dry_run_shows_array_and_dependency(
    tmp_path: Path, flavor: str, array: str, depend: str, index_var: str
) -> None:
    proc = run_submit(
        tmp_path,
        "--dry-run",
        NUM_JOBS="3",
        PBS_FLAVOR=flavor,
        QUEUE="short",
        NCPUS="2",
        MEM="3GB",
        WALLTIME="01:30:00",
        EXTRA_ARGS="--demo --max-files 2",
        SETUP="export BUMPNET_SITE=1",
        RUN_DIR=str(tmp_path / "run"),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"qsub -N bumpnet-shard {array} " in out
    assert f"qsub -N bumpnet-merge -W {depend} " in out
    assert index_var in out
    spec = "nodes=1:ppn=2,mem=3GB" if flavor == "torque" else "select=1:ncpus=2:mem=3GB"
    assert "#PBS -q short" in out and f"#PBS -l {spec}\n" in out
    assert "#PBS -l walltime=01:30:00" in out
    assert "export BUMPNET_SITE=1" in out
    assert "--total-batch-jobs 3" in out and "--demo --max-files 2" in out
    assert f"--merge-only --run-dir {tmp_path / 'run'}" in out
    assert not (tmp_path / "run").exists(), "--dry-run creates nothing"


def test_dry_run_single_job_and_separate_jobs(tmp_path: Path) -> None:
    single = run_submit(
        tmp_path, "--dry-run", PBS_FLAVOR="pbspro", NCPUS="4", RESOURCE_SPEC="nodes=1:ppn=4"
    )
    assert single.returncode == 0, single.stderr
    assert "--local --workers 4" in single.stdout and "#PBS -l nodes=1:ppn=4" in single.stdout
    assert single.stdout.count("qsub ") == 1
    separate = run_submit(tmp_path, "--dry-run", PBS_FLAVOR="pbspro", NUM_JOBS="2", USE_ARRAY="0")
    assert separate.returncode == 0, separate.stderr
    assert "index=1" in separate.stdout and "index=2" in separate.stdout
    assert "-J " not in separate.stdout
    assert "depend=afterok:<shard1>:<shard2>" in separate.stdout


# -- real batch jobs ---------------------------------------------------------------------------


def jobs_named(prefix: str) -> dict[str, str]:
    """Job ID -> state of every job qstat lists whose name starts with ``prefix``."""
    out = subprocess.run(["qstat"], capture_output=True, text=True, timeout=15, check=False)
    jobs = {}
    for line in out.stdout.splitlines():
        tokens = line.split()
        if len(tokens) >= 6 and tokens[0][:1].isdigit() and tokens[1].startswith(prefix):
            jobs[tokens[0]] = tokens[-2]
    return jobs


def live_named(prefix: str) -> dict[str, str]:
    return {j: s for j, s in jobs_named(prefix).items() if s not in ENDED_STATES}


def wait_until_gone(prefix: str, timeout_s: float) -> float:
    """Poll qstat until no job named ``prefix*`` is queued or running; return the seconds."""
    start = time.monotonic()
    while live_named(prefix):
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"jobs still there after {timeout_s} s: {live_named(prefix)}")
        time.sleep(1)
    return time.monotonic() - start


def delete_named(prefix: str) -> None:
    """qdel whatever is left of this test's jobs."""
    live = live_named(prefix)
    if live:
        subprocess.run(["qdel", *live], capture_output=True, timeout=30, check=False)


def unique_name(tag: str) -> str:
    """A job name prefix no other test run uses (qstat shows 16 characters)."""
    return f"b{tag}{os.getpid() % 10000}"


def reference_run(sample: list[Path], config: Path, run_dir: Path) -> subprocess.Popen:
    """`runner.py --executor iterative --input ...` in the background."""
    cmd = [sys.executable, str(REPO / "runner.py"), "--executor", "iterative"]
    cmd += ["--config", str(config), "--run-dir", str(run_dir), "--input", *map(str, sample)]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.pbs
@pytest.mark.usefixtures("batch_system")
def test_array_of_shards_and_merge_equal_single_run(
    tmp_path: Path, sample: list[Path], config: Path
) -> None:
    name = unique_name("a")
    run_dir = tmp_path / "run"
    try:
        start = time.monotonic()
        proc = run_submit(
            REPO,
            NUM_JOBS="2",
            QUEUE="batch",
            MEM="1GB",
            WALLTIME="00:10:00",
            JOB_NAME=name,
            CONFIG=str(config),
            RUN_DIR=str(run_dir),
            EXTRA_ARGS=shlex.join(["--input", *map(str, sample)]),
        )
        assert proc.returncode == 0, proc.stderr
        assert f"run directory: {run_dir}" in proc.stdout
        assert "(array -J 1-2)" in proc.stdout, "the testbed's qsub takes job arrays"
        ids = dict(line.split("=") for line in (run_dir / "jobs" / "job_ids").read_text().split())
        assert f"merge job:     {ids['merge']} " in proc.stdout
        reference = reference_run(sample, config, tmp_path / "single")
        waited = wait_until_gone(name, JOBS_TIMEOUT_S)
        ref_out, _ = reference.communicate(timeout=120)
        assert reference.returncode == 0, ref_out
    finally:
        delete_named(name)
    print(f"shards + merge done {waited:.1f} s after submission ({time.monotonic() - start:.1f} s)")

    logs = sorted(p.name for p in (run_dir / "logs").iterdir())
    assert f"{name}-shard.o{ids['shards']}.1" in logs and f"{name}-shard.o{ids['shards']}.2" in logs
    assert f"{name}-merge.o{ids['merge']}" in logs, logs
    assert (run_dir / "manifest.json").is_file(), (run_dir / "logs" / logs[0]).read_text()
    shards = sorted(p.name for p in (run_dir / "shards").iterdir())
    assert shards == ["job_0001", "job_0002"]

    single = tmp_path / "single"
    assert assert_same_run_histograms(run_dir, single) > 100

    manifest = json.loads((run_dir / "manifest.json").read_text())
    reference_manifest = json.loads((single / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["mode"] == "merge"
    inputs = manifest["inputs"]
    assert sorted(i["file"] for i in inputs) == sorted(str(p) for p in sample)
    assert all(i["entries_processed"] == i["entries_expected"] == N_EVENTS for i in inputs)
    assert manifest["cutflow_total"] == reference_manifest["cutflow_total"]
    assert manifest["cutflow_total"]["events_read"] == N_FILES * N_EVENTS
    assert manifest["failures"] == []


@pytest.mark.pbs
@pytest.mark.usefixtures("batch_system")
def test_failed_shard_deletes_the_merge_job(tmp_path: Path, sample: list[Path]) -> None:
    """Separate jobs (USE_ARRAY=0); a shard that fails must not leave the merge job waiting."""
    bad = tmp_path / "broken.root"
    bad.write_bytes(b"this is not a ROOT file" * 100)
    name = unique_name("f")
    run_dir = tmp_path / "run"
    try:
        proc = run_submit(
            REPO,
            NUM_JOBS="2",
            USE_ARRAY="0",
            MEM="1GB",
            WALLTIME="00:10:00",
            JOB_NAME=name,
            RUN_DIR=str(run_dir),
            EXTRA_ARGS=shlex.join(["--input", str(bad), str(sample[0])]),
        )
        assert proc.returncode == 0, proc.stderr
        ids = dict(line.split("=") for line in (run_dir / "jobs" / "job_ids").read_text().split())
        assert ids.keys() == {"shard1", "shard2", "merge"}
        wait_until_gone(name, 90)
    finally:
        delete_named(name)
    assert not (run_dir / "manifest.json").exists()
    errors = "".join(p.read_text() for p in (run_dir / "logs").glob(f"{name}-shard.e*"))
    assert "broken.root: cannot read it" in errors
    assert f"deleted the merge job {ids['merge']}" in errors
    assert "rerun_shard.sh" in errors
    assert not list((run_dir / "logs").glob(f"{name}-merge.*")), "the merge job must not run"


@pytest.mark.pbs
@pytest.mark.usefixtures("batch_system")
def test_failed_merge_submission_deletes_the_shards(tmp_path: Path, sample: list[Path]) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qsub = bin_dir / "qsub"  # the real qsub, except for dependent jobs
    qsub.write_text(
        "#!/bin/bash\n"
        'for a in "$@"; do case "$a" in depend=*)\n'
        '    echo "qsub: illegal -W value" >&2; exit 2;; esac; done\n'
        f'exec {shlex.quote(shutil.which("qsub") or "qsub")} "$@"\n'
    )
    qsub.chmod(0o755)
    name = unique_name("m")
    try:
        proc = run_submit(
            REPO,
            NUM_JOBS="2",
            MEM="1GB",
            QSUB=str(qsub),
            JOB_NAME=name,
            PBS_FLAVOR="slurm",
            RUN_DIR=str(tmp_path / "run"),
            EXTRA_ARGS=shlex.join(["--input", *map(str, sample)]),
        )
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert lines[0].startswith("submit.sh: error: ") and "illegal -W value" in lines[0]
        assert "submitting the merge" in lines[0]
        assert lines[1].startswith("submit.sh: deleted the jobs submitted so far: ")
        assert proc.stdout == ""
        assert live_named(name) == {}
    finally:
        delete_named(name)
