"""The physics event generator: SM processes and an injected resonance, decayed, smeared, in GeV."""

from __future__ import annotations

from typing import Any

import numpy as np

from .detector import _decorate, _scale_factors
from .events import _Coll, _Events, _wrap

# physics constants (GeV)
M_Z, G_Z = 91.1876, 2.4952
M_W, G_W = 80.379, 2.085
M_H, G_H = 125.09, 0.0041
M_TOP, G_TOP = 172.5, 1.42
M_TAU = 1.77686
M_E = 0.000510999
M_MU = 0.1056584
M_B = 4.8


_POOL_FIELDS = {
    "lep": ("pt", "eta", "phi", "m", "charge", "flav", "prompt"),
    "jet": ("pt", "eta", "phi", "m", "flav", "pileup"),
    "photon": ("pt", "eta", "phi", "prompt"),
    "tau": ("pt", "eta", "phi", "m", "charge", "prompt"),
    "truth_jet": ("pt", "eta", "phi", "m"),
    "truth_elec": ("pt", "eta", "phi"),
    "truth_muon": ("pt", "eta", "phi"),
    "truth_tau": ("pt", "eta", "phi"),
    "truth_photon": ("pt", "eta", "phi"),
}


def _p4(mass: np.ndarray, pt: np.ndarray, y: np.ndarray, phi: np.ndarray) -> np.ndarray:
    mt = np.sqrt(mass**2 + pt**2)
    return np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)])


def _boost(p: np.ndarray, parent: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Boost rest-frame 4-vectors ``p`` (4, k) into the frame where the parent has ``parent``."""
    e, px, py, pz = parent
    bx, by, bz = px / e, py / e, pz / e
    gamma = e / mass
    bp = bx * p[1] + by * p[2] + bz * p[3]
    coef = gamma**2 / (gamma + 1.0) * bp + gamma * p[0]
    return np.stack([gamma * (p[0] + bp), p[1] + coef * bx, p[2] + coef * by, p[3] + coef * bz])


def _pt_eta_phi(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.maximum(np.hypot(p[1], p[2]), 1e-9)
    return pt, np.arcsinh(p[3] / pt), np.arctan2(p[2], p[1])


class _Gen:
    """Vectorised event generation: processes add objects to pools, ``finish`` sorts them."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng = rng
        self.n = n
        self.pools: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in _POOL_FIELDS}
        self.nu: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.mismeasure: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    # --- building blocks -------------------------------------------------------------------
    def u(self, k: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        return self.rng.uniform(lo, hi, k)

    def falling(self, k: int, x0: float, power: float, cap: float = 6500.0) -> np.ndarray:
        """x >= x0 with density ~ x^-(power+1)."""
        return np.minimum(x0 * (1.0 - self.rng.random(k)) ** (-1.0 / power), cap)

    def breit_wigner(self, m0: float, width: float, k: int, lo: float, hi: float) -> np.ndarray:
        a = np.arctan(2 * (lo - m0) / width)
        b = np.arctan(2 * (hi - m0) / width)
        return m0 + 0.5 * width * np.tan(self.rng.uniform(a, b, k))

    def parents(self, mass: np.ndarray, pt_mean: float | np.ndarray, y_sigma: float) -> np.ndarray:
        k = mass.size
        pt = self.rng.exponential(1.0, k) * pt_mean
        y = np.clip(self.rng.normal(0.0, y_sigma, k), -4.0, 4.0)
        return _p4(mass, pt, y, self.u(k, -np.pi, np.pi))

    def decay(
        self, parent: np.ndarray, mass: np.ndarray, m1: Any, m2: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Isotropic two-body decay of boosted parents into daughters of masses m1, m2."""
        k = mass.size
        m1 = np.broadcast_to(np.asarray(m1, dtype=float), (k,))
        m2 = np.broadcast_to(np.asarray(m2, dtype=float), (k,))
        mm = mass**2
        pstar = np.sqrt(np.maximum((mm - (m1 + m2) ** 2) * (mm - (m1 - m2) ** 2), 0.0)) / (2 * mass)
        cos = self.u(k, -1.0, 1.0)
        sin = np.sqrt(1.0 - cos**2)
        ph = self.u(k, -np.pi, np.pi)
        d = np.stack([sin * np.cos(ph), sin * np.sin(ph), cos]) * pstar
        p1 = np.vstack([np.sqrt(pstar**2 + m1**2), d])
        p2 = np.vstack([np.sqrt(pstar**2 + m2**2), -d])
        return _boost(p1, parent, mass), _boost(p2, parent, mass)

    def _add(self, pool: str, event: np.ndarray, **fields: Any) -> None:
        k = event.size
        rec = {"event": event}
        for name in _POOL_FIELDS[pool]:
            rec[name] = np.broadcast_to(np.asarray(fields[name]), (k,))
        self.pools[pool].append(rec)

    # --- objects -----------------------------------------------------------------------------
    def lepton(self, event: np.ndarray, p: np.ndarray, flav: Any, charge: Any) -> None:
        """A prompt lepton from its true 4-vector: truth record, smearing, acceptance."""
        k = event.size
        flav = np.broadcast_to(np.asarray(flav), (k,))
        charge = np.broadcast_to(np.asarray(charge), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        for f, pool in ((11, "truth_elec"), (13, "truth_muon")):
            sel = (flav == f) & (pt > 10.0)
            self._add(pool, event[sel], pt=pt[sel], eta=eta[sel], phi=phi[sel])
        res = np.where(flav == 11, 0.02 + 0.1 / np.sqrt(pt), 0.015 + 1e-4 * pt)
        rpt = pt * (1.0 + res * self.rng.standard_normal(k))
        reta = eta + 0.001 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.001 * self.rng.standard_normal(k))
        acc = (rpt > 7.0) & (np.abs(reta) < 2.5)
        self._add(
            "lep", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=np.where(flav[acc] == 11, M_E, M_MU), charge=charge[acc], flav=flav[acc],
            prompt=True,
        )  # fmt: skip

    def fake_leptons(self, event: np.ndarray) -> None:
        k = event.size
        flav = np.where(self.rng.random(k) < 0.5, 11, 13)
        self._add(
            "lep", event, pt=7.0 + self.rng.exponential(6.0, k), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), m=np.where(flav == 11, M_E, M_MU),
            charge=np.where(self.rng.random(k) < 0.5, -1, 1), flav=flav, prompt=False,
        )  # fmt: skip

    def jet(self, event: np.ndarray, p: np.ndarray, flav: Any, balanced: bool = True) -> None:
        """A jet from its parton 4-vector; ``balanced`` jets feed their mismeasurement to MET."""
        k = event.size
        flav = np.broadcast_to(np.asarray(flav), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        truth = (pt > 20.0) & (np.abs(eta) < 4.5)
        self._add(
            "truth_jet", event[truth], pt=pt[truth], eta=eta[truth], phi=phi[truth],
            m=pt[truth] * self.u(int(truth.sum()), 0.04, 0.12),
        )  # fmt: skip
        res = np.sqrt(0.6**2 / pt + 0.04**2)
        rpt = pt * np.maximum(1.0 + res * self.rng.standard_normal(k), 0.05)
        reta = eta + 0.01 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.01 * self.rng.standard_normal(k))
        acc = (rpt > 20.0) & (np.abs(reta) < 4.5)
        if balanced:
            dpt = np.where(acc, rpt - pt, -pt)
            self.mismeasure.append((event, -dpt * np.cos(phi), -dpt * np.sin(phi)))
        self._add(
            "jet", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=rpt[acc] * self.u(int(acc.sum()), 0.04, 0.12), flav=flav[acc], pileup=False,
        )  # fmt: skip

    def extra_jets(self, event: np.ndarray) -> None:
        """ISR and pile-up jets: steeply falling pT from 15 GeV, flat in |eta| < 4.5."""
        k = event.size
        pt = self.falling(k, 15.0, 3.0)
        eta = self.u(k, -4.5, 4.5)
        phi = self.u(k, -np.pi, np.pi)
        pileup = (pt < 50.0) & (self.rng.random(k) < 0.35)
        r = self.rng.random(k)
        flav = np.where(r < 0.02, 5, np.where(r < 0.07, 4, 0))
        truth = ~pileup & (pt > 20.0)
        self._add(
            "truth_jet", event[truth], pt=pt[truth], eta=eta[truth], phi=phi[truth],
            m=pt[truth] * self.u(int(truth.sum()), 0.04, 0.12),
        )  # fmt: skip
        rpt = pt * (1.0 + np.sqrt(0.6**2 / pt + 0.04**2) * self.rng.standard_normal(k))
        acc = rpt > 20.0
        self._add(
            "jet", event[acc], pt=rpt[acc], eta=eta[acc], phi=phi[acc],
            m=rpt[acc] * self.u(int(acc.sum()), 0.04, 0.12), flav=flav[acc], pileup=pileup[acc],
        )  # fmt: skip

    def photon(self, event: np.ndarray, p: np.ndarray) -> None:
        k = event.size
        pt, eta, phi = _pt_eta_phi(p)
        t = pt > 10.0
        self._add("truth_photon", event[t], pt=pt[t], eta=eta[t], phi=phi[t])
        res = np.sqrt(0.1**2 / pt + 0.01**2)
        rpt = pt * (1.0 + res * self.rng.standard_normal(k))
        reta = eta + 0.001 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.001 * self.rng.standard_normal(k))
        acc = (rpt > 15.0) & (np.abs(reta) < 2.5)
        self._add("photon", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc], prompt=True)

    def fake_photons(self, event: np.ndarray) -> None:
        k = event.size
        self._add(
            "photon", event, pt=self.falling(k, 15.0, 3.0), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), prompt=False,
        )  # fmt: skip

    def tau_had(self, event: np.ndarray, p: np.ndarray, charge: Any) -> None:
        k = event.size
        charge = np.broadcast_to(np.asarray(charge), (k,))
        pt, eta, phi = _pt_eta_phi(p)
        rpt = pt * (1.0 + 0.08 * self.rng.standard_normal(k))
        reta = eta + 0.005 * self.rng.standard_normal(k)
        rphi = _wrap(phi + 0.005 * self.rng.standard_normal(k))
        acc = (rpt > 15.0) & (np.abs(reta) < 2.5)
        self._add(
            "tau", event[acc], pt=rpt[acc], eta=reta[acc], phi=rphi[acc],
            m=self.u(int(acc.sum()), 0.3, 1.6), charge=charge[acc], prompt=True,
        )  # fmt: skip

    def fake_taus(self, event: np.ndarray) -> None:
        k = event.size
        self._add(
            "tau", event, pt=self.falling(k, 15.0, 2.5), eta=self.u(k, -2.5, 2.5),
            phi=self.u(k, -np.pi, np.pi), m=self.u(k, 0.3, 1.6),
            charge=np.where(self.rng.random(k) < 0.5, -1, 1), prompt=False,
        )  # fmt: skip

    def neutrino(self, event: np.ndarray, p: np.ndarray) -> None:
        self.nu.append((event, p[1], p[2]))

    def tau_decay(self, event: np.ndarray, p: np.ndarray, charge: np.ndarray) -> None:
        """tau -> hadrons nu (65 %) or l nu nu: the visible part takes a fraction x of p."""
        k = event.size
        pt, eta, phi = _pt_eta_phi(p)
        t = pt > 10.0
        self._add("truth_tau", event[t], pt=pt[t], eta=eta[t], phi=phi[t])
        had = self.rng.random(k) < 0.65
        x = np.where(had, self.u(k, 0.3, 0.95), self.u(k, 0.15, 0.8))
        self.tau_had(event[had], p[:, had] * x[had], charge[had])
        lep = ~had
        flav = np.where(self.rng.random(int(lep.sum())) < 0.5, 11, 13)
        self.lepton(event[lep], p[:, lep] * x[lep], flav, charge[lep])
        self.neutrino(event, p * (1.0 - x))

    def w_decay(
        self, event: np.ndarray, p: np.ndarray, mass: np.ndarray, charge: np.ndarray
    ) -> None:
        """W -> e nu, mu nu, tau nu (1/9 each) or q q' (2 jets, c in half of them)."""
        k = event.size
        r = self.rng.random(k)
        lep = r < 2.0 / 9.0
        tau = (r >= 2.0 / 9.0) & (r < 3.0 / 9.0)
        had = r >= 3.0 / 9.0
        if lep.any():
            flav = np.where(r[lep] < 1.0 / 9.0, 11, 13)
            ml = np.where(flav == 11, M_E, M_MU)
            pl, pn = self.decay(p[:, lep], mass[lep], ml, 0.0)
            self.lepton(event[lep], pl, flav, charge[lep])
            self.neutrino(event[lep], pn)
        if tau.any():
            pt_, pn = self.decay(p[:, tau], mass[tau], M_TAU, 0.0)
            self.tau_decay(event[tau], pt_, charge[tau])
            self.neutrino(event[tau], pn)
        if had.any():
            q1, q2 = self.decay(p[:, had], mass[had], 0.0, 0.0)
            kh = int(had.sum())
            self.jet(event[had], q1, np.where(self.rng.random(kh) < 0.5, 4, 0))
            self.jet(event[had], q2, 0)

    # --- processes ----------------------------------------------------------------------------
    def dilepton(self, ev: np.ndarray, flav: int) -> None:
        """Drell-Yan: 85 % Z line shape, 15 % falling continuum from 20 GeV."""
        k = ev.size
        bw = self.rng.random(k) < 0.85
        mass = np.where(
            bw, self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0), self.falling(k, 20.0, 2.0, 3000.0)
        )
        parent = self.parents(mass, 12.0, 1.6)
        ml = M_E if flav == 11 else M_MU
        p1, p2 = self.decay(parent, mass, ml, ml)
        self.lepton(ev, p1, flav, -1)
        self.lepton(ev, p2, flav, 1)

    def wlnu(self, ev: np.ndarray, flav: int) -> None:
        k = ev.size
        mass = self.breit_wigner(M_W, G_W, k, 50.0, 150.0)
        parent = self.parents(mass, 10.0, 1.6)
        charge = np.where(self.rng.random(k) < 0.58, 1, -1)
        pl, pn = self.decay(parent, mass, M_E if flav == 11 else M_MU, 0.0)
        self.lepton(ev, pl, flav, charge)
        self.neutrino(ev, pn)

    def ztautau(self, ev: np.ndarray) -> None:
        k = ev.size
        mass = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        p1, p2 = self.decay(self.parents(mass, 12.0, 1.6), mass, M_TAU, M_TAU)
        self.tau_decay(ev, p1, np.full(k, -1))
        self.tau_decay(ev, p2, np.full(k, 1))

    def diphoton(self, ev: np.ndarray, higgs: bool) -> None:
        k = ev.size
        if higgs:
            mass = self.breit_wigner(M_H, G_H, k, M_H - 1.0, M_H + 1.0)
            parent = self.parents(mass, 25.0, 1.3)
        else:
            mass = self.falling(k, 50.0, 2.0, 3000.0)
            parent = self.parents(mass, 15.0, 1.3)
        g1, g2 = self.decay(parent, mass, 0.0, 0.0)
        self.photon(ev, g1)
        self.photon(ev, g2)

    def zz4l(self, ev: np.ndarray) -> None:
        k = ev.size
        m1 = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        m2 = self.breit_wigner(M_Z, G_Z, k, 60.0, 120.0)
        mass = m1 + m2 + self.rng.exponential(60.0, k)
        z1, z2 = self.decay(self.parents(mass, 20.0, 1.2), mass, m1, m2)
        for z, mz in ((z1, m1), (z2, m2)):
            flav = np.where(self.rng.random(k) < 0.5, 11, 13)
            ml = np.where(flav == 11, M_E, M_MU)
            l1, l2 = self.decay(z, mz, ml, ml)
            self.lepton(ev, l1, flav, -1)
            self.lepton(ev, l2, flav, 1)

    def ttbar(self, ev: np.ndarray) -> None:
        k = ev.size
        mt1 = self.breit_wigner(M_TOP, G_TOP, k, M_TOP - 10, M_TOP + 10)
        mt2 = self.breit_wigner(M_TOP, G_TOP, k, M_TOP - 10, M_TOP + 10)
        mass = mt1 + mt2 + self.rng.exponential(120.0, k)
        t1, t2 = self.decay(self.parents(mass, 50.0, 1.0), mass, mt1, mt2)
        for t, mt, wq in ((t1, mt1, 1), (t2, mt2, -1)):
            mw = self.breit_wigner(M_W, G_W, k, 60.0, 100.0)
            b, w = self.decay(t, mt, M_B, mw)
            self.jet(ev, b, 5)
            self.w_decay(ev, w, mw, np.full(k, wq))

    def multijet(self, ev: np.ndarray) -> None:
        k = ev.size
        mass = self.falling(k, 60.0, 3.0)
        q1, q2 = self.decay(self.parents(mass, 15.0, 1.2), mass, 0.0, 0.0)
        for q in (q1, q2):
            r = self.rng.random(k)
            self.jet(ev, q, np.where(r < 0.03, 5, np.where(r < 0.09, 4, 0)))

    def resonance(self, ev: np.ndarray, m0: float) -> None:
        """The injected X: Gamma = 1 % of m0; X -> jj (50 %), ee (25 %), mumu (25 %)."""
        k = ev.size
        width = 0.01 * m0
        mass = self.breit_wigner(m0, width, k, m0 - 20 * width, m0 + 20 * width)
        parent = self.parents(mass, 0.1 * m0 + 10.0, 1.0)
        r = self.rng.random(k)
        for sel, kind in ((r < 0.5, "jj"), ((r >= 0.5) & (r < 0.75), "ee"), (r >= 0.75, "mm")):
            if not sel.any():
                continue
            if kind == "jj":
                q1, q2 = self.decay(parent[:, sel], mass[sel], 0.0, 0.0)
                self.jet(ev[sel], q1, 0)
                self.jet(ev[sel], q2, 0)
            else:
                flav, ml = (11, M_E) if kind == "ee" else (13, M_MU)
                l1, l2 = self.decay(parent[:, sel], mass[sel], ml, ml)
                self.lepton(ev[sel], l1, flav, -1)
                self.lepton(ev[sel], l2, flav, 1)

    def extras(self) -> None:
        """Objects in every event: ISR/pile-up jets, non-prompt leptons, fake photons/taus."""
        for mean, adder in (
            (1.2, self.extra_jets),
            (0.2, self.fake_leptons),
            (0.1, self.fake_photons),
            (0.15, self.fake_taus),
        ):
            counts = self.rng.poisson(mean, self.n)
            adder(np.repeat(np.arange(self.n), counts))

    # --- assembly -----------------------------------------------------------------------------
    def collection(self, pool: str) -> _Coll:
        parts = self.pools[pool]
        if parts:
            f = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
        else:
            f = {k: np.zeros(0) for k in ("event", *_POOL_FIELDS[pool])}
        f["event"] = f["event"].astype(np.int64)
        order = np.lexsort((-f["pt"], f["event"]))
        return _Coll(self.n, {k: v[order] for k, v in f.items()})

    def vector_sum(
        self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        sx = np.zeros(self.n)
        sy = np.zeros(self.n)
        for ev, x, y in items:
            sx += np.bincount(ev, weights=x, minlength=self.n)
            sy += np.bincount(ev, weights=y, minlength=self.n)
        return sx, sy


#: background process fractions (the remainder is QCD multijet)
_PROCESSES = (
    ("zee", 0.13),
    ("zmumu", 0.13),
    ("wenu", 0.07),
    ("wmunu", 0.07),
    ("ztautau", 0.05),
    ("hgg", 0.01),
    ("diphoton", 0.04),
    ("zz4l", 0.02),
    ("ttbar", 0.06),
)


def _generate(
    rng: np.random.Generator,
    n: int,
    signal_mass_gev: float | None,
    signal_fraction: float,
    is_mc: bool,
) -> _Events:
    """Generate ``n`` events (GeV): objects, MET, trigger bits and (for MC) scale factors.

    The physics content is identical for every format (the writers convert to MeV where
    needed).  Each event is one process: Drell-Yan Z/gamma* -> ee and mumu (Breit-Wigner
    m = 91.1876 GeV, Gamma = 2.4952 GeV, plus a falling continuum), W -> e nu / mu nu,
    Z -> tautau with hadronic and leptonic tau decays, H -> gammagamma (125.09 GeV) and a
    diphoton continuum, ZZ -> 4 leptons, ttbar (t -> bW, W -> l nu / qq) and QCD multijet
    (falling m_jj), optionally with an injected narrow resonance X (``signal_mass_gev``,
    Gamma = 1 % of m, in ``signal_fraction`` of the events) decaying to jj (50 %), ee (25 %)
    or mumu (25 %).  Resonances are proper two-body decays of boosted parents; reconstructed
    objects are smeared with pT-dependent resolutions, have small masses (jets a few GeV) and
    E = sqrt(p^2 + m^2).  Every event also gets ISR/pile-up jets, non-prompt leptons, fake
    photons and fake taus (Poisson multiplicities) with steeply falling pT spectra reaching
    below the usual analysis thresholds, so pT/|eta| cuts and count limits matter.
    Collections are sorted by pT (descending) within each event.  Quality flags, isolation
    variables, b-tagging (2025e quantiles 1-5, MV2c10/MV1 scores), JVT, trigger bits and
    trigger matching are drawn with sensible efficiencies for prompt and fake objects
    (:mod:`.detector`).
    """
    g = _Gen(rng, n)
    names = [p for p, _ in _PROCESSES] + ["multijet"]
    probs = [f for _, f in _PROCESSES]
    probs.append(1.0 - sum(probs))
    probs_arr = np.array(probs)
    if signal_mass_gev is not None:
        names.append("signal")
        probs_arr = np.append(probs_arr * (1.0 - signal_fraction), signal_fraction)
    proc = rng.choice(len(names), size=n, p=probs_arr / probs_arr.sum())
    idx = {name: np.flatnonzero(proc == i) for i, name in enumerate(names)}
    g.dilepton(idx["zee"], 11)
    g.dilepton(idx["zmumu"], 13)
    g.wlnu(idx["wenu"], 11)
    g.wlnu(idx["wmunu"], 13)
    g.ztautau(idx["ztautau"])
    g.diphoton(idx["hgg"], higgs=True)
    g.diphoton(idx["diphoton"], higgs=False)
    g.zz4l(idx["zz4l"])
    g.ttbar(idx["ttbar"])
    g.multijet(idx["multijet"])
    if signal_mass_gev is not None:
        g.resonance(idx["signal"], float(signal_mass_gev))
    g.extras()
    coll = {name: g.collection(name) for name in _POOL_FIELDS}
    nu_x, nu_y = g.vector_sum(g.nu)
    mis_x, mis_y = g.vector_sum(g.mismeasure)
    met_x = nu_x + mis_x + rng.normal(0.0, 6.0, n)
    met_y = nu_y + mis_y + rng.normal(0.0, 6.0, n)
    ev = _Events(n, coll, met_x, met_y, nu_x, nu_y, {}, {})
    _decorate(rng, ev)
    if is_mc:
        _scale_factors(rng, ev)
    return ev
