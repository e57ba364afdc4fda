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
    from .analysis.api import analyze as analyze
    from .analysis.api import analyze_with_sample as analyze_with_sample
    from .analysis.common import Analysis as Analysis
    from .comparison.api import COMPARE_SCHEMA_VERSION as COMPARE_SCHEMA_VERSION
    from .comparison.api import Comparison as Comparison
    from .comparison.api import Posterior as Posterior
    from .comparison.api import compare as compare
    from .io.latents import LatentSource as LatentSource
    from .io.latents import open_latents as open_latents
    from .lightning import LatentcheckCallback as LatentcheckCallback
    from .model.report import HISTOGRAM_EDGES as HISTOGRAM_EDGES
    from .model.report import SCHEMA_VERSION as SCHEMA_VERSION
    from .model.report import Report as Report
    from .model.report import TestResult as TestResult
    from .options import AnalysisOptions as AnalysisOptions
    from .options import CompareOptions as CompareOptions
    from .profiles import Profile as Profile
    from .profiles import profile as profile
    from .stream import Stream as Stream
    from .stream import gather as gather
    from .vaeconfig import check_vae_config as check_vae_config

# The rest is imported on first use (PEP 562): importing the package does not import numpy,
# so the command line tool can set up BLAS first (see __main__.py).
_LAZY = {
    "analyze": "analysis.api",
    "Comparison": "comparison.api",
    "compare": "comparison.api",
    "Posterior": "comparison.api",
    "LatentSource": "io.latents",
    "open_latents": "io.latents",
    "AnalysisOptions": "options",
    "CompareOptions": "options",
    "SCHEMA_VERSION": "model.report",
    "Report": "model.report",
    "TestResult": "model.report",
    "Stream": "stream",
    "Profile": "profiles",
    "profile": "profiles",
    "analyze_with_sample": "analysis.api",
    "Analysis": "analysis.common",
    "COMPARE_SCHEMA_VERSION": "comparison.api",
    "HISTOGRAM_EDGES": "model.report",
    "gather": "stream",
    "LatentcheckCallback": "lightning",
    "check_vae_config": "vaeconfig",
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
    "COMPARE_SCHEMA_VERSION",
    "HISTOGRAM_EDGES",
    "SCHEMA_VERSION",
    "Analysis",
    "AnalysisOptions",
    "CompareOptions",
    "Comparison",
    "DegenerateDimensionWarning",
    "FormatError",
    "InputError",
    "LatentSource",
    "LatentcheckCallback",
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
    "analyze_with_sample",
    "check_vae_config",
    "compare",
    "gather",
    "open_latents",
    "profile",
]
