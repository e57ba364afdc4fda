"""Files that each hold one sample, e.g. a latent data set saved as one (C, H, W) file each.

Concatenated along axis 0 as shards of a batch, six (4, 16, 16) files would become 24
"samples" of (16, 16) with H as the channel axis: 16 "dimensions", silently wrong (issue
20). Here each such file becomes one sample: files of one shape are seen as (1, C, H, W)
and keep the spatial statistics; files whose spatial sizes differ (aspect-ratio buckets)
are each seen as the (H·W, C) rows of their positions and pooled per channel.

Without ``per_sample`` the reading is chosen only when it is the sole one possible (3-D
files that agree on their first axis but not on the others cannot be a batch); when a
batch reading is possible but the files look like single samples (2 or more 3-D files of
one shape whose first axis is at most :data:`MAX_CHANNELS` and no larger than the other
two), the files are refused with a message naming ``--per-sample`` and ``--batch``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..validation import check_channel_axis
from .member import Member

#: A first axis at most this long, in files of one 3-D shape, may hold channels.
MAX_CHANNELS = 64


def _file_axis(channel_axis: int) -> int | None:
    """Return the channel axis of a 3-D per-sample file, or None if `channel_axis` is odd."""
    axis = channel_axis + 4 if channel_axis < 0 else channel_axis
    return axis - 1 if 1 <= axis <= 3 else None


def looks_per_sample(shapes: list[tuple[int, ...]], channel_axis: int = 1) -> bool:
    """Return True if files of these shapes look like one (C, H, W) sample each."""
    axis = _file_axis(channel_axis)
    if axis is None or len(shapes) < 2 or any(len(s) != 3 for s in shapes):
        return False
    if len(set(shapes)) != 1:
        return False
    c = shapes[0][axis]
    spatial = [x for i, x in enumerate(shapes[0]) if i != axis]
    return c <= MAX_CHANNELS and c <= min(spatial) and min(spatial) > 1


def must_be_per_sample(shapes: list[tuple[int, ...]], channel_axis: int = 1) -> bool:
    """Return True if only a per-sample reading fits (3-D, channels equal, the rest not)."""
    axis = _file_axis(channel_axis)
    if axis is None or len(shapes) < 2 or any(len(s) != 3 for s in shapes):
        return False
    return (
        len({s[axis] for s in shapes}) == 1
        and shapes[0][axis] <= MAX_CHANNELS  # else batches of disagreeing shapes: refused
        and len({s[1:] for s in shapes}) > 1  # as batches they would disagree
    )


def ambiguous_message(n_files: int, shape: tuple[int, ...], channel_axis: int = 1) -> str:
    """Return the refusal for files that may be batches or single samples."""
    axis = _file_axis(channel_axis) or 0
    batch_axis = channel_axis + 3 if channel_axis < 0 else channel_axis  # on a 3-D batch
    batch_dims = shape[batch_axis] if 1 <= batch_axis <= 2 else shape[-1]
    return (
        f"The {n_files} files all have shape {shape}: as batches they would be "
        f"{shape[0] * n_files} samples of {shape[1:]} with {batch_dims} dimensions, but they "
        f"look like one sample each; pass --per-sample (per_sample=True) to read each file "
        f"as one sample with {shape[axis]} channels, or --batch (per_sample=False) to "
        "concatenate them along axis 0"
    )


class OneSample:
    """A file's whole array seen as one sample: ``[0:1]`` is the array with a new axis."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.shape = (1, *member.shape)
        self.dtype = member.dtype

    def __getitem__(self, index: slice) -> NDArray[Any]:
        start, stop, _ = index.indices(1)
        if stop <= start:
            return np.empty((0, *self.member.shape), dtype=self.dtype)
        whole = self.member.read(0, self.member.shape[0])
        return np.array(whole, copy=True)[None]


class PooledPositions:
    """A (C, H, W) file seen as its H·W positions, rows of C channels (mixed sizes)."""

    def __init__(self, member: Member, axis: int) -> None:
        self.member = member
        self.axis = axis
        self.n_dims = member.shape[axis]
        self.shape = (math.prod(member.shape) // self.n_dims, self.n_dims)
        self.dtype = member.dtype

    def __getitem__(self, index: slice) -> NDArray[Any]:
        whole = self.member.read(0, self.member.shape[0])
        rows = np.moveaxis(whole, self.axis, -1).reshape(-1, self.n_dims)
        return np.array(rows[index], copy=True)


def per_sample_members(
    members: list[Member], per_sample: bool | None, channel_axis: int, flatten: bool
) -> tuple[list[Member], str | None]:
    """Return the members to build the data set from, and a layout note (None: as given).

    Raises
    ------
    InputError
        Files that look like single samples without ``per_sample`` said, per-sample files
        of mixed shapes with ``flatten``, or per-sample files of disagreeing channels.
    """
    shapes = [tuple(m.shape) for m in members]
    if per_sample is False:
        return members, None
    if per_sample is None:
        if looks_per_sample(shapes, channel_axis):
            raise InputError(ambiguous_message(len(shapes), shapes[0], channel_axis))
        if not must_be_per_sample(shapes, channel_axis):
            return members, None
    if any(len(s) < 2 for s in shapes):
        raise InputError("--per-sample reads files of one sample each, (C, H, W) or (n_dims,)")
    n = len(members)
    if len(set(shapes)) == 1:
        out = [
            Member(
                label=m.label,
                shape=(1, *m.shape),
                dtype=m.dtype,
                array=OneSample(m),
                in_memory=m.in_memory,
                notes=m.notes,
                closer=m.close,
            )
            for m in members
        ]
        note = f"per-sample files: each of the {n} files is one sample of shape {shapes[0]}"
        return out, note
    if flatten:
        raise InputError(
            "--flatten needs per-sample files of one shape; these have "
            f"{len(set(shapes))} different shapes"
        )
    ndim = len(shapes[0]) + 1
    if any(len(s) + 1 != ndim for s in shapes):
        raise InputError("Per-sample files need the same number of axes")
    axis = check_channel_axis(channel_axis, ndim, members[0].label) - 1
    channels = {s[axis] for s in shapes}
    if len(channels) != 1:
        raise InputError(
            f"Per-sample files disagree on their channels (axis {axis} of each file): "
            f"{sorted(channels)}"
        )
    out = []
    for m in members:
        pooled = PooledPositions(m, axis)
        out.append(
            Member(
                label=m.label,
                shape=pooled.shape,
                dtype=m.dtype,
                array=pooled,
                in_memory=m.in_memory,
                notes=m.notes,
                closer=m.close,
            )
        )
    sizes = sorted({tuple(x for i, x in enumerate(s) if i != axis) for s in shapes})
    shown = ", ".join("×".join(str(x) for x in s) for s in sizes[:5])
    more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
    n_rows = sum(m.shape[0] for m in out)
    note = (
        f"per-sample files of mixed spatial sizes ({shown}{more}): the positions of the {n} "
        f"files are pooled per channel, {n_rows} rows (positions, not samples) of "
        f"{channels.pop()} channels as dimensions (no spatial statistics)"
    )
    return out, note
