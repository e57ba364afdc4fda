"""The package version: the single source that pyproject.toml reads at build time.

A constant rather than an ``importlib.metadata`` lookup, which costs 20 ms at every start
of the command line tool (a tenth of the benchmark's whole numpy process).
"""

__version__ = "0.1.0"
