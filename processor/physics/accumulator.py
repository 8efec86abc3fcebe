"""The accumulator one run adds up: its shape, an empty one, totals and the merge of several.

Per chunk, ``MassProcessor.process`` returns each group's histograms as one compact
``"table"`` (:class:`processor.physics.histograms.MassTable`: touched bins only, added with
``+``); coffea adds those, and ``MassProcessor.postprocess`` expands them once
(:func:`processor.physics.histograms.expand_group`) into the shape below, which everything
after processing (post-processing, ROOT files, merges) reads.

Shape (after ``MassProcessor.postprocess``; also what ``read_raw_file`` gives back)::

    {
      "groups":   {group ("data"|"mc"): {
                       "hists":    {(final state, combination): hist.Hist on the MassGrid},
                       "fs_events": {final state: raw event count},
                       "fs_sumw":   {final state: sum of weights},
                       "fills":     {(final state, combination): Int64 Hist of fills per bin}
                                    (weighted MC only: a Weight histogram does not count fills),
                       "components": {process group: {(final state, combination): hist.Hist}}
                                    (MC by process only: per-process copies of "hists"),
                   }},
      "cutflow":  {dataset: {step: events}},       # steps: analysis.CUTFLOW_STEPS
      "files":    {file: entries processed},
      "formats":  {file: format name},
      "failures": {file: {"start-stop": reason}},  # chunks skipped with skipbadfiles
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor.physics.analysis import CUTFLOW_STEPS

#: the top-level keys of an accumulator
KEYS = ("groups", "cutflow", "files", "formats", "failures")


def empty_output() -> dict[str, Any]:
    """The accumulator of a run that processed nothing."""
    return {"groups": {}, "cutflow": {}, "files": {}, "formats": {}, "failures": {}}


def total_cutflow(out: Mapping[str, Any]) -> dict[str, int]:
    """Cutflow summed over datasets."""
    total = dict.fromkeys(CUTFLOW_STEPS, 0)
    for steps in out.get("cutflow", {}).values():
        for k, v in steps.items():
            total[k] = total.get(k, 0) + int(v)
    return total
