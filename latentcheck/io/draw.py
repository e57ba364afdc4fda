"""The seeded posterior draw z = mu + sigma * eps, a source of rows like any other.

:class:`DrawSource` streams one seeded draw per input from the posterior parameters
(:class:`PosteriorInputs`): eps from :mod:`latentcheck.io.noise`, a pure function of the
element's global index and the seed, so every pass, chunking, shard and thread sees the
same z. Its reads can also hand out the ``[mu | logvar]`` rows they drew from (the
:data:`POSTERIOR_PART`), through which pass 1 feeds the rate (issue 22), and keep the
draws for pass 2 (:mod:`latentcheck.io.drawcache`). Resolving the inputs and the rest of
posterior mode live in :mod:`latentcheck.io.posterior`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .drawcache import KeptDraws
from .latents import LatentSource
from .noise import SeededNoise

__all__ = [
    "FLOAT32_MU_MAX",
    "FLOAT32_SIGMA_MAX",
    "POSTERIOR_PART",
    "SPREAD_KINDS",
    "DrawSource",
    "PosteriorInputs",
    "SpreadKind",
    "check_draw_inputs",
]

SpreadKind = Literal["logvar", "std", "var"]
SPREAD_KINDS: tuple[SpreadKind, ...] = ("logvar", "std", "var")
#: The part of a :class:`DrawSource` read that holds the rows [mu | logvar] (see read_with).
POSTERIOR_PART = "posterior"


@dataclass
class PosteriorInputs:
    """Opened posterior parameters (aligned sources of the same shape and view)."""

    mu: LatentSource
    spread: LatentSource
    kind: SpreadKind
    z: LatentSource | None
    labels: dict[str, str] = field(default_factory=dict)


class DrawSource(LatentSource):
    """A LatentSource whose rows are the seeded draw z = mu + sigma * eps.

    z is float32 when mu and the spread are (the dtype a stored z would have), float64
    otherwise; eps comes from :class:`~latentcheck.io.noise.SeededNoise`. In float32,
    z = mu + sigma · eps is rounded three or four times (exp, product, sum); numpy's
    float32 exp is within 2.5 ulp (2.44 measured on 5e6 values over [-40, 40]), so that
    |z − z_exact| ≤ (3.44 · 2^-23) |sigma · eps| + 2^-24 |mu| ≤ 2^-21 (|mu| + |sigma · eps|),
    a relative 5e-7: four orders of magnitude below the sampling error of a figure
    computed from even 10^8 draws (1 / sqrt(n) = 1e-4).
    """

    def __init__(self, post: PosteriorInputs, seed: int) -> None:
        mu = post.mu
        single = mu.dtype == np.float32 and post.spread.dtype == np.float32
        super().__init__(
            members=mu.members,
            item_shape=mu.item_shape,
            channel_axis=mu.channel_axis,
            n_items=mu.n_items,
            rows_per_item=mu.rows_per_item,
            n_dims=mu.n_dims,
            dtype=np.dtype(np.float32 if single else np.float64),
            notes=list(mu.notes),
            name=mu.name,
        )
        self.post = post
        self.seed = seed
        self.noise = SeededNoise(seed)
        self.kept: KeptDraws | None = None

    def keep_draws(self) -> None:
        """Keep the draws of the next pass for those after it (before workers fork).

        Reading z back costs a fraction of drawing it again; :meth:`seal_draws` marks the
        end of the pass that wrote every row.
        """
        if self.kept is None:
            self.kept = KeptDraws.maybe(self.n_dims, self.n_rows, self.dtype)

    def seal_draws(self) -> None:
        """Read z as kept from now on: the last pass drew every row."""
        if self.kept is not None:
            self.kept.seal()

    def read_items(self, start: int, stop: int) -> NDArray[Any]:
        """Return the drawn z for samples [start, stop) as rows."""
        if self.kept is not None and self.kept.sealed:
            rows = self.rows_per_item
            z = self.kept.read(start * rows, (stop - start) * rows)
            if z is not None:
                return z
        return self.draw(start, stop, keep=False)[0]

    def read_with(
        self, start: int, stop: int, parts: Sequence[str]
    ) -> tuple[NDArray[Any], dict[str, NDArray[Any]]]:
        """Return the drawn z of samples [start, stop) and the parameters it was drawn from.

        The one part is ``"posterior"``: the rows ``[mu | logvar]`` (float64, checked), what
        :class:`PosteriorPass` streams, so that pass 1 feeds the rate without a third read.
        """
        unknown = [p for p in parts if p != POSTERIOR_PART]
        if unknown:
            raise ValueError(f"DrawSource has no part {unknown[0]!r}; it has {POSTERIOR_PART!r}")
        z, params = self.draw(start, stop, keep=bool(parts))
        return z, ({POSTERIOR_PART: params} if parts else {})

    def draw(self, start: int, stop: int, *, keep: bool) -> tuple[NDArray[Any], NDArray[Any]]:
        """Return (z, [mu | logvar]) for samples [start, stop); the latter empty unless `keep`.

        mu and the spread are checked as read (in their own dtype); with `keep`, they are
        written side by side into one float64 block, the spread as ln σ².
        """
        from ..stats.posterior.params import as_logvar

        row0 = start * self.rows_per_item
        post = self.post
        mu: NDArray[Any] = post.mu.read_items(start, stop)
        spread: NDArray[Any] = post.spread.read_items(start, stop)
        check_draw_inputs(mu, spread, post, row0, single=self.dtype == np.float32)
        n, d = mu.shape
        params = np.empty((n, 2 * d) if keep else (0, 2 * d))
        if keep:
            np.copyto(params[:, :d], mu)
            if post.kind == "logvar":
                np.copyto(params[:, d:], spread)
            else:
                np.copyto(params[:, d:], as_logvar(spread, post.kind, row_offset=row0))
        z = self.noise.rows(row0, n, d)
        if self.dtype != np.float32:
            z = z.astype(np.float64)
        # sigma · eps + mu, in eps's buffer
        if post.kind == "logvar":
            sigma = np.multiply(spread, 0.5, dtype=self.dtype)
            np.exp(sigma, out=sigma)
        elif post.kind == "std":
            sigma = spread
        else:
            sigma = np.sqrt(spread, dtype=self.dtype)
        z *= sigma
        z += mu
        if self.kept is not None:
            self.kept.write(row0, z)
        return z, params

    def close(self) -> None:
        """Close the underlying sources and the kept draws."""
        self.post.mu.close()
        self.post.spread.close()
        if self.kept is not None:
            self.kept.close()


#: In a float32 draw, the largest |mu| and sigma accepted: sigma · |eps| (|eps| < 9 in
#: float32 ziggurat noise) plus |mu| then stays below the float32 maximum, 3.4e38.
FLOAT32_MU_MAX = 1e37
FLOAT32_SIGMA_MAX = 1e36


def check_draw_inputs(
    mu: NDArray[Any], spread: NDArray[Any], post: PosteriorInputs, row0: int, *, single: bool
) -> None:
    """Raise InputError unless one chunk of mu and the spread is valid.

    Checked in the input dtype, without a copy; a float32 draw must also keep z in the
    float32 range.
    """
    from ..stats.posterior.params import LOGVAR_BOUND, MU_BOUND, as_logvar, check_mu

    labels = post.labels
    if mu.size == 0:
        return
    lo, hi = float(mu.min()), float(mu.max())
    if not (math.isfinite(lo) and math.isfinite(hi) and -MU_BOUND <= lo and hi <= MU_BOUND):
        check_mu(mu, name=labels.get("mu", "mu"), row_offset=row0)  # raises
    s_lo, s_hi = float(spread.min()), float(spread.max())
    if post.kind == "logvar":
        ok = -LOGVAR_BOUND <= s_lo and s_hi <= LOGVAR_BOUND
        sigma_max = math.exp(0.5 * min(s_hi, LOGVAR_BOUND))
    else:
        bound = math.exp(LOGVAR_BOUND / (2.0 if post.kind == "std" else 1.0))
        ok = 1.0 / bound <= s_lo and s_hi <= bound
        sigma_max = s_hi if post.kind == "std" else math.sqrt(s_hi) if s_hi >= 0 else 0.0
    if not (ok and math.isfinite(s_lo) and math.isfinite(s_hi)):
        as_logvar(spread, post.kind, name=labels.get("spread"), row_offset=row0)  # raises
    if single and (max(-lo, hi) > FLOAT32_MU_MAX or sigma_max > FLOAT32_SIGMA_MAX):
        raise InputError(
            f"The draw z = mu + sigma * eps from float32 `{labels.get('mu', 'mu')}` and "
            f"`{labels.get('spread', post.kind)}` would leave the float32 range (|mu| up to "
            f"{max(-lo, hi):.3g}, sigma up to {sigma_max:.3g}, rows from {row0}); "
            "pass them as float64 to draw z in float64"
        )
