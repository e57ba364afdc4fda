"""Tests of the latents against the prior N(0, I) from full-data moments.

:func:`mean_zero` (Hotelling's T²) and :func:`cov_identity` (the likelihood-ratio test of
``Sigma = I``) take the row count, mean and population covariance of the first pass, so
they cover all rows. A degenerate covariance gives a warning and a skipped
:class:`~latentcheck.model.report.TestResult`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from latentcheck.errors import InputError
from latentcheck.model.base import TestResult
from latentcheck.stats.joint.common import skip
from latentcheck.stats.joint.whitening import check_moments, degeneracy_reason

__all__ = ["cov_identity", "mean_zero"]


def mean_zero(n: int, mean: npt.ArrayLike, cov: npt.ArrayLike) -> TestResult:
    """Hotelling's T² test that the mean is 0, from full-data moments.

    Parameters
    ----------
    n : int
        Number of rows the moments come from.
    mean : array_like of shape (n_dims,)
        Sample mean.
    cov : array_like of shape (n_dims, n_dims)
        Population covariance (ddof=0).

    Returns
    -------
    TestResult
        Statistic ``T^2 = n m' S_u^-1 m`` (S_u the unbiased covariance), p-value from
        ``F = (n - d) / (d (n - 1)) T^2 ~ F(d, n - d)``, ``df = d`` (numerator; the
        denominator ``n - d`` is in ``method``), effect size the Mahalanobis length of the
        mean ``sqrt(m' S_u^-1 m)``, in standard deviations of the data.

    References
    ----------
    .. [1] Hotelling, H. (1931). The generalization of Student's ratio. Annals of
       Mathematical Statistics 2(3), 360-378. :doi:`10.1214/aoms/1177732979`
    """
    from scipy.special import fdtrc

    n = _check_n(n)
    mean_arr, cov_arr = check_moments(mean, cov)
    d = mean_arr.shape[0]
    if n <= d:
        return skip(f"Hotelling's T^2 needs n > d rows, got n={n}, d={d}", small=True)
    reason = degeneracy_reason(mean_arr, cov_arr)
    if reason is not None:
        return skip(reason)
    chol = np.linalg.cholesky(cov_arr * (n / (n - 1.0)))
    u = np.linalg.solve(chol, mean_arr)
    d2 = float(np.dot(u, u))
    t2 = n * d2
    f = (n - d) / (d * (n - 1.0)) * t2
    return TestResult(
        statistic=t2,
        pvalue=float(fdtrc(d, n - d, f)),
        df=float(d),
        effect_size=math.sqrt(d2),
        method=f"Hotelling T^2, exact F({d}, {n - d}) p-value under normality",
    )


def cov_identity(n: int, cov: npt.ArrayLike) -> TestResult:
    """Likelihood-ratio test that the covariance is the identity, from full-data moments.

    Parameters
    ----------
    n : int
        Number of rows the covariance comes from.
    cov : array_like of shape (n_dims, n_dims)
        Population covariance (ddof=0).

    Returns
    -------
    TestResult
        Statistic ``rho nu (tr S_u - ln det S_u - d)``, chi2 p-value with ``d (d+1) / 2``
        df, effect size ``KL(N(0, S) || N(0, I)) = (tr S - ln det S - d) / 2`` nats (S the
        population covariance).

    Notes
    -----
    The modified likelihood-ratio criterion for ``Sigma = I`` with unknown mean uses
    ``nu = n - 1`` and the unbiased ``S_u``; Bartlett's correction
    ``rho = 1 - (2 d^2 + 3 d - 1) / (6 nu (d + 1))`` makes the chi2 approximation exact
    to O(nu^-2) [1]_ (section 10.8), [2]_ (section 8.4).

    References
    ----------
    .. [1] Anderson, T. W. (2003). An Introduction to Multivariate Statistical Analysis,
       3rd ed. Wiley. ISBN 978-0-471-36091-9
    .. [2] Muirhead, R. J. (1982). Aspects of Multivariate Statistical Theory. Wiley.
       :doi:`10.1002/9780470316559`
    """
    from scipy.special import chdtrc

    n = _check_n(n)
    _, cov_arr = check_moments(np.zeros(np.shape(cov)[:1]), cov)
    d = cov_arr.shape[0]
    nu = n - 1.0
    if nu <= d:
        return skip(f"The covariance test needs n > d + 1 rows, got n={n}, d={d}", small=True)
    reason = degeneracy_reason(np.zeros(d), cov_arr)
    if reason is not None:
        return skip(reason)
    logdet = float(np.linalg.slogdet(cov_arr)[1])
    kl = max(0.5 * (float(np.trace(cov_arr)) - logdet - d), 0.0)
    s_u = cov_arr * (n / nu)
    lr = nu * (float(np.trace(s_u)) - logdet - d * math.log(n / nu) - d)
    rho = 1.0 - (2.0 * d * d + 3.0 * d - 1.0) / (6.0 * nu * (d + 1.0))
    # tr S - ln det S - d >= 0 for every S > 0; clip its rounding error at S = I.
    stat = rho * max(lr, 0.0)
    df = d * (d + 1) / 2.0
    return TestResult(
        statistic=stat,
        pvalue=float(chdtrc(df, stat)),
        df=df,
        effect_size=kl,
        method="likelihood ratio with Bartlett correction, chi2 approximation",
    )


# -- helpers -----------------------------------------------------------------------------


def _check_n(n: int) -> int:
    """Return n as an int or raise InputError."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"`n` must be an integer, got {n!r}")
    return int(n)
