"""Tree builder and per-format writers: one block of events as the branches of each release."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import awkward as ak
import numpy as np

from .events import _Coll, _Events
from .meta import _MC_RUN, _Meta

_AK_TYPES = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "bool",
}


@functools.cache
def _datashape(text: str) -> Any:
    """An awkward type from a datashape string, parsed once (parsing is slow)."""
    return ak.types.from_datashape(text, highlevel=False)


class _TreeBuilder:
    """Collects branch types (for ``mktree``), block data and jagged-branch counters.

    On-disk types uproot cannot reproduce (values read back identically with uproot):

    * jagged branches are leaf-list arrays ``T[]`` with a counter branch instead of ROOT's
      ``RVec<T>``/``std::vector<T>`` (``TBranchElement``); each collection shares one counter,
      named like the real count branch (``lep_n``, ``jet_n``, ...) where the format has one;
    * those counters are always int32: 2020e/2016e ``*_n`` are uint32 in the real files;
    * PHYSLITE has no count branches: the synthetic file has extra int32 counters
      (``nAnalysisElectrons``, ..., ``nmcEventWeights``);
    * 2025e DATA ``category`` is ``std::string`` in the real files; uproot cannot write that
      and writes a ``char*`` (``TLeafC``) string branch instead, which uproot reads back as the
      same strings (ROOT's ``RDataFrame.Snapshot`` could write a true ``std::string``, but
      ROOT is an optional extra and is not used here);
    * 2020e DATA files store empty truth vectors (``lep_truthMatched``, ``jet_trueflav``, ...);
      with a shared counter they are filled with False/0 instead.
    """

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.counters: dict[str, str] = {}

    def counter_name(self, branch: str) -> str:
        return self.counters[branch]

    def counter(self, name: str) -> None:
        """Reserve the position of a counter branch (filled by uproot from the jagged data)."""
        self.types[name] = np.dtype(np.int32)

    def scalar(self, name: str, values: Any, dtype: Any) -> None:
        self.types[name] = np.dtype(dtype)
        self.data[name] = np.asarray(values).astype(dtype, copy=False)

    def const(self, name: str, value: float, dtype: Any, n: int) -> None:
        self.scalar(name, np.full(n, value, dtype=dtype), dtype)

    def jagged(self, name: str, coll: _Coll, values: Any, dtype: Any, counter: str) -> None:
        dt = np.dtype(dtype)
        self.types[name] = _datashape("var * " + _AK_TYPES[dt])
        flat = np.asarray(values).astype(dt, copy=False)
        self.data[name] = ak.unflatten(flat, coll.counts)
        self.counters[name] = counter

    def string(self, name: str, value: str, n: int) -> None:
        self.types[name] = _datashape("string")
        self.data[name] = np.full(n, value)


def _event_numbers(meta: _Meta, start: int, n: int) -> np.ndarray:
    return (meta.seed % 2000) * 1_000_000 + start + np.arange(n, dtype=np.int64)


def _run_numbers(meta: _Meta, start: int, n: int) -> np.ndarray:
    if meta.is_mc:
        return np.full(n, _MC_RUN[meta.fmt], dtype=np.int64)
    n_runs = 8
    runs = np.linspace(meta.run_lo, meta.run_hi, n_runs).astype(np.int64)
    index = (start + np.arange(n, dtype=np.int64)) * n_runs // max(meta.n_events, 1)
    return runs[np.minimum(index, n_runs - 1)]


def _leading_pair_mass(c: _Coll) -> np.ndarray:
    """Invariant mass of the two leading objects (0 where there are fewer than two)."""
    counts = c.counts
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    two = counts >= 2
    i, j = first[two], first[two] + 1
    e = c.energy()
    px = c["pt"] * np.cos(c["phi"])
    py = c["pt"] * np.sin(c["phi"])
    pz = c["pt"] * np.sinh(c["eta"])
    m2 = (e[i] + e[j]) ** 2 - (px[i] + px[j]) ** 2 - (py[i] + py[j]) ** 2 - (pz[i] + pz[j]) ** 2
    out = np.zeros(c.n)
    out[two] = np.sqrt(np.maximum(m2, 0.0))
    return out


def _write_2025e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    """Tree ``analysis``, GeV: the full branch set of the real 2025e-13tev-beta files.

    ``lep_*``, ``jet_*``, ``largeRJet_*``, ``photon_*``, ``tau_*``, ``truth_*``, ``met*``,
    ``trig*``, ``ScaleFactor_*``, ``mcWeight``, ``xsec``/``kfac``/``filteff``,
    ``num_events``/``sum_of_weights``/``sum_of_weights_squared``, ...  MC files carry the
    branch set of the real MC files at hand (including ``sig_lep``/``n_sig_lep``); DATA files
    differ as the real ones do: no ``sig_lep``/``n_sig_lep``, an extra ``category`` branch
    (``"data15"``/``"data16"``), ``xsec``/``kfac``/``filteff`` are float32 and 0,
    ``mcWeight`` 1, ``sum_of_weights`` 1, every ``ScaleFactor_*`` 1, truth collections empty.
    """
    n, mc, s = ev.n, meta.is_mc, 1.0
    lep, jet, pho, tau, lrj = (ev.coll[k] for k in ("lep", "jet", "photon", "tau", "largeRjet"))
    f4, f8, i4, u4, u8, b = np.float32, np.float64, np.int32, np.uint32, np.uint64, np.bool_

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.ones(n)

    tb.const("num_events", meta.n_events, f8, n)
    tb.const("sum_of_weights", meta.sum_w, f8, n)
    tb.const("sum_of_weights_squared", meta.sum_w2, f8, n)
    if not mc:
        tb.string("category", meta.period.split("_")[0], n)
    tb.scalar("TriggerMatch_DILEPTON", ev.extra["dilep_match"], f4)
    tb.scalar("ScaleFactor_MLTRIGGER", sf("MLTRIGGER"), f4)
    tb.scalar("ScaleFactor_PILEUP", sf("PILEUP"), f4)
    tb.scalar("ScaleFactor_FTAG", sf("FTAG"), f4)
    tb.scalar("mcWeight", meta.weights[start : start + n], f4)
    xs_type = f8 if mc else f4
    tb.const("xsec", meta.xsec, xs_type, n)
    tb.const("filteff", meta.filteff, xs_type, n)
    tb.const("kfac", meta.kfac, xs_type, n)
    runs = _run_numbers(meta, start, n)
    tb.scalar("channelNumber", np.full(n, meta.dsid) if mc else runs, u4)
    tb.scalar("eventNumber", _event_numbers(meta, start, n), u8)
    tb.scalar("runNumber", runs, u4)
    for t in (
        "trigML",
        "trigP",
        "trigDT",
        "trigT",
        "trigE",
        "trigDM",
        "trigDE",
        "trigM",
        "trigMET",
    ):
        tb.scalar(t, ev.trig[t], b)
    tb.scalar("ScaleFactor_BTAG", sf("BTAG"), f4)
    tb.scalar("ScaleFactor_JVT", sf("JVT"), f4)
    tb.counter("jet_n")
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_e", jet.energy() * s, f4),
        ("jet_btag_quantile", jet["quantile"], i4),
        ("jet_jvt", jet["jvt_pass"], b),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")
    tb.counter("largeRJet_n")
    for name, values in (
        ("largeRJet_pt", lrj["pt"]),
        ("largeRJet_eta", lrj["eta"]),
        ("largeRJet_phi", lrj["phi"]),
        ("largeRJet_e", np.sqrt((lrj["pt"] * np.cosh(lrj["eta"])) ** 2 + lrj["m"] ** 2)),
        ("largeRJet_m", lrj["m"]),
        ("largeRJet_D2", lrj["D2"]),
    ):
        tb.jagged(name, lrj, values, f4, "largeRJet_n")
    tb.jagged("jet_pt_jer1", jet, jet["pt_jer1"], f4, "jet_n")
    tb.jagged("jet_pt_jer2", jet, jet["pt_jer2"], f4, "jet_n")
    for name in ("ELE", "MUON", "LepTRIGGER", "MuTRIGGER", "ElTRIGGER"):
        tb.scalar(f"ScaleFactor_{name}", sf(name), f4)
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_type", lep["flav"], i4),
        ("lep_pt", lep["pt"], f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_e", lep.energy(), f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_ptvarcone30", lep["ptvarcone30"], f4),
        ("lep_topoetcone20", lep["topoetcone20"], f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_d0", lep["d0"], f4),
        ("lep_d0sig", lep["d0sig"], f4),
        ("lep_isTightID", lep["tight_id"], b),
        ("lep_isMediumID", lep["medium_id"], b),
        ("lep_isLooseID", lep["loose_id"], b),
        ("lep_isTightIso", lep["tight_iso"], b),
        ("lep_isLooseIso", lep["loose_iso"], b),
        ("lep_isTrigMatched", lep["trig_matched"], b),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    if mc:  # present in the real MC files (2J2LMET30 skim), absent from the data files
        tb.jagged("sig_lep", lep, lep["sig"], b, "lep_n")
        tb.scalar("n_sig_lep", ev.extra["n_sig_lep"], u8)
    tb.scalar("ScaleFactor_PHOTON", sf("PHOTON"), f4)
    tb.counter("photon_n")
    for name, values, dt in (
        ("photon_pt", pho["pt"], f4),
        ("photon_eta", pho["eta"], f4),
        ("photon_phi", pho["phi"], f4),
        ("photon_e", pho.energy(), f4),
        ("photon_ptcone20", pho["ptcone"], f4),
        ("photon_topoetcone40", pho["etcone"], f4),
        ("photon_isLooseID", pho["loose_id"], b),
        ("photon_isTightID", pho["tight_id"], b),
        ("photon_isLooseIso", pho["loose_iso"], b),
        ("photon_isTightIso", pho["tight_iso"], b),
    ):
        tb.jagged(name, pho, values, dt, "photon_n")
    for name in ("TAU", "TauTRIGGER", "DiTauTRIGGER"):
        tb.scalar(f"ScaleFactor_{name}", sf(name), f4)
    tb.counter("tau_n")
    for name, values, dt in (
        ("tau_pt", tau["pt"], f4),
        ("tau_eta", tau["eta"], f4),
        ("tau_phi", tau["phi"], f4),
        ("tau_e", tau.energy(), f4),
        ("tau_charge", tau["charge"], f4),
        ("tau_nTracks", tau["ntracks"], i4),
        ("tau_isTight", tau["tight"], b),
        ("tau_RNNJetScore", tau["rnn_jet"], f4),
        ("tau_RNNEleScore", tau["rnn_ele"], f4),
    ):
        tb.jagged(name, tau, values, dt, "tau_n")
    for short, pool, fields in (
        ("jet", "truth_jet", ("pt", "eta", "phi", "m")),
        ("elec", "truth_elec", ("pt", "eta", "phi")),
        ("muon", "truth_muon", ("pt", "eta", "phi")),
        ("tau", "truth_tau", ("pt", "eta", "phi")),
        ("photon", "truth_photon", ("pt", "eta", "phi")),
    ):
        coll = ev.coll[pool] if mc else ev.coll[pool].subset(np.zeros(len(ev.coll[pool]), bool))
        tb.counter(f"truth_{short}_n")
        for fld in fields:
            tb.jagged(f"truth_{short}_{fld}", coll, coll[fld], f4, f"truth_{short}_n")
    tmet = np.hypot(ev.truth_met_x, ev.truth_met_y)
    tb.scalar("truth_met", tmet if mc else np.zeros(n), f4)
    tb.scalar(
        "truth_met_phi", np.arctan2(ev.truth_met_y, ev.truth_met_x) if mc else np.zeros(n), f4
    )
    tb.scalar("met", np.hypot(ev.met_x, ev.met_y), f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.scalar("met_mpx", ev.met_x, f4)
    tb.scalar("met_mpy", ev.met_y, f4)


def _mini_common(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> np.ndarray:
    """runNumber/eventNumber/channelNumber/mcWeight of the ``mini`` formats; returns runs."""
    n = ev.n
    runs = _run_numbers(meta, start, n)
    tb.scalar("runNumber", runs, np.int32)
    tb.scalar("eventNumber", _event_numbers(meta, start, n) % (2**31 - 1), np.int32)
    tb.scalar("channelNumber", np.full(n, meta.dsid) if meta.is_mc else runs, np.int32)
    tb.scalar(
        "mcWeight", meta.weights[start : start + n] if meta.is_mc else np.zeros(n), np.float32
    )
    return runs


def _write_2020e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    """Tree ``mini``, MeV: the 81 branches of the real 2020e-13tev files.

    ``lep_E``, ``lep_type`` uint32, ``lep_isTightID``, ``lep_ptcone30``, ``jet_MV2c10``,
    ``photon_*``, ``tau_*``, ``largeRjet_*``, ``met_et``, ``scaleFactor_*``, ``XSection``,
    ``SumWeights``, int32 ``runNumber``/``eventNumber``/``channelNumber``.  DATA files copy
    the real ones: ``mcWeight`` and every ``scaleFactor_*`` 0, ``XSection`` and
    ``SumWeights`` 1, ``channelNumber`` = ``runNumber``.
    """
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet, pho, tau, lrj = (ev.coll[k] for k in ("lep", "jet", "photon", "tau", "largeRjet"))
    f4, i4, u4, b = np.float32, np.int32, np.uint32, np.bool_
    rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2020, start]))

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.zeros(n)

    def truthy(coll: _Coll, values: np.ndarray) -> np.ndarray:
        return values if mc else np.zeros(len(coll), dtype=values.dtype)

    def syst(coll: _Coll) -> np.ndarray:
        return (
            coll["pt"] * s * 0.01 * np.abs(rng.standard_normal(len(coll)))
            if mc
            else np.zeros(len(coll))
        )

    _mini_common(tb, ev, meta, start)
    for name in ("PILEUP", "ELE", "MUON", "PHOTON", "TAU", "BTAG", "LepTRIGGER", "PhotonTRIGGER"):
        tb.scalar(f"scaleFactor_{name}", sf(name), f4)
    for t in ("trigE", "trigM", "trigP"):
        tb.scalar(t, ev.trig[t], b)
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_truthMatched", truthy(lep, lep["prompt"]), b),
        ("lep_trigMatched", lep["trig_matched"], b),
        ("lep_pt", lep["pt"] * s, f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_E", lep.energy() * s, f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_type", lep["flav"], u4),
        ("lep_isTightID", lep["tight_id"], b),
        ("lep_ptcone30", lep["ptvarcone30"] * s, f4),
        ("lep_etcone20", lep["topoetcone20"] * s, f4),
        ("lep_trackd0pvunbiased", lep["d0"], f4),
        ("lep_tracksigd0pvunbiased", np.abs(lep["d0sig"]), f4),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    met = np.hypot(ev.met_x, ev.met_y)
    tb.scalar("met_et", met * s, f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.counter("jet_n")
    jvt = np.where(
        jet["jvt_pass"], rng.uniform(0.6, 1.0, len(jet)), rng.uniform(-0.1, 0.59, len(jet))
    )
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_E", jet.energy() * s, f4),
        ("jet_jvt", jvt, f4),
        ("jet_trueflav", truthy(jet, jet["flav"]), i4),
        ("jet_truthMatched", truthy(jet, ~jet["pileup"]), b),
        (
            "jet_MV2c10",
            _tagger_score(rng, jet["quantile"], (-1.0, 0.11, 0.64, 0.83, 0.94, 1.0)),
            f4,
        ),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")
    tb.counter("photon_n")
    for name, values, dt in (
        ("photon_truthMatched", truthy(pho, pho["prompt"]), b),
        ("photon_trigMatched", pho["trig_matched"], b),
        ("photon_pt", pho["pt"] * s, f4),
        ("photon_eta", pho["eta"], f4),
        ("photon_phi", pho["phi"], f4),
        ("photon_E", pho.energy() * s, f4),
        ("photon_isTightID", pho["tight_id"], b),
        ("photon_ptcone30", pho["ptcone"] * s, f4),
        ("photon_etcone20", pho["etcone"] * s, f4),
        ("photon_convType", pho["conv"], i4),
    ):
        tb.jagged(name, pho, values, dt, "photon_n")
    tb.counter("tau_n")
    for name, values, dt in (
        ("tau_pt", tau["pt"] * s, f4),
        ("tau_eta", tau["eta"], f4),
        ("tau_phi", tau["phi"], f4),
        ("tau_E", tau.energy() * s, f4),
        ("tau_isTightID", tau["tight"], b),
        ("tau_truthMatched", truthy(tau, tau["prompt"]), b),
        ("tau_trigMatched", tau["trig_matched"], b),
        ("tau_nTracks", tau["ntracks"], i4),
        ("tau_BDTid", tau["rnn_jet"], f4),
    ):
        tb.jagged(name, tau, values, dt, "tau_n")
    tb.scalar("ditau_m", _leading_pair_mass(tau) * s, f4)
    tb.jagged("lep_pt_syst", lep, syst(lep), f4, "lep_n")
    tb.scalar(
        "met_et_syst", met * s * 0.02 * np.abs(rng.standard_normal(n)) if mc else np.zeros(n), f4
    )
    tb.jagged("jet_pt_syst", jet, syst(jet), f4, "jet_n")
    tb.jagged("photon_pt_syst", pho, syst(pho), f4, "photon_n")
    tb.jagged("tau_pt_syst", tau, syst(tau), f4, "tau_n")
    tb.const("XSection", meta.xsec * meta.kfac * meta.filteff if mc else 1.0, f4, n)
    tb.const("SumWeights", meta.sum_w if mc else 1.0, f4, n)
    tb.counter("largeRjet_n")
    lre = np.sqrt((lrj["pt"] * np.cosh(lrj["eta"])) ** 2 + lrj["m"] ** 2)
    for name, values in (
        ("largeRjet_pt", lrj["pt"] * s),
        ("largeRjet_eta", lrj["eta"]),
        ("largeRjet_phi", lrj["phi"]),
        ("largeRjet_E", lre * s),
        ("largeRjet_m", lrj["m"] * s),
        ("largeRjet_truthMatched", truthy(lrj, np.ones(len(lrj)))),
        ("largeRjet_D2", lrj["D2"]),
        ("largeRjet_tau32", lrj["tau32"]),
        ("largeRjet_pt_syst", syst(lrj)),
    ):
        tb.jagged(name, lrj, values, f4, "largeRjet_n")
    tb.jagged("tau_charge", tau, tau["charge"], i4, "tau_n")


def _tagger_score(
    rng: np.random.Generator, quantile: np.ndarray, edges: tuple[float, ...]
) -> np.ndarray:
    """A continuous b-tagging score in the band of each quantile (edges: 6 values, q = 1..5)."""
    e = np.asarray(edges)
    lo, hi = e[quantile - 1], e[quantile]
    return lo + (hi - lo) * rng.random(quantile.size)


def _write_2016e(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    """Tree ``mini``, MeV: the 8 TeV education layout as declared by the public analysis code.

    ``lep_flag`` with bit 9 = tight, ``jet_MV1``, ``jet_jvf``, ``jet_m``, ``alljet_n``,
    ``passGRL``, ``hasGoodVertex``, ``scaleFactor_JVFSF``/``ZVERTEX``, no photons or taus.
    No real 2016e file was available, so these branch types are unverified; data/MC
    conventions follow 2020e.
    """
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet = ev.coll["lep"], ev.coll["jet"]
    f4, i4, u4, b = np.float32, np.int32, np.uint32, np.bool_
    rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2016, start]))

    def sf(name: str) -> np.ndarray:
        return ev.sf[name] if mc else np.zeros(n)

    _mini_common(tb, ev, meta, start)
    tb.scalar("pvxp_n", 1 + rng.poisson(11.0, n), i4)
    tb.scalar("vxp_z", rng.normal(0.0, 50.0, n), f4)
    for name, src in (
        ("PILEUP", "PILEUP"),
        ("ELE", "ELE"),
        ("MUON", "MUON"),
        ("BTAG", "BTAG"),
        ("TRIGGER", "LepTRIGGER"),
        ("JVFSF", "JVT"),
        ("ZVERTEX", "ZVERTEX"),
    ):
        tb.scalar(f"scaleFactor_{name}", sf(src), f4)
    tb.scalar("trigE", ev.trig["trigE"], b)
    tb.scalar("trigM", ev.trig["trigM"], b)
    tb.const("passGRL", True, b, n)
    tb.const("hasGoodVertex", True, b, n)
    flag = (
        lep["loose_id"].astype(np.uint32)
        | (lep["medium_id"].astype(np.uint32) << 1)
        | (lep["tight_id"].astype(np.uint32) << 9)
    )
    tb.counter("lep_n")
    for name, values, dt in (
        ("lep_truthMatched", lep["prompt"] if mc else np.zeros(len(lep), bool), b),
        ("lep_trigMatched", lep["trig_matched"], b),
        ("lep_pt", lep["pt"] * s, f4),
        ("lep_eta", lep["eta"], f4),
        ("lep_phi", lep["phi"], f4),
        ("lep_E", lep.energy() * s, f4),
        ("lep_z0", lep["z0"], f4),
        ("lep_charge", lep["charge"], i4),
        ("lep_type", lep["flav"], u4),
        ("lep_flag", flag, u4),
        ("lep_ptcone30", lep["ptvarcone30"] * s, f4),
        ("lep_etcone20", lep["topoetcone20"] * s, f4),
        ("lep_trackd0pvunbiased", lep["d0"], f4),
        ("lep_tracksigd0pvunbiased", np.abs(lep["d0sig"]), f4),
    ):
        tb.jagged(name, lep, values, dt, "lep_n")
    tb.scalar("met_et", np.hypot(ev.met_x, ev.met_y) * s, f4)
    tb.scalar("met_phi", np.arctan2(ev.met_y, ev.met_x), f4)
    tb.counter("jet_n")
    tb.scalar("alljet_n", jet.counts + rng.poisson(1.0, n), u4)
    kj = len(jet)
    jvf = np.where(
        np.abs(jet["eta"]) > 2.4,
        -1.0,
        np.where(jet["jvt_pass"], rng.uniform(0.5, 1.0, kj), rng.uniform(0.0, 0.5, kj)),
    )
    is_b = jet["flav"] == 5
    sv0 = np.where(
        rng.random(kj) < np.where(is_b, 0.7, 0.05), rng.exponential(np.where(is_b, 4.0, 1.0)), 0.0
    )
    for name, values, dt in (
        ("jet_pt", jet["pt"] * s, f4),
        ("jet_eta", jet["eta"], f4),
        ("jet_phi", jet["phi"], f4),
        ("jet_E", jet.energy() * s, f4),
        ("jet_m", jet["m"] * s, f4),
        ("jet_jvf", jvf, f4),
        ("jet_trueflav", jet["flav"] if mc else np.zeros(kj), i4),
        ("jet_truthMatched", ~jet["pileup"] if mc else np.zeros(kj), i4),
        ("jet_SV0", sv0, f4),
        ("jet_MV1", _tagger_score(rng, jet["quantile"], (0.0, 0.2, 0.6, 0.7892, 0.98, 1.0)), f4),
    ):
        tb.jagged(name, jet, values, dt, "jet_n")


_PHYSLITE_COUNTERS = {
    "AnalysisElectronsAuxDyn": "nAnalysisElectrons",
    "AnalysisMuonsAuxDyn": "nAnalysisMuons",
    "AnalysisJetsAuxDyn": "nAnalysisJets",
    "AnalysisPhotonsAuxDyn": "nAnalysisPhotons",
    "AnalysisTauJetsAuxDyn": "nAnalysisTauJets",
    "BTagging_AntiKt4EMPFlowAuxDyn": "nBTagging_AntiKt4EMPFlow",
}
#: the real files' m_persKey of AnalysisJetsAuxDyn.btaggingLink (hash of the container name)
_BTAG_LINK_KEY = 582299515
#: discriminant bands of the 2025e-style quantiles 1..5 (>= 4: the 77 % working point)
_DISC_BANDS = {
    "DL1dv01": (0.018, (-4.0, -1.0, 0.92, 2.51, 3.56, 8.0)),
    "GN2v00": (0.1, (-4.0, -1.0, 1.638, 2.893, 3.875, 9.0)),
}


def _flavour_scores(
    rng: np.random.Generator, disc: np.ndarray, fc: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pb, pc, pu) summing to 1 whose ln(pb / (fc pc + (1 - fc) pu)) equals ``disc``."""
    r = rng.uniform(0.05, 0.5, disc.size)  # pc / (pc + pu)
    k = fc * r + (1.0 - fc) * (1.0 - r)
    rest = 1.0 / (1.0 + np.exp(disc) * k)  # pc + pu
    return 1.0 - rest, rest * r, rest * (1.0 - r)


def _physlite_btagging(tb: _TreeBuilder, jet: _Coll, meta: _Meta, start: int) -> None:
    """The BTagging_AntiKt4EMPFlow container (stored in reverse jet order, so that readers
    must follow each jet's btaggingLink) with DL1dv01/GN2v00 scores, and the links."""
    rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2024, start, 1]))
    counts = jet.counts
    first = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(len(jet)) - first
    reverse = first + np.repeat(counts, counts) - 1 - local  # container slot of each jet
    link = "AnalysisJetsAuxDyn.btaggingLink/AnalysisJetsAuxDyn.btaggingLink"
    key = np.full(len(jet), _BTAG_LINK_KEY)
    tb.jagged(f"{link}.m_persKey", jet, key, np.uint32, "nAnalysisJets")
    tb.jagged(f"{link}.m_persIndex", jet, reverse - first, np.uint32, "nAnalysisJets")
    for tagger, (fc, bands) in _DISC_BANDS.items():
        disc = _tagger_score(rng, jet["quantile"], bands)
        scores = _flavour_scores(rng, disc, fc)
        for flavour, values in zip("bcu", scores, strict=True):
            stored = np.empty(len(jet))
            stored[reverse] = values
            tb.jagged(
                f"BTagging_AntiKt4EMPFlowAuxDyn.{tagger}_p{flavour}",
                jet,
                stored,
                np.float32,
                _PHYSLITE_COUNTERS["BTagging_AntiKt4EMPFlowAuxDyn"],
            )


def _write_physlite(tb: _TreeBuilder, ev: _Events, meta: _Meta, start: int) -> None:
    """Tree ``CollectionTree``, MeV: the PHYSLITE branches an e/mu/jet/photon/tau analysis reads.

    With the real types: ``AnalysisElectronsAuxDyn.{pt, eta, phi, m, charge, topoetcone20,
    ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000,
    DFCommonElectronsLHLoose/Medium/Tight}``, ``AnalysisMuonsAuxDyn.{pt, eta, phi, charge,
    ptvarcone30, topoetcone20, quality}`` (no ``m``, like the real files),
    ``AnalysisJetsAuxDyn.{pt, eta, phi, m, btaggingLink.m_persKey/m_persIndex}``,
    ``BTagging_AntiKt4EMPFlowAuxDyn.{DL1dv01,GN2v00}_{pb,pc,pu}`` (stored in reverse jet order:
    only the link finds a jet's scores), ``AnalysisPhotonsAuxDyn.{pt, eta, phi, m, ptcone20,
    topoetcone40, DFCommonPhotonsIsEMTight}``, ``AnalysisTauJetsAuxDyn.{pt, eta, phi, m, charge,
    RNNJetScore, JetDeepSetLoose/Medium/Tight}`` and
    ``EventInfoAuxDyn.{eventNumber, runNumber, mcChannelNumber, mcEventWeights}``.  DATA
    files: ``mcChannelNumber`` 0 and empty ``mcEventWeights``.
    """
    n, mc, s = ev.n, meta.is_mc, 1e3
    lep, jet, pho, tau = (ev.coll[k] for k in ("lep", "jet", "photon", "tau"))
    f4, i8, u8 = np.float32, np.int8, np.uint8
    ele = lep.subset(lep["flav"] == 11)
    mu = lep.subset(lep["flav"] == 13)
    quality = np.where(
        mu["tight_id"], 0, np.where(mu["medium_id"], 1, np.where(mu["loose_id"], 2, 3))
    )

    def add(prefix: str, coll: _Coll, fields: tuple[tuple[str, np.ndarray, Any], ...]) -> None:
        for name, values, dt in fields:
            tb.jagged(f"{prefix}.{name}", coll, values, dt, _PHYSLITE_COUNTERS[prefix])

    add(
        "AnalysisElectronsAuxDyn",
        ele,
        (
            ("pt", ele["pt"] * s, f4),
            ("eta", ele["eta"], f4),
            ("phi", ele["phi"], f4),
            ("m", ele["m"] * s, f4),
            ("charge", ele["charge"], f4),
            ("topoetcone20", ele["topoetcone20"] * s, f4),
            (
                "ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000",
                ele["ptvarcone30"] * s,
                f4,
            ),
            ("DFCommonElectronsLHLoose", ele["loose_id"], i8),
            ("DFCommonElectronsLHMedium", ele["medium_id"], i8),
            ("DFCommonElectronsLHTight", ele["tight_id"], i8),
        ),
    )
    add(
        "AnalysisMuonsAuxDyn",
        mu,
        (
            ("pt", mu["pt"] * s, f4),
            ("eta", mu["eta"], f4),
            ("phi", mu["phi"], f4),
            ("charge", mu["charge"], f4),
            ("ptvarcone30", mu["ptvarcone30"] * s, f4),
            ("topoetcone20", mu["topoetcone20"] * s, f4),
            ("quality", quality, u8),
        ),
    )
    add(
        "AnalysisJetsAuxDyn",
        jet,
        (
            ("pt", jet["pt"] * s, f4),
            ("eta", jet["eta"], f4),
            ("phi", jet["phi"], f4),
            ("m", jet["m"] * s, f4),
        ),
    )
    _physlite_btagging(tb, jet, meta, start)
    add(
        "AnalysisPhotonsAuxDyn",
        pho,
        (
            ("pt", pho["pt"] * s, f4),
            ("eta", pho["eta"], f4),
            ("phi", pho["phi"], f4),
            ("m", pho["m"] * s, f4),
            ("ptcone20", pho["ptcone"] * s, f4),
            ("topoetcone40", pho["etcone"] * s, f4),
            ("DFCommonPhotonsIsEMTight", pho["tight_id"], i8),
        ),
    )
    add(
        "AnalysisTauJetsAuxDyn",
        tau,
        (
            ("pt", tau["pt"] * s, f4),
            ("eta", tau["eta"], f4),
            ("phi", tau["phi"], f4),
            ("m", tau["m"] * s, f4),
            ("charge", tau["charge"], f4),
            ("RNNJetScore", tau["rnn_jet"], f4),
            ("JetDeepSetLoose", tau["rnn_jet"] > 0.4, i8),
            ("JetDeepSetMedium", tau["rnn_jet"] > 0.6, i8),
            ("JetDeepSetTight", tau["tight"], i8),
        ),
    )
    tb.scalar("EventInfoAuxDyn.eventNumber", _event_numbers(meta, start, n), np.uint64)
    tb.scalar("EventInfoAuxDyn.runNumber", _run_numbers(meta, start, n), np.uint32)
    tb.scalar("EventInfoAuxDyn.mcChannelNumber", np.full(n, meta.dsid if mc else 0), np.uint32)
    # nominal weight first, then two variations (real files carry a few hundred)
    if mc:
        w = meta.weights[start : start + n].astype(np.float64)
        rng = np.random.default_rng(np.random.SeedSequence([meta.seed, 2024, start]))
        var = w[:, None] * (1.0 + 0.05 * rng.standard_normal((n, 2)))
        flat = np.column_stack([w, var]).ravel()
        counts = np.full(n, 3)
    else:
        flat = np.zeros(0)
        counts = np.zeros(n, dtype=np.int64)
    tb.types["EventInfoAuxDyn.mcEventWeights"] = _datashape("var * float32")
    tb.data["EventInfoAuxDyn.mcEventWeights"] = ak.unflatten(flat.astype(np.float32), counts)
    tb.counters["EventInfoAuxDyn.mcEventWeights"] = "nmcEventWeights"


_WRITERS: dict[str, Callable[[_TreeBuilder, _Events, _Meta, int], None]] = {
    "2025e": _write_2025e,
    "2020e": _write_2020e,
    "2016e": _write_2016e,
    "physlite": _write_physlite,
}
