"""Release formats: detect them and turn a chunk into e, m, j, g, t collections in GeV."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from processor.errors import FormatError  # noqa: F401  (re-exported)
from processor.opendata.btagging import physlite_branches, physlite_tag
from processor.physics.flat import Flat, offsets_of
from processor.physics.selection import types_to_read

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
    #: electric charge branch (read for e and mu when charges are used)
    charge: str | None = None
    #: isolation cone variables for rel_isolation_max: "calo" / "track" -> branch (file units)
    cones: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BTagRule:
    """How a format tags jets: the branches it reads and the per-jet mask (both per config)."""

    branches: Callable[[Any], tuple[str, ...]]
    mask: Callable[[Callable[[str], ak.Array], Any], ak.Array]


def _branch_cut(branch: str, rule: Callable[[ak.Array, Any], ak.Array]) -> BTagRule:
    return BTagRule(lambda cfg: (branch,), lambda get, cfg: rule(get(branch), cfg))


@dataclass(frozen=True)
class Format:
    """One ATLAS Open Data release format."""

    name: str
    tree: str
    #: multiply momenta/energies by this to get GeV
    to_gev: float
    collections: Mapping[str, Collection]
    #: b-tagging: the branches and the rule turning them + the BTagging config into a mask
    btag: BTagRule | None = None
    #: branches whose presence identifies the format (together with the tree name)
    signature: tuple[str, ...] = ()
    #: MC weight branches: mcWeight-like, normalisation and the standard scale factors
    weight_branch: str | None = None
    scale_factors: tuple[str, ...] = ()


def _flag(branch: str) -> FlagRule:
    return lambda get: get(branch) != 0


def _f64(array: ak.Array) -> ak.Array:
    return ak.values_astype(array, np.float64)


def _rel_iso(pt: str, cones: tuple[str, ...], limit: float) -> FlagRule:
    def rule(get: Callable[[str], ak.Array]) -> ak.Array:
        ptv = _f64(get(pt))  # compared in float64 (both sides in the file's units)
        ok = ptv > 0
        for cone in cones:
            ok = ok & (_f64(get(cone)) < limit * ptv)
        return ok

    return rule


def _quality_at_most(branch: str, level: int) -> FlagRule:
    return lambda get: get(branch) <= level


def _lep(fourth: str, pdg: int, ids: dict, isos: dict, cones: dict[str, str]) -> Collection:
    return Collection(
        "lep_pt",
        "lep_eta",
        "lep_phi",
        ("energy", fourth),
        ids,
        isos,
        type_select=("lep_type", pdg),
        charge="lep_charge",
        cones=cones,
    )


#: relative-isolation cones per format (rel_isolation_variable: calo | track)
_2025E_LEP_CONES = {"calo": "lep_topoetcone20", "track": "lep_ptvarcone30"}
_MINI_LEP_CONES = {"calo": "lep_etcone20", "track": "lep_ptcone30"}


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
            "e": _lep("lep_e", 11, _2025E_LEP_IDS, _2025E_LEP_ISOS, _2025E_LEP_CONES),
            "m": _lep("lep_e", 13, _2025E_LEP_IDS, _2025E_LEP_ISOS, _2025E_LEP_CONES),
            "j": Collection("jet_pt", "jet_eta", "jet_phi", ("energy", "jet_e")),
            "g": Collection(
                "photon_pt",
                "photon_eta",
                "photon_phi",
                ("energy", "photon_e"),
                {"loose": _flag("photon_isLooseID"), "tight": _flag("photon_isTightID")},
                {"loose": _flag("photon_isLooseIso"), "tight": _flag("photon_isTightIso")},
                cones={"calo": "photon_topoetcone40", "track": "photon_ptcone20"},
            ),
            "t": Collection(
                "tau_pt", "tau_eta", "tau_phi", ("energy", "tau_e"), {"tight": _flag("tau_isTight")}
            ),
        },
        btag=_branch_cut("jet_btag_quantile", lambda arr, cfg: arr >= cfg.quantile_min),
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
            "e": _lep("lep_E", 11, _MINI_LEP_IDS, _MINI_LEP_ISOS, _MINI_LEP_CONES),
            "m": _lep("lep_E", 13, _MINI_LEP_IDS, _MINI_LEP_ISOS, _MINI_LEP_CONES),
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
                cones={"calo": "photon_etcone20", "track": "photon_ptcone30"},
            ),
            "t": Collection(
                "tau_pt",
                "tau_eta",
                "tau_phi",
                ("energy", "tau_E"),
                {"tight": _flag("tau_isTightID")},
            ),
        },
        btag=_branch_cut("jet_MV2c10", lambda arr, cfg: arr > cfg.mv2c10_min),
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
            "e": _lep("lep_E", 11, _8TEV_LEP_IDS, _MINI_LEP_ISOS, _MINI_LEP_CONES),
            "m": _lep("lep_E", 13, _8TEV_LEP_IDS, _MINI_LEP_ISOS, _MINI_LEP_CONES),
            "j": Collection("jet_pt", "jet_eta", "jet_phi", ("energy", "jet_E")),
        },
        btag=_branch_cut("jet_MV1", lambda arr, cfg: arr > cfg.mv2c10_min),
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
                charge="AnalysisElectronsAuxDyn.charge",
                cones={
                    "calo": "AnalysisElectronsAuxDyn.topoetcone20",
                    "track": "AnalysisElectronsAuxDyn."
                    "ptvarcone30_Nonprompt_All_MaxWeightTTVALooseCone_pt1000",
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
                charge="AnalysisMuonsAuxDyn.charge",
                cones={
                    "calo": "AnalysisMuonsAuxDyn.topoetcone20",
                    "track": "AnalysisMuonsAuxDyn.ptvarcone30",
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
                cones={
                    "calo": "AnalysisPhotonsAuxDyn.topoetcone40",
                    "track": "AnalysisPhotonsAuxDyn.ptcone20",
                },
            ),
            "t": Collection(
                "AnalysisTauJetsAuxDyn.pt",
                "AnalysisTauJetsAuxDyn.eta",
                "AnalysisTauJetsAuxDyn.phi",
                ("mass", "AnalysisTauJetsAuxDyn.m"),
                {  # tau ID against jets (DeepSet)
                    "loose": _flag("AnalysisTauJetsAuxDyn.JetDeepSetLoose"),
                    "medium": _flag("AnalysisTauJetsAuxDyn.JetDeepSetMedium"),
                    "tight": _flag("AnalysisTauJetsAuxDyn.JetDeepSetTight"),
                },
            ),
        },
        btag=BTagRule(physlite_branches, physlite_tag),
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
    charge: bool = False,
    available: Callable[[str], bool] = lambda name: True,
) -> dict[str, ak.Array]:
    """Objects per type as records (pt, eta, phi, energy|mass in GeV, float64; pass_quality,
    btag for jets, charge for e/mu when ``charge``).

    ``get`` returns a branch as an awkward array (reading only what is asked for); ``cuts(t)``
    gives the ObjectCuts of type t, whose ``id``/``iso``/``rel_isolation_max`` choose the quality
    requirement. Momenta are cast to float64 before the MeV -> GeV conversion. Only branches
    needed for the requested types, working points and options are touched; ``b`` in
    ``types`` means jets are read (with their tag), ``Z`` is skipped (built later from e, mu).
    """
    out: dict[str, ak.Array] = {}
    for t, coll in _collections_to_read(fmt, types):
        fields: dict[str, ak.Array] = {
            "pt": _to_gev(get(coll.pt), fmt),
            "eta": _f64(get(coll.eta)),
            "phi": _f64(get(coll.phi)),
        }
        kind, src = coll.fourth
        if isinstance(src, str):
            fields[kind] = _to_gev(get(src), fmt)
        else:
            fields[kind] = ak.ones_like(fields["pt"]) * (src * fmt.to_gev)
        fields.update(_flags(get, fmt, t, coll, cuts, btag_cfg, charge, available))
        if "charge" in fields:
            fields["charge"] = _f64(fields["charge"])
        rec = ak.zip(fields)
        if coll.type_select is not None:
            branch, value = coll.type_select
            rec = rec[get(branch) == value]
        out[t] = rec
    return out


def read_flat_collections(
    get: Callable[[str], ak.Array],
    fmt: Format,
    types: Iterable[str],
    cuts: Callable[[str], Any],
    *,
    btag_cfg: Any = None,
    charge: bool = False,
    available: Callable[[str], bool] = lambda name: True,
) -> dict[str, Flat]:
    """:func:`read_collections` as flat arrays plus offsets (:class:`~processor.physics.flat.Flat`,
    the same values): each branch is unpacked once, no records are built."""
    out: dict[str, Flat] = {}
    for t, coll in _collections_to_read(fmt, types):
        offsets, pt = _flat_branch(get(coll.pt))
        fields: dict[str, np.ndarray] = {"pt": _flat_gev(pt, fmt)}
        fields["eta"] = np.asarray(_flat_branch(get(coll.eta), offsets)[1], dtype=np.float64)
        fields["phi"] = np.asarray(_flat_branch(get(coll.phi), offsets)[1], dtype=np.float64)
        kind, src = coll.fourth
        if isinstance(src, str):
            fields[kind] = _flat_gev(_flat_branch(get(src), offsets)[1], fmt)
        else:
            fields[kind] = np.ones_like(fields["pt"]) * (src * fmt.to_gev)
        for name, value in _flags(get, fmt, t, coll, cuts, btag_cfg, charge, available).items():
            flat = _flat_branch(value, offsets)[1]
            fields[name] = np.asarray(flat, dtype=np.float64) if name == "charge" else flat
        rec = Flat(offsets, fields)
        if coll.type_select is not None:
            branch, value = coll.type_select
            rec = rec.compress(_flat_branch(get(branch), offsets)[1] == value)
        out[t] = rec
    return out


def _collections_to_read(fmt: Format, types: Iterable[str]) -> list[tuple[str, Collection]]:
    wanted = list(types)
    base_types = [t for t in wanted if t not in ("b", "Z")]
    if "b" in wanted and "j" not in base_types:
        base_types.append("j")
    return [(t, fmt.collections[t]) for t in base_types if t in fmt.collections]


def _flags(
    get: Callable[[str], ak.Array],
    fmt: Format,
    t: str,
    coll: Collection,
    cuts: Callable[[str], Any],
    btag_cfg: Any,
    charge: bool,
    available: Callable[[str], bool],
) -> dict[str, ak.Array]:
    """pass_quality, the raw charge (e, mu with ``charge``) and the b-tag (jets) of a type."""
    fields: dict[str, ak.Array] = {}
    quality = _quality_mask(coll, cuts(t), get, fmt, t)
    if quality is not None:
        fields["pass_quality"] = quality
    if charge and t in ("e", "m"):
        if coll.charge is None:
            raise FormatError(f"format '{fmt.name}' has no charge branch for type '{t}'")
        fields["charge"] = get(coll.charge)
    if t == "j" and btag_cfg is not None and btag_cfg.enabled:
        rule = fmt.btag
        absent = [b for b in rule.branches(btag_cfg) if not available(b)] if rule else ["all"]
        if absent:
            raise FormatError(
                f"format '{fmt.name}' has no b-tagging branch ({', '.join(absent)}); set "
                "object_selection.btagging.enabled: false"
            )
        fields["btag"] = rule.mask(get, btag_cfg)
    return fields


def _flat_branch(
    array: ak.Array, offsets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, flat values) of a jagged branch; checked against ``offsets`` if given."""
    layout = ak.to_layout(array)
    if (
        isinstance(layout, ak.contents.ListOffsetArray)
        and isinstance(layout.content, ak.contents.NumpyArray)
        and layout.content.data.ndim == 1
    ):
        own = np.asarray(layout.offsets, dtype=np.int64)
        values = np.asarray(layout.content.data)[own[0] : own[-1]]
        if own[0]:
            own = own - own[0]
    else:
        own = offsets_of(np.asarray(ak.num(array, axis=1), dtype=np.int64))
        values = np.asarray(ak.flatten(array, axis=1))
    if offsets is not None and not np.array_equal(own, offsets):
        raise FormatError("branches of one collection have different object counts")
    return own, values


def _flat_gev(values: np.ndarray, fmt: Format) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    return out if fmt.to_gev == 1.0 else out * fmt.to_gev


def _to_gev(array: ak.Array, fmt: Format) -> ak.Array:
    """float64 first, then the unit conversion (a float32 product would round to float32)."""
    out = _f64(array)
    return out if fmt.to_gev == 1.0 else out * fmt.to_gev


def _quality_mask(
    coll: Collection, cut: Any, get: Callable[[str], ak.Array], fmt: Format, t: str
) -> ak.Array | None:
    mask = _rel_isolation_mask(coll, cut, get, fmt, t)
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


def _rel_isolation_mask(
    coll: Collection, cut: Any, get: Callable[[str], ak.Array], fmt: Format, t: str
) -> ak.Array | None:
    """cone / pT < rel_isolation_max (float64; the cone variable per format in ``coll.cones``)."""
    limit = getattr(cut, "rel_isolation_max", None)
    if limit is None:
        return None
    variable = cut.rel_isolation_variable
    cone = coll.cones.get(variable)
    if cone is None:
        have = ", ".join(sorted(coll.cones)) or "none"
        raise FormatError(
            f"format '{fmt.name}' has no {variable} isolation variable for type '{t}' "
            f"(available: {have}); change or remove object_selection.<type>.rel_isolation_max"
        )
    pt = _f64(get(coll.pt))
    return (pt > 0) & (_f64(get(cone)) < limit * pt)


def missing_types(fmt: Format, types: Iterable[str]) -> list[str]:
    """Object types the format does not provide at all (treated as empty, reported once)."""
    return [t for t in types if t != "Z" and ("j" if t == "b" else t) not in fmt.collections]


def required_branches(
    fmt: Format,
    types: Iterable[str],
    cuts: Callable[[str], Any],
    btag_cfg: Any = None,
    *,
    charge: bool = False,
) -> list[str]:
    """The branches :func:`read_collections` touches for this selection (traced, not listed)."""
    touched: list[str] = []

    def record(name: str) -> ak.Array:
        touched.append(name)
        return ak.Array([[1.0]])

    read_collections(record, fmt, types, cuts, btag_cfg=btag_cfg, charge=charge)
    return sorted(set(touched))


def branches_needed(fmt: Format, sel: Any) -> list[str]:
    """Every branch the processor reads from a file of this format for an ObjectSelection
    (its active types, the collections overlap removal needs, charges, b-tagging)."""
    overlap = sel.overlap_removal.applies_to(fmt.name)
    return required_branches(
        fmt, types_to_read(sel, overlap), sel.cuts, sel.btagging, charge=sel.needs_charge()
    )
