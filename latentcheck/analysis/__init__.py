"""``analyze``: the passes' states turned into a report (joint, spatial and stream finishing)."""
