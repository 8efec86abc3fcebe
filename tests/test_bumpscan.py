"""Bump scan library: background fit, Z_LR, BumpHunter scan, skip rule, trials correction."""

from __future__ import annotations

import json
import logging
import math
import threading

import numpy as np
import pytest
from pyBumpHunter import BumpHunter1D
from pydantic import ValidationError
from scipy import integrate, stats

from processor.output import bumpfit, bumpscan
from processor.output.bumpfit import _choose
from processor.output.bumpscan import (
    BumpScanConfig,
    BumpScanResult,
    dijet_function,
    fit_background,
    scan,
    scan_spectrum,
    spectrum_seed,
    trials_correction,
    z_lr,
)

SQRT_S = 13000.0
EDGES = np.arange(200.0, 1200.1, 10.0)  # 100 bins of 10 GeV
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])
FOUR = {"p0": 1.0, "p1": 12.0, "p2": -4.5, "p3": -0.3}
MANIFEST_KEYS = {"window_gev", "local_z", "global_z", "background", "fit_chi2_ndf", "n_params"}


def bin_integrals(params: dict[str, float], edges: np.ndarray = EDGES) -> np.ndarray:
    """Exact expected counts: adaptive quadrature of f over x in each bin (not the module's)."""
    return np.array(
        [
            integrate.quad(
                lambda x: float(dijet_function(x, params)), lo / SQRT_S, hi / SQRT_S, epsrel=1e-12
            )[0]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
    )


def smooth_background(total: float = 20000.0) -> np.ndarray:
    """Expected counts of a smooth falling 4-parameter spectrum holding ``total`` events."""
    b = dijet_function(CENTRES / SQRT_S, FOUR) * np.diff(EDGES)
    return b * total / b.sum()


def gaussian(mass: float, width: float, n: float) -> np.ndarray:
    """Expected counts per bin of a Gaussian bump of ``n`` events."""
    return n * np.diff(stats.norm.cdf(EDGES, mass, width))


# --- Z_LR ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "b", "expected"),
    [
        (10, 5, 1.9654372569987846),  # 2 (10 ln 2 - 5) = 3.862944
        (5, 10, -1.7517214945306077),  # 2 (5 ln 0.5 + 5) = 3.068528, negative: deficit
        (100, 80, 2.151443762416755),  # 2 (100 ln 1.25 - 20) = 4.628711
        (3, 0.5, 2.3980318628759565),  # 2 (3 ln 6 - 2.5) = 5.750556
        (7, 7, 0.0),
        (0, 4, -2.8284271247461903),  # n = 0: -sqrt(2 b)
    ],
)
def test_z_lr_hand_values(n: float, b: float, expected: float) -> None:
    assert z_lr(n, b)[()] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_z_lr_is_elementwise_and_handles_undefined_bins() -> None:
    n = np.array([10.0, 0.0, 5.0, 3.0, -1.0, np.nan])
    b = np.array([5.0, 4.0, 0.0, -2.0, 1.0, 1.0])
    z = z_lr(n, b)
    assert z.shape == n.shape
    assert z[:2] == pytest.approx([1.9654372569987846, -2.8284271247461903])
    assert list(z[2:]) == [0.0, 0.0, 0.0, 0.0]  # b <= 0, n < 0, n not finite: no claim
    assert np.isnan(z_lr(n, b, undefined=np.nan)[2:]).all()
    # large counts approach the Gaussian (n - b) / sqrt(b)
    assert z_lr(10100.0, 10000.0)[()] == pytest.approx(1.0, abs=0.002)


# --- background fit ------------------------------------------------------------------------


def test_fit_recovers_parameters_of_an_exact_four_parameter_histogram() -> None:
    params = dict(FOUR, p0=1.0)
    counts = bin_integrals(params)
    params["p0"] = 1e5 / counts.sum()  # about 1e5 events: every parameter is needed
    counts = counts * params["p0"]
    fit = fit_background(counts, EDGES, SQRT_S)
    assert fit.valid, fit.reason
    assert fit.n_params == 4
    for name, value in params.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-3), name
    assert fit.expected == pytest.approx(counts, rel=1e-5)
    assert fit.deviance < 1e-4 and fit.chi2_ndf < 1e-6
    assert fit.ndf == 100 - 4
    assert fit.converged and set(fit.errors) == {"p1", "p2", "p3"}
    # density() is f per GeV: its integral over a bin is that bin's expected count
    lo, hi = EDGES[40], EDGES[41]
    assert integrate.quad(fit.density, lo, hi)[0] == pytest.approx(counts[40], rel=1e-6)


def test_fit_keeps_two_parameters_when_the_spectrum_needs_no_more() -> None:
    two = {"p0": 1.0, "p1": 40.0}
    counts = bin_integrals(two)
    counts *= 5000 / counts.sum()
    fit = fit_background(counts, EDGES, SQRT_S)
    assert fit.valid and fit.n_params == 2
    assert fit.params["p1"] == pytest.approx(40.0, rel=1e-4)
    assert fit.params["p2"] == 0.0 and fit.params["p3"] == 0.0
    assert set(fit.deviances) == {2, 3, 4}  # the larger models were tried and not needed


def test_fit_of_a_pure_exponential_uses_fewer_than_four_parameters() -> None:
    expected = np.exp(-CENTRES / 120.0)
    expected *= 3000 / expected.sum()
    for seed in range(3):
        counts = np.random.default_rng(seed).poisson(expected)
        fit = fit_background(counts, EDGES, SQRT_S)
        assert fit.valid, fit.reason
        assert fit.n_params == 2, (seed, fit.deviances)
        assert 0.6 < fit.chi2_ndf < 1.6


def test_fit_of_a_poisson_toy_is_good_and_conserves_the_total() -> None:
    expected = smooth_background(50000)
    counts = np.random.default_rng(7).poisson(expected)
    fit = fit_background(counts, EDGES, SQRT_S)
    assert fit.valid and fit.n_params in (3, 4)
    assert 0.6 < fit.chi2_ndf < 1.5 and fit.p_value > 1e-3
    assert fit.pearson_chi2 == pytest.approx(fit.deviance, rel=0.2)
    assert fit.expected.sum() == pytest.approx(counts.sum(), rel=1e-9)  # profiled p0
    assert np.abs(fit.expected / expected - 1).max() < 0.1


@pytest.mark.parametrize(
    ("deviances", "chosen"),
    [
        ({2: 100.0, 3: 97.0, 4: 96.0}, 2),  # 3 < 3.84 (1 dof), 4 < 5.99 (2 dof)
        ({2: 100.0, 3: 95.0, 4: 94.0}, 3),  # 2 -> 3 is significant, 3 -> 4 is not
        ({2: 100.0, 3: 99.0, 4: 93.0}, 4),  # only the pair p2, p3 helps: 7 > 5.99, 6 > 3.84
        ({3: 50.0, 4: 49.0}, 3),  # the 2-parameter fit did not converge
    ],
)
def test_likelihood_ratio_rule_for_the_number_of_parameters(
    deviances: dict[int, float], chosen: int
) -> None:
    assert _choose(deviances, dict.fromkeys(deviances), 0.05) == chosen


def test_masked_bins_do_not_enter_the_fit() -> None:
    counts = np.random.default_rng(3).poisson(smooth_background())
    spiked = counts.copy()
    spiked[40:44] += 5000
    mask = np.ones(counts.size, dtype=bool)
    mask[40:44] = False
    plain = fit_background(counts, EDGES, SQRT_S, mask=mask)
    masked = fit_background(spiked, EDGES, SQRT_S, mask=mask)
    unmasked = fit_background(spiked, EDGES, SQRT_S)
    assert masked.valid and plain.valid
    assert masked.expected == pytest.approx(plain.expected, rel=1e-6)
    assert masked.ndf == 96 - masked.n_params
    assert not unmasked.valid or np.abs(unmasked.expected / plain.expected - 1).max() > 0.05


@pytest.mark.parametrize(
    ("counts", "edges", "sqrt_s", "reason"),
    [
        (np.zeros(100), EDGES, SQRT_S, "no events"),
        (np.full(100, np.nan), EDGES, SQRT_S, "finite"),
        (-np.ones(100), EDGES, SQRT_S, "non-negative"),
        (np.ones(99), EDGES, SQRT_S, "do not match"),
        (np.ones((10, 10)), EDGES, SQRT_S, "do not match"),
        (np.ones(100), EDGES[::-1], SQRT_S, "increasing"),
        (np.ones(100), EDGES * 20, SQRT_S, "sqrt(s)"),
        (np.ones(100), EDGES - 200, SQRT_S, "sqrt(s)"),
        (np.ones(100), EDGES, 0.0, "positive"),
        (np.ones(100), EDGES, float("nan"), "positive"),
        (np.ones(2), EDGES[:3], SQRT_S, "non-empty"),
        (np.eye(1, 100, 50)[0] * 1000, EDGES, SQRT_S, "non-empty"),
        (np.r_[np.zeros(97), 5.0, 0.0, 5.0], EDGES, SQRT_S, "non-empty"),
        ("abc", EDGES, SQRT_S, "numeric"),
    ],
)
def test_fit_fails_cleanly_on_pathological_input(counts, edges, sqrt_s, reason: str) -> None:
    fit = fit_background(counts, edges, sqrt_s)
    assert not fit.valid and reason in fit.reason
    assert fit.expected is None
    assert np.isnan(fit.density([500.0])).all()


@pytest.mark.parametrize(
    "kwargs", [{"min_params": 3, "max_params": 2}, {"max_params": 5}, {"lr_alpha": 0.0}]
)
def test_fit_rejects_impossible_settings(kwargs: dict) -> None:
    fit = fit_background(np.ones(100), EDGES, SQRT_S, **kwargs)
    assert not fit.valid and "min_params" in fit.reason


def test_a_failed_intermediate_fit_does_not_stop_the_larger_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = np.random.default_rng(7).poisson(smooth_background(50000))
    original = bumpfit._minimise
    monkeypatch.setattr(bumpfit, "_minimise", lambda m, n, s: None if n == 3 else original(m, n, s))
    fit = fit_background(counts, EDGES, SQRT_S)
    assert fit.valid and fit.n_params == 4 and math.isnan(fit.deviances[3])
    monkeypatch.setattr(bumpfit, "_minimise", lambda m, n, s: None)
    failed = fit_background(counts, EDGES, SQRT_S)
    assert not failed.valid and failed.reason == "no fit converged"


# --- the scan ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("mass", "n_signal"), [(450.0, 250.0), (800.0, 140.0)])
def test_scan_finds_an_injected_bump(seed: int, mass: float, n_signal: float) -> None:
    # about 6 sigma over the true background within +-1.5 sigma of a 2.5 % resolution peak
    expected = smooth_background() + gaussian(mass, 0.025 * mass, n_signal)
    counts = np.random.default_rng(seed).poisson(expected)
    config = BumpScanConfig(max_pseudo_experiments=1000)  # resolves global Z up to 3.09
    record = scan_spectrum(counts, EDGES, SQRT_S, config=config).to_dict()
    lo, hi = record["window_gev"]
    assert lo <= mass <= hi and hi - lo <= 100
    assert record["global_z"] >= 3, record
    assert record["local_z"] > record["global_z"]
    assert record["background"] == "fit" and record["n_params"] in (2, 3, 4)
    assert record["signal_events"] > 30


@pytest.mark.parametrize("seed", range(6))
def test_background_only_toys_stay_below_global_z_3(seed: int) -> None:
    counts = np.random.default_rng(100 + seed).poisson(smooth_background())
    record = scan_spectrum(counts, EDGES, SQRT_S, seed=seed).to_dict()
    assert record["global_z"] < 3, record
    assert not record["global_z_is_lower_bound"]
    mc = scan_spectrum(counts, EDGES, SQRT_S, background=smooth_background(), seed=seed).to_dict()
    assert mc["global_z"] < 3 and mc["background"] == "mc"
    assert mc["fit_chi2_ndf"] is None and mc["n_params"] is None


def test_local_p_value_and_window_by_hand() -> None:
    # flat background of 100 per bin, data equal to it except +60 in bins 40 and 41
    bkg = np.full(100, 100.0)
    counts = bkg.copy()
    counts[40:42] += 60
    window = scan(counts, EDGES, bkg, n_pseudo=100, seed=1)
    assert (window.lo_bin, window.hi_bin) == (40, 42)
    assert (window.lo_gev, window.hi_gev) == (EDGES[40], EDGES[42])
    assert window.local_p == pytest.approx(stats.poisson.sf(319, 200), rel=1e-9)  # P(N >= 320)
    assert window.local_z == pytest.approx(stats.norm.isf(window.local_p))
    assert (window.data_events, window.background_events, window.signal_events) == (320, 200, 120)


def test_global_p_value_of_zero_is_reported_as_a_bound() -> None:
    bkg = np.full(100, 100.0)
    counts = bkg.copy()
    counts[40:42] += 100
    window = scan(counts, EDGES, bkg, n_pseudo=50, seed=1)
    assert window.n_exceeding == 0 and window.global_p_is_upper_bound
    assert window.global_p == 1 / 50
    assert window.global_z == pytest.approx(2.053748910631823)  # Phi^-1(1 - 1/50)
    more = scan(counts, EDGES, bkg, n_pseudo=30, seed=1, max_pseudo=300)
    assert more.n_pseudo == 300 and more.global_p == 1 / 300


def test_an_underflowing_local_p_value_still_gives_a_finite_z() -> None:
    bkg = np.full(100, 10000.0)
    counts = bkg.copy()
    counts[50:52] += 20000
    window = scan(counts, EDGES, bkg, n_pseudo=20, seed=0)
    assert window.local_p == 0.0
    assert window.local_z == pytest.approx(z_lr(40000.0, 20000.0)[()])
    assert math.isfinite(window.local_z) and window.local_z > 100


def test_no_excess_means_no_window() -> None:
    bkg = smooth_background()
    record = scan_spectrum(np.floor(0.5 * bkg), EDGES, SQRT_S, background=bkg).to_dict()
    assert record["window_gev"] is None and record["window_bins"] is None
    assert record["local_z"] == 0 and record["global_z"] == 0 and record["global_p"] == 1


def test_scan_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    counts = np.random.default_rng(5).poisson(smooth_background() + gaussian(600, 15, 70))
    np.random.seed(42)
    state = np.random.get_state()
    first = scan_spectrum(counts, EDGES, SQRT_S, seed=11).to_dict()
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state, after, strict=True))
    assert scan_spectrum(counts, EDGES, SQRT_S, seed=11).to_dict() == first
    others = {
        scan_spectrum(counts, EDGES, SQRT_S, seed=s).to_dict()["global_p"] for s in (12, 13, 14)
    }
    assert 0 < first["global_p"] < 1 and others != {first["global_p"]}  # the seed is used


def test_concurrent_scans_in_threads_match_serial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = np.random.default_rng(9).poisson(smooth_background() + gaussian(600, 15, 70))
    serial = [scan_spectrum(counts, EDGES, SQRT_S, seed=s).to_dict() for s in (1, 2)]
    threaded: dict[int, dict] = {}

    def run(s: int) -> None:
        threaded[s] = scan_spectrum(counts, EDGES, SQRT_S, seed=s).to_dict()

    original = BumpHunter1D.bump_scan
    held = []

    def fenced(self, *args, **kwargs):  # the global-RNG section must hold the module's lock
        held.append(bumpscan._GLOBAL_RNG_LOCK.locked())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BumpHunter1D, "bump_scan", fenced)
    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [threaded[1], threaded[2]] == serial
    assert held == [True, True]


def test_negative_mc_bins_are_clipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    bkg = smooth_background()
    counts = np.random.default_rng(2).poisson(bkg)
    bkg[-3:] = -1.0
    with caplog.at_level(logging.WARNING, logger="processor.output.bumpscan"):
        window = scan(counts, EDGES, bkg, n_pseudo=20)
    assert "negative" in caplog.text
    assert window.hi_bin <= 97  # clipped bins carry no background: the scan range ends before


@pytest.mark.parametrize(
    ("counts", "bkg", "kwargs", "message"),
    [
        (np.ones(100), np.zeros(100), {}, "no positive bin"),
        (np.ones(100), np.ones(99), {}, "shapes"),
        (-np.ones(100), np.ones(100), {}, "non-negative"),
        (np.ones(100), np.full(100, np.inf), {}, "finite"),
        (np.ones(100), np.ones(100), {"min_width_bins": 5, "max_width_bins": 3}, "width"),
        (np.ones(100), np.ones(100), {"seed": -1}, "seed"),
    ],
)
def test_scan_rejects_unusable_input(counts, bkg, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scan(counts, EDGES, bkg, n_pseudo=5, **kwargs)


def test_a_scan_with_300_pseudo_experiments_uses_300() -> None:
    """No escalation when pseudo-experiments beat the data (timing is benchmarked, not tested)."""
    counts = np.random.default_rng(4).poisson(smooth_background())
    record = scan_spectrum(counts, EDGES, SQRT_S).to_dict()
    assert record["n_pseudo"] == 300


# --- scan_spectrum records -----------------------------------------------------------------


def test_record_has_the_manifest_fields_and_is_json() -> None:
    counts = np.random.default_rng(1).poisson(smooth_background())
    result = scan_spectrum(counts, EDGES, SQRT_S)
    record = result.to_dict()
    assert MANIFEST_KEYS | {"n_pseudo"} <= set(record)
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["fit_chi2_ndf"] == result.fit.chi2_ndf
    assert result.zlr == pytest.approx(z_lr(counts, result.background))
    assert result.zlr.shape == (100,)


@pytest.mark.parametrize(
    ("counts", "edges", "reason"),
    [
        (np.full(5, 100.0), EDGES[:6], "too few bins"),
        (np.r_[np.zeros(50), np.full(8, 30.0), np.zeros(42)], EDGES, "too few bins"),
        (np.ones(100) * (np.arange(100) % 3 == 0), EDGES, "too few events"),
        (np.ones(100), EDGES[:50], "do not match"),
        (np.full(100, np.nan), EDGES, "finite"),
    ],
)
def test_too_small_or_broken_spectra_are_skipped(counts, edges, reason: str) -> None:
    result = scan_spectrum(counts, edges, SQRT_S)
    record = result.to_dict()
    assert list(record) == ["skipped"] and reason in record["skipped"]
    assert result.zlr is None


def test_skip_thresholds_come_from_the_config() -> None:
    counts = np.random.default_rng(0).poisson(smooth_background(200))
    assert "skipped" not in scan_spectrum(counts, EDGES, SQRT_S).to_dict()
    small = BumpScanConfig(min_events=counts.sum() + 1)
    assert (
        "too few events" in scan_spectrum(counts, EDGES, SQRT_S, config=small).to_dict()["skipped"]
    )
    narrow = BumpScanConfig(min_bins=101)
    assert (
        "too few bins" in scan_spectrum(counts, EDGES, SQRT_S, config=narrow).to_dict()["skipped"]
    )


def test_background_choice_and_failures_are_skips() -> None:
    counts = np.random.default_rng(0).poisson(smooth_background())
    mc_config = BumpScanConfig(background="mc")
    assert "no MC" in scan_spectrum(counts, EDGES, SQRT_S, config=mc_config).to_dict()["skipped"]
    with_mc = scan_spectrum(counts, EDGES, SQRT_S, background=smooth_background(), config=mc_config)
    assert with_mc.to_dict()["background"] == "mc" and with_mc.fit is None
    assert (
        "MC background"
        in scan_spectrum(counts, EDGES, SQRT_S, background=np.zeros(100)).to_dict()["skipped"]
    )
    failed = scan_spectrum(counts, EDGES, 1000.0)  # edges beyond sqrt(s): no fit
    assert "background fit failed" in failed.to_dict()["skipped"] and not failed.fit.valid
    disabled = scan_spectrum(counts, EDGES, SQRT_S, config=BumpScanConfig(enabled=False))
    assert disabled.to_dict() == {"skipped": "bump scan disabled"}


def test_config_validation() -> None:
    config = BumpScanConfig.model_validate(
        {"background": "mc", "n_pseudo_experiments": 500, "seed": 3}
    )
    assert config.enabled and config.max_pseudo_experiments == 3000
    for bad in (
        {"min_window_bins": 5, "max_window_bins": 4},
        {"n_pseudo_experiments": 5000},  # above max_pseudo_experiments
        {"background": "sideband"},
        {"seed": 2**32},
        {"fit_max_params": 5},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            BumpScanConfig.model_validate(bad)


def test_spectrum_seed_is_stable_and_distinct() -> None:
    assert spectrum_seed(0, "ROI_mass_e0e1_cat_2ex_0mx_0bx_0jx_0Zx") == 3342676260
    seeds = {spectrum_seed(0, f"spectrum_{i}") for i in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**32 for s in seeds)
    assert spectrum_seed(1, "a") != spectrum_seed(0, "a")


# --- trials correction ---------------------------------------------------------------------


def _record(global_p: float, local_z: float = 2.0, bound: bool = False) -> dict:
    return {"global_p": global_p, "local_z": local_z, "global_z_is_lower_bound": bound}


def test_trials_correction_by_hand() -> None:
    records = {"a": _record(0.2), "b": _record(0.01), "c": {"skipped": "too few bins: 3"}}
    trials = trials_correction(records)
    assert trials.n_spectra == 2 and trials.best == "b"
    assert trials.p_run == pytest.approx(0.0199)  # 1 - 0.99^2
    assert trials.z_run == pytest.approx(2.0558186466124035)
    assert not trials.is_bound
    assert trials.to_dict()["most_significant"] == "b"


def test_trials_correction_ties_bounds_and_empty_runs() -> None:
    tie = trials_correction([_record(0.01, 2.5), _record(0.01, 3.1, bound=True), _record(0.5)])
    assert tie.best == "1" and tie.is_bound
    assert tie.p_run == pytest.approx(1 - 0.99**3)
    many = trials_correction([_record(1e-6)] + [_record(0.9)] * 999)
    assert many.p_run == pytest.approx(1 - (1 - 1e-6) ** 1000, rel=1e-9)
    empty = trials_correction({"x": {"skipped": "disabled"}})
    assert (empty.n_spectra, empty.best, empty.p_run, empty.z_run) == (0, None, 1.0, 0.0)
    assert trials_correction([_record(1.0, 0.0)]).z_run == 0.0


def test_trials_correction_accepts_scan_results() -> None:
    bkg = smooth_background()
    bump = np.random.default_rng(0).poisson(bkg + gaussian(600, 15, 250))
    quiet = np.random.default_rng(1).poisson(bkg)
    config = BumpScanConfig(max_pseudo_experiments=300)
    results = {
        "bump": scan_spectrum(bump, EDGES, SQRT_S, background=bkg, config=config),
        "quiet": scan_spectrum(quiet, EDGES, SQRT_S, background=bkg, config=config),
        "small": scan_spectrum(quiet[:5], EDGES[:6], SQRT_S),
    }
    assert isinstance(results["bump"], BumpScanResult)
    trials = trials_correction(results)
    assert trials.n_spectra == 2 and trials.best == "bump"
    p = results["bump"].window.global_p
    assert trials.p_min == p and trials.p_run == pytest.approx(1 - (1 - p) ** 2)
    assert trials.is_bound == results["bump"].window.global_p_is_upper_bound
