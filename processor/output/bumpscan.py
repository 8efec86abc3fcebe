"""Classical bump scan of a mass spectrum: background fit or MC, Z_LR, BumpHunter, trials."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from pyBumpHunter import BumpHunter1D
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from scipy import stats

from processor.output.bumpfit import (
    DEFAULT_LR_ALPHA,
    FitResult,
    dijet_function,
    fit_background,
    z_lr,
)

__all__ = [
    "BumpScanConfig",
    "BumpScanResult",
    "FitResult",
    "TrialsCorrection",
    "WindowScan",
    "dijet_function",
    "fit_background",
    "scan",
    "scan_spectrum",
    "spectrum_seed",
    "trials_correction",
    "z_lr",
]

log = logging.getLogger(__name__)

#: pyBumpHunter seeds and draws from numpy's *global* RandomState and prints to stdout; one
#: scan at a time per process keeps seeded results reproducible when threads share a process
#: (Dask workers), and the caller's global random state is restored afterwards. Its prints are
#: captured (redirect_stdout, process-wide for the scan's duration) and logged at DEBUG.
_GLOBAL_RNG_LOCK = threading.Lock()


class BumpScanConfig(BaseModel):
    """Settings of the bump scan (``post_processing_task_config.bump_scan``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: run the scan at all
    enabled: bool = True
    #: background estimate: a fit of the dijet function to the spectrum, or the weighted MC
    background: Literal["fit", "mc"] = "fit"
    #: pseudo-experiments for the global p-value (its resolution is 1 / this number)
    n_pseudo_experiments: PositiveInt = 300
    #: when no pseudo-experiment is as extreme as the data, the scan is repeated with ten times
    #: as many, up to this number (= n_pseudo_experiments: never); 3000 resolves Z up to ~3.4
    max_pseudo_experiments: PositiveInt = 3000
    #: seed of the pseudo-experiments (numpy's legacy global seed: 0 <= seed < 2**32)
    seed: int = Field(0, ge=0, lt=2**32)
    #: narrowest and widest scan window, in bins
    min_window_bins: PositiveInt = 2
    max_window_bins: PositiveInt = 20
    #: a spectrum is skipped when the bins from its first to its last non-empty bin are fewer
    min_bins: PositiveInt = 10
    #: ... or when it holds fewer events than this (sum of the bin contents)
    min_events: float = Field(50.0, ge=0)
    #: largest number of parameters of the background fit (2, 3 or 4)
    fit_max_params: int = Field(4, ge=2, le=4)
    #: level of the likelihood-ratio test that admits another fit parameter
    fit_lr_alpha: float = Field(DEFAULT_LR_ALPHA, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> BumpScanConfig:
        if self.min_window_bins > self.max_window_bins:
            raise ValueError(
                f"min_window_bins ({self.min_window_bins}) > max_window_bins ({self.max_window_bins})"
            )
        if self.max_pseudo_experiments < self.n_pseudo_experiments:
            raise ValueError(
                f"max_pseudo_experiments ({self.max_pseudo_experiments}) < "
                f"n_pseudo_experiments ({self.n_pseudo_experiments})"
            )
        return self


@dataclass(frozen=True)
class WindowScan:
    """The most significant window found by :func:`scan` and its significances.

    The window is bins ``[lo_bin, hi_bin)``, i.e. ``[lo_gev, hi_gev]`` in mass. When no window
    holds more events than its background (``local_p == 1``) there is no window:
    ``lo_gev``/``hi_gev`` are None and both Z are 0. Z values are one-sided,
    Z = max(0, Phi^-1(1 - p)). ``global_p`` is the fraction of the ``n_pseudo``
    background-only pseudo-experiments whose most significant window is at least as
    significant as the data's; when none is (``n_exceeding == 0``) it is 0 and
    ``global_p_is_upper_bound`` is True: the reported ``global_p`` is then the bound
    1 / n_pseudo and ``global_z`` the corresponding *lower* bound.
    """

    lo_bin: int
    hi_bin: int
    lo_gev: float | None
    hi_gev: float | None
    data_events: float
    background_events: float
    signal_events: float
    local_p: float
    local_z: float
    global_p: float
    global_z: float
    global_p_is_upper_bound: bool
    n_pseudo: int
    n_exceeding: int


def _one_sided_z(p: float) -> float:
    """Z = max(0, Phi^-1(1 - p)) for a one-sided p-value (0 for p >= 0.5)."""
    return max(0.0, float(stats.norm.isf(p))) if p < 0.5 else 0.0


def _bumphunter(
    data: np.ndarray,
    bkg: np.ndarray,
    edges: np.ndarray,
    n_pseudo: int,
    seed: int,
    widths: tuple[int, int],
) -> BumpHunter1D:
    """Run pyBumpHunter's binned scan (``is_hist=True``), silenced and with its global RNG fenced."""
    hunter = BumpHunter1D(
        rang=[float(edges[0]), float(edges[-1])],
        bins=edges,  # only used by its plots and bump_info: the histograms are given binned
        mode="excess",
        width_min=widths[0],
        width_max=widths[1],
        width_step=1,
        scan_step=1,
        npe=n_pseudo,
        nworker=1,  # its threads only contend for the GIL on such small arrays
        seed=seed,
        weights=None,  # bkg is already the expected count per bin; weights would multiply it
    )
    printed = io.StringIO()
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        try:
            # -log(0) of an underflowed local p-value is a legitimate +inf test statistic
            with contextlib.redirect_stdout(printed), np.errstate(divide="ignore"):
                hunter.bump_scan(data, bkg, is_hist=True, do_pseudo=True)
        finally:
            np.random.set_state(state)
    log.debug("pyBumpHunter: %s", " | ".join(printed.getvalue().split("\n")).strip(" |"))
    return hunter


def scan(
    counts: ArrayLike,
    edges: ArrayLike,
    background: ArrayLike,
    *,
    n_pseudo: int = 300,
    seed: int = 0,
    min_width_bins: int = 2,
    max_width_bins: int = 20,
    max_pseudo: int | None = None,
) -> WindowScan:
    """BumpHunter scan (pyBumpHunter ``BumpHunter1D``) for the most significant excess window.

    ``counts`` are the observed events per bin and ``background`` the expected events per bin
    (a fit's ``expected``, or a weighted MC histogram: its bin sums, *not* per-event weights).
    Both go to pyBumpHunter's binned interface ``bump_scan(data, bkg, is_hist=True)`` with
    ``weights=None``, so no unbinned arrays are made and nothing is weighted twice. The scan
    covers the bins between the first and last bin with positive background (pyBumpHunter's
    rule), windows of ``min_width_bins`` to ``max_width_bins`` bins at every position; a
    window's local p-value is the Poisson probability P(N >= n | b) of its summed counts.
    The global p-value comes from ``n_pseudo`` Poisson pseudo-experiments drawn from
    ``background`` (seeded with ``seed``: identical inputs give identical results). If no
    pseudo-experiment is as extreme as the data and ``max_pseudo`` is larger, the scan is
    repeated with 10x as many (same seed), up to ``max_pseudo``; the result says how many
    were used. Negative background bins (MC with negative weights) are set to 0 with a
    warning. When a local p-value underflows to 0, the local Z is the asymptotic
    likelihood-ratio value Z_LR of the window's summed counts.

    Raises ValueError for inputs that cannot be scanned (shapes, negative or non-finite
    counts, no positive background, bad widths or seed).
    """
    data = np.asarray(counts, dtype=float)
    bkg = np.asarray(background, dtype=float)
    e = np.asarray(edges, dtype=float)
    if data.ndim != 1 or bkg.shape != data.shape or e.shape != (data.size + 1,):
        raise ValueError(
            f"shapes differ: counts {data.shape}, background {bkg.shape}, edges {e.shape}"
        )
    if not (np.all(np.isfinite(data)) and np.all(data >= 0)):
        raise ValueError("counts must be finite and non-negative")
    if not np.all(np.isfinite(bkg)):
        raise ValueError("background must be finite")
    if np.any(bkg < 0):
        log.warning("background has %d negative bins; they are set to 0", int(np.sum(bkg < 0)))
        bkg = np.clip(bkg, 0.0, None)
    positive = np.flatnonzero(bkg > 0)
    if positive.size == 0:
        raise ValueError("background has no positive bin")
    span = int(positive[-1] - positive[0] + 1)
    if not 1 <= min_width_bins <= max_width_bins:
        raise ValueError(
            f"need 1 <= min_width_bins <= max_width_bins, got {min_width_bins}, {max_width_bins}"
        )
    if min_width_bins > span:
        raise ValueError(f"min_width_bins {min_width_bins} > {span} bins with background")
    if not 0 <= seed < 2**32 or n_pseudo < 1:
        raise ValueError(f"need 0 <= seed < 2**32 and n_pseudo >= 1, got {seed}, {n_pseudo}")
    widths = (int(min_width_bins), int(min(max_width_bins, span)))

    npe = int(n_pseudo)
    while True:
        hunter = _bumphunter(data, bkg, e, npe, int(seed), widths)
        t_ar = np.asarray(hunter.t_ar, dtype=float)
        n_exceeding = int(np.count_nonzero(t_ar[1:] >= t_ar[0]))
        if n_exceeding > 0 or max_pseudo is None or npe >= max_pseudo:
            break
        npe = min(10 * npe, int(max_pseudo))
        log.debug("no pseudo-experiment reached the data: repeating with %d", npe)

    local_p = float(hunter.min_Pval_ar[0])
    lo_bin = int(hunter.min_loc_ar[0])
    hi_bin = lo_bin + int(hunter.min_width_ar[0])
    n_win, b_win = float(data[lo_bin:hi_bin].sum()), float(bkg[lo_bin:hi_bin].sum())
    excess = local_p < 1.0
    # on gammainc underflow (p = 0), the asymptotic formula, which the exact p-value approaches
    local_z = _one_sided_z(local_p) if local_p > 0 else float(z_lr(n_win, b_win)[()])
    global_p = n_exceeding / npe
    bound = n_exceeding == 0
    if bound:
        global_p = 1.0 / npe
    return WindowScan(
        lo_bin=lo_bin,
        hi_bin=hi_bin,
        lo_gev=float(e[lo_bin]) if excess else None,
        hi_gev=float(e[hi_bin]) if excess else None,
        data_events=n_win,
        background_events=b_win,
        signal_events=float(hunter.signal_eval) if excess else 0.0,
        local_p=local_p,
        local_z=local_z if excess else 0.0,
        global_p=global_p,
        global_z=_one_sided_z(global_p) if excess else 0.0,
        global_p_is_upper_bound=bound,
        n_pseudo=npe,
        n_exceeding=n_exceeding,
    )


@dataclass
class BumpScanResult:
    """Everything :func:`scan_spectrum` found for one spectrum.

    ``skipped`` is None for a scanned spectrum, else the reason it was not scanned.
    ``background`` is the expected count per bin that the scan used (the fit's ``expected``
    or the MC), ``zlr`` the per-bin Z_LR of the counts against it (0 where undefined),
    ``fit`` the background fit (None with an MC background), ``window`` the scan result.
    """

    skipped: str | None = None
    background_kind: Literal["fit", "mc"] = "fit"
    fit: FitResult | None = None
    window: WindowScan | None = None
    background: np.ndarray | None = None
    zlr: np.ndarray | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The manifest record: the scan's numbers, or ``{"skipped": reason}``; JSON-ready."""
        if self.skipped is not None or self.window is None:
            return {"skipped": self.skipped or "not scanned"}
        w = self.window
        found = w.lo_gev is not None
        return {
            "window_gev": [w.lo_gev, w.hi_gev] if found else None,
            "local_z": w.local_z,
            "global_z": w.global_z,
            "background": self.background_kind,
            "fit_chi2_ndf": self.fit.chi2_ndf if self.fit is not None else None,
            "n_params": self.fit.n_params if self.fit is not None else None,
            "n_pseudo": w.n_pseudo,
            "local_p": w.local_p,
            "global_p": w.global_p,
            "global_z_is_lower_bound": w.global_p_is_upper_bound,
            "window_bins": [w.lo_bin, w.hi_bin] if found else None,
            "data_events": w.data_events,
            "background_events": w.background_events,
            "signal_events": w.signal_events,
            "fit_p_value": self.fit.p_value if self.fit is not None else None,
            "seed": self.seed,
        }


def spectrum_seed(seed: int, name: str) -> int:
    """A per-spectrum seed from the run's seed and the spectrum's name, stable across processes.

    Using one seed for every spectrum would make their pseudo-experiments share random numbers;
    this keeps them independent and each still reproducible.
    """
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def _too_small(counts: np.ndarray, config: BumpScanConfig) -> str | None:
    """Why the spectrum is too small to scan, or None."""
    filled = np.flatnonzero(counts > 0)
    span = int(filled[-1] - filled[0] + 1) if filled.size else 0
    total = float(counts.sum())
    if span < config.min_bins:
        return f"too few bins: {span} from the first to the last non-empty bin (min_bins {config.min_bins})"
    if total < config.min_events:
        return f"too few events: {total:g} (min_events {config.min_events:g})"
    return None


def scan_spectrum(
    counts: ArrayLike,
    edges: ArrayLike,
    sqrt_s_gev: float,
    *,
    background: Literal["fit", "mc"] | ArrayLike | None = None,
    config: BumpScanConfig | None = None,
    seed: int | None = None,
) -> BumpScanResult:
    """Background estimate, Z_LR and BumpHunter scan of one spectrum, never raising on its data.

    ``background`` is "fit" (fit :func:`fit_background` to ``counts``), an array of expected
    counts per bin (weighted MC of the same spectrum: used as is, not renormalised), or None
    for ``config.background`` (which, when "mc", needs the array). ``seed`` overrides
    ``config.seed`` (see :func:`spectrum_seed`). A spectrum is skipped (``skipped`` says why)
    when the bins from its first to its last non-empty bin are fewer than ``config.min_bins``
    or it holds fewer than ``config.min_events`` events, when its arrays are unusable, when
    the fit fails, or when the MC background is missing or has no positive bin.

    With ``background="fit"`` the fit sees the data, bump included, and the pseudo-experiments
    are Poisson draws from that fit without refitting each: a real bump is partly absorbed by
    the fit (its local Z is lower than against the true background; the 4-parameter family
    cannot follow a narrow peak, so most survives), and the global p-value is conservative
    rather than optimistic. No signal window is excluded from the fit.
    """
    config = config or BumpScanConfig()
    seed = config.seed if seed is None else int(seed)
    if not config.enabled:
        return BumpScanResult(skipped="bump scan disabled", seed=seed)
    c = np.asarray(counts, dtype=float)
    e = np.asarray(edges, dtype=float)
    if c.ndim != 1 or e.shape != (c.size + 1,):
        return BumpScanResult(
            skipped=f"{c.shape} counts do not match {e.shape} bin edges", seed=seed
        )
    if not (np.all(np.isfinite(c)) and np.all(c >= 0)):
        return BumpScanResult(skipped="counts must be finite and non-negative", seed=seed)
    reason = _too_small(c, config)
    if reason:
        return BumpScanResult(skipped=reason, seed=seed)

    kind: Literal["fit", "mc"]
    fit: FitResult | None = None
    if background is None or isinstance(background, str):
        kind = config.background if background is None else background  # type: ignore[assignment]
        if kind == "mc":
            return BumpScanResult(
                skipped="background 'mc' chosen but no MC histogram given",
                background_kind="mc",
                seed=seed,
            )
        if kind != "fit":
            return BumpScanResult(skipped=f"unknown background {kind!r}", seed=seed)
        fit = fit_background(
            c, e, sqrt_s_gev, max_params=config.fit_max_params, lr_alpha=config.fit_lr_alpha
        )
        if not fit.valid:
            return BumpScanResult(
                skipped=f"background fit failed: {fit.reason}", fit=fit, seed=seed
            )
        bkg = fit.expected
    else:
        kind = "mc"
        bkg = np.asarray(background, dtype=float)
        if bkg.shape != c.shape or not np.all(np.isfinite(bkg)) or not np.any(bkg > 0):
            return BumpScanResult(
                skipped="MC background is unusable (shape, non-finite or no positive bin)",
                background_kind="mc",
                seed=seed,
            )

    try:
        window = scan(
            c,
            e,
            bkg,
            n_pseudo=config.n_pseudo_experiments,
            seed=seed,
            min_width_bins=config.min_window_bins,
            max_width_bins=config.max_window_bins,
            max_pseudo=config.max_pseudo_experiments,
        )
    except ValueError as err:
        return BumpScanResult(
            skipped=f"scan failed: {err}", background_kind=kind, fit=fit, seed=seed
        )
    return BumpScanResult(
        background_kind=kind,
        fit=fit,
        window=window,
        background=np.asarray(bkg, dtype=float),
        zlr=z_lr(c, bkg),
        seed=seed,
    )


@dataclass(frozen=True)
class TrialsCorrection:
    """The look-elsewhere correction over the scanned spectra of a run.

    ``p_run`` = 1 - (1 - p_min)^N (Sidak) for the smallest global p-value ``p_min`` among
    the ``n_spectra`` scanned spectra; ``z_run`` = max(0, Phi^-1(1 - p_run)). When that p_min
    was a bound (no pseudo-experiment reached the data), ``is_bound`` is True: p_run is then
    an upper and z_run a lower bound.
    """

    n_spectra: int
    best: str | None
    p_min: float
    p_run: float
    z_run: float
    is_bound: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record for the run summary."""
        return {
            "n_spectra": self.n_spectra,
            "most_significant": self.best,
            "p_min": self.p_min,
            "p_run": self.p_run,
            "z_run": self.z_run,
            "z_run_is_lower_bound": self.is_bound,
        }


def trials_correction(
    results: Mapping[str, BumpScanResult | Mapping[str, Any]]
    | Iterable[BumpScanResult | Mapping[str, Any]],
) -> TrialsCorrection:
    """Correct the most significant spectrum's global p-value for the number of spectra scanned.

    Each spectrum's global p-value already accounts for the look-elsewhere effect *within* that
    spectrum; across a run's N scanned spectra (skipped ones do not count) the chance that at
    least one reaches p_min by chance is p_run = 1 - (1 - p_min)^N (Sidak; exact for
    independent spectra and conservative for the positively correlated ones of one data set,
    e.g. overlapping categories). ``results`` maps names to :class:`BumpScanResult` or to their
    ``to_dict()`` records (a plain iterable is named by position). Ties in p_min are broken by
    the larger local Z. With no scanned spectrum: N = 0, no best, p_run = 1, z_run = 0.
    """
    items = (
        results.items()
        if isinstance(results, Mapping)
        else ((str(i), r) for i, r in enumerate(results))
    )
    best: tuple[float, float, str, bool] | None = None
    n = 0
    for name, result in items:
        record = result.to_dict() if isinstance(result, BumpScanResult) else result
        if "skipped" in record:
            continue
        n += 1
        key = (
            float(record["global_p"]),
            -float(record["local_z"]),
            name,
            bool(record["global_z_is_lower_bound"]),
        )
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None:
        return TrialsCorrection(
            n_spectra=0, best=None, p_min=1.0, p_run=1.0, z_run=0.0, is_bound=False
        )
    p_min = best[0]
    p_run = float(-np.expm1(n * np.log1p(-p_min))) if p_min < 1 else 1.0
    return TrialsCorrection(
        n_spectra=n,
        best=best[2],
        p_min=p_min,
        p_run=p_run,
        z_run=_one_sided_z(p_run),
        is_bound=best[3],
    )
