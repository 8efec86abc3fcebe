"""The one table of ATLAS Open Data releases: tree, file format, √s and luminosity (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReleaseInfo:
    """Facts of one release (its atlasopenmagic name is the key of :data:`RELEASES`)."""

    tree: str  #: event tree of its files
    format: str  #: file format adapter (processor.opendata.formats)
    sqrt_s_tev: float
    luminosity_pb: float  #: integrated luminosity of its data, pb^-1


RELEASES: dict[str, ReleaseInfo] = {
    "2025e-13tev-beta": ReleaseInfo("analysis", "2025e", 13.0, 36600.0),
    "2020e-13tev": ReleaseInfo("mini", "2020e", 13.0, 10000.0),
    "2024r-pp": ReleaseInfo("CollectionTree", "physlite", 13.0, 36600.0),
    "2016e-8tev": ReleaseInfo("mini", "2016e", 8.0, 1000.0),
}
#: release names, in the order the config documents them
RELEASE_NAMES: tuple[str, ...] = tuple(RELEASES)
#: the format names (``parsing_task_config.format``), "auto" aside
FORMAT_NAMES: tuple[str, ...] = ("2025e", "2020e", "2016e", "physlite")
#: tree names looked for, in this order, when a local input file is opened
TREE_CANDIDATES: tuple[str, ...] = ("analysis", "mini", "CollectionTree")
#: the release assumed for local inputs whose tree is not the configured release's
_RELEASE_OF_TREE = {
    "analysis": "2025e-13tev-beta",
    "CollectionTree": "2024r-pp",
    "mini": "2020e-13tev",
}


def release_tree(release: str, default: str = "analysis") -> str:
    """The event tree of a release's files."""
    info = RELEASES.get(release)
    return info.tree if info else default


def release_for_tree(tree: str, configured: str) -> str:
    """The release a file with this tree belongs to (the configured one if its tree matches)."""
    if release_tree(configured, "") == tree:
        return configured
    return _RELEASE_OF_TREE.get(tree, configured)


def format_luminosity_pb(fmt: str) -> float:
    """Luminosity (pb^-1) of the data a format belongs to (MC normalisation default)."""
    for info in RELEASES.values():
        if info.format == fmt:
            return info.luminosity_pb
    return RELEASES["2025e-13tev-beta"].luminosity_pb


def energy_and_lumi(release: str | None) -> tuple[float, float | None]:
    """(√s in TeV, luminosity in fb^-1) of a release; (13, None) for unknown/own inputs."""
    info = RELEASES.get(release or "")
    return (info.sqrt_s_tev, info.luminosity_pb / 1000.0) if info else (13.0, None)
