"""Mean-of-per-map saliency scores as metric objects: energy pointing game and Quantus's localisation metrics.

Each object's ``update(maps, regions)`` takes ``maps (N, H, W)`` and boolean ``regions (N, H, W)``
on the same grid (indexing ``[n, y, x]``; boxes rasterised by
:func:`bench.core.saliency.boxes_to_mask`), scores every map with the rule in
:mod:`bench.core.saliency` and accumulates the sum of the defined scores, their count and the count
of undefined (NaN; also ±inf, which relevance mass accuracy gives for a zero total) scores, all reduced with ``dist_reduce_fx="sum"``. ``compute()`` returns
``{key: mean over defined scores (NaN when none), key_scored: count, key_undefined: count}``.
Quantus's own aggregate (``np.mean`` of a batch) is NaN as soon as one map is undefined; here the
undefined maps are counted apart instead.

``scores(maps, regions)`` returns the per-map scores without accumulating and
``accumulate(scores)`` adds scores computed elsewhere (the run writes both records and summary from
one computation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchmetrics import Metric

from bench.core import saliency as core

__all__ = [
    "AttributionLocalisation",
    "EnergyPointingGame",
    "LocalisationAUC",
    "MeanMapScore",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "TopKIntersection",
]


class MeanMapScore(Metric):
    """Base: the mean of a per-map score over the maps where it is defined."""

    full_state_update = False
    higher_is_better = True
    #: The summary key (and record column) of the score.
    key: str = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("scored", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("undefined", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _rule(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def scores(self, maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Per-map scores ``(N,)`` float64 (NaN: undefined), nothing accumulated."""
        return self._rule()(torch.as_tensor(maps), torch.as_tensor(regions))

    def accumulate(self, scores: torch.Tensor) -> None:
        """Add per-map scores computed elsewhere (NaN, ±inf counted as undefined); same as ``update(scores=...)``."""
        self.update(scores=scores)

    def update(self, maps: torch.Tensor | None = None, regions: torch.Tensor | None = None, *, scores: torch.Tensor | None = None) -> None:
        """Score a batch of maps against their regions and accumulate (or accumulate given ``scores``)."""
        if scores is None:
            if maps is None or regions is None:
                raise ValueError("give maps and regions, or scores")
            scores = self.scores(maps, regions)
        s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1).to(self.total.device)
        ok = torch.isfinite(s)  # NaN (undefined) and ±inf (relevance mass with a zero total) are not averaged
        self.total += s[ok].sum()
        self.scored += int(ok.sum())
        self.undefined += int((~ok).sum())

    def compute(self) -> dict[str, float | int]:
        n = int(self.scored)
        mean = float(self.total) / n if n else math.nan
        return {self.key: mean, f"{self.key}_scored": n, f"{self.key}_undefined": int(self.undefined)}


class EnergyPointingGame(MeanMapScore):
    """Score-CAM's energy pointing game: the share of ``max(map, 0)``'s mass inside the region."""

    key = "energy_pointing_game"

    def _rule(self):
        return core.energy_pointing_game


class RelevanceMassAccuracy(MeanMapScore):
    """Quantus ``RelevanceMassAccuracy()`` (defaults: ``abs=False``, ``normalise=True``)."""

    key = "relevance_mass_accuracy"

    def _rule(self):
        return core.relevance_mass_accuracy


class RelevanceRankAccuracy(MeanMapScore):
    """Quantus ``RelevanceRankAccuracy()`` (defaults: ``abs=False``, ``normalise=True``)."""

    key = "relevance_rank_accuracy"

    def _rule(self):
        return core.relevance_rank_accuracy


class TopKIntersection(MeanMapScore):
    """Quantus ``TopKIntersection(k=1000)`` (defaults: ``concept_influence=False``, ``abs=False``)."""

    key = "top_k_intersection"

    def __init__(self, k: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)

    def _rule(self):
        return lambda maps, regions: core.top_k_intersection(maps, regions, k=self.k)


class AttributionLocalisation(MeanMapScore):
    """Quantus ``AttributionLocalisation()`` (defaults: ``abs=True``, ``weighted=False``, ``max_size=1``)."""

    key = "attribution_localisation"

    def _rule(self):
        return core.attribution_localisation


class LocalisationAUC(MeanMapScore):
    """Quantus ``AUC()`` (defaults: ``abs=False``, ``normalise=True``): ROC AUC of the map against the region."""

    key = "localisation_auc"

    def _rule(self):
        return core.localisation_auc
