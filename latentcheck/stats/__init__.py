"""Statistics computed from accumulated states and seeded samples."""
