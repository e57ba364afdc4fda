"""The package version: the single source that pyproject.toml reads at build time.

A constant rather than an ``importlib.metadata`` lookup, which costs time at every start
of the command line tool.
"""

__version__ = "0.1.0"
