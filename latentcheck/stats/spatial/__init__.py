"""Spatial statistics of conv latents: autocorrelation, effective sample size, design effects."""
