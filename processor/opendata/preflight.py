"""Pre-flight checks of input files: open, tree, entries, format, branches — one reason per failure."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import uproot

from processor.config import Config
from processor.opendata.formats import FormatError, detect_format, required_branches
from processor.opendata.releases import TREE_CANDIDATES
from processor.opendata.weights import default_scale_factors, weight_branches

log = logging.getLogger(__name__)

KNOWN_TREES = TREE_CANDIDATES


@dataclass
class FileReport:
    """What pre-flight learned about one input file."""

    file: str
    dataset: str
    tree: str | None = None
    entries: int | None = None
    format: str | None = None
    error: str | None = None

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
            branches = set(t.keys())
            fmt = detect_format(rep.tree, branches, config.parsing_task_config.format, source=file)
            rep.format = fmt.name
            sel = config.object_selection
            needed = required_branches(
                fmt,
                [x for x in sel.active_types() if ("j" if x == "b" else x) in fmt.collections],
                sel.cuts,
                sel.btagging,
            )
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
                rep.error = (
                    f"{file}: tree '{rep.tree}' lacks branch(es) {', '.join(missing[:5])}"
                    f"{' …' if len(missing) > 5 else ''} needed for format {fmt.name}; "
                    "check the file, parsing_task_config.format or the object selection"
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
