"""The coffea processor: a thin layer that reads a chunk and hands it to the pure physics."""

from __future__ import annotations

import logging
from typing import Any

import awkward as ak
from coffea import processor

from processor.config import Config
from processor.errors import ChunkError  # noqa: F401  (re-exported)
from processor.opendata.formats import (
    FormatError,
    detect_format,
    missing_types,
    read_flat_collections,
)
from processor.opendata.preflight import missing_branches_message
from processor.opendata.weights import default_scale_factors, luminosity_pb, mc_weights
from processor.output.mcgroups import group_of_metadata
from processor.physics.analysis import analyse_objects
from processor.physics.histograms import MassGrid, expand_group, fill_chunk
from processor.physics.selection import types_to_read
from processor.run import coffea_compat  # noqa: F401  (non-ASCII paths; patches on import)

log = logging.getLogger(__name__)


class MassProcessor(processor.ProcessorABC):
    """Per chunk: select objects, classify the final state, fill fine mass histograms.

    Per chunk: ``{"groups": {"data"|"mc": {"table", "fs_events", "fs_sumw"[, "components"]}},
    "cutflow": {dataset: {step: n}}, "files": {filename: events}, "formats": {format: events}}``,
    where ``table`` is a compact :class:`~processor.physics.histograms.MassTable` (small to ship
    and cheap to add). With MC by process, the mc group's ``components`` holds ``{process group:
    MassTable}`` beside the sums (groups from the dataset metadata,
    ``histogram_creation_task_config.mc_groups``). :meth:`postprocess` turns the accumulated
    tables into the documented accumulator of ``hist.Hist`` (:mod:`processor.physics.accumulator`):
    ``hists`` and ``components`` ``{process group: {key: Hist}}``.
    """

    def __init__(self, config: Config, skip_bad_chunks: bool = False):
        self.skip_bad_chunks = skip_bad_chunks
        self.config = config
        self.sel = config.object_selection
        self.mass = config.mass_calculation_task_config
        self.format_override = config.parsing_task_config.format
        self.grid = MassGrid.from_config(self.mass)
        self.weighted = self.mass.weighting == "mc"
        hc = config.histogram_creation_task_config
        self.by_process = hc.stacks_wanted()
        self.mc_groups = dict(hc.mc_groups)

    def process(self, events: Any) -> dict[str, Any]:
        """Analyse one chunk; with ``skip_bad_chunks`` a data error is recorded, not raised."""
        try:
            return self._process(events)
        except Exception as exc:
            meta = events.metadata
            filename = meta.get("filename", "?")
            chunk = f"{meta.get('entrystart')}-{meta.get('entrystop')}"
            reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())[:400]
            if not self.skip_bad_chunks:
                raise ChunkError(
                    f"{filename} entries {chunk}: {reason} "
                    "(set executor.skipbadfiles: true to go on without it)"
                ) from exc
            log.error("%s entries %s failed: %s", filename, chunk, reason)
            return {"failures": {filename: {chunk: reason}}, "files": {filename: 0}}

    def _process(self, events: Any) -> dict[str, Any]:
        meta = events.metadata
        filename, treename = meta.get("filename", "?"), meta.get("treename", "?")
        fields = set(events.fields)
        fmt = detect_format(treename, fields, self.format_override, source=filename)
        overlap = self.sel.overlap_removal.applies_to(fmt.name)
        types = types_to_read(self.sel, overlap)
        absent = missing_types(fmt, self.sel.active_types())
        if absent:
            log.warning(
                "%s: format %s has no %s objects; treated as empty", filename, fmt.name, absent
            )
        cache: dict[str, ak.Array] = {}

        def get(name: str) -> ak.Array:
            if name not in cache:
                if name not in fields:
                    raise FormatError(
                        missing_branches_message(filename, treename, fmt, [name], self.config)
                    )
                cache[name] = events[name]
            return cache[name]

        collections = read_flat_collections(
            get,
            fmt,
            types,
            self.sel.cuts,
            btag_cfg=self.sel.btagging,
            charge=self.sel.needs_charge(),
            available=fields.__contains__,
        )
        is_mc = bool(meta.get("is_mc", False))
        weights = None
        if self.weighted and is_mc:
            sfs = (
                tuple(self.mass.scale_factors)
                if self.mass.scale_factors is not None
                else (default_scale_factors(fmt, self.sel.btagging.enabled))
            )
            weights = mc_weights(
                get,
                fmt,
                meta,
                lumi_pb=luminosity_pb(fmt, self.mass.luminosity_pb),
                scale_factors=sfs,
            )
        analysis = analyse_objects(
            collections,
            len(events),
            self.sel,
            self.mass.combinations,
            self.mass.mass_hypothesis,
            overlap_removal=overlap,
        )
        filled = fill_chunk(analysis, self.grid, weights, self.weighted)
        cutflow = filled.pop("cutflow")
        if is_mc and self.by_process:
            # per-process copies (the sums are added in place when chunks accumulate)
            group = group_of_metadata(meta, self.mc_groups)
            filled["components"] = {group: filled["table"].copy()}
        return {
            "groups": {"mc" if is_mc else "data": filled},
            "cutflow": {meta.get("dataset", "?"): cutflow},
            "files": {filename: analysis.n_events},
            "formats": {fmt.name: analysis.n_events},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Build the fine histograms once from the accumulated compact tables (physics
        post-processing runs later, on the whole result)."""
        groups = accumulator.get("groups")
        if groups:
            accumulator["groups"] = {g: expand_group(c, self.grid) for g, c in groups.items()}
        return accumulator
