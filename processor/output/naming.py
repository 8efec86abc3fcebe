"""Histogram names: BumpNet's ROI names, plain names, raw fine-grid names, and their parsing."""

from __future__ import annotations

import re

from processor.physics.finalstates import category_label, fs_label, parse_fs_label

_CATEGORY_RE = re.compile(
    r"^(\d+)ex_(\d+)mx_(\d+)jx_(\d+)gx_(\d+)tx_(\d+)bx(?:_(\d+)Zx)?(?:_(OS|SS))?$"
)
#: BumpNet's own category parser (its selection helper), DESIGN §3
BUMPNET_CATEGORY_RE = re.compile(r"(\d+)(ex|mx|bx|jx|Zx)")


def width_text(width: float) -> str:
    """Bin width as BumpNet names print it: 10 -> '10.0', 2.5 -> '2.5'."""
    return repr(float(width))


def roi_name(fs: str, combo: str, width: float, bumpnet: bool = True) -> str:
    """``ROI_mass_{combo}_cat_{category}_width_{w}`` (or ``ROI_{fs}_{combo}_width_{w}``)."""
    if bumpnet:
        return (
            f"ROI_mass_{combo}_cat_{category_label(*parse_fs_label(fs))}_width_{width_text(width)}"
        )
    return f"ROI_{fs}_{combo}_width_{width_text(width)}"


def outlier_name(fs: str, combo: str, width: float, bumpnet: bool = True) -> str:
    """The outlier tail's name: like the ROI name with ``outliers`` instead of ``ROI``."""
    return "outliers" + roi_name(fs, combo, width, bumpnet)[len("ROI") :]


def raw_name(fs: str, combo: str) -> str:
    """Fine-grid histogram name, ``raw_mass_{combo}_cat_{category}`` (BumpNet's raw view)."""
    return f"raw_mass_{combo}_cat_{category_label(*parse_fs_label(fs))}"


def fs_count_name(fs: str) -> str:
    """Name of a final state's event-count histogram in the raw file."""
    return f"nevents_cat_{category_label(*parse_fs_label(fs))}"


def parse_category(category: str) -> tuple[dict[str, int], str | None]:
    """(counts per type, charge tag) from ``2ex_0mx_1jx_0gx_0tx_0bx[_1Zx][_OS]``."""
    m = _CATEGORY_RE.match(category)
    if not m:
        raise ValueError(f"not a category label: {category!r}")
    *numbers, z, tag = m.groups()
    counts = dict(zip(("e", "m", "j", "g", "t", "b"), (int(x) for x in numbers), strict=True))
    counts["Z"] = int(z or 0)
    return counts, tag


def parse_raw_name(name: str) -> tuple[str, str]:
    """(fs label, combination) of a ``raw_mass_…`` name."""
    body = name.split(";")[0]
    if not body.startswith("raw_mass_") or "_cat_" not in body:
        raise ValueError(f"not a raw histogram name: {name!r}")
    combo, category = body[len("raw_mass_") :].split("_cat_", 1)
    return fs_label(*parse_category(category)), combo


def parse_fs_count_name(name: str) -> str:
    """fs label of a ``nevents_cat_…`` name."""
    body = name.split(";")[0]
    return fs_label(*parse_category(body[len("nevents_cat_") :]))


def bumpnet_view(name: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """How BumpNet's loader sees a ROI name: (observable, parsed category)."""
    body = name[len("ROI_") :] if name.startswith("ROI_") else name
    observable = body.split("mass_", 1)[1].split("_cat_", 1)[0]
    category = body.split("_cat_", 1)[1].rsplit("_width_", 1)[0]
    for suffix in ("_OS", "_SS"):
        category = category.removesuffix(suffix)
    parsed = tuple((kind, int(n)) for n, kind in BUMPNET_CATEGORY_RE.findall(category))
    return observable, parsed
