"""Throughput and scale of the whole pipeline in one run (issue 11).

Makes the input once (synthetic 2025e files, cached under ``--cache-dir``), then measures in
this one invocation:

* a plain uproot read, on one core, of exactly the branches the processor reads
  (:func:`processor.opendata.formats.branches_needed` for the default selection, the list
  ``tests/test_processor.py`` checks the processor against);
* ``runner.py --local --workers 1`` and ``--workers 2`` without plots (rate from
  ``manifest.json`` ``processing.events_per_s``; accumulator from ``processing.accumulator_bytes``);
* ``runner.py --plots-only`` on the one-worker run;
* driver and worker peak RSS of every runner invocation (the process tree sampled with psutil);

and prints the ratios of issue 11 as a table and as JSON (``--json FILE`` also writes it).
Timings on a shared machine are noisy: the load average at start and end is reported with them.
No assertion is made on any number.

    python benchmarks/bench_scale.py                      # 4 files x 250 k events (minutes)
    python benchmarks/bench_scale.py --files 20 --events 500000   # the issue's 10 M events
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uproot
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from processor.config import validate_config  # noqa: E402
from processor.opendata.formats import FORMATS, branches_needed  # noqa: E402
from processor.synthetic import write_sample  # noqa: E402

log = logging.getLogger("bench_scale")

#: the issue-11 targets, as (name, comparison, bound)
TARGETS = {
    "pipeline_1w_over_read": (">=", 0.50),
    "speedup_2w_over_1w": (">=", 1.80),
    "plots_over_processing_1w": ("<=", 1.00),
    "accumulator_mb": ("<=", 8.0),
    "worker_peak_rss_mb": ("<", 1000.0),
}


def make_input(cache_dir: Path, n_files: int, n_events: int) -> list[Path]:
    """The synthetic 2025e files (data, a 800 GeV signal), written once and reused."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = cache_dir / f"bench2025e_{n_events}_{i:03d}.root"
        if not path.is_file():
            log.info("writing %s", path)
            write_sample(path, "2025e", n_events, seed=1000 + i, signal_mass_gev=800.0)
        paths.append(path)
    return paths


def plain_read(paths: list[Path], branches: list[str], step: int) -> float:
    """Seconds to read and decompress ``branches`` of every file, one thread."""
    t0 = time.perf_counter()
    for path in paths:
        with uproot.open(path) as f:
            for _ in f["analysis"].iterate(branches, step_size=step, library="ak"):
                pass
    return time.perf_counter() - t0


@dataclass
class RssSampler:
    """Peak RSS of a process (the driver) and of its descendants (workers, nannies), sampled."""

    pid: int
    interval_s: float = 0.2
    driver_peak: int = 0
    worker_peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                self.driver_peak = max(self.driver_peak, root.memory_info().rss)
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.worker_peak = max(self.worker_peak, child.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_runner(args: list[str], log_file: Path) -> tuple[float, RssSampler]:
    """Run ``runner.py args``; return its wall time and sampled peak RSS. Raises on failure."""
    cmd = [sys.executable, str(ROOT / "runner.py"), *args]
    log.info("running %s", " ".join(cmd))
    t0 = time.perf_counter()
    with open(log_file, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        with RssSampler(proc.pid) as rss:
            rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}; see {log_file}")
    return wall, rss


def processing_run(workdir: Path, paths: list[Path], workers: int, config: Path) -> dict[str, Any]:
    """One ``--local --workers N`` run without plots; the manifest's processing numbers."""
    run_dir = workdir / f"run_{workers}w"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    wall, rss = run_runner(
        [
            "--local",
            "--workers",
            str(workers),
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
            "--log-level",
            "WARNING",
            "--input",
            *map(str, paths),
        ],
        workdir / f"run_{workers}w.log",
    )
    proc = json.loads((run_dir / "manifest.json").read_text())["processing"]
    return {
        "run_dir": str(run_dir),
        "events": proc["events"],
        "events_per_s": proc["events_per_s"],
        "processing_wall_s": proc["wall_time_s"],
        "accumulator_bytes": proc["accumulator_bytes"],
        "command_wall_s": round(wall, 2),
        "driver_peak_rss_mb": round(rss.driver_peak / 1e6, 1),
        "worker_peak_rss_mb": round(rss.worker_peak / 1e6, 1),
    }


def bench_config(workdir: Path, fine_width: float | None) -> Path:
    """The default config with plots off (they are timed separately) and the output here."""
    cfg: dict[str, Any] = {
        "run_metadata": {"base_output_dir": str(workdir)},
        "tasks": {"do_plots": False},
    }
    if fine_width is not None:
        cfg["mass_calculation_task_config"] = {"fine_bin_width_gev": fine_width}
    validate_config(cfg)
    path = workdir / "bench_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _check(name: str, value: float) -> str:
    op, bound = TARGETS[name]
    ok = value >= bound if op == ">=" else (value <= bound if op == "<=" else value < bound)
    return f"{op} {bound:g}  {'met' if ok else 'MISSED'}"


def main() -> int:
    """Make (or reuse) the input, run every measurement, print the table and the JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=4, help="number of input files (default 4)")
    ap.add_argument("--events", type=int, default=250_000, help="events per file (default 250k)")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "bumpnet-masses"
        / "bench",
    )
    ap.add_argument("--workdir", type=Path, default=None, help="run directories (default: cache)")
    ap.add_argument("--fine-width", type=float, default=None, help="fine bin width in GeV")
    ap.add_argument("--step", type=int, default=200_000, help="plain-read step size")
    ap.add_argument("--skip-2w", action="store_true", help="skip the two-worker run")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    load_start = os.getloadavg()
    paths = make_input(args.cache_dir, args.files, args.events)
    workdir = args.workdir or args.cache_dir / f"runs_{args.files}x{args.events}"
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = bench_config(workdir, args.fine_width)
    cfg = validate_config(yaml.safe_load(config_path.read_text()))
    branches = sorted(branches_needed(FORMATS["2025e"], cfg.object_selection))
    n_events = args.files * args.events

    t_read = plain_read(paths, branches, args.step)
    read_rate = n_events / t_read
    one = processing_run(workdir, paths, 1, config_path)
    two = None if args.skip_2w else processing_run(workdir, paths, 2, config_path)
    plots_wall, plots_rss = run_runner(
        ["--plots-only", "--run-dir", one["run_dir"], "--log-level", "WARNING"],
        workdir / "plots_only.log",
    )
    n_plots = len(list(Path(one["run_dir"], "plots").rglob("*.*")))
    load_end = os.getloadavg()

    result: dict[str, Any] = {
        "input": {"files": args.files, "events_per_file": args.events, "events": n_events},
        "fine_width_gev": cfg.mass_calculation_task_config.fine_bin_width_gev,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start_end": [round(load_start[0], 2), round(load_end[0], 2)],
        "plain_read": {
            "branches": len(branches),
            "seconds": round(t_read, 2),
            "events_per_s": round(read_rate),
        },
        "runner_1w": one,
        "runner_2w": two,
        "plots_only": {
            "seconds": round(plots_wall, 2),
            "files": n_plots,
            "driver_peak_rss_mb": round(plots_rss.driver_peak / 1e6, 1),
            "worker_peak_rss_mb": round(plots_rss.worker_peak / 1e6, 1),
        },
    }
    ratios = {
        "pipeline_1w_over_read": round(one["events_per_s"] / read_rate, 3),
        "speedup_2w_over_1w": None
        if two is None
        else round(two["events_per_s"] / one["events_per_s"], 3),
        "plots_over_processing_1w": round(plots_wall / one["processing_wall_s"], 3),
        "accumulator_mb": round(one["accumulator_bytes"] / 1e6, 3),
        "worker_peak_rss_mb": max(one["worker_peak_rss_mb"], (two or one)["worker_peak_rss_mb"]),
    }
    result["ratios"] = ratios

    rows = [
        ("plain uproot read, 1 core", f"{read_rate / 1e6:.3f} M ev/s ({len(branches)} branches)"),
        ("runner --workers 1", f"{one['events_per_s'] / 1e6:.3f} M ev/s"),
        ("runner --workers 2", "-" if two is None else f"{two['events_per_s'] / 1e6:.3f} M ev/s"),
        (
            "pipeline(1w) / read",
            f"{ratios['pipeline_1w_over_read']:.1%}  "
            + _check("pipeline_1w_over_read", ratios["pipeline_1w_over_read"]),
        ),
        (
            "2 workers / 1 worker",
            "-"
            if two is None
            else f"{ratios['speedup_2w_over_1w']:.2f}x  "
            + _check("speedup_2w_over_1w", ratios["speedup_2w_over_1w"]),
        ),
        (
            "plots-only / processing(1w)",
            f"{plots_wall:.1f} s / {one['processing_wall_s']:.1f} s = "
            f"{ratios['plots_over_processing_1w']:.2f}  "
            + _check("plots_over_processing_1w", ratios["plots_over_processing_1w"]),
        ),
        (
            "accumulator (pickled)",
            f"{ratios['accumulator_mb']:.2f} MB  "
            + _check("accumulator_mb", ratios["accumulator_mb"]),
        ),
        (
            "driver peak RSS 1w / 2w",
            f"{one['driver_peak_rss_mb']:.0f} / "
            f"{(two or {}).get('driver_peak_rss_mb', float('nan')):.0f} MB",
        ),
        (
            "worker peak RSS 1w / 2w",
            f"{one['worker_peak_rss_mb']:.0f} / "
            f"{(two or {}).get('worker_peak_rss_mb', float('nan')):.0f} MB  "
            + _check("worker_peak_rss_mb", ratios["worker_peak_rss_mb"]),
        ),
        (
            "load average (1 min) start/end",
            f"{load_start[0]:.2f} / {load_end[0]:.2f} on {os.cpu_count()} cores",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{n_events:,} events in {args.files} synthetic 2025e files")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
