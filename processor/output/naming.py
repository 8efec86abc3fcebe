"""Histogram names: BumpNet's grammar and views, the seed's names, plain names, raw-file names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor.config import CATEGORY_ORDER, CHARGE_TAGS, COMBO_ORDER
from processor.physics.finalstates import fs_label

#: Object types in BumpNet's combination-label order: e, m, j, b, Z, g, t (config.COMBO_ORDER).
BUMPNET_COMBO_ORDER = COMBO_ORDER
#: Counts in BumpNet's category order (``gx``/``tx`` only when photons/taus are active types).
BUMPNET_CATEGORY_ORDER = ("e", "m", "b", "j", "Z", "g", "t")
#: Counts in the seed's category order (DESIGN §2): e, m, j, g, t, b (config.CATEGORY_ORDER).
SEED_CATEGORY_ORDER = CATEGORY_ORDER
#: Every type, in the order the raw file's (lossless) categories list them: BumpNet's order.
ALL_TYPES = BUMPNET_CATEGORY_ORDER
#: The views of one spectrum in the BumpNet file, in BumpNet's key order (DESIGN §9).
VIEWS = ("raw", "rebinned", "ROI")
#: The outlier tail's prefix: not ``ROI``, so BumpNet's loader never reads it.
OUTLIER_PREFIX = "outliers"

_FS_PART = re.compile(r"^(\d+)([A-Za-z])$")
_COMBO = re.compile(r"^((?:[emjbZgt]\d+)+)(?:_(OS|SS))?$")
_COMBO_TOKEN = re.compile(r"([emjbZgt])(\d+)")
_SEED_CATEGORY = re.compile(
    r"^(\d+)ex_(\d+)mx_(\d+)jx_(\d+)gx_(\d+)tx_(\d+)bx(?:_(\d+)Zx)?(?:_(OS|SS))?$"
)
_FULL_CATEGORY = re.compile(
    r"^(\d+)ex_(\d+)mx_(\d+)bx_(\d+)jx_(\d+)Zx_(\d+)gx_(\d+)tx(?:_(OS|SS))?$"
)


# -- parsing the processor's labels -----------------------------------------------------------


def parse_final_state(label: str) -> tuple[dict[str, int], str | None]:
    """(counts per type, charge tag) of a final-state label.

    Accepts ``"{e}e_{m}m_{j}j_{g}g_{t}t_{b}b"`` (no Z part: 0 Z) and
    ``"{e}e_{m}m_{j}j_{g}g_{t}t_{b}b_{Z}Z"``, each optionally followed by ``_OS`` / ``_SS``.
    """
    parts = label.split("_")
    tag = parts.pop() if parts and parts[-1] in CHARGE_TAGS else None
    counts: dict[str, int] = {}
    for part in parts:
        m = _FS_PART.match(part)
        if not m or m[2] not in ALL_TYPES or m[2] in counts:
            raise ValueError(
                f"not a final-state label: {label!r} (expected e.g. '2e_0m_1j_0g_0t_0b_0Z_OS')"
            )
        counts[m[2]] = int(m[1])
    if not counts:
        raise ValueError(f"not a final-state label: {label!r} (expected e.g. '2e_0m_1j_0g_0t_0b')")
    return {t: counts.get(t, 0) for t in ALL_TYPES}, tag


def split_combination(combo: str) -> tuple[str, str | None]:
    """(objects, charge tag) of a combination label: ``"e0e2_OS"`` -> ``("e0e2", "OS")``."""
    m = _COMBO.match(combo)
    if not m:
        raise ValueError(
            f"not a combination label: {combo!r} (expected e.g. 'e0e1j0' or 'e0e2_OS')"
        )
    return m[1], m[2]


def combination_tokens(objects: str) -> list[tuple[str, int]]:
    """``"e0e1j0"`` -> ``[("e", 0), ("e", 1), ("j", 0)]``."""
    return [(t, int(i)) for t, i in _COMBO_TOKEN.findall(objects)]


def bumpnet_combination(objects: str) -> str:
    """The objects in BumpNet's type order e, m, j, b, Z, g, t (pT rank order kept per type)."""
    tokens = combination_tokens(objects)
    tokens.sort(key=lambda tok: BUMPNET_COMBO_ORDER.index(tok[0]))
    return "".join(f"{t}{i}" for t, i in tokens)


def name_tag(fs: str, combo: str) -> str | None:
    """The one charge tag a name carries: the final state's or the combination's (never both)."""
    _, fs_tag = parse_final_state(fs)
    _, combo_tag = split_combination(combo)
    if fs_tag and combo_tag:
        raise ValueError(
            f"final state {fs!r} and combination {combo!r} both carry a charge tag; only one can "
            "end a name"
        )
    return fs_tag or combo_tag


# -- categories --------------------------------------------------------------------------------


def bumpnet_category(counts: Mapping[str, int], photons: bool = True, taus: bool = True) -> str:
    """``{e}ex_{m}mx_{b}bx_{j}jx_{Z}Zx[_{g}gx][_{t}tx]`` (gx/tx only for active types)."""
    types = [t for t in BUMPNET_CATEGORY_ORDER if (t != "g" or photons) and (t != "t" or taus)]
    return "_".join(f"{counts.get(t, 0)}{t}x" for t in types)


def seed_category(counts: Mapping[str, int]) -> str:
    """The seed's ``{e}ex_{m}mx_{j}jx_{g}gx_{t}tx_{b}bx``, plus ``_{Z}Zx`` when there are Z."""
    text = "_".join(f"{counts.get(t, 0)}{t}x" for t in SEED_CATEGORY_ORDER)
    return text + (f"_{counts['Z']}Zx" if counts.get("Z") else "")


def full_category(counts: Mapping[str, int]) -> str:
    """Every type's count, BumpNet's order: ``2ex_0mx_0bx_1jx_0Zx_0gx_0tx`` (raw file, lossless)."""
    return "_".join(f"{counts.get(t, 0)}{t}x" for t in ALL_TYPES)


# -- output names ------------------------------------------------------------------------------


def width_text(width: float) -> str:
    """Bin width as the seed's names print it: 10 -> '10.0', 2.5 -> '2.5'."""
    return repr(float(width))


@dataclass(frozen=True)
class NameStyle:
    """How output histograms are named.

    ``naming``: ``bumpnet`` (BumpNet's grammar, no width suffix) or ``seed`` (the original
    pipeline's names, ``..._width_{w}``); ``bumpnet_names`` False gives plain names built from
    the final-state label; ``photons``/``taus``: whether ``gx``/``tx`` appear (bumpnet naming).
    """

    naming: str = "bumpnet"
    bumpnet_names: bool = True
    width: float = 10.0
    photons: bool = True
    taus: bool = True

    @classmethod
    def from_config(cls, config: Any) -> NameStyle:
        """The style a run's configuration asks for."""
        hc = config.histogram_creation_task_config
        types = config.object_selection.active_types()
        return cls(hc.naming, hc.use_bumpnet_naming, hc.bin_width_gev, "g" in types, "t" in types)


def spectrum_name(fs: str, combo: str, style: NameStyle) -> str:
    """A spectrum's name without its view prefix.

    bumpnet: ``mass_{combination}_cat_{category}[_OS|_SS]`` e.g.
    ``mass_e0e2_cat_3ex_0mx_0bx_0jx_0Zx_0gx_0tx_OS``; seed:
    ``mass_{combination}_cat_{e}ex_{m}mx_{j}jx_{g}gx_{t}tx_{b}bx_width_{w}``; plain names:
    ``{final state}_{combination}`` (seed: ``..._width_{w}``).
    """
    counts, _ = parse_final_state(fs)
    objects, _ = split_combination(combo)
    tag = name_tag(fs, combo)
    suffix = f"_{tag}" if tag else ""
    if style.naming == "seed":
        if not style.bumpnet_names:
            return f"{fs}_{combo}_width_{width_text(style.width)}"
        return f"mass_{objects}_cat_{seed_category(counts)}{suffix}_width_{width_text(style.width)}"
    if not style.bumpnet_names:
        return f"{fs}_{combo}"
    category = bumpnet_category(counts, style.photons, style.taus)
    return f"mass_{bumpnet_combination(objects)}_cat_{category}{suffix}"


def view_name(view: str, base: str) -> str:
    """``{view}_{base}``: view is raw, rebinned, ROI or outliers."""
    if view not in (*VIEWS, OUTLIER_PREFIX):
        raise ValueError(f"unknown view {view!r}: use one of {', '.join((*VIEWS, OUTLIER_PREFIX))}")
    return f"{view}_{base}"


def roi_name(fs: str, combo: str, style: NameStyle | None = None) -> str:
    """The ROI view's name (the only one BumpNet's loader reads)."""
    return view_name("ROI", spectrum_name(fs, combo, style or NameStyle()))


def outlier_name(fs: str, combo: str, style: NameStyle | None = None) -> str:
    """The outlier tail's name: like the ROI name with ``outliers`` instead of ``ROI``."""
    return view_name(OUTLIER_PREFIX, spectrum_name(fs, combo, style or NameStyle()))


def strip_view(name: str) -> str:
    """A name without its cycle and view prefix (``ROI_``, ``rebinned_``, ``raw_``, ``outliers_``)."""
    body = name.split(";")[0]
    for view in (*VIEWS, OUTLIER_PREFIX):
        if body.startswith(view + "_"):
            return body[len(view) + 1 :]
    return body


# -- the raw fine-grid file (internal, lossless) -----------------------------------------------


def fs_label_of(counts: Mapping[str, int], tag: str | None) -> str:
    """The processor's final-state label for these counts and charge tag."""
    label = fs_label(counts)
    if counts.get("Z") and "Z" not in label:
        label += f"_{counts['Z']}Z"
    return label + (f"_{tag}" if tag else "")


def raw_name(fs: str, combo: str) -> str:
    """Fine-grid name in the raw file: ``raw_mass_{combination}_cat_{category}``.

    Lossless, whatever the naming style: the category lists every type
    (``2ex_0mx_0bx_1jx_0Zx_0gx_0tx``) and ends in the final state's charge tag; a combination's
    own tag stays with the combination (``raw_mass_e0e2_OS_cat_3ex_...``).
    """
    counts, fs_tag = parse_final_state(fs)
    split_combination(combo)
    return f"raw_mass_{combo}_cat_{full_category(counts)}" + (f"_{fs_tag}" if fs_tag else "")


def fs_count_name(fs: str) -> str:
    """Name of a final state's event-count histogram in the raw file."""
    counts, tag = parse_final_state(fs)
    return f"nevents_cat_{full_category(counts)}" + (f"_{tag}" if tag else "")


def parse_category(category: str) -> tuple[dict[str, int], str | None]:
    """(counts, tag) of a raw-file category, in the current or the seed's grammar."""
    m = _FULL_CATEGORY.match(category)
    if m:
        counts = dict(zip(ALL_TYPES, (int(x) for x in m.groups()[:7]), strict=True))
        return counts, m[8]
    m = _SEED_CATEGORY.match(category)
    if m:
        counts = dict(zip(SEED_CATEGORY_ORDER, (int(x) for x in m.groups()[:6]), strict=True))
        counts["Z"] = int(m[7] or 0)
        return counts, m[8]
    raise ValueError(f"not a category label: {category!r}")


def parse_raw_name(name: str) -> tuple[str, str]:
    """(final-state label, combination) of a raw-file ``raw_mass_…`` name."""
    body = name.split(";")[0]
    if not body.startswith("raw_mass_") or "_cat_" not in body:
        raise ValueError(f"not a raw histogram name: {name!r}")
    combo, category = body[len("raw_mass_") :].split("_cat_", 1)
    counts, tag = parse_category(category)
    split_combination(combo)
    return fs_label_of(counts, tag), combo


def parse_fs_count_name(name: str) -> str:
    """Final-state label of a ``nevents_cat_…`` name."""
    body = name.split(";")[0]
    counts, tag = parse_category(body[len("nevents_cat_") :])
    return fs_label_of(counts, tag)
