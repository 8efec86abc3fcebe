"""Background fit of a falling mass spectrum (dijet function, iminuit) and per-bin Z_LR."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from iminuit import Minuit
from numpy.typing import ArrayLike
from scipy import special, stats

log = logging.getLogger(__name__)

#: Parameter names of f(x) = p0 (1 - x)^p1 x^(p2 + p3 ln x), x = m / sqrt(s).
PARAM_NAMES = ("p0", "p1", "p2", "p3")
#: Default significance level of the likelihood-ratio test that admits one more parameter.
DEFAULT_LR_ALPHA = 0.05
#: Gauss-Legendre nodes per bin for the bin integrals (exact for polynomials of degree 7).
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(4)
#: Floor for an expected bin count inside the likelihood (keeps n ln(n/mu) finite).
_TINY = 1e-300


@dataclass
class FitResult:
    """Outcome of :func:`fit_background`; ``valid`` False means ``reason`` says why.

    ``expected`` holds the fitted expected counts per bin (the bin integrals of f); ``params``
    the four parameters of f with the unused ones fixed at 0; ``errors`` the HESSE errors of
    the free shape parameters (``p0`` is profiled analytically, so it has none).
    ``chi2_ndf`` is the Poisson deviance per degree of freedom (see :func:`fit_background`).
    ``deviances`` maps every tried number of parameters to its minimum deviance (or NaN when
    that fit did not converge), so the choice of ``n_params`` can be re-checked.
    """

    valid: bool
    reason: str = ""
    n_params: int = 0
    params: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    expected: np.ndarray | None = None
    deviance: float = math.nan
    pearson_chi2: float = math.nan
    ndf: int = 0
    chi2_ndf: float = math.nan
    p_value: float = math.nan
    converged: bool = False
    edm: float = math.nan
    deviances: dict[int, float] = field(default_factory=dict)
    sqrt_s_gev: float = math.nan

    def density(self, mass_gev: ArrayLike) -> np.ndarray:
        """Fitted f as expected events per GeV at ``mass_gev`` (f(x) / sqrt(s)); NaN if invalid."""
        m = np.asarray(mass_gev, dtype=float)
        if not self.valid:
            return np.full(m.shape, np.nan)
        return dijet_function(m / self.sqrt_s_gev, self.params) / self.sqrt_s_gev


def dijet_function(x: ArrayLike, params: dict[str, float]) -> np.ndarray:
    """f(x) = p0 (1 - x)^p1 x^(p2 + p3 ln x), the density in x of the expected events."""
    x = np.asarray(x, dtype=float)
    p = [params.get(name, 0.0) for name in PARAM_NAMES]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lnx = np.log(x)
        return p[0] * np.exp(p[1] * np.log1p(-x) + p[2] * lnx + p[3] * lnx**2)


def z_lr(n: ArrayLike, b: ArrayLike, *, undefined: float = 0.0) -> np.ndarray:
    """Per-bin significance Z_LR = sign(n - b) sqrt(2 (n ln(n/b) - n + b)), elementwise.

    This is the signed square root of the Poisson likelihood-ratio statistic for observing
    ``n`` events when ``b`` are expected. ``n = 0`` gives ``-sqrt(2 b)`` (the limit of the
    formula, as n ln n -> 0). Where there is no usable prediction (``b <= 0``, or ``b`` or ``n``
    not finite) or the observation is not a count (``n < 0``, e.g. a negatively weighted bin),
    the significance is undefined and ``undefined`` (default 0.0: "no claim") is returned;
    pass ``undefined=np.nan`` to see those bins. Non-integer ``n`` (weighted data) is accepted
    and uses the same formula.
    """
    n_arr, b_arr = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(b, dtype=float))
    ok = np.isfinite(n_arr) & np.isfinite(b_arr) & (b_arr > 0) & (n_arr >= 0)
    out = np.full(n_arr.shape, float(undefined))
    nn, bb = n_arr[ok], b_arr[ok]
    # kl_div(n, b) = n ln(n/b) - n + b >= 0, with kl_div(0, b) = b
    out[ok] = np.sign(nn - bb) * np.sqrt(2.0 * special.kl_div(nn, bb))
    return out


class _Model:
    """Bin integrals of f on fixed edges, with the normalisation profiled analytically.

    Inside the fit ln x is centred, u = ln x - L0, and the shape is
    exp(p1 ln(1-x) + q2 u + q3 u^2) with q2 = p2 + 2 p3 L0, q3 = p3, which decorrelates
    p2 and p3; :meth:`to_params` maps back to the published p0..p3.
    """

    def __init__(self, edges: np.ndarray, sqrt_s: float, counts: np.ndarray, weight: np.ndarray):
        xlo, xhi = edges[:-1] / sqrt_s, edges[1:] / sqrt_s
        half, mid = 0.5 * (xhi - xlo), 0.5 * (xhi + xlo)
        x = mid[:, None] + half[:, None] * _GL_NODES[None, :]
        self.w = half[:, None] * _GL_WEIGHTS[None, :]
        self.a = np.log1p(-x)
        self.l0 = float(np.mean(np.log(mid)))
        self.u = np.log(x) - self.l0
        self.counts, self.weight = counts, weight
        self.n_tot = float(np.sum(counts * weight))
        self.mid_a, self.mid_u, self.dx = np.log1p(-mid), np.log(mid) - self.l0, 2 * half

    def shape(self, p1: float, q2: float, q3: float) -> tuple[np.ndarray, float]:
        """Unnormalised bin integrals g_i and the log-scale factor they were divided by."""
        lg = p1 * self.a + q2 * self.u + q3 * self.u**2
        top = float(np.max(lg))
        return np.sum(self.w * np.exp(lg - top), axis=1), top

    def expected(self, p1: float, q2: float, q3: float) -> np.ndarray:
        """Expected counts per bin, normalised to the fitted bins' total (the profiled p0)."""
        g, _ = self.shape(p1, q2, q3)
        return self.n_tot * g / np.sum(g * self.weight)

    def deviance(self, p1: float, q2: float, q3: float) -> float:
        """Poisson deviance 2 sum[mu - n + n ln(n/mu)] over the fitted bins."""
        with np.errstate(all="ignore"):
            mu = np.maximum(self.expected(p1, q2, q3), _TINY)
            d = 2.0 * float(np.sum(self.weight * special.kl_div(self.counts, mu)))
        return d if math.isfinite(d) else 1e300

    def to_params(self, p1: float, q2: float, q3: float) -> dict[str, float]:
        """The published parameters p0..p3 of f for internal (p1, q2, q3)."""
        p3 = q3
        p2 = q2 - 2.0 * q3 * self.l0
        const = p2 * self.l0 + p3 * self.l0**2
        g, top = self.shape(p1, q2, q3)
        ln_p0 = math.log(self.n_tot) - math.log(float(np.sum(g * self.weight))) - top - const
        p0 = math.exp(ln_p0) if ln_p0 < 700 else math.inf  # inf: caught as a non-finite fit
        return {"p0": p0, "p1": p1, "p2": p2, "p3": p3}

    def linear_start(self, n_shape: int) -> list[float] | None:
        """Weighted least squares of ln(n / dx) on (1, ln(1-x), u, u^2): a starting point."""
        use = (self.counts > 0) & (self.weight > 0)
        if np.count_nonzero(use) < n_shape + 2:
            return None
        cols = [
            np.ones(np.count_nonzero(use)),
            self.mid_a[use],
            self.mid_u[use],
            self.mid_u[use] ** 2,
        ]
        design = np.column_stack(cols[: n_shape + 1])
        y = np.log(self.counts[use] / self.dx[use])
        sw = np.sqrt(self.counts[use])
        try:
            coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        except np.linalg.LinAlgError:
            return None
        return [float(c) for c in coef[1:]] if np.all(np.isfinite(coef)) else None


def _check_inputs(
    counts: ArrayLike, edges: ArrayLike, sqrt_s_gev: float, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Arrays for the fit and an empty string, or a reason why there can be no fit."""
    empty = np.zeros(0)
    try:
        c = np.asarray(counts, dtype=float)
        e = np.asarray(edges, dtype=float)
        s = float(sqrt_s_gev)
        w = np.ones(c.shape) if mask is None else np.asarray(mask, dtype=bool).astype(float)
    except (TypeError, ValueError) as err:
        return empty, empty, empty, f"inputs are not numeric arrays: {err}"
    if c.ndim != 1 or e.ndim != 1 or e.size != c.size + 1:
        return empty, empty, empty, f"{c.shape} counts do not match {e.shape} bin edges"
    if w.shape != c.shape:
        return empty, empty, empty, f"mask shape {w.shape} differs from counts {c.shape}"
    if not (math.isfinite(s) and s > 0):
        return empty, empty, empty, f"sqrt(s) must be a positive number, got {sqrt_s_gev!r}"
    if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        return empty, empty, empty, "bin edges must be finite and strictly increasing"
    if e[0] <= 0 or e[-1] >= s:
        return (
            empty,
            empty,
            empty,
            f"bin edges [{e[0]:g}, {e[-1]:g}] GeV must lie in (0, sqrt(s) = {s:g})",
        )
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        return empty, empty, empty, "counts must be finite and non-negative"
    if np.sum(c * w) <= 0:
        return empty, empty, empty, "no events in the fitted bins"
    return c, e, w, ""


def _minimise(model: _Model, n_params: int, starts: list[list[float]]) -> Minuit | None:
    """Run MIGRAD from each start (shape parameters only) and keep the best valid minimum."""
    free = ("p1", "q2", "q3")[: n_params - 1]
    best: Minuit | None = None
    for start in starts:
        values = {name: 0.0 for name in ("p1", "q2", "q3")}
        values.update(dict(zip(free, start, strict=True)))
        minuit = Minuit(model.deviance, **values)
        minuit.errordef = Minuit.LEAST_SQUARES  # deviance = 2 x NLL: one sigma is a change of 1
        for name in ("p1", "q2", "q3"):
            if name not in free:
                minuit.fixed[name] = True
        minuit.errors["p1"] = max(1.0, 0.1 * abs(values["p1"]))
        minuit.errors["q2"] = max(0.1, 0.1 * abs(values["q2"]))
        minuit.errors["q3"] = max(0.01, 0.1 * abs(values["q3"]))
        minuit.strategy = 1
        try:
            minuit.migrad(ncall=5000)
            if minuit.fmin.is_valid:
                minuit.hesse()
        except (RuntimeError, ValueError, FloatingPointError) as err:  # pragma: no cover
            log.debug("MIGRAD failed from %s: %s", start, err)
            continue
        if minuit.fmin.is_valid and (best is None or minuit.fval < best.fval):
            best = minuit
    return best


def fit_background(
    counts: ArrayLike,
    edges: ArrayLike,
    sqrt_s_gev: float,
    *,
    min_params: int = 2,
    max_params: int = 4,
    lr_alpha: float = DEFAULT_LR_ALPHA,
    mask: ArrayLike | None = None,
) -> FitResult:
    """Binned Poisson maximum-likelihood fit of f(x) = p0 (1-x)^p1 x^(p2 + p3 ln x), x = m/sqrt(s).

    Expected counts are the **bin integrals** of f over x (4-point Gauss-Legendre per bin),
    not centre x width: on a steeply falling spectrum with wide bins the centre value is biased
    by about f'' dx^2 / 24 per bin, which the integral does not have. The likelihood is the
    Poisson one, minimised by MIGRAD as the deviance D = 2 sum[mu - n + n ln(n/mu)] (2 x NLL
    up to a constant, so ``errordef = 1``); p0 is profiled analytically (its MLE makes the fit
    reproduce the total count), so MINUIT only sees the 1-3 shape parameters.

    Nested models with 2 (p0, p1), 3 (+p2) and 4 (+p3) parameters are fitted, from
    ``min_params`` to ``max_params``; each starts from a weighted linear least-squares fit of
    ln(n) and from the smaller model's minimum. The result keeps the **smallest** model that no
    larger converged model beats by a likelihood-ratio test: k > n parameters are preferred
    only if D_n - D_k > the chi2 quantile with k - n degrees of freedom at ``lr_alpha``
    (Wilks; 3.84 for one more parameter at the default 0.05).

    ``chi2_ndf`` is the Poisson deviance over ndf = fitted bins - n_params (well defined with
    empty bins, unlike Pearson's chi2, which is given as ``pearson_chi2``); ``p_value`` is the
    chi2 probability of the deviance. ``mask`` (bool per bin) excludes bins from the likelihood,
    e.g. a signal window; ``expected`` still covers every bin.

    Never raises for bad data: empty or negative or non-finite counts, bad edges, edges outside
    (0, sqrt(s)), too few bins or no converged fit give a result with ``valid=False`` and a
    ``reason``.
    """
    c, e, w, reason = _check_inputs(counts, edges, sqrt_s_gev, mask)
    s = float(sqrt_s_gev) if not reason else math.nan
    if reason:
        return FitResult(valid=False, reason=reason, sqrt_s_gev=s)
    if not (2 <= min_params <= max_params <= 4 and 0 < lr_alpha < 1):
        return FitResult(
            valid=False,
            reason="need 2 <= min_params <= max_params <= 4 and 0 < lr_alpha < 1, got "
            f"{min_params}, {max_params}, {lr_alpha}",
            sqrt_s_gev=s,
        )
    n_fit = int(np.count_nonzero(w))
    n_filled = int(np.count_nonzero(w * c))
    if n_filled <= min_params:
        return FitResult(
            valid=False,
            reason=f"{n_filled} non-empty fitted bins cannot fix {min_params} parameters",
            sqrt_s_gev=s,
        )
    max_params = min(max_params, n_fit - 1)  # keep ndf >= 1 (n_fit >= n_filled > min_params)

    model = _Model(e, s, c, w)
    fits: dict[int, Minuit] = {}
    deviances: dict[int, float] = {}
    previous: list[float] | None = None
    for n_params in range(min_params, max_params + 1):
        starts = [start for start in (model.linear_start(n_params - 1),) if start is not None]
        if previous is not None:
            starts.append(previous + [0.0] * (n_params - 1 - len(previous)))
        starts.append([10.0, -4.0, 0.0][: n_params - 1])  # a generic falling spectrum
        best = _minimise(model, n_params, starts)
        if best is None:
            deviances[n_params] = math.nan
            continue
        fits[n_params] = best
        deviances[n_params] = float(best.fval)
        previous = [float(best.values[name]) for name in ("p1", "q2", "q3")[: n_params - 1]]
    if not fits:
        return FitResult(valid=False, reason="no fit converged", deviances=deviances, sqrt_s_gev=s)

    chosen = _choose(deviances, fits, lr_alpha)
    best = fits[chosen]
    internal = [float(best.values[name]) for name in ("p1", "q2", "q3")]
    params = model.to_params(*internal)
    expected = model.expected(*internal)
    errors = _errors(best, chosen, model.l0)
    if not (np.all(np.isfinite(expected)) and all(math.isfinite(v) for v in params.values())):
        return FitResult(
            valid=False, reason="fit gave non-finite values", deviances=deviances, sqrt_s_gev=s
        )
    ndf = n_fit - chosen
    deviance = max(float(best.fval), 0.0)  # rounding can leave -1e-14 on exact inputs
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = float(np.sum(w * np.where(expected > 0, (c - expected) ** 2 / expected, 0.0)))
    log.debug("background fit: %d parameters, deviance %.2f / %d", chosen, deviance, ndf)
    return FitResult(
        valid=True,
        n_params=chosen,
        params=params,
        errors=errors,
        expected=expected,
        deviance=deviance,
        pearson_chi2=pearson,
        ndf=ndf,
        chi2_ndf=deviance / ndf,
        p_value=float(stats.chi2.sf(deviance, ndf)),
        converged=True,
        edm=float(best.fmin.edm),
        deviances=deviances,
        sqrt_s_gev=s,
    )


def _choose(deviances: dict[int, float], fits: dict[int, Minuit], alpha: float) -> int:
    """Smallest converged model that no larger converged one improves on at level ``alpha``."""
    ordered = sorted(fits)
    for n in ordered:
        if all(
            deviances[n] - deviances[k] <= stats.chi2.isf(alpha, k - n) for k in ordered if k > n
        ):
            return n
    return ordered[-1]  # pragma: no cover - the largest model always passes


def _errors(minuit: Minuit, n_params: int, l0: float) -> dict[str, float]:
    """HESSE errors of p1..p3 from the internal (p1, q2, q3) covariance (p2 = q2 - 2 L0 q3)."""
    if minuit.covariance is None:
        return {}
    k = n_params - 1  # the free parameters come first: (p1, q2, q3)[:k]
    cov = np.asarray(minuit.covariance, dtype=float)[:k, :k]
    jac = np.zeros((k, k))  # rows: p1, p2, p3; columns: p1, q2, q3
    jac[0, 0] = 1.0
    if n_params >= 3:
        jac[1, 1] = 1.0
    if n_params == 4:
        jac[1, 2], jac[2, 2] = -2.0 * l0, 1.0
    var = np.diag(jac @ cov @ jac.T)
    return {PARAM_NAMES[i + 1]: float(math.sqrt(max(v, 0.0))) for i, v in enumerate(var)}
