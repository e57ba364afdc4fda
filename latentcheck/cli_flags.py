"""The command line's flags, generated from the options module (issue 17, stage 2).

Each analysis or compare option becomes one click option with the flag, default, type,
choices and help its :class:`~latentcheck.options.Option` defines, so the CLI cannot drift
from ``analyze`` and ``compare``; the commands themselves are in ``cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from .options import ANALYSIS_OPTIONS, COMPARE_OWN, Option

F = TypeVar("F", bound=Callable[..., Any])


def click_option(opt: Option) -> Callable[[F], F]:
    """Return the click option of `opt`: its flag, default, help, type and choices."""
    kw: dict[str, Any] = {"help": opt.help, "default": opt.command_default}
    if opt.kind == "flag":
        if "/" not in str(opt.flag):
            kw["is_flag"] = True
    elif opt.kind == "choice":
        kw["type"] = click.Choice(list(opt.choices))
    elif opt.kind == "seed":
        kw["type"] = click.IntRange(0, 2**64 - 1)
    elif opt.kind == "int" or (opt.kind == "any" and isinstance(opt.default, int)):
        kw["type"] = int
    elif opt.kind in ("fraction", "nonneg", "scale", "real"):
        kw["type"] = float
    if opt.command_default is not None and opt.kind != "flag":
        kw["show_default"] = True
    return click.option(str(opt.flag), opt.name, **kw)


def options_of(names: Sequence[str], options: Mapping[str, Option]) -> Callable[[F], F]:
    """Return a decorator adding the click options of `names`, in that order."""

    def decorate(fn: F) -> F:
        for name in reversed(names):
            fn = click_option(options[name])(fn)
        return fn

    return decorate


#: how to read and view the input arrays
INPUT_OPTIONS = ("key", "channel_axis", "flatten", "per_sample")
#: options of the analysis itself, as ``report`` offers them
ANALYSIS_FLAGS = tuple(
    name
    for name, opt in ANALYSIS_OPTIONS.items()
    if opt.flag and name not in INPUT_OPTIONS and name != "allow_few_rows"
)
#: compare's own flags (--seed and --alpha are shared with the analysis options)
COMPARE_FLAGS = tuple(name for name in COMPARE_OWN if name not in ("seed", "alpha"))
#: the flags of the analysis of each input in compare: all of report's but --test-samples
#: (the univariate tests' rows, which compare leaves at analyze's default)
COMPARE_ANALYSIS_FLAGS = tuple(name for name in ANALYSIS_FLAGS if name != "test_samples")
_input_flags = options_of(INPUT_OPTIONS, ANALYSIS_OPTIONS)


def storage_options(pairs: Sequence[str]) -> dict[str, Any] | None:
    """Return the --storage-option KEY=VALUE pairs as a dict (None if none were given)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out or None


def input_options(fn: F) -> F:
    """How to read and view the input arrays, and fsspec's options for remote paths."""
    fn = click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        callback=lambda _c, _p, v: storage_options(v),
        help="fsspec option for s3://, gs://, hf://, https://… inputs (repeatable; "
        "VALUE read as JSON if it parses, e.g. anon=true).",
    )(fn)
    return _input_flags(fn)


analysis_options = options_of(ANALYSIS_FLAGS, ANALYSIS_OPTIONS)
#: the analysis flags a profile fixes when it is made (the rest apply when it is reported)
PROFILE_FLAGS = ("seed", "test_samples", "sample_size", "nan", "max_joint_dims", "chunk_rows")
