"""Joint (multivariate) statistics: whitening, Mardia, multivariate tests, Mahalanobis outliers."""
