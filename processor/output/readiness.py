"""BumpNet's name parsers and loader, emulated: the one place the readiness report is made."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: BumpNet's category regex (its ``parse_final_state``), DESIGN §9
BUMPNET_CATEGORY_RE = re.compile(r"(\d+)(ex|mx|bx|jx|Zx)")
#: BumpNet's charge-tag regex (its ``parse_charge_tag``): at the very end of the name
BUMPNET_CHARGE_RE = re.compile(r"(SS|OS)$")
#: Stack components BumpNet's loader counts as SM; any other component counts as BSM.
SM_COMPONENTS = (
    "VV_roi",
    "Zee_roi",
    "ttbar_roi",
    "ttX_roi",
    "singletop_roi",
    "Wlnu_roi",
    "Zmumu_roi",
    "Wtaunu_roi",
    "ttXX_roi",
    "Ztautau_roi",
)


# -- BumpNet's name parsers -------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedName:
    """What BumpNet's ``signatures.py`` reads from a histogram name."""

    observable: str
    objects: dict[str, int]
    final_state: dict[str, int]
    charge: str | None

    def selection_key(self) -> tuple[Any, ...]:
        """What BumpNet's selection can tell apart: observable, parsed counts, charge tag."""
        return (self.observable, tuple(sorted(self.final_state.items())), self.charge)


def loader_name(key: str) -> str:
    """The name BumpNet's loader stores for a key: cycle dropped, ``rebinned_``/``ROI_`` removed."""
    return key.split(";")[0].replace("rebinned_", "").replace("ROI_", "")


def parse_bumpnet_name(name: str) -> ParsedName:
    """Emulate BumpNet's parsers on a name.

    observable = text between ``mass_`` and ``_cat_`` (its letters counted per type);
    final state = text after ``cat_``, ``_(SS|OS)$`` stripped, then ``(\\d+)(ex|mx|bx|jx|Zx)``;
    charge tag = ``(SS|OS)$`` at the very end of the name. Raises ValueError when a name has no
    ``mass_`` or ``cat_`` part (BumpNet would fail on it).
    """
    if "mass_" not in name or "cat_" not in name:
        raise ValueError(f"{name!r} has no 'mass_…_cat_…' part: BumpNet cannot parse it")
    observable = name.split("mass_", 1)[1].split("_cat_", 1)[0]
    objects: dict[str, int] = defaultdict(int)
    for ch in observable:
        if ch.isalpha():
            objects[ch] += 1
    final = re.sub(r"_(SS|OS)$", "", name.split("cat_", 1)[1])
    parsed = {kind: int(n) for n, kind in BUMPNET_CATEGORY_RE.findall(final)}
    m = BUMPNET_CHARGE_RE.search(name)
    return ParsedName(observable, dict(objects), parsed, m.group(1) if m else None)


def category_collisions(names: Iterable[str]) -> list[list[str]]:
    """Groups of ROI names BumpNet's selection cannot tell apart (e.g. they differ only in gx/tx)."""
    seen: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for name in names:
        try:
            key = parse_bumpnet_name(loader_name(name)).selection_key()
        except ValueError:
            continue
        seen[key].append(name)
    return sorted(sorted(group) for group in seen.values() if len(group) > 1)


# -- BumpNet's loader --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """BumpNet's loader on one histogram: accepted or not, why, and what it would keep."""

    accepted: bool
    reasons: tuple[str, ...]
    n_bins: int
    entries: float
    #: bins [start, stop) of the written histogram that the loader keeps after its trim
    start: int = 0
    stop: int = 0
    #: one short code per reason: no_bin_above, too_few_bins, too_few_entries, first_bin_empty
    codes: tuple[str, ...] = ()


def loader_verdict(values: Sequence[float] | np.ndarray, cuts: Any) -> Verdict:
    """Emulate ``load_ATLAS`` with ``raw_cuts`` on one (summed) histogram's bin contents.

    In its order: bins after the last bin above ``min_num_events`` are trimmed (no such bin:
    the histogram is skipped); the first ``int(skipped_bins * n_bins)`` bins are dropped
    (``skipped_bins`` is a fraction, as in BumpNet); then at least ``min_num_bins`` bins, at
    least ``min_total_events`` in them, and a first bin > 0.
    """
    v = np.asarray(values, dtype=np.float64)
    above = np.flatnonzero(v > cuts.min_num_events)
    if not len(above):
        return Verdict(
            False,
            (f"no bin above {cuts.min_num_events:g} events",),
            0,
            0.0,
            codes=("no_bin_above",),
        )
    start = int(cuts.skipped_bins * len(v))
    stop = int(above[-1]) + 1
    kept = v[start:stop]
    reasons, codes = [], []
    trimmed = len(v) - stop
    if len(kept) < cuts.min_num_bins:
        why = f"{len(kept)} bins < {cuts.min_num_bins}"
        if trimmed:
            why += f" ({trimmed} trailing bins ≤ {cuts.min_num_events:g} trimmed)"
        reasons.append(why)
        codes.append("too_few_bins")
    total = float(kept.sum())
    if total < cuts.min_total_events:
        reasons.append(f"{total:g} entries < {cuts.min_total_events:g}")
        codes.append("too_few_entries")
    if not len(kept) or not kept[0] > 0:
        reasons.append("first bin is not > 0")
        codes.append("first_bin_empty")
    return Verdict(not reasons, tuple(reasons), len(kept), total, start, stop, tuple(codes))


def loader_summary(cuts: Any) -> str:
    """One line stating the loader cuts (for plots and logs)."""
    return (
        f"≥ {cuts.min_num_bins} bins and ≥ {cuts.min_total_events:g} entries after trimming "
        f"bins past the last one above {cuts.min_num_events:g}, first bin > 0"
    )


# -- the readiness table -----------------------------------------------------------------------


@dataclass
class ReadinessRow:
    """One spectrum in the readiness report: would BumpNet's loader use its ROI histogram?"""

    name: str | None
    fs: str
    combo: str
    #: the name BumpNet keeps (``ROI_`` stripped), as its blacklists and results list it
    loader_name: str | None
    n_bins: int
    #: sum of the ROI histogram's contents (a sum of weights for weighted MC)
    entries: float
    accepted: bool
    reasons: list[str]
    #: short codes of the reasons (blacklisted, empty_after_cuts, and the Verdict codes)
    codes: list[str]
    blacklisted: bool
    bins_after_trim: int
    entries_after_trim: float


def readiness_rows(spectra: Iterable[Any]) -> list[ReadinessRow]:
    """The readiness table of post-processed spectra (``postprocess.Spectrum``), in order.

    Used by the manifest writer and the notebook; a blacklisted spectrum is never accepted
    (it is not written), a spectrum without a ROI histogram neither.
    """
    rows = []
    for s in spectra:
        has_roi = s.roi is not None
        values = s.roi.values() if has_roi else np.zeros(0)
        verdict = s.verdict
        reasons = (["blacklisted"] if s.blacklisted else []) + list(s.rejected)
        codes = (["blacklisted"] if s.blacklisted else []) + (
            list(verdict.codes) if verdict else (["empty_after_cuts"] if not has_roi else [])
        )
        rows.append(
            ReadinessRow(
                name=s.roi_name if has_roi else None,
                fs=s.fs,
                combo=s.combo,
                loader_name=loader_name(s.roi_name) if has_roi else None,
                n_bins=len(values),
                entries=float(values.sum()),
                accepted=bool(has_roi and not reasons),
                reasons=reasons,
                codes=codes,
                blacklisted=bool(s.blacklisted),
                bins_after_trim=verdict.n_bins if verdict else 0,
                entries_after_trim=verdict.entries if verdict else 0.0,
            )
        )
    return rows


def readiness_records(spectra: Iterable[Any]) -> list[dict[str, Any]]:
    """The readiness table as plain dicts (for pandas or JSON)."""
    return [dict(row.__dict__) for row in readiness_rows(spectra)]


def readiness_table(result: Any) -> list[dict[str, Any]]:
    """One record per spectrum of a sample group (``PostProcessResult``): its names, the
    post-processing edges, bins, entries, and BumpNet's loader verdict (``rejected``: the
    reasons, empty when accepted; ``bumpnet``: what the loader would keep). These records are
    the ``spectra`` of the group's manifest entry; the notebook shows them."""
    records = []
    for s, row in zip(result.spectra, readiness_rows(result.spectra), strict=True):
        written = s.roi is not None and not s.blacklisted
        records.append(
            {
                "roi_name": s.roi_name if s.roi is not None else None,
                "outlier_name": s.outlier_name if s.outliers is not None else None,
                "has_outliers": s.outliers is not None,
                "written": written,
                "blacklisted": bool(s.blacklisted),
                "fs": s.fs,
                "combo": s.combo,
                "lo": s.lo,
                "split": s.split,
                "hi": s.hi,
                "n_bins": row.n_bins,
                # fills (ROOT's fEntries; = the contents for unweighted histograms) and contents
                "entries": row.entries if s.roi_entries is None else float(s.roi_entries),
                "sumw": row.entries,
                "removed": s.removed,
                "rejected": row.reasons,
                "bumpnet": {
                    "accepted": row.accepted,
                    "loader_name": row.loader_name,
                    "bins_after_trim": row.bins_after_trim,
                    "entries_after_trim": row.entries_after_trim,
                    "codes": row.codes,
                },
            }
        )
    return records


def group_readiness(result: Any) -> dict[str, Any]:
    """A sample group's readiness summary: spectra records, how many are written and how many
    BumpNet's loader would use, why the others fail, collisions and blacklisted names."""
    spectra = readiness_table(result)
    rows = readiness_rows(result.spectra)
    return {
        "spectra": spectra,
        "n_written": sum(1 for r in spectra if r["written"]),
        "n_bumpnet_ready": sum(1 for row in rows if row.accepted),
        "rejection_counts": reason_counts(rows),
        "collisions": result.collisions,
        "blacklisted": list(result.blacklisted),
    }


def reason_counts(rows: Iterable[ReadinessRow]) -> dict[str, int]:
    """How many spectra fail for each kind of reason (by code), most frequent first."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for code in row.codes:
            counts[code] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# -- the loader on a written file --------------------------------------------------------------


@dataclass
class LoadedHistogram:
    """One histogram as BumpNet's loader sees it."""

    key: str
    name: str
    values: np.ndarray
    bsm: np.ndarray
    edges: np.ndarray
    components: list[str]
    verdict: Verdict


def _stack_components(obj: Any) -> list[Any]:
    return list(obj.member("fHists"))


def load_like_bumpnet(
    path: str | Path, cuts: Any | None = None, blacklist: Iterable[str] = ()
) -> list[LoadedHistogram]:
    """Read a ROOT file the way ``load_ATLAS`` does (keys starting with ``ROI``; TH1 or THStack,
    components summed; components not in :data:`SM_COMPONENTS` counted as BSM), with uproot.

    With ``cuts``, each histogram's :class:`Verdict` applies them (without: accepted if its first
    bin is > 0). Blacklisted names (compared after ``ROI_`` is stripped) are marked rejected.
    """
    import uproot

    black = {loader_name(b) for b in blacklist}
    out = []
    with uproot.open(path) as f:
        for key, cls in f.classnames(cycle=False).items():
            if not key.startswith("ROI"):
                continue
            obj = f[key]
            if cls == "THStack":
                comps = _stack_components(obj)
                if not comps:
                    log.warning("%s: THStack %s is empty", path, key)
                    continue
                values = np.sum([c.values() for c in comps], axis=0)
                bsm = np.sum(
                    [c.values() for c in comps if c.member("fName") not in SM_COMPONENTS]
                    or [np.zeros_like(values)],
                    axis=0,
                )
                edges = comps[0].axis().edges()
                names = [str(c.member("fName")) for c in comps]
            elif cls.startswith("TH1"):
                values = obj.values()
                bsm = np.zeros_like(values)
                edges = obj.axis().edges()
                names = []
            else:
                continue
            name = loader_name(key)
            if cuts is not None:
                verdict = loader_verdict(values, cuts)
            else:
                ok = len(values) > 0 and values[0] > 0
                verdict = Verdict(
                    ok,
                    () if ok else ("first bin is not > 0",),
                    len(values),
                    float(values.sum()),
                    0,
                    len(values),
                    () if ok else ("first_bin_empty",),
                )
            if name in black:
                verdict = Verdict(
                    False,
                    ("blacklisted", *verdict.reasons),
                    verdict.n_bins,
                    verdict.entries,
                    verdict.start,
                    verdict.stop,
                    ("blacklisted", *verdict.codes),
                )
            out.append(LoadedHistogram(key, name, values, bsm, edges, names, verdict))
    return out


def bumpnet_classes(groups: Iterable[str]) -> dict[str, list[str]]:
    """Which process groups BumpNet's loader counts as SM (``<group>_roi`` in its list) or BSM."""
    names = sorted(set(groups))
    return {
        "bumpnet_sm": [g for g in names if f"{g}_roi" in SM_COMPONENTS],
        "bumpnet_bsm": [g for g in names if f"{g}_roi" not in SM_COMPONENTS],
    }
