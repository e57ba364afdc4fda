"""Statistics of Gaussian posterior parameters: rate, active units, ELBO surgery."""
