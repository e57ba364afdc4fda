"""``compare``: two or more data sets of latents, or saved reports, side by side."""
