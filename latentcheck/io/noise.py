"""The seeded noise of the posterior draw z = mu + sigma * eps: one eps per element.

eps is a pure function of the seed and the element's global index (row · n_dims + column),
so every pass, chunking, shard, thread and worker sees the same z. The indices are cut into
blocks of :data:`NOISE_BLOCK` elements; block b is the stream of a generator of its own,
``Generator(SFC64(SeedSequence(seed, spawn_key=(b,))))`` (numpy's independent child streams,
O'Neill's SeedSequence design), whose ``standard_normal(NOISE_BLOCK, dtype=float32)`` is
the ziggurat method of Marsaglia & Tsang (2000, https://doi.org/10.18637/jss.v005.i08).
Float32 ziggurat noise costs about a sixth of the Box–Muller transform of two hashed 53-bit
uniforms in float64 that it replaces (issue 22); the values of a float32 N(0, 1) are exact
to 2^-24 of their size, far below the sampling noise of any figure computed from them.

The draw depends on numpy's SFC64 and float32 ziggurat, unchanged since numpy 1.17; a numpy
release that changed either would change the draw (numpy's stream policy, NEP 19).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["NOISE_BLOCK", "SeededNoise", "noise_block", "standard_normal"]

#: Elements per block of noise: each block is the start of a generator of its own.
NOISE_BLOCK = 1 << 16


def noise_block(seed: int, block: int, out: NDArray[np.float32] | None = None) -> NDArray[Any]:
    """Return the :data:`NOISE_BLOCK` N(0, 1) float32 values of `block` for `seed`."""
    gen = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(block,))))
    if out is None:
        return gen.standard_normal(NOISE_BLOCK, dtype=np.float32)
    return gen.standard_normal(out=out, dtype=np.float32)


class SeededNoise:
    """The draw's eps for ranges of element indices, generated block by block.

    Each thread keeps the last block it generated, so that consecutive chunks that share a
    block generate it once (a chunk boundary rarely falls on a block boundary).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._last = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed}  # the per-thread block is a cache: not sent to workers

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self._last = threading.local()

    def _block(self, block: int) -> NDArray[np.float32]:
        """Return `block`'s values (this thread's last block, or generated and kept)."""
        last = getattr(self._last, "block", None)
        if last is not None and last[0] == block:
            values: NDArray[np.float32] = last[1]
            return values
        values = noise_block(self.seed, block)
        self._last.block = (block, values)
        return values

    def fill(self, start: int, out: NDArray[np.float32]) -> NDArray[np.float32]:
        """Fill the contiguous float32 `out` with eps of elements start, start + 1, ...."""
        flat = out.reshape(-1)  # a view: `out` is contiguous
        pos, n = 0, flat.size
        while pos < n:
            block, offset = divmod(start + pos, NOISE_BLOCK)
            take = min(NOISE_BLOCK - offset, n - pos)
            if take == NOISE_BLOCK:  # a whole block: generated in place
                noise_block(self.seed, block, out=flat[pos : pos + take])
            else:
                flat[pos : pos + take] = self._block(block)[offset : offset + take]
            pos += take
        return out

    def rows(self, row0: int, n_rows: int, n_dims: int) -> NDArray[np.float32]:
        """Return eps of rows row0 .. row0 + n_rows - 1 of `n_dims` values, shape (n, d)."""
        out = np.empty((n_rows, n_dims), dtype=np.float32)
        return self.fill(row0 * n_dims, out)


def standard_normal(index: NDArray[np.integer[Any]], seed: int) -> NDArray[np.float32]:
    """Return the draw's eps at arbitrary element indices (any shape), as float32.

    The same values :class:`SeededNoise` gives for ranges: a pure function of
    (index, seed). Each block that `index` touches is generated once.
    """
    idx = np.asarray(index, dtype=np.int64)
    if idx.size and int(idx.min()) < 0:
        raise ValueError("element indices must be non-negative")
    out = np.empty(idx.shape, dtype=np.float32)
    blocks, offsets = np.divmod(idx, NOISE_BLOCK)
    for block in np.unique(blocks):
        where = blocks == block
        out[where] = noise_block(seed, int(block))[offsets[where]]
    return out
