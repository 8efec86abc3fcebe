"""Release formats: detect them and turn a chunk into e, m, j, g, t collections in GeV."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import awkward as ak

from processor.errors import FormatError  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

MUON_MASS_GEV = 0.1056583755

# quality name -> how to compute a boolean from the branches of a collection.
FlagRule = Callable[[Callable[[str], ak.Array]], ak.Array]


@dataclass(frozen=True)
class Collection:
    """Where one object type lives in a format, in branch names."""

    pt: str
    eta: str
    phi: str
    #: the fourth component: ("energy", branch) or ("mass", branch) or ("mass", float constant)
    fourth: tuple[str, str | float]
    #: id/iso working points: name -> rule computing a bool mask from a branch getter
    ids: Mapping[str, FlagRule] = field(default_factory=dict)
    isos: Mapping[str, FlagRule] = field(default_factory=dict)
    #: for lepton collections shared by e and m: (branch, value) selecting this type
    type_select: tuple[str, int] | None = None


@dataclass(frozen=True)
class Format:
    """One ATLAS Open Data release format."""

    name: str
    tree: str
    #: multiply momenta/energies by this to get GeV
    to_gev: float
    collections: Mapping[str, Collection]
    #: b-tagging: (branch, rule) where rule maps the branch array + BTagging config to a mask
    btag: tuple[str, Callable[[ak.Array, Any], ak.Array]] | None = None
    #: branches whose presence identifies the format (together with the tree name)
    signature: tuple[str, ...] = ()
    #: MC weight branches: mcWeight-like, normalisation and the standard scale factors
    weight_branch: str | None = None
    scale_factors: tuple[str, ...] = ()


def _flag(branch: str) -> FlagRule:
    return lambda get: get(branch) != 0


def _rel_iso(pt: str, cones: tuple[str, ...], limit: float) -> FlagRule:
    def rule(get: Callable[[str], ak.Array]) -> ak.Array:
        ok = get(pt) > 0
        for cone in cones:
            ok = ok & (get(cone) < limit * get(pt))
        return ok

    return rule


def _quality_at_most(branch: str, level: int) -> FlagRule:
    return lambda get: get(branch) <= level


def _lep(fourth: str, pdg: int, ids: dict, isos: dict) -> Collection:
    return Collection(
        "lep_pt", "lep_eta", "lep_phi", ("energy", fourth), ids, isos, type_select=("lep_type", pdg)
    )


_2025E_LEP_IDS = {
    "loose": _flag("lep_isLooseID"),
    "medium": _flag("lep_isMediumID"),
    "tight": _flag("lep_isTightID"),
}
_2025E_LEP_ISOS = {"loose": _flag("lep_isLooseIso"), "tight": _flag("lep_isTightIso")}
_MINI_LEP_IDS = {"tight": _flag("lep_isTightID")}
# the 8 TeV release has no isTightID branch: bit 9 of lep_flag marks tight leptons
_8TEV_LEP_IDS = {"tight": lambda get: (get("lep_flag") & 512) != 0}
_MINI_LEP_ISOS = {
    # the education release has no iso flags: relative-isolation working points of its notebooks
    "loose": _rel_iso("lep_pt", ("lep_ptcone30", "lep_etcone20"), 0.30),
    "tight": _rel_iso("lep_pt", ("lep_ptcone30", "lep_etcone20"), 0.15),
}

FORMATS: dict[str, Format] = {
    "2025e": Format(
        name="2025e",
        tree="analysis",
        to_gev=1.0,
        collections={
            "e": _lep("lep_e", 11, _2025E_LEP_IDS, _2025E_LEP_ISOS),
            "m": _lep("lep_e", 13, _2025E_LEP_IDS, _2025E_LEP_ISOS),
            "j": Collection("jet_pt", "jet_eta", "jet_phi", ("energy", "jet_e")),
            "g": Collection(
                "photon_pt",
                "photon_eta",
                "photon_phi",
                ("energy", "photon_e"),
                {"loose": _flag("photon_isLooseID"), "tight": _flag("photon_isTightID")},
                {"loose": _flag("photon_isLooseIso"), "tight": _flag("photon_isTightIso")},
            ),
            "t": Collection(
                "tau_pt", "tau_eta", "tau_phi", ("energy", "tau_e"), {"tight": _flag("tau_isTight")}
            ),
        },
        btag=("jet_btag_quantile", lambda arr, cfg: arr >= cfg.quantile_min),
        signature=("lep_pt", "jet_pt"),
        weight_branch="mcWeight",
        scale_factors=(
            "ScaleFactor_PILEUP",
            "ScaleFactor_ELE",
            "ScaleFactor_MUON",
            "ScaleFactor_PHOTON",
            "ScaleFactor_TAU",
            "ScaleFactor_BTAG",
            "ScaleFactor_JVT",
            "ScaleFactor_LepTRIGGER",
        ),
    ),
    "2020e": Format(
        name="2020e",
        tree="mini",
        to_gev=1e-3,
        collections={
            "e": _lep("lep_E", 11, _MINI_LEP_IDS, _MINI_LEP_ISOS),
            "m": _lep("lep_E", 13, _MINI_LEP_IDS, _MINI_LEP_ISOS),
            "j": Collection("jet_pt", "jet_eta", "jet_phi", ("energy", "jet_E")),
            "g": Collection(
                "photon_pt",
                "photon_eta",
                "photon_phi",
                ("energy", "photon_E"),
                {"tight": _flag("photon_isTightID")},
                {
                    "loose": _rel_iso("photon_pt", ("photon_ptcone30", "photon_etcone20"), 0.30),
                    "tight": _rel_iso("photon_pt", ("photon_ptcone30", "photon_etcone20"), 0.15),
                },
            ),
            "t": Collection(
                "tau_pt",
                "tau_eta",
                "tau_phi",
                ("energy", "tau_E"),
                {"tight": _flag("tau_isTightID")},
            ),
        },
        btag=("jet_MV2c10", lambda arr, cfg: arr > cfg.mv2c10_min),
        signature=("lep_pt", "jet_MV2c10"),
        weight_branch="mcWeight",
        scale_factors=(
            "scaleFactor_PILEUP",
            "scaleFactor_ELE",
            "scaleFactor_MUON",
            "scaleFactor_PHOTON",
            "scaleFactor_TAU",
            "scaleFactor_BTAG",
            "scaleFactor_LepTRIGGER",
            "scaleFactor_PhotonTRIGGER",
        ),
    ),
    "2016e": Format(
        name="2016e",
        tree="mini",
        to_gev=1e-3,
        collections={
            "e": _lep("lep_E", 11, _8TEV_LEP_IDS, _MINI_LEP_ISOS),
            "m": _lep("lep_E", 13, _8TEV_LEP_IDS, _MINI_LEP_ISOS),
            "j": Collection("jet_pt", "jet_eta", "jet_phi", ("energy", "jet_E")),
        },
        btag=("jet_MV1", lambda arr, cfg: arr > cfg.mv2c10_min),
        signature=("lep_pt", "jet_pt"),
        weight_branch="mcWeight",
        scale_factors=("scaleFactor_PILEUP", "scaleFactor_ELE", "scaleFactor_MUON"),
    ),
    "physlite": Format(
        name="physlite",
        tree="CollectionTree",
        to_gev=1e-3,
        collections={
            "e": Collection(
                "AnalysisElectronsAuxDyn.pt",
                "AnalysisElectronsAuxDyn.eta",
                "AnalysisElectronsAuxDyn.phi",
                ("mass", "AnalysisElectronsAuxDyn.m"),
                {
                    "loose": _flag("AnalysisElectronsAuxDyn.DFCommonElectronsLHLoose"),
                    "medium": _flag("AnalysisElectronsAuxDyn.DFCommonElectronsLHMedium"),
                    "tight": _flag("AnalysisElectronsAuxDyn.DFCommonElectronsLHTight"),
                },
            ),
            "m": Collection(
                "AnalysisMuonsAuxDyn.pt",
                "AnalysisMuonsAuxDyn.eta",
                "AnalysisMuonsAuxDyn.phi",
                # PHYSLITE stores no muon mass branch: use the PDG value (in MeV like the rest)
                ("mass", MUON_MASS_GEV * 1e3),
                {  # xAOD::Muon::Quality: 0 tight, 1 medium, 2 loose
                    "tight": _quality_at_most("AnalysisMuonsAuxDyn.quality", 0),
                    "medium": _quality_at_most("AnalysisMuonsAuxDyn.quality", 1),
                    "loose": _quality_at_most("AnalysisMuonsAuxDyn.quality", 2),
                },
            ),
            "j": Collection(
                "AnalysisJetsAuxDyn.pt",
                "AnalysisJetsAuxDyn.eta",
                "AnalysisJetsAuxDyn.phi",
                ("mass", "AnalysisJetsAuxDyn.m"),
            ),
            "g": Collection(
                "AnalysisPhotonsAuxDyn.pt",
                "AnalysisPhotonsAuxDyn.eta",
                "AnalysisPhotonsAuxDyn.phi",
                ("mass", "AnalysisPhotonsAuxDyn.m"),
                {"tight": _flag("AnalysisPhotonsAuxDyn.DFCommonPhotonsIsEMTight")},
            ),
            "t": Collection(
                "AnalysisTauJetsAuxDyn.pt",
                "AnalysisTauJetsAuxDyn.eta",
                "AnalysisTauJetsAuxDyn.phi",
                ("mass", "AnalysisTauJetsAuxDyn.m"),
            ),
        },
        signature=("AnalysisElectronsAuxDyn.pt",),
        weight_branch="EventInfoAuxDyn.mcEventWeights",
    ),
}


def detect_format(
    treename: str, fields: Iterable[str], override: str = "auto", *, source: str = ""
) -> Format:
    """The format of a file from its tree name and branches; ``override`` forces one and is checked."""
    names = set(fields)
    where = f"{source}: " if source else ""
    if override != "auto":
        fmt = FORMATS[override]
        missing = [b for b in (fmt.tree,) if b != treename] + [
            s for s in fmt.signature if s not in names
        ]
        if missing:
            guess = _guess(treename, names)
            hint = f" it looks like '{guess.name}'" if guess else ""
            raise FormatError(
                f"{where}file does not match the configured format '{override}' "
                f"(tree '{treename}', missing {', '.join(missing)});{hint} — set "
                "parsing_task_config.format to the file's format or 'auto'"
            )
        return fmt
    fmt = _guess(treename, names)
    if fmt is None:
        raise FormatError(
            f"{where}tree '{treename}' with these branches is not a known ATLAS Open Data format "
            "(expected tree 'analysis', 'mini' or 'CollectionTree'); set parsing_task_config.tree_name"
        )
    return fmt


def _guess(treename: str, names: set[str]) -> Format | None:
    if treename == "analysis" and "lep_pt" in names:
        return FORMATS["2025e"]
    if treename == "CollectionTree" and "AnalysisElectronsAuxDyn.pt" in names:
        return FORMATS["physlite"]
    if treename == "mini" and "lep_pt" in names:
        return (
            FORMATS["2020e"] if "jet_MV2c10" in names or "photon_pt" in names else FORMATS["2016e"]
        )
    return None


def read_collections(
    get: Callable[[str], ak.Array],
    fmt: Format,
    types: Iterable[str],
    cuts: Callable[[str], Any],
    *,
    btag_cfg: Any = None,
    available: Callable[[str], bool] = lambda name: True,
) -> dict[str, ak.Array]:
    """Objects per type as records (pt, eta, phi, energy|mass in GeV, and pass_quality, btag).

    ``get`` returns a branch as an awkward array (reading only what is asked for); ``cuts(t)``
    gives the ObjectCuts of type t, whose ``id``/``iso`` choose the quality requirement.
    Only branches needed for the requested types and working points are touched.
    """
    out: dict[str, ak.Array] = {}
    wanted = list(types)
    base_types = [t for t in wanted if t != "b"]
    if "b" in wanted and "j" not in base_types:
        base_types.append("j")
    for t in base_types:
        coll = fmt.collections.get(t)
        if coll is None:
            continue
        fields: dict[str, ak.Array] = {
            "pt": get(coll.pt) * fmt.to_gev,
            "eta": get(coll.eta),
            "phi": get(coll.phi),
        }
        kind, src = coll.fourth
        if isinstance(src, str):
            fields[kind] = get(src) * fmt.to_gev
        else:
            fields[kind] = ak.ones_like(fields["pt"]) * (src * fmt.to_gev)
        quality = _quality_mask(coll, cuts(t), get, fmt, t)
        if quality is not None:
            fields["pass_quality"] = quality
        if t == "j" and btag_cfg is not None and btag_cfg.enabled:
            if fmt.btag is None or not available(fmt.btag[0]):
                raise FormatError(
                    f"format '{fmt.name}' has no b-tagging branch; set "
                    "object_selection.btagging.enabled: false"
                )
            fields["btag"] = fmt.btag[1](get(fmt.btag[0]), btag_cfg)
        rec = ak.zip(fields)
        if coll.type_select is not None:
            branch, value = coll.type_select
            rec = rec[get(branch) == value]
        out[t] = rec
    return out


def _quality_mask(
    coll: Collection, cut: Any, get: Callable[[str], ak.Array], fmt: Format, t: str
) -> ak.Array | None:
    mask = None
    for kind, wp, rules in (("id", cut.id, coll.ids), ("iso", cut.iso, coll.isos)):
        if wp is None:
            continue
        rule = rules.get(wp)
        if rule is None:
            have = ", ".join(sorted(rules)) or "none"
            raise FormatError(
                f"format '{fmt.name}' has no {kind} working point '{wp}' for type '{t}' "
                f"(available: {have}); change object_selection.<type>.{kind}"
            )
        m = rule(get)
        mask = m if mask is None else mask & m
    return mask


def missing_types(fmt: Format, types: Iterable[str]) -> list[str]:
    """Object types the format does not provide at all (treated as empty, reported once)."""
    return [t for t in types if ("j" if t == "b" else t) not in fmt.collections]


def required_branches(
    fmt: Format, types: Iterable[str], cuts: Callable[[str], Any], btag_cfg: Any = None
) -> list[str]:
    """The branches :func:`read_collections` touches for this selection (traced, not listed)."""
    touched: list[str] = []

    def record(name: str) -> ak.Array:
        touched.append(name)
        return ak.Array([[1.0]])

    read_collections(record, fmt, types, cuts, btag_cfg=btag_cfg)
    return sorted(set(touched))
