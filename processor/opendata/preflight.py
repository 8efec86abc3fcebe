"""Pre-flight checks of input files: open, tree, entries, format, branches — one reason per failure."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from typing import Any

import uproot

from processor.config import Config
from processor.opendata.formats import (
    Format,
    FormatError,
    branches_needed,
    detect_format,
    required_branches,
)
from processor.opendata.releases import TREE_CANDIDATES
from processor.opendata.weights import default_scale_factors, weight_branches
from processor.physics.selection import types_to_read

log = logging.getLogger(__name__)

KNOWN_TREES = TREE_CANDIDATES


#: object_selection field of each one-letter type
TYPE_FIELDS = {
    "e": "electrons",
    "m": "muons",
    "j": "jets",
    "b": "jets",
    "g": "photons",
    "t": "taus",
}


def branch_fixes(fmt: Format, branch: str, config: Config, *, is_mc: bool = True) -> list[str]:
    """Config changes that would make a file lacking ``branch`` usable (the ones that stop
    reading it), most specific first; empty if no setting reads it."""
    sel = config.object_selection
    fixes: list[str] = []
    if sel.btagging.enabled and fmt.btag is not None and branch == fmt.btag[0]:
        fixes.append("set object_selection.btagging.enabled: false")
    needing, quality, charge, overlap_only = [], [], False, False
    overlap = sel.overlap_removal.applies_to(fmt.name)
    for t in types_to_read(sel, overlap):
        if t == "b" or t not in fmt.collections or t not in TYPE_FIELDS:
            continue

        def plain(x: str) -> Any:
            return sel.cuts(x).model_copy(update={"id": None, "iso": None})

        if branch in required_branches(fmt, [t], plain):
            if t in sel.types:
                needing.append(t)
            else:
                overlap_only = True
        elif branch in required_branches(fmt, [t], sel.cuts):
            quality.append(TYPE_FIELDS[t])
        elif branch in required_branches(fmt, [t], sel.cuts, charge=sel.needs_charge()):
            charge = True
    if overlap_only:
        fixes.append("set object_selection.overlap_removal.enabled: false")
    if charge:
        fixes.append(
            "switch off object_selection z_candidates, charge_tags and three_lepton_pairs "
            "(they read lepton charges)"
        )
    for field in quality:
        fixes.append(f"set object_selection.{field}.id/iso to null")
    if needing:
        letters = " and ".join(f"'{t}'" for t in needing)
        names = ", ".join(TYPE_FIELDS[t] for t in needing)
        fixes.append(f"leave {letters} ({names}) out of object_selection.types")
    mass = config.mass_calculation_task_config
    if mass.weighting == "mc" and is_mc:
        sfs = mass.scale_factors
        sfs = tuple(sfs) if sfs is not None else default_scale_factors(fmt, sel.btagging.enabled)
        if branch in sfs:
            fixes.append(f"leave {branch} out of mass_calculation_task_config.scale_factors")
        elif branch in weight_branches(fmt, sfs):
            fixes.append("set mass_calculation_task_config.weighting: none")
    return fixes


def missing_branches_message(
    file: str, tree: str, fmt: Format, missing: list[str], config: Config, *, is_mc: bool = True
) -> str:
    """One line: the file, tree, format, the missing branch(es) and the settings that would
    make the file usable (or that the file itself is incomplete)."""
    fixes: list[str] = []
    for branch in missing:
        options = branch_fixes(fmt, branch, config, is_mc=is_mc)
        if options and options[0] not in fixes:
            fixes.append(options[0])  # the most specific change that stops reading it
    more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
    file_fix = (
        "use a complete copy of the file (a skim or a damaged download lacks branches the "
        "release has)"
    )
    if fixes:
        advice = f"{file_fix}, or do without: {'; and '.join(fixes[:4])}"
    else:
        advice = f"{file_fix}, or check parsing_task_config.format"
    return (
        f"{file}: tree '{tree}' (format {fmt.name}) lacks branch(es) {', '.join(missing[:5])}"
        f"{more}; {advice}"
    )


@dataclass
class FileReport:
    """What pre-flight learned about one input file."""

    file: str
    dataset: str
    tree: str | None = None
    entries: int | None = None
    format: str | None = None
    error: str | None = None
    #: the ROOT file's UUID (the same for every copy of a file: how merges spot one file
    #: twice; coffea's chunks carry it too)
    uuid: str | None = None
    #: with ``executor.align_clusters``, the tree's cluster boundaries (with the entries and
    #: the UUID, what coffea's pre-processing would open the file again to learn)
    clusters: list[int] | None = None

    @property
    def ok(self) -> bool:
        """Whether the file can be processed."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def inspect_file(
    file: str,
    dataset: str,
    tree: str | None,
    config: Config,
    is_mc: bool = False,
    uproot_options: dict[str, Any] | None = None,
) -> FileReport:
    """Open a file and check everything the processor will need from it.

    The error text is one line naming the file, the problem and the fix.
    """
    rep = FileReport(file=file, dataset=dataset)
    try:
        with uproot.open(file, **(uproot_options or {})) as f:
            with contextlib.suppress(AttributeError, ValueError):
                rep.uuid = str(f.file.uuid)
            names = [k.split(";")[0] for k in f.keys(recursive=False)]
            candidates = [tree] if tree else [t for t in KNOWN_TREES if t in names]
            if not candidates or candidates[0] not in names:
                wanted = tree or " or ".join(KNOWN_TREES)
                rep.error = (
                    f"{file}: no tree '{wanted}' (the file has: {', '.join(names) or 'no objects'}); "
                    "check the file or set parsing_task_config.tree_name"
                )
                return rep
            rep.tree = candidates[0]
            t = f[rep.tree]
            rep.entries = int(t.num_entries)
            if config.executor.align_clusters:
                rep.clusters = [int(c) for c in t.common_entry_offsets()]
            branches = set(t.keys())
            fmt = detect_format(rep.tree, branches, config.parsing_task_config.format, source=file)
            rep.format = fmt.name
            sel = config.object_selection
            needed = branches_needed(fmt, sel)
            mass = config.mass_calculation_task_config
            if mass.weighting == "mc" and is_mc:
                sfs = mass.scale_factors
                needed += weight_branches(
                    fmt,
                    tuple(sfs)
                    if sfs is not None
                    else default_scale_factors(fmt, sel.btagging.enabled),
                )
            missing = [b for b in needed if b not in branches]
            if missing:
                rep.error = missing_branches_message(
                    file, rep.tree, fmt, missing, config, is_mc=is_mc
                )
            elif rep.entries == 0:
                log.warning("%s: tree '%s' has 0 entries; nothing to process", file, rep.tree)
    except FormatError as exc:
        rep.error = str(exc)
    except FileNotFoundError:
        rep.error = f"{file}: file not found; check the path or URL"
    except Exception as exc:  # corrupt, truncated, not ROOT, unreachable: one line, with the cause
        text = " ".join(str(exc).split())[:300] or exc.__class__.__name__
        rep.error = f"{file}: cannot read it ({exc.__class__.__name__}: {text}); re-download or drop the file"
    return rep
