"""The bump scan's settings (``post_processing_task_config.bump_scan``), importable cheaply.

Kept apart from :mod:`processor.output.bumpscan` (which imports scipy, iminuit and
pyBumpHunter) so that validating a config does not pay for the scan's imports.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

__all__ = ["DEFAULT_LR_ALPHA", "BumpScanConfig"]

#: Default significance level of the likelihood-ratio test that admits one more fit parameter.
DEFAULT_LR_ALPHA = 0.05


class BumpScanConfig(BaseModel):
    """Settings of the bump scan (``post_processing_task_config.bump_scan``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: run the scan at all
    enabled: bool = True
    #: background estimate: a fit of the dijet function to the spectrum, or the weighted MC
    background: Literal["fit", "mc"] = "fit"
    #: pseudo-experiments for the global p-value (its resolution is 1 / this number)
    n_pseudo_experiments: PositiveInt = 300
    #: when no pseudo-experiment is as extreme as the data, the scan is repeated with ten times
    #: as many, up to this number (= n_pseudo_experiments: never); 3000 resolves Z up to ~3.4
    max_pseudo_experiments: PositiveInt = 3000
    #: seed of the pseudo-experiments (numpy's legacy global seed: 0 <= seed < 2**32)
    seed: int = Field(0, ge=0, lt=2**32)
    #: narrowest and widest scan window, in bins
    min_window_bins: PositiveInt = 2
    max_window_bins: PositiveInt = 20
    #: a spectrum is skipped when the bins from its first to its last non-empty bin are fewer
    min_bins: PositiveInt = 10
    #: ... or when it holds fewer events than this (sum of the bin contents)
    min_events: float = Field(50.0, ge=0)
    #: ROI bins at the low edge left out of the pipeline's scan (:func:`processor.output.
    #: scanning.scan_roi`): an ROI starts at its tallest bin, where the trigger/selection
    #: turn-on shapes the spectrum and the smoothly falling fit family does not apply
    skip_leading_bins: int = Field(2, ge=0)
    #: largest number of parameters of the background fit (2, 3 or 4)
    fit_max_params: int = Field(4, ge=2, le=4)
    #: level of the likelihood-ratio test that admits another fit parameter
    fit_lr_alpha: float = Field(DEFAULT_LR_ALPHA, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> BumpScanConfig:
        if self.min_window_bins > self.max_window_bins:
            raise ValueError(
                f"min_window_bins ({self.min_window_bins}) > max_window_bins ({self.max_window_bins})"
            )
        if self.max_pseudo_experiments < self.n_pseudo_experiments:
            raise ValueError(
                f"max_pseudo_experiments ({self.max_pseudo_experiments}) < "
                f"n_pseudo_experiments ({self.n_pseudo_experiments})"
            )
        return self
