"""latentcheck: what do my latents actually look like.

Streaming statistics of latent arrays exported from any autoencoder: per-dimension KL to
N(0, 1), Gaussianity (with effect sizes), outliers, scale, effective dimensionality,
normalisation constants for latent diffusion, and comparisons between checkpoints.

>>> import numpy as np, latentcheck as lc
>>> rep = lc.analyze(np.random.default_rng(0).standard_normal((1000, 3)))
>>> rep.input.n_dims
3
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .errors import (
    DegenerateDimensionWarning as DegenerateDimensionWarning,
)
from .errors import (
    FormatError as FormatError,
)
from .errors import (
    InputError as InputError,
)
from .errors import (
    LatentcheckError as LatentcheckError,
)
from .errors import (
    LatentcheckWarning as LatentcheckWarning,
)
from .errors import (
    SchemaError as SchemaError,
)
from .errors import (
    SmallSampleWarning as SmallSampleWarning,
)

if TYPE_CHECKING:
    from .analysis import analyze as analyze
    from .comparison import Comparison as Comparison
    from .comparison import Posterior as Posterior
    from .comparison import compare as compare
    from .loading import LatentSource as LatentSource
    from .loading import open_latents as open_latents
    from .options import AnalysisOptions as AnalysisOptions
    from .options import CompareOptions as CompareOptions
    from .profiles import Profile as Profile
    from .profiles import profile as profile
    from .report import SCHEMA_VERSION as SCHEMA_VERSION
    from .report import Report as Report
    from .report import TestResult as TestResult
    from .stream import Stream as Stream

# The rest is imported on first use (PEP 562): importing the package does not import numpy,
# so the command line tool can set up BLAS first (see __main__.py).
_LAZY = {
    "analyze": "analysis",
    "Comparison": "comparison",
    "compare": "comparison",
    "Posterior": "comparison",
    "LatentSource": "loading",
    "open_latents": "loading",
    "AnalysisOptions": "options",
    "CompareOptions": "options",
    "SCHEMA_VERSION": "report",
    "Report": "report",
    "TestResult": "report",
    "Stream": "stream",
    "Profile": "profiles",
    "profile": "profiles",
}


#: submodules the README uses as ``lc.<module>`` after ``import latentcheck as lc``
_SUBMODULES = ("gates", "verdict", "stats")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        sub = importlib.import_module(f".{name}", __name__)
        globals()[name] = sub
        return sub
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentcheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])


__all__ = [
    "SCHEMA_VERSION",
    "AnalysisOptions",
    "CompareOptions",
    "Comparison",
    "DegenerateDimensionWarning",
    "FormatError",
    "InputError",
    "LatentSource",
    "LatentcheckError",
    "LatentcheckWarning",
    "Posterior",
    "Profile",
    "Report",
    "SchemaError",
    "SmallSampleWarning",
    "Stream",
    "TestResult",
    "__version__",
    "analyze",
    "compare",
    "open_latents",
    "profile",
]
