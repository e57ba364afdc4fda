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

from ._version import __version__ as __version__
from .analysis import analyze as analyze
from .comparison import Comparison as Comparison
from .comparison import compare as compare
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
from .loading import LatentSource as LatentSource
from .loading import open_latents as open_latents
from .report import SCHEMA_VERSION as SCHEMA_VERSION
from .report import Report as Report
from .report import TestResult as TestResult

__all__ = [
    "SCHEMA_VERSION",
    "Comparison",
    "DegenerateDimensionWarning",
    "FormatError",
    "InputError",
    "LatentSource",
    "LatentcheckError",
    "LatentcheckWarning",
    "Report",
    "SchemaError",
    "SmallSampleWarning",
    "TestResult",
    "__version__",
    "analyze",
    "compare",
    "open_latents",
]
