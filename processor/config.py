"""The run configuration: one pydantic schema, validated once at load, with readable errors."""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from cluster.config import ClusterConfig, StrictModel
from processor.errors import ConfigError  # noqa: F401  (re-exported)
from processor.opendata.releases import FORMAT_NAMES, RELEASE_NAMES
from processor.output.mcgroups import DEFAULT_MC_GROUPS, validate_mapping
from processor.output.scanconfig import BumpScanConfig

log = logging.getLogger(__name__)

#: the pipeline's default pseudo-experiments for the bump scan of every ROI spectrum (issue 13)
PIPELINE_PSEUDO_EXPERIMENTS = 100
PIPELINE_MAX_PSEUDO_EXPERIMENTS = 1000

RELEASES = RELEASE_NAMES
#: config keys (dotted prefixes) that shape the histograms of a chunk: checkpoints, resumes and
#: merges are only valid between configs that agree on all of them.
PHYSICS_KEYS = (
    "object_selection",
    "mass_calculation_task_config",
    "parsing_task_config.format",
    "parsing_task_config.tree_name",
    # the MC process a chunk's per-process copies are filed under
    "histogram_creation_task_config.mc_groups",
)
#: keys that together decide whether a chunk carries per-process MC copies at all
#: (:meth:`HistogramCreationConfig.stacks_wanted`): part of the physics only through that choice
STACK_KEYS = (
    "histogram_creation_task_config.mc_by_process",
    "histogram_creation_task_config.naming",
)
Release = Literal[RELEASE_NAMES]  # type: ignore[valid-type]
FormatName = Literal[("auto", *FORMAT_NAMES)]  # type: ignore[valid-type]
#: Object types in combination-label order (issue 10): e, m, j, b, Z, g, t.
COMBO_ORDER = ("e", "m", "j", "b", "Z", "g", "t")
#: Object types in the original's category-label order (DESIGN §2): e, m, j, g, t, b.
CATEGORY_ORDER = ("e", "m", "j", "g", "t", "b")
#: Object types in internal final-state-label order: the original's, then Z.
FS_ORDER = ("e", "m", "j", "g", "t", "b", "Z")
#: Charge tags of a final state with exactly two electrons/muons (or of a lepton pair).
CHARGE_TAGS = ("OS", "SS")
#: Object types read from a file (b-jets come from j, Z candidates from e and m).
READ_TYPES = ("e", "m", "j", "g", "t")

# Keys of the seed pipeline's config that have no meaning here, with what to do instead.
RETIRED_KEYS = {
    "paths": "paths are derived from the run directory; remove the 'paths:' block",
    "tasks.do_parsing": "files are streamed by coffea, there is no parsing stage; remove it",
    "tasks.do_mass_calculation": "masses are always computed by the processor; remove it",
    "parsing_task_config.release_years": "use 'parsing_task_config.release' (one of "
    + ", ".join(RELEASES)
    + ")",
}


_Strict = StrictModel


class RunMetadata(_Strict):
    """Where a run writes its directory and what it is called."""

    run_name: str = Field("bumpnet", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base_output_dir: Path = Path("./output")


class Tasks(_Strict):
    """Stage toggles that still mean something: reading and masses always run."""

    do_post_processing: bool = True
    do_histogram_creation: bool = True
    do_plots: bool = True


class ParsingConfig(_Strict):
    """Which ATLAS Open Data files to read (the seed's 'parsing' stage)."""

    release: Release = RELEASE_NAMES[0]  # type: ignore[assignment]  (2025e-13tev-beta)
    skim: str = "2to4lep"
    samples: Literal["data", "mc", "both"] = "data"
    #: DSIDs or physics_short names (MC) / data keys; None = every dataset of the chosen samples.
    datasets: list[str | int] | None = None
    #: per dataset; None = all files. The choice is deterministic (sorted URLs, first N).
    max_files_to_process: PositiveInt | None = None
    #: "auto" = root (XRootD) when the 'xrootd' extra imports (fsspec_xrootd + XRootD), else https;
    #: "root" / "https" force one (root without the extra is an error).
    protocol: Literal["auto", "root", "https"] = "auto"
    format: FormatName = "auto"
    tree_name: str | None = None
    download: bool = False
    #: None = the user cache (~/.cache/bumpnet-masses/files or $BUMPNET_CACHE_DIR/files).
    cache_dir: Path | None = None
    #: files downloaded at the same time when download is on.
    download_parallel: PositiveInt = 4
    #: seconds one remote request (streaming read or download) may take before it fails.
    network_timeout_s: PositiveFloat = 90.0
    offline: bool = False
    metadata_cache_expiry_hours: PositiveFloat = 168.0
    #: Local files, globs or URLs; when set, used instead of the release listing.
    inputs: list[str] | None = None


class ObjectCuts(_Strict):
    """Kinematic and quality requirements for one object type (GeV)."""

    pt_min: float = Field(ge=0)
    abs_eta_max: PositiveFloat
    id: Literal["loose", "medium", "tight"] | None = None
    iso: Literal["loose", "tight"] | None = None
    #: relative isolation: cone variable / pT must be below this (None = no cut; e, m, g only).
    rel_isolation_max: PositiveFloat | None = None
    #: which cone: 'calo' (topoetcone20, etcone20, ...) or 'track' (ptvarcone30, ptcone30, ...).
    rel_isolation_variable: Literal["calo", "track"] = "calo"
    #: an event needs at least this many final objects of this type (after Z building).
    min_count: int = Field(0, ge=0, le=8)
    #: count limit: an event with more final objects of this type is dropped.
    max_count: int = Field(4, ge=0, le=8)

    @model_validator(mode="after")
    def _counts(self) -> ObjectCuts:
        if self.min_count > self.max_count:
            raise ValueError("min_count must be <= max_count")
        return self


def _cuts_class(name: str, pt_min: float, abs_eta_max: float) -> type[ObjectCuts]:
    """An ObjectCuts subclass whose defaults are one object type's DESIGN cuts."""
    return type(
        name,
        (ObjectCuts,),
        {
            "__annotations__": {"pt_min": float, "abs_eta_max": float},
            "pt_min": Field(pt_min, ge=0),
            "abs_eta_max": Field(abs_eta_max, gt=0),
            "__doc__": f"{name}: pT > {pt_min} GeV, |eta| < {abs_eta_max} by default.",
        },
    )


ElectronCuts = _cuts_class("ElectronCuts", 25.0, 2.47)
MuonCuts = _cuts_class("MuonCuts", 25.0, 2.5)
JetCuts = _cuts_class("JetCuts", 30.0, 4.5)
PhotonCuts = _cuts_class("PhotonCuts", 25.0, 2.37)
TauCuts = _cuts_class("TauCuts", 20.0, 2.5)


class BTagging(_Strict):
    """Optional b-tagging: tagged jets move from j to b."""

    enabled: bool = False
    #: 2025e: jet_btag_quantile >= this (1-5; 4 = 77 % WP).
    quantile_min: int = Field(4, ge=1, le=5)
    #: 2020e/2016e: jet_MV2c10 > this (0.83 ~ 77 % WP).
    mv2c10_min: float = 0.83
    #: PHYSLITE: tagger whose scores are read through each jet's btaggingLink.
    tagger: Literal["DL1dv01", "GN2v00"] = "DL1dv01"
    #: PHYSLITE: b-jet efficiency working point (%), mapped to the tagger's discriminant cut.
    working_point: Literal[60, 70, 77, 85] = 77
    #: PHYSLITE: charm fraction in D = ln(pb / (fc pc + (1 - fc) pu)); None = the tagger's
    #: calibrated value (DL1dv01 0.018, GN2v00 0.1). The working-point cuts assume that value.
    fc: float | None = Field(None, ge=0, le=1)
    #: PHYSLITE: explicit discriminant cut D > this (None = the working point's cut).
    discriminant_min: float | None = None
    min_count: int = Field(0, ge=0, le=8)
    max_count: int = Field(4, ge=0, le=8)

    @model_validator(mode="after")
    def _counts(self) -> BTagging:
        if self.min_count > self.max_count:
            raise ValueError("min_count must be <= max_count")
        return self


class ZCandidates(_Strict):
    """Z -> ll candidates built from same-flavour opposite-charge e/mu pairs (issue 10)."""

    enabled: bool = True
    #: the pair mass closest to this wins (GeV).
    mass_gev: PositiveFloat = 91.1876
    #: a pair is a candidate only if |m - mass_gev| < window_gev.
    window_gev: PositiveFloat = 10.0
    min_count: int = Field(0, ge=0, le=8)
    max_count: int = Field(4, ge=0, le=8)

    @model_validator(mode="after")
    def _counts(self) -> ZCandidates:
        if self.min_count > self.max_count:
            raise ValueError("min_count must be <= max_count")
        return self


class OverlapRemoval(_Strict):
    """The standard ATLAS overlap-removal sequence; an object is removed when Delta R < the value.

    Steps, in order: tau near e/mu; photon near e/mu; jet near electron, then electron near a
    remaining jet; jet near muon, then muon near a remaining jet; jet near photon. A value of 0
    switches that step off.
    """

    #: 'auto': on for PHYSLITE (not overlap-removed), off for the education ntuples (already are).
    enabled: bool | Literal["auto"] = "auto"
    tau_lepton_dr: float = Field(0.2, ge=0)
    photon_lepton_dr: float = Field(0.4, ge=0)
    jet_electron_dr: float = Field(0.2, ge=0)
    electron_jet_dr: float = Field(0.4, ge=0)
    jet_muon_dr: float = Field(0.2, ge=0)
    muon_jet_dr: float = Field(0.4, ge=0)
    jet_photon_dr: float = Field(0.4, ge=0)

    def applies_to(self, fmt_name: str) -> bool:
        """Whether overlap removal runs on files of this format."""
        if self.enabled == "auto":
            return fmt_name == "physlite"
        return bool(self.enabled)


class ObjectSelection(_Strict):
    """Per-type object selection (DESIGN §2 defaults)."""

    types: list[Literal["e", "m", "j", "g", "t"]] = ["e", "m", "j", "g", "t"]
    electrons: ElectronCuts = Field(default_factory=ElectronCuts)
    muons: MuonCuts = Field(default_factory=MuonCuts)
    jets: JetCuts = Field(default_factory=JetCuts)
    photons: PhotonCuts = Field(default_factory=PhotonCuts)
    taus: TauCuts = Field(default_factory=TauCuts)
    btagging: BTagging = Field(default_factory=BTagging)
    z_candidates: ZCandidates = Field(default_factory=ZCandidates)
    #: exactly two e/mu left after Z building: the final state gets _OS or _SS.
    charge_tags: bool = True
    #: exactly three e/mu left: each pair's mass is its own combination, e.g. e0e2_OS
    #: (named by the pair's charge relation). Not given: as charge_tags, so that switching
    #: the charge features off gives the original's names and categories exactly.
    three_lepton_pairs: bool | None = None  # a bool after validation
    overlap_removal: OverlapRemoval = Field(default_factory=OverlapRemoval)

    @field_validator("types")
    @classmethod
    def _unique_types(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or not v:
            raise ValueError("list each object type once, e.g. [e, m, j, g, t]")
        return v

    @model_validator(mode="after")
    def _isolation_and_counts(self) -> ObjectSelection:
        if self.three_lepton_pairs is None:
            self.three_lepton_pairs = self.charge_tags
        for name in ("jets", "taus"):
            if getattr(self, name).rel_isolation_max is not None:
                raise ValueError(
                    f"{name}.rel_isolation_max: relative isolation exists for electrons, "
                    "muons and photons only; remove it"
                )
        for name, t in (
            ("electrons", "e"),
            ("muons", "m"),
            ("jets", "j"),
            ("photons", "g"),
            ("taus", "t"),
        ):
            if getattr(self, name).min_count and t not in self.types:
                raise ValueError(
                    f"{name}.min_count > 0 but '{t}' is not in object_selection.types: "
                    "every event would be dropped"
                )
        if self.btagging.min_count and not self.btagging.enabled:
            raise ValueError("btagging.min_count > 0 needs btagging.enabled: true")
        if self.z_candidates.min_count and "Z" not in self.active_types():
            raise ValueError(
                "z_candidates.min_count > 0 needs z_candidates.enabled: true and e or m in types"
            )
        return self

    def active_types(self) -> tuple[str, ...]:
        """Final object types in combination order: b with b-tagging on, Z with Z candidates
        on (when electrons or muons are selected)."""
        wanted = set(self.types)
        if self.btagging.enabled:
            wanted.add("b")
        if self.z_candidates.enabled and wanted & {"e", "m"}:
            wanted.add("Z")
        return tuple(t for t in COMBO_ORDER if t in wanted)

    def needs_charge(self) -> bool:
        """Whether lepton charges are used (Z candidates, charge tags or three-lepton pairs)."""
        uses = self.z_candidates.enabled or self.charge_tags or self.three_lepton_pairs
        return uses and bool(set(self.types) & {"e", "m"})

    def cuts(self, obj: str) -> ObjectCuts:
        """Cuts for a one-letter object type (b-jets use the jet cuts)."""
        return {
            "e": self.electrons,
            "m": self.muons,
            "j": self.jets,
            "b": self.jets,
            "g": self.photons,
            "t": self.taus,
        }[obj]

    def max_count(self, obj: str) -> int:
        """Count limit of a type: more final objects than this drops the event."""
        if obj == "Z":
            return self.z_candidates.max_count
        return self.btagging.max_count if obj == "b" else self.cuts(obj).max_count

    def min_count(self, obj: str) -> int:
        """Minimum count of a type: fewer final objects than this drops the event."""
        if obj == "Z":
            return self.z_candidates.min_count
        return self.btagging.min_count if obj == "b" else self.cuts(obj).min_count


class CombinationConfig(_Strict):
    """Which final states count and which object combinations get a mass (DESIGN §2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_types: int = Field(1, ge=1, le=6)
    max_types: int = Field(4, ge=1, le=6)
    min_count: int = Field(1, ge=1, le=8)
    max_count: int = Field(4, ge=1, le=8)
    min_objects: int = Field(2, ge=1, le=8)
    max_objects: int = Field(4, ge=1, le=8)
    mode: Literal["leading_only", "include_subleading"] = "leading_only"

    @model_validator(mode="after")
    def _ordered(self) -> CombinationConfig:
        for lo, hi in (("min_types", "max_types"), ("min_count", "max_count")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} must be <= {hi}")
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects must be <= max_objects")
        return self


class MassCalculationConfig(_Strict):
    """Final states, combinations, masses, weights and the fine histogram grid."""

    min_events_per_fs: int = Field(100, ge=0)
    combinations: CombinationConfig = Field(default_factory=CombinationConfig)
    #: 'stored': four-momentum as in the file; 'pdg': the original's fixed PDG masses.
    mass_hypothesis: Literal["stored", "pdg"] = "stored"
    #: 'none': every event counts 1; 'mc': MC events get DESIGN §4 weights, data weight 1.
    weighting: Literal["none", "mc"] = "none"
    #: pb^-1; None = the release's luminosity (36600 for 2025e, 10000 for 2020e).
    luminosity_pb: PositiveFloat | None = None
    #: ScaleFactor branches multiplied into MC weights; None = the format's standard set.
    scale_factors: list[str] | None = None
    fine_bin_width_gev: PositiveFloat = 5.0
    mass_max_gev: PositiveFloat = 13000.0

    @model_validator(mode="after")
    def _grid(self) -> MassCalculationConfig:
        if not _is_multiple(self.mass_max_gev, self.fine_bin_width_gev):
            raise ValueError(
                "mass_max_gev must be a multiple of fine_bin_width_gev "
                f"({self.mass_max_gev} / {self.fine_bin_width_gev})"
            )
        return self


class PostProcessingConfig(_Strict):
    """Post-processing on the accumulated histograms (never per chunk)."""

    peak_removal: bool = True
    peak_bin_width_gev: PositiveFloat = 10.0
    split_outliers: bool = True
    z_peak_cut: bool = False
    z_peak_cut_gev: float = Field(115.0, ge=0)
    max_mass_cut: bool = False
    max_mass_gev: PositiveFloat = 10000.0
    #: the classical bump scan of every ROI spectrum (issue 13): background fit or MC, Z_LR,
    #: BumpHunter window with local/global significance; a cross-check, not a discovery claim
    #: (the pipeline scans every ROI spectrum of a run: fewer pseudo-experiments than the
    #: library's default at first, escalated to 1000, enough to resolve global Z >= 3)
    bump_scan: BumpScanConfig = Field(
        default_factory=lambda: BumpScanConfig(
            n_pseudo_experiments=PIPELINE_PSEUDO_EXPERIMENTS,
            max_pseudo_experiments=PIPELINE_MAX_PSEUDO_EXPERIMENTS,
        )
    )


class BumpNetCuts(_Strict):
    """BumpNet's loader cuts (its configs' ``raw_cuts``), applied by the readiness report."""

    min_num_bins: int = Field(25, ge=0)
    min_total_events: float = Field(100.0, ge=0)
    #: bins after the last bin above this many events are trimmed before the bin count
    min_num_events: float = Field(0.35, ge=0)
    #: fraction of the bins dropped at the start, as BumpNet does: int(skipped_bins * n_bins)
    skipped_bins: float = Field(0.0, ge=0, lt=1)


class HistogramCreationConfig(_Strict):
    """Names, views and binning of the output histograms."""

    #: 'bumpnet': BumpNet's grammar mass_{combo}_cat_{e}ex_{m}mx_{b}bx_{j}jx_{Z}Zx[_gx][_tx][_OS|_SS];
    #: 'seed': the original's mass_{combo}_cat_{e}ex_{m}mx_{j}jx_{g}gx_{t}tx_{b}bx_width_{w}
    naming: Literal["bumpnet", "seed"] = "bumpnet"
    #: False: plain names {final state}_{combination} (seed naming adds _width_{w})
    use_bumpnet_naming: bool = True
    #: views written per spectrum; None = raw, rebinned, ROI (bumpnet naming) or ROI (seed)
    views: list[Literal["raw", "rebinned", "ROI"]] | None = None
    #: MC as a THStack of per-process components; None = on for bumpnet naming, off for seed
    mc_by_process: bool | None = None
    #: MC process groups: group -> regexes searched in physics_short, then process (first match
    #: wins; unmapped datasets keep their own name)
    mc_groups: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_MC_GROUPS))
    #: exact names (with or without the ROI_ prefix) not written to the BumpNet file
    blacklist: list[str] = []
    bumpnet_cuts: BumpNetCuts = Field(default_factory=BumpNetCuts)
    bin_width_gev: PositiveFloat = 10.0
    exclude_outliers: bool = True
    output_file: str = Field("bumpnet_histograms.root", pattern=r"^[^/\\]+\.root$")
    raw_output_file: str = Field("raw_histograms.root", pattern=r"^[^/\\]+\.root$")

    @field_validator("views")
    @classmethod
    def _views(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and ("ROI" not in v or len(set(v)) != len(v)):
            raise ValueError(
                "list each view once and include ROI (BumpNet reads only ROI), e.g. [raw, rebinned, ROI]"
            )
        return v

    @field_validator("mc_groups")
    @classmethod
    def _mc_groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        validate_mapping(v)
        return v

    @field_validator("blacklist")
    @classmethod
    def _blacklist(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.strip() or name != name.strip():
                raise ValueError(
                    f"blacklist entry {name!r} is empty or has spaces around it; list exact histogram names"
                )
        return v

    def active_views(self) -> tuple[str, ...]:
        """Views written, in BumpNet's order (raw, rebinned, ROI)."""
        default = ["raw", "rebinned", "ROI"] if self.naming == "bumpnet" else ["ROI"]
        wanted = set(self.views if self.views is not None else default)
        return tuple(v for v in ("raw", "rebinned", "ROI") if v in wanted)

    def stacks_wanted(self) -> bool:
        """Whether MC is written by process (THStack, or per-group TH1s without PyROOT)."""
        return self.naming == "bumpnet" if self.mc_by_process is None else self.mc_by_process


class ExecutorConfig(_Strict):
    """coffea executor settings."""

    chunksize: PositiveInt = 200_000
    retries: int = Field(3, ge=0)
    #: transient read errors (timeouts, HTTP 5xx, connection resets) retried per request this
    #: many times, waiting io_retry_backoff_s * 2**k (at most 30 s) before retry k, before the
    #: chunk (or file) is recorded failed; 0: no retries.
    io_retries: int = Field(3, ge=0, le=20)
    io_retry_backoff_s: float = Field(1.0, gt=0, le=60)
    #: Dask runs: fail (one line naming the memory setting) when no task finished for this
    #: many seconds while workers are paused (out of memory) or gone; null: wait forever.
    stall_timeout_s: PositiveFloat | None = 300.0
    #: None: on for release runs, off for --input runs.
    skipbadfiles: bool | None = None
    align_clusters: bool = True
    maxchunks: PositiveInt | None = None
    treereduction: int = Field(20, ge=2)


class Config(_Strict):
    """The whole run configuration (config.yaml)."""

    run_metadata: RunMetadata = Field(default_factory=RunMetadata)
    tasks: Tasks = Field(default_factory=Tasks)
    parsing_task_config: ParsingConfig = Field(default_factory=ParsingConfig)
    object_selection: ObjectSelection = Field(default_factory=ObjectSelection)
    mass_calculation_task_config: MassCalculationConfig = Field(
        default_factory=MassCalculationConfig
    )
    post_processing_task_config: PostProcessingConfig = Field(default_factory=PostProcessingConfig)
    histogram_creation_task_config: HistogramCreationConfig = Field(
        default_factory=HistogramCreationConfig
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="after")
    def _binning(self) -> Config:
        fine = self.mass_calculation_task_config.fine_bin_width_gev
        checks = {
            "histogram_creation_task_config.bin_width_gev": (
                self.histogram_creation_task_config.bin_width_gev
            ),
            "post_processing_task_config.peak_bin_width_gev": (
                self.post_processing_task_config.peak_bin_width_gev
            ),
        }
        pp = self.post_processing_task_config
        if pp.z_peak_cut:
            checks["post_processing_task_config.z_peak_cut_gev"] = pp.z_peak_cut_gev
        if pp.max_mass_cut:
            checks["post_processing_task_config.max_mass_gev"] = pp.max_mass_gev
        for key, value in checks.items():
            if not _is_multiple(value, fine):
                raise ValueError(
                    f"{key}={value} is not a multiple of "
                    f"mass_calculation_task_config.fine_bin_width_gev={fine}; "
                    "choose a multiple or a finer fine_bin_width_gev"
                )
        return self

    # -- helpers ---------------------------------------------------------------
    def digest(self) -> str:
        """A stable SHA-256 of the resolved configuration."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def physics_digest(self) -> str:
        """SHA-256 of the keys that shape a chunk's histograms (:data:`PHYSICS_KEYS`)."""
        flat = {
            k: v
            for k, v in flatten(self.model_dump(mode="json")).items()
            if _under(k, PHYSICS_KEYS)
        }
        flat["histogram_creation_task_config.stacks_wanted"] = (
            self.histogram_creation_task_config.stacks_wanted()
        )
        return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        """The resolved configuration as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{dotted.key: leaf value}`` (lists are leaves)."""
    if not isinstance(data, dict) or (prefix and not data):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio))


def _known_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The field names valid at a dotted location of the schema."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if p != "__root__")
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        retired = RETIRED_KEYS.get(key)
        if retired:
            return f"config key '{key}' is not used any more: {retired}"
        parent, name = loc[:-1], str(loc[-1])
        known = _known_keys(Config, parent)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
        return f"unknown config key '{key}': {hint}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if not key:
        return msg
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
        return f"config key '{key}': {msg} (got {err['input']!r})"
    return f"config key '{key}': {msg}"


def validate_config(data: dict[str, Any] | None, source: str = "config") -> Config:
    """Validate a config mapping; raise ConfigError with one line per problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e) for e in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config file (None: built-in defaults), applying dotted overrides."""
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' not found: pass an existing file to --config")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{p}{where}: not valid YAML ({exc.__class__.__name__})") from None
        if loaded is None:
            log.warning("config file %s is empty: using the built-in defaults", p)
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{p}: the top level must be a mapping of sections (run_metadata:, "
                f"parsing_task_config:, ...), not a {type(loaded).__name__}"
            )
        data = loaded
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate_config(data, source)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set data['a']['b'] = value for dotted='a.b', creating sections as needed."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value
