"""Detector response: ID/isolation flags, b-tagging, JVT, large-R jets, triggers, scale factors."""

from __future__ import annotations

import numpy as np

from .events import _Coll, _Events, _wrap


def _nested(
    rng: np.random.Generator,
    prompt: np.ndarray,
    eff_prompt: tuple[float, ...],
    eff_fake: tuple[float, ...],
) -> list[np.ndarray]:
    """Nested working points (loosest first): each passes with its efficiency given the previous."""
    k = prompt.size
    out = []
    passed = np.ones(k, dtype=bool)
    prev_p = prev_f = 1.0
    for ep, ef in zip(eff_prompt, eff_fake, strict=True):
        prob = np.where(prompt, ep / prev_p, ef / prev_f)
        passed = passed & (rng.random(k) < prob)
        out.append(passed)
        prev_p, prev_f = ep, ef
    return out


def _isolation(
    rng: np.random.Generator, pt: np.ndarray, tight: np.ndarray, loose: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Track and calorimeter isolation energies consistent with the isolation flags."""
    k = pt.size
    trk = np.where(
        tight,
        np.where(rng.random(k) < 0.5, 0.0, np.minimum(rng.exponential(0.01, k), 0.045)),
        np.where(loose, rng.uniform(0.05, 0.12, k), 0.15 + rng.exponential(0.25, k)),
    )
    calo = np.where(
        tight,
        np.clip(rng.normal(0.0, 0.02, k), -0.05, 0.045),
        np.where(loose, rng.uniform(0.05, 0.15, k), 0.15 + rng.exponential(0.2, k)),
    )
    return trk * pt, calo * pt


#: b-tag quantile probabilities (quantiles 1..5) for b, c and light jets; >= 4 is the 77 % WP
_BTAG_PROBS = {
    5: (0.15, 0.03, 0.05, 0.12, 0.65),
    4: (0.55, 0.10, 0.10, 0.15, 0.10),
    0: (0.90, 0.05, 0.03, 0.015, 0.005),
}


def _decorate(rng: np.random.Generator, ev: _Events) -> None:
    """Quality flags, isolation, b-tagging, JVT, large-R jets and trigger bits."""
    n = ev.n
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))
    # leptons
    prompt = lep["prompt"].astype(bool)
    lep.f["prompt"] = prompt
    loose, medium, tight = _nested(rng, prompt, (0.98, 0.95, 0.88), (0.7, 0.35, 0.15))
    lep.f.update(loose_id=loose, medium_id=medium, tight_id=tight)
    liso, tiso = _nested(rng, prompt, (0.96, 0.85), (0.35, 0.15))
    lep.f.update(loose_iso=liso, tight_iso=tiso)
    lep.f["ptvarcone30"], lep.f["topoetcone20"] = _isolation(rng, lep["pt"], tiso, liso)
    k = len(lep)
    lep.f["z0"] = np.where(prompt, rng.normal(0, 0.1, k), rng.normal(0, 2.0, k))
    d0sig = np.where(prompt, rng.normal(0, 1.0, k), rng.normal(0, 6.0, k))
    lep.f["d0sig"] = d0sig
    lep.f["d0"] = d0sig * 0.015
    lep.f["charge"] = lep["charge"].astype(np.int32)
    lep.f["flav"] = lep["flav"].astype(np.int32)
    # jets
    flav = jet["flav"].astype(np.int32)
    jet.f["flav"] = flav
    cum = {f: np.cumsum(p) for f, p in _BTAG_PROBS.items()}
    table = np.stack([cum[5], cum[4], cum[0]])
    row = np.where(flav == 5, 0, np.where(flav == 4, 1, 2))
    u = rng.random(len(jet))
    jet.f["quantile"] = (1 + (u[:, None] > table[row, :4]).sum(axis=1)).astype(np.int32)
    pileup = jet["pileup"].astype(bool)
    jvt_region = (jet["pt"] < 60.0) & (np.abs(jet["eta"]) < 2.4)
    jvt_pass = np.where(
        jvt_region, np.where(pileup, rng.random(len(jet)) < 0.1, rng.random(len(jet)) < 0.97), True
    )
    jet.f.update(pileup=pileup, jvt_pass=jvt_pass, jvt_region=jvt_region)
    jet.f["pt_jer1"] = jet["pt"] * (1.0 + 0.02 * rng.standard_normal(len(jet)))
    jet.f["pt_jer2"] = jet["pt"] * (1.0 + 0.03 * rng.standard_normal(len(jet)))
    # large-R jets from hard jets
    big = jet["pt"] > 200.0
    kb = int(big.sum())
    lr = {
        "event": jet.event[big],
        "pt": jet["pt"][big] * rng.uniform(1.0, 1.12, kb),
        "eta": jet["eta"][big] + 0.03 * rng.standard_normal(kb),
        "phi": _wrap(jet["phi"][big] + 0.03 * rng.standard_normal(kb)),
        "D2": rng.uniform(0.8, 4.0, kb),
        "tau32": rng.uniform(0.3, 0.95, kb),
    }
    lr["m"] = np.maximum(lr["pt"] * rng.uniform(0.08, 0.35, kb), 40.0)
    keep = (lr["pt"] > 250.0) & (np.abs(lr["eta"]) < 2.0)
    lr = {key: v[keep] for key, v in lr.items()}
    order = np.lexsort((-lr["pt"], lr["event"]))
    ev.coll["largeRjet"] = _Coll(n, {key: v[order] for key, v in lr.items()})
    # photons
    pprompt = pho["prompt"].astype(bool)
    pho.f["prompt"] = pprompt
    ploose, ptight = _nested(rng, pprompt, (0.98, 0.88), (0.6, 0.2))
    pliso, ptiso = _nested(rng, pprompt, (0.95, 0.85), (0.4, 0.2))
    pho.f.update(loose_id=ploose, tight_id=ptight, loose_iso=pliso, tight_iso=ptiso)
    pho.f["ptcone"], pho.f["etcone"] = _isolation(rng, pho["pt"], ptiso, pliso)
    pho.f["m"] = np.zeros(len(pho))
    r = rng.random(len(pho))
    pho.f["conv"] = np.where(r < 0.7, 0, 1 + (r * 100).astype(np.int32) % 5).astype(np.int32)
    # taus
    tprompt = tau["prompt"].astype(bool)
    tau.f["prompt"] = tprompt
    kt = len(tau)
    tau.f["charge"] = tau["charge"].astype(np.int32)
    tau.f["ntracks"] = np.where(rng.random(kt) < np.where(tprompt, 0.72, 0.45), 1, 3).astype(
        np.int32
    )
    rnn = np.where(tprompt, rng.beta(6.0, 1.2, kt), rng.beta(0.5, 8.0, kt))
    tau.f["rnn_jet"] = rnn
    tau.f["rnn_ele"] = np.where(tprompt, rng.beta(8.0, 0.6, kt), rng.beta(2.0, 1.0, kt))
    tau.f["tight"] = rnn > 0.8
    # triggers (and trigger matching)
    met = np.hypot(ev.met_x, ev.met_y)
    is_e, is_m = lep["flav"] == 11, lep["flav"] == 13
    e_cand = is_e & (lep["pt"] > 27.0) & tight
    m_cand = is_m & (lep["pt"] > 27.0) & medium
    trig = {
        "trigE": lep.per_event_any(e_cand) & (rng.random(n) < 0.96),
        "trigM": lep.per_event_any(m_cand) & (rng.random(n) < 0.90),
        "trigDE": (lep.per_event_count(is_e & (lep["pt"] > 18.0) & loose) >= 2)
        & (rng.random(n) < 0.95),
        "trigDM": (lep.per_event_count(is_m & (lep["pt"] > 15.0)) >= 2) & (rng.random(n) < 0.90),
        "trigML": lep.per_event_any(is_e & (lep["pt"] > 17.0))
        & lep.per_event_any(is_m & (lep["pt"] > 14.0))
        & (rng.random(n) < 0.90),
        "trigP": (
            (pho.per_event_count((pho["pt"] > 25.0) & ploose) >= 2)
            | pho.per_event_any(pho["pt"] > 140.0)
        )
        & (rng.random(n) < 0.97),
        "trigT": tau.per_event_any(tau["pt"] > 160.0) & (rng.random(n) < 0.9),
        "trigDT": (tau.per_event_count(tau["pt"] > 40.0) >= 2) & (rng.random(n) < 0.85),
        "trigMET": rng.random(n) < 1.0 / (1.0 + np.exp(-(met - 110.0) / 15.0)),
    }
    ev.trig = trig
    ev_e = lep.event
    lep.f["trig_matched"] = ((e_cand & trig["trigE"][ev_e]) | (m_cand & trig["trigM"][ev_e])) & (
        rng.random(k) < 0.95
    )
    pho.f["trig_matched"] = (pho["pt"] > 25.0) & trig["trigP"][pho.event]
    tau.f["trig_matched"] = (tau["pt"] > 40.0) & (trig["trigT"] | trig["trigDT"])[tau.event]
    sig = tight & liso
    lep.f["sig"] = sig
    ev.extra["n_sig_lep"] = lep.per_event_count(sig)
    ev.extra["dilep_match"] = (
        (lep.per_event_count(lep["trig_matched"]) >= 1) & (lep.counts >= 2)
    ).astype(np.float32)


def _scale_factors(rng: np.random.Generator, ev: _Events) -> None:
    """MC scale factors around 1 (2025e names), per-object factors multiplied per event."""
    n = ev.n
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))

    def obj(
        coll: _Coll, mean: np.ndarray | float, sigma: float, mask: np.ndarray | None = None
    ) -> np.ndarray:
        f = np.clip(mean + sigma * rng.standard_normal(len(coll)), 0.5, 1.5)
        if mask is not None:
            f = np.where(mask, f, 1.0)
        return coll.per_event_product(f)

    def evt(mask: np.ndarray, mean: float, sigma: float) -> np.ndarray:
        return np.where(mask, np.clip(mean + sigma * rng.standard_normal(n), 0.3, 1.5), 1.0)

    is_e = lep["flav"] == 11
    btag = obj(jet, np.where(jet["quantile"] >= 4, 0.97, 1.003), 0.01)
    trig = ev.trig
    ev.sf = {
        "PILEUP": np.clip(1.0 + 0.12 * rng.standard_normal(n), 0.2, 1.6),
        "ELE": obj(lep, 0.99, 0.015, is_e),
        "MUON": obj(lep, 0.995, 0.01, ~is_e),
        "PHOTON": obj(pho, 1.0, 0.01),
        "TAU": obj(tau, 0.98, 0.03),
        "BTAG": btag,
        "FTAG": btag,
        "JVT": obj(jet, 0.99, 0.01, jet["jvt_region"]),
        "LepTRIGGER": evt(trig["trigE"] | trig["trigM"], 0.985, 0.02),
        "MuTRIGGER": evt(trig["trigM"], 0.98, 0.02),
        "ElTRIGGER": evt(trig["trigE"], 0.99, 0.01),
        "MLTRIGGER": evt(trig["trigML"], 0.98, 0.03),
        "PhotonTRIGGER": evt(trig["trigP"], 0.99, 0.01),
        "TauTRIGGER": np.ones(n),
        "DiTauTRIGGER": np.ones(n),
        "ZVERTEX": np.clip(1.0 + 0.02 * rng.standard_normal(n), 0.8, 1.2),
    }
