"""Multivariate normality tests and tests of the latents against the prior N(0, I).

The one place to import the joint tests from. Sample-based tests take an
``(n_samples, n_dims)`` array, normally the seeded sample; :func:`mean_zero` and
:func:`cov_identity` test the prior from full-data moments. Degenerate input (too few rows,
``n_dims >= n_samples``, constant columns, singular covariance) gives a warning and a
skipped :class:`~latentcheck.model.report.TestResult`. Each topic has its own module:

- :mod:`latentcheck.stats.joint.mardia`: Mardia's skewness and kurtosis, and the mergeable
  :class:`MardiaAccumulator` over all rows;
- :mod:`latentcheck.stats.joint.normality`: Henze–Zirkler, Royston, Doornik–Hansen;
- :mod:`latentcheck.stats.joint.energy_distance`: the energy test;
- :mod:`latentcheck.stats.joint.prior`: Hotelling's T² and the covariance test against N(0, I);
- :mod:`latentcheck.stats.joint.whitening`: the shared :class:`Whitening`.
"""

from __future__ import annotations

from latentcheck.stats.joint.energy_distance import energy
from latentcheck.stats.joint.mardia import (
    THIRD_ORDER_FLOP_BUDGET,
    MardiaAccumulator,
    mardia,
    mardia_third_order_affordable,
)
from latentcheck.stats.joint.normality import doornik_hansen, henze_zirkler, royston
from latentcheck.stats.joint.prior import cov_identity, mean_zero
from latentcheck.stats.joint.whitening import Whitening

__all__ = [
    "THIRD_ORDER_FLOP_BUDGET",
    "MardiaAccumulator",
    "Whitening",
    "cov_identity",
    "doornik_hansen",
    "energy",
    "henze_zirkler",
    "mardia",
    "mardia_third_order_affordable",
    "mean_zero",
    "royston",
]
